//! Ec2Provider against moto_server (started with instance type, AMI and key pair
//! validation on, as real AWS behaves).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use hgauto_aws::Ec2Provider;
use hgauto_core::{Error, MachineSpec, ResourceKind, ResourceProvider};
use support::{live_instances, some_image, Moto};

#[tokio::test]
async fn provision_tags_records_and_terminates() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let p = Ec2Provider::new(moto.config(state.path())).await.unwrap();
    let image = some_image(&p, false).await;
    let mut spec = MachineSpec::linux()
        .with_image(&image)
        .with_instance_type("t3.micro")
        .with_lifetime(Duration::from_secs(3600));
    spec.labels.insert("team".into(), "release".into());
    spec.labels.insert("ci:job".into(), "build 42".into());
    let machines = p.provision(&spec, 2).await.unwrap();
    assert_eq!(machines.len(), 2);
    let ids: Vec<String> = machines.iter().map(|m| m.id().to_owned()).collect();

    // Tags: Name, owner, creator, deadline, prefix; shutdown terminates.
    let instances = live_instances(&p, "hgauto-").await;
    assert_eq!(instances.len(), 2);
    for i in &instances {
        let tag = |k: &str| {
            i.tags()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .map(str::to_owned)
        };
        assert_eq!(tag("Name").as_deref(), Some("hgauto-machine"));
        assert_eq!(tag("team").as_deref(), Some("release"), "labels are tags");
        assert_eq!(tag("ci:job").as_deref(), Some("build 42"));
        assert!(tag("hgauto:owner").is_some());
        assert_eq!(
            tag("hgauto:created-by").as_deref(),
            Some(hgauto_core::session::session_id())
        );
        let deadline: u64 = tag("hgauto:deadline").unwrap().parse().unwrap();
        assert!(deadline >= hgauto_core::clock::unix_now() + 3500);
        let attr = p
            .client()
            .describe_instance_attribute()
            .instance_id(i.instance_id().unwrap())
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::InstanceInitiatedShutdownBehavior)
            .send()
            .await
            .unwrap();
        assert_eq!(
            attr.instance_initiated_shutdown_behavior()
                .and_then(|v| v.value()),
            Some("terminate")
        );
    }
    // The ledger knows the instances, the key pair and the security group.
    let records = p.ledger().records().unwrap();
    for id in &ids {
        assert!(
            records.iter().any(|r| &r.id == id),
            "{id} not in the ledger"
        );
    }
    assert!(records.iter().any(|r| r.kind == ResourceKind::KeyPair));
    assert!(records
        .iter()
        .any(|r| r.kind == ResourceKind::SecurityGroup));
    let mode = std::fs::metadata(p.private_key_path().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the private key is written 0600");
    let managed = p.list_managed().await.unwrap();
    assert_eq!(
        managed
            .iter()
            .filter(|r| r.kind == ResourceKind::Machine)
            .count(),
        2
    );

    p.terminate(&ids).await.unwrap();
    p.terminate(&ids).await.unwrap(); // idempotent
    assert!(live_instances(&p, "hgauto-").await.is_empty());
    assert!(!p
        .ledger()
        .records()
        .unwrap()
        .iter()
        .any(|r| ids.contains(&r.id)));
}

#[tokio::test]
async fn purge_leaves_nothing_with_our_prefix() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let p = Ec2Provider::new(moto.config(state.path())).await.unwrap();
    let image = some_image(&p, false).await;
    p.provision(
        &MachineSpec::linux()
            .with_image(&image)
            .with_instance_type("t3.micro"),
        3,
    )
    .await
    .unwrap();
    let report = p.purge().await.unwrap();
    assert!(report.removed.len() >= 5, "{report:?}");

    assert!(live_instances(&p, "hgauto-").await.is_empty());
    let keys = p.client().describe_key_pairs().send().await.unwrap();
    assert!(keys
        .key_pairs()
        .iter()
        .all(|k| !k.key_name().unwrap_or("").starts_with("hgauto-")));
    let groups = p.client().describe_security_groups().send().await.unwrap();
    assert!(groups
        .security_groups()
        .iter()
        .all(|g| !g.group_name().unwrap_or("").starts_with("hgauto-")));
    assert!(p.ledger().records().unwrap().is_empty());
    assert!(p.list_managed().await.unwrap().is_empty());
    assert!(!p.private_key_path().unwrap().exists());
}

