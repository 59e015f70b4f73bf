//! Several state directories (CI hosts, users) and several processes sharing one prefix in
//! one account never take each other's access away: each state directory has its own key
//! pair, security groups only gain CIDRs, and racing creators settle on one key pair.

mod support;

use hgauto_aws::Ec2Provider;
use hgauto_core::Platform;
use support::{config_for, run_child_test, Moto, CHILD_ENDPOINT, CHILD_STATE};

/// The fingerprint EC2 has for key pair `name`.
async fn remote_fingerprint(p: &Ec2Provider, name: &str) -> Option<String> {
    p.client()
        .describe_key_pairs()
        .key_names(name)
        .send()
        .await
        .ok()?
        .key_pairs()
        .first()?
        .key_fingerprint()
        .map(str::to_owned)
}

fn local_fingerprint(p: &Ec2Provider) -> String {
    let pem = p.private_key_path().unwrap();
    std::fs::read_to_string(pem.with_extension("fingerprint"))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn two_state_directories_keep_their_own_access() {
    let moto = Moto::start();
    let (sa, sb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a =
        Ec2Provider::new(config_for(&moto.endpoint(), sa.path()).with_allowed_cidr("10.0.0.1/32"))
            .await
            .unwrap();
    let b =
        Ec2Provider::new(config_for(&moto.endpoint(), sb.path()).with_allowed_cidr("10.0.0.2/32"))
            .await
            .unwrap();
    let ka = a.ensure_key_pair().await.unwrap();
    let pem_a = std::fs::read(a.private_key_path().unwrap()).unwrap();
    let kb = b.ensure_key_pair().await.unwrap();
    assert_ne!(ka, kb, "each state directory has its own key pair");
    // A's key pair survived B's reconcile, and A's private key still matches it.
    a.ensure_key_pair().await.unwrap();
    assert_eq!(std::fs::read(a.private_key_path().unwrap()).unwrap(), pem_a);
    assert_eq!(
        remote_fingerprint(&a, &ka).await.unwrap(),
        local_fingerprint(&a)
    );
    assert_eq!(
        remote_fingerprint(&b, &kb).await.unwrap(),
        local_fingerprint(&b)
    );

    // Both CIDRs stay open, whoever reconciles last.
    let ga = a.ensure_security_group(Platform::Linux).await.unwrap();
    let gb = b.ensure_security_group(Platform::Linux).await.unwrap();
    assert_eq!(ga, gb, "one shared group per prefix and platform");
    a.ensure_security_group(Platform::Linux).await.unwrap();
    let g = a
        .client()
        .describe_security_groups()
        .group_ids(&ga)
        .send()
        .await
        .unwrap();
    let mut cidrs: Vec<String> = g.security_groups()[0]
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(22))
        .flat_map(|p| {
            p.ip_ranges()
                .iter()
                .filter_map(|r| r.cidr_ip().map(str::to_owned))
        })
        .collect();
    cidrs.sort();
    assert_eq!(cidrs, ["10.0.0.1/32", "10.0.0.2/32"]);
}

/// Runs in a child: one `ensure_key_pair` against the state directory it is given.
#[tokio::test]
#[ignore = "run as a child process by two_processes_settle_on_one_key_pair"]
async fn child_ensures_the_key_pair() {
    let Some((endpoint, state)) = support::child_env() else {
        return;
    };
    let p = Ec2Provider::new(config_for(&endpoint, state.as_ref()))
        .await
        .unwrap();
    p.ensure_key_pair().await.unwrap();
}

#[test]
fn two_processes_settle_on_one_key_pair() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let endpoint = moto.endpoint();
    let state_path = state.path().to_str().unwrap().to_owned();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (e, s) = (endpoint.clone(), state_path.clone());
            std::thread::spawn(move || {
                run_child_test(
                    "child_ensures_the_key_pair",
                    &[(CHILD_ENDPOINT, e.as_str()), (CHILD_STATE, s.as_str())],
                    &[],
                )
            })
        })
        .collect();
    for r in runs {
        r.join().expect("both processes succeed");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = Ec2Provider::new(config_for(&endpoint, state.path()))
            .await
            .unwrap();
        let name = p.key_pair_name().unwrap();
        assert_eq!(
            remote_fingerprint(&p, &name).await.unwrap(),
            local_fingerprint(&p),
            "the private key on disk belongs to the key pair EC2 has"
        );
        let pairs = p.client().describe_key_pairs().send().await.unwrap();
        assert_eq!(
            pairs.key_pairs().len(),
            1,
            "one key pair, not one per process"
        );
    });
}
