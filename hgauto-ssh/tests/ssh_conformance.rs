//! SshMachine and SshPublisher pass the shared suites against a real OpenSSH sshd.

mod support;

use hgauto_core::RemoteMachine;
use hgauto_ssh::{SshMachine, SshPublisher};
use hgauto_testkit::{machine, publisher};
use support::{Sshd, UserKeys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_machine_passes_the_machine_suite() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.2", &keys);
    let state = tempfile::tempdir().unwrap();
    let m = SshMachine::from_config(sshd.config(&keys, state.path()));
    m.wait_ready(std::time::Duration::from_secs(20))
        .await
        .unwrap();
    machine::run_all(&m, machine::Capabilities::default()).await;
    // Clean up what the suite left in the test user's home.
    let _ = m
        .exec(&hgauto_core::Command::new("rm").args(["-rf", "hgauto-conformance"]))
        .await;
}

/// HostsProvider over an inventory of two real sshd: leases are its machines, a Windows
/// spec is refused (the inventory has none), and it has no images.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_provider_passes_the_provider_suite() {
    use hgauto_core::MachineSpec;
    use hgauto_testkit::provider::{self, ProviderCase};
    let keys = UserKeys::new();
    let servers = [
        Sshd::start("127.0.0.2", &keys),
        Sshd::start("127.0.0.3", &keys),
    ];
    let dir = tempfile::tempdir().unwrap();
    let hosts: String = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "[[hosts]]\nname = \"build{i}\"\naddress = \"{}\"\nport = {}\nuser = \"{}\"\n\
                 key_file = \"{}\"\n",
                s.ip,
                s.port,
                support::user(),
                keys.private().display()
            )
        })
        .collect();
    let file = dir.path().join("hosts.toml");
    std::fs::write(&file, format!("host_keys = \"accept-new\"\n{hosts}")).unwrap();
    let p = hgauto_ssh::HostsProvider::new(
        hgauto_ssh::Inventory::read(&file).unwrap(),
        dir.path().join("state"),
    )
    .unwrap();
    let case = ProviderCase {
        spec: MachineSpec::linux(),
        bad_spec: MachineSpec::windows(),
        recipe: None,
    };
    provider::run_all(&p, &case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_publisher_passes_the_publisher_suite() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.2", &keys);
    let state = tempfile::tempdir().unwrap();
    let m = SshMachine::from_config(sshd.config(&keys, state.path()));
    let dir = format!("hgauto-publish-{:08x}", rand_u32());
    let p = SshPublisher::new(m.clone(), &dir);
    publisher::run_all(&p).await;
    // Published files have mode 0644 and nothing temporary is left.
    let out = m
        .exec(&hgauto_core::Command::script(format!(
            "cd {dir} && stat -c '%a %n' * .[!.]* 2>/dev/null"
        )))
        .await
        .unwrap();
    for line in out.stdout_str().lines() {
        assert!(
            line.starts_with("644 conformance-"),
            "unexpected entry: {line}"
        );
    }
    let _ = m
        .exec(&hgauto_core::Command::new("rm").args(["-rf", &dir]))
        .await;
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}