#[tokio::test]
async fn bad_input_is_named_and_nothing_is_created() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let p = Ec2Provider::new(moto.config(state.path())).await.unwrap();
    let image = some_image(&p, false).await;

    let e = p
        .provision(
            &MachineSpec::linux()
                .with_image(&image)
                .with_instance_type("t3.mircro"),
            1,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidInput { .. }) && e.to_string().contains("t3.mircro"),
        "{e:?}"
    );
    let e = p
        .provision(
            &MachineSpec::linux()
                .with_image("ami-00000000deadbeef0")
                .with_instance_type("t3.micro"),
            1,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ami-00000000deadbeef0"), "{e}");
    let e = p
        .provision(
            &MachineSpec::linux()
                .with_image("debian-13-*-nosuch")
                .with_instance_type("t3.micro"),
            1,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("debian-13-*-nosuch"), "{e}");

    let mut no_cidr = moto.config(state.path());
    no_cidr.allowed_cidr = None;
    let q = Ec2Provider::new(no_cidr).await.unwrap();
    let e = q
        .provision(&MachineSpec::linux().with_image(&image), 1)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("CIDR"), "{e}");

    let e = Ec2Provider::new(moto.config(state.path()).with_prefix("bad prefix"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("bad prefix"), "{e}");

    // Nothing at all was created: no instances, key pairs, groups or ledger entries.
    assert!(live_instances(&p, "hgauto-").await.is_empty());
    assert!(
        p.list_managed().await.unwrap().is_empty(),
        "{:?}",
        p.list_managed().await.unwrap()
    );
    assert!(p.ledger().records().unwrap().is_empty());
}

#[tokio::test]
async fn key_pair_and_security_group_are_reconciled() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let p = Ec2Provider::new(moto.config(state.path())).await.unwrap();
    p.ensure_key_pair().await.unwrap();
    let first = std::fs::read(p.private_key_path().unwrap()).unwrap();
    p.ensure_key_pair().await.unwrap();
    assert_eq!(
        std::fs::read(p.private_key_path().unwrap()).unwrap(),
        first,
        "a matching key pair is kept"
    );
    std::fs::remove_file(p.private_key_path().unwrap()).unwrap();
    p.ensure_key_pair().await.unwrap();
    assert_ne!(
        std::fs::read(p.private_key_path().unwrap()).unwrap(),
        first,
        "a lost private key means a new pair"
    );

    let id = p
        .ensure_security_group(hgauto_core::Platform::Windows)
        .await
        .unwrap();
    // Drift: someone opens another port by hand.
    p.client()
        .authorize_security_group_ingress()
        .group_id(&id)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(8080)
                .to_port(8080)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        p.ensure_security_group(hgauto_core::Platform::Windows)
            .await
            .unwrap(),
        id
    );
    let g = p
        .client()
        .describe_security_groups()
        .group_ids(&id)
        .send()
        .await
        .unwrap();
    // Our ports stay open to our CIDR; a rule we did not add (another host's CIDR, or a
    // hand-made one) is not ours to revoke.
    let mut ports: Vec<(i32, i32)> = g.security_groups()[0]
        .ip_permissions()
        .iter()
        .map(|p| (p.from_port().unwrap(), p.to_port().unwrap()))
        .collect();
    ports.sort();
    assert_eq!(ports, [(22, 22), (3389, 3389), (5985, 5986), (8080, 8080)]);
}

