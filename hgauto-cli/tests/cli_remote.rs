//! The `hgauto` binary against remote parts: pypiserver, the test sshd (an SFTP
//! destination and an SSH inventory), and moto_server for EC2.

#[path = "../../hgauto-ssh/tests/support/mod.rs"]
mod sshd;

mod common;

use serde_json::Value;

use hgauto_testkit::moto::MotoServer;
use hgauto_testkit::pypiserver::{PypiServer, USER};

use common::*;

#[test]
fn publish_to_pypiserver_sftp_and_a_directory_then_again() {
    let e = Env::new();
    let dist = e.path("dist");
    std::fs::create_dir_all(&dist).unwrap();
    hgauto_testkit::dists::wheel(&dist, "cliproj", "1.0", b"payload");
    hgauto_testkit::dists::sdist(&dist, "cliproj", "1.0", b"payload");
    let pypi = PypiServer::start();
    let keys = sshd::UserKeys::new();
    let server = sshd::Sshd::start("127.0.0.41", &keys);
    let remote = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        remote.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let sftp = format!(
        "{}@{}:{}{}",
        sshd::user(),
        server.ip,
        server.port,
        remote.path().display()
    );
    let key = keys.private();
    let args = |skip: Option<&str>| {
        let mut a = vec![
            "--json".to_owned(),
            "publish".into(),
            "dist".into(),
            "--expect".into(),
            "*.whl=1".into(),
            "--expect".into(),
            "*.tar.gz=1".into(),
            "--pypi".into(),
            pypi.url(),
            "--sftp".into(),
            sftp.clone(),
            "--ssh-key".into(),
            key.display().to_string(),
            "--to-dir".into(),
            "mirror".into(),
        ];
        if let Some(s) = skip {
            a.extend(["--skip".into(), s.into()]);
        }
        a
    };
    let publish = |skip: Option<&str>| {
        e.cmd(&args(skip).iter().map(String::as_str).collect::<Vec<_>>())
            .env("TWINE_USERNAME", USER)
            .env("TWINE_PASSWORD", &pypi.password)
            .output()
            .unwrap()
    };
    let out = publish(Some("sftp"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc = json(&out);
    let status_of = |doc: &Value, dest: &str, status: &str| {
        doc["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["destination"] == dest && x["status"] == status)
            .count()
    };
    assert_eq!(status_of(&doc, "pypi", "published"), 2);
    assert_eq!(
        status_of(&doc, "dir", "published"),
        3,
        "2 files and SHA256SUMS"
    );
    assert_eq!(status_of(&doc, "sftp", "skipped"), 3);
    assert_eq!(pypi.stored().len(), 2);
    // Again, with SFTP: only SFTP gets anything.
    let out = publish(None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc = json(&out);
    assert_eq!(status_of(&doc, "sftp", "published"), 3);
    assert_eq!(status_of(&doc, "pypi", "already_present"), 2);
    assert_eq!(status_of(&doc, "dir", "already_present"), 3);
    assert!(remote.path().join("SHA256SUMS").exists());
    // A missing expected file: exit 2 and nothing anywhere new.
    let out = e.run(&["publish", "dist", "--expect", "*.exe", "--to-dir", "other"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!e.path("other").exists());
}

#[test]
fn ssh_inventory_provider_leases_hosts_and_gives_them_back() {
    let e = Env::new();
    let keys = sshd::UserKeys::new();
    let a = sshd::Sshd::start("127.0.0.42", &keys);
    let b = sshd::Sshd::start("127.0.0.43", &keys);
    let inv = format!(
        "host_keys = \"accept-new\"\n[[hosts]]\nname = \"alpha\"\naddress = \"{}\"\nport = {}\nuser = \"{}\"\nkey_file = \"{}\"\n\n[[hosts]]\nname = \"beta\"\naddress = \"{}\"\nport = {}\nuser = \"{}\"\nkey_file = \"{}\"\n",
        a.ip, a.port, sshd::user(), keys.private().display(), b.ip, b.port, sshd::user(), keys.private().display()
    );
    std::fs::write(e.path("hosts.toml"), inv).unwrap();
    let out = e.run(&[
        "--provider",
        "ssh",
        "--inventory",
        "hosts.toml",
        "run",
        "-n",
        "2",
        "--",
        "sh",
        "-c",
        "echo on $(hostname)",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("[alpha] on ") && stdout.contains("[beta] on "),
        "{stdout}"
    );
    let out = e.run(&[
        "--provider",
        "ssh",
        "--inventory",
        "hosts.toml",
        "--json",
        "list",
    ]);
    assert!(
        json(&out)["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["exists"] == false),
        "leases given back"
    );
    // Three hosts from an inventory of two: a provisioning error (3), nothing kept.
    let out = e.run(&[
        "--provider",
        "ssh",
        "--inventory",
        "hosts.toml",
        "run",
        "-n",
        "3",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("only 2 of"),
        "{}",
        text(&out.stderr)
    );
    let out = e.run(&["--provider", "ssh", "--json", "list"]);
    assert_eq!(out.status.code(), Some(2), "ssh needs an inventory");
}

/// EC2 on moto_server: image build, list, terminate, sweep and purge.
#[test]
fn ec2_commands_on_moto() {
    let moto = MotoServer::start();
    let e = Env::new();
    let ec2 = |args: &[&str]| {
        let mut all = vec!["--provider", "ec2", "--json"];
        all.extend_from_slice(args);
        let out = e
            .cmd(&all)
            .env("HGAUTO_AWS_REGION", "us-east-1")
            .env("HGAUTO_AWS_ENDPOINT", moto.endpoint())
            .env("HGAUTO_ALLOWED_CIDR", "127.0.0.1/32")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap();
        (
            out.status.code(),
            if out.stdout.is_empty() {
                Value::Null
            } else {
                json(&out)
            },
            text(&out.stderr),
        )
    };
    let (code, doc, err) = ec2(&["list"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(doc["resources"], serde_json::json!([]));
    // moto's instances never run their user data: play the build instance's power-off.
    let client = hgauto_testkit::ec2::client(&moto.endpoint());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = rt.block_on(linux_image(&client));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let player = {
        let (client, stop) = (client.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                rt.block_on(stop_build_instances(&client));
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        })
    };
    std::fs::write(
        e.path("recipe.toml"),
        format!("name = \"cli-linux\"\nplatform = \"linux\"\nbase = \"{base}\"\nbootstrap = [\"echo hi\"]\ninstance_type = \"t3.micro\"\n"),
    )
    .unwrap();
    let (code, doc, err) = ec2(&["image", "build", "recipe.toml"]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    player.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    let image = doc["image"].as_str().unwrap().to_owned();
    assert!(image.starts_with("ami-"), "{doc}");
    let (_, doc, _) = ec2(&["list"]);
    assert!(doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == image.as_str()));
    let (code, _, err) = ec2(&["sweep", "--grace-secs", "0"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, doc, err) = ec2(&["terminate", "--all"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(doc["terminated"].is_array());
    let (code, doc, err) = ec2(&["purge"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        doc["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == image.as_str()),
        "{doc}"
    );
    let (_, doc, _) = ec2(&["list"]);
    assert!(
        doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["exists"] == false),
        "{doc}"
    );
}

/// A Linux image moto knows.
async fn linux_image(client: &hgauto_aws::sdk::ec2::Client) -> String {
    let out = client
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .unwrap();
    out.images()
        .iter()
        .find(|i| i.platform().map(|p| p.as_str()) != Some("windows"))
        .and_then(|i| i.image_id())
        .unwrap()
        .to_owned()
}

/// Stops running image-build instances, as their bootstrap's power-off would.
async fn stop_build_instances(client: &hgauto_aws::sdk::ec2::Client) {
    use hgauto_testkit::ec2;
    if let Ok(running) = ec2::build_instances(client, true).await {
        let _ = ec2::stop(client, ec2::ids(&running)).await;
    }
}