#[tokio::test]
async fn ssm_machines_get_an_instance_profile_and_purge_removes_the_iam_resources() {
    use hgauto_aws::Access;
    use hgauto_core::Platform;
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let cfg = moto
        .config(state.path())
        .with_linux_access(Access::Ssm)
        .with_ssm_bucket("hgauto-ssm-output");
    let p = Ec2Provider::new(cfg.clone()).await.unwrap();
    let windows = some_image(&p, true).await;
    let linux = some_image(&p, false).await;
    let p = Ec2Provider::new(cfg.with_windows_image(&windows))
        .await
        .unwrap();

    let win = p
        .provision(&MachineSpec::windows().with_instance_type("t3.medium"), 1)
        .await
        .unwrap();
    let lin = p
        .provision(
            &MachineSpec::linux()
                .with_image(&linux)
                .with_instance_type("t3.micro"),
            1,
        )
        .await
        .unwrap();
    assert_eq!(win[0].platform(), Platform::Windows);
    assert_eq!(lin[0].platform(), Platform::Linux);
    assert!(
        format!("{:?}", win[0]).starts_with("SsmMachine"),
        "{:?}",
        win[0]
    );
    assert!(
        format!("{:?}", lin[0]).starts_with("SsmMachine"),
        "{:?}",
        lin[0]
    );

    let profile = p.instance_profile_name();
    for i in live_instances(&p, "hgauto-").await {
        let arn = i
            .iam_instance_profile()
            .and_then(|x| x.arn())
            .unwrap_or_default();
        assert!(arn.ends_with(&format!("/{profile}")), "{arn}");
        let access = i
            .tags()
            .iter()
            .find(|t| t.key() == Some("hgauto:access"))
            .and_then(|t| t.value());
        assert_eq!(access, Some("ssm"));
    }
    // The Windows group opens SSH, RDP and WinRM to the allowed CIDR only.
    let groups = p
        .client()
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("group-name")
                .values("hgauto-windows")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut ports: Vec<(i32, i32)> = groups.security_groups()[0]
        .ip_permissions()
        .iter()
        .map(|r| (r.from_port().unwrap(), r.to_port().unwrap()))
        .collect();
    ports.sort();
    assert_eq!(ports, vec![(22, 22), (3389, 3389), (5985, 5986)]);

    // The role trusts EC2, has the SSM core policy and may write output to the bucket only.
    let iam = aws_sdk_iam::Client::new(&moto.config(state.path()).sdk_config().await);
    let role = iam.get_role().role_name(&profile).send().await.unwrap();
    let trust = role
        .role()
        .unwrap()
        .assume_role_policy_document()
        .unwrap_or_default();
    assert!(trust.contains("ec2.amazonaws.com"), "{trust}");
    let attached = iam
        .list_attached_role_policies()
        .role_name(&profile)
        .send()
        .await
        .unwrap();
    assert_eq!(
        attached.attached_policies()[0].policy_arn(),
        Some("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
    );
    let inline = iam
        .get_role_policy()
        .role_name(&profile)
        .policy_name("hgauto-ssm-output")
        .send()
        .await
        .unwrap();
    // IAM returns policy documents URL-encoded, as AWS does.
    let doc = percent_decode(inline.policy_document());
    assert!(doc.contains("s3:PutObject"), "{doc}");
    assert!(
        doc.contains("arn:aws:s3:::hgauto-ssm-output/hgauto-ssm/*"),
        "{doc}"
    );
    // Reconciling again changes nothing.
    assert_eq!(p.ensure_instance_profile().await.unwrap(), profile);
    let kinds: Vec<ResourceKind> = p
        .list_managed()
        .await
        .unwrap()
        .iter()
        .map(|r| r.kind)
        .collect();
    assert!(kinds.contains(&ResourceKind::Role) && kinds.contains(&ResourceKind::InstanceProfile));

    // A transfer left by a crashed caller is purged; other keys in the bucket are not ours.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.config(state.path()).sdk_config().await)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket("hgauto-ssm-output")
        .send()
        .await
        .unwrap();
    for key in ["hgauto-ssm/transfer/i-1/0001", "someone-else/keep"] {
        s3.put_object()
            .bucket("hgauto-ssm-output")
            .key(key)
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let report = p.purge().await.unwrap();
    let left = s3
        .list_objects_v2()
        .bucket("hgauto-ssm-output")
        .send()
        .await
        .unwrap();
    let left: Vec<_> = left.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(left, ["someone-else/keep"]);
    assert!(
        report.removed.contains(&format!("role/{profile}"))
            && report
                .removed
                .contains(&format!("instance-profile/{profile}")),
        "{report:?}"
    );
    let roles = iam.list_roles().send().await.unwrap();
    assert!(roles
        .roles()
        .iter()
        .all(|r| !r.role_name().starts_with("hgauto-")));
    let profiles = iam.list_instance_profiles().send().await.unwrap();
    assert!(profiles
        .instance_profiles()
        .iter()
        .all(|p| !p.instance_profile_name().starts_with("hgauto-")));
    assert!(live_instances(&p, "hgauto-").await.is_empty());
    assert!(p.list_managed().await.unwrap().is_empty());
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The shared ResourceProvider suite, on moto: machines, a refused spec (an image that
/// does not exist), a fingerprinted image built once (the build instance's bootstrap is
/// played by the test, as moto's instances run nothing), and purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_provider_passes_the_provider_suite() {
    use hgauto_testkit::provider::{self, ProviderCase};
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let p = Ec2Provider::new(moto.config(state.path())).await.unwrap();
    let base = some_image(&p, false).await;
    let player = support::play_build_instances(Duration::ZERO, p.client().clone());
    let mut recipe =
        hgauto_core::ImageRecipe::new("conformance", hgauto_core::Platform::Linux, &base)
            .with_script("echo built > built.txt");
    recipe.instance_type = Some("t3.micro".into());
    let case = ProviderCase {
        spec: MachineSpec::linux()
            .with_image(&base)
            .with_instance_type("t3.micro"),
        bad_spec: MachineSpec::linux()
            .with_image("ami-00000000deadbeef0")
            .with_instance_type("t3.micro"),
        recipe: Some(recipe),
    };
    provider::run_all(&p, &case).await;
    player.abort();
}
