//! The `hgauto` binary driven as a user would: exit codes, `--json` output and what exists
//! afterwards, against the local provider, the test sshd (an SSH inventory and an SFTP
//! destination), pypiserver, and moto_server for EC2.

#[path = "../../hgauto-ssh/tests/support/mod.rs"]
mod sshd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hgauto_testkit::moto::MotoServer;
use hgauto_testkit::pypiserver::{PypiServer, USER};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hgauto");

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn state(&self) -> PathBuf {
        self.path("state")
    }
    /// `hgauto ARGS` in the scratch directory, with its own state directory and no config.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env("HGAUTO_STATE_DIR", self.state())
            .env_remove("HGAUTO_CONFIG")
            .env_remove("HGAUTO_PROVIDER")
            .env("RUST_LOG", "warn");
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    /// Machines the local ledger still has.
    fn local_machines(&self) -> Vec<Value> {
        let out = self.run(&["list", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        json(&out)["resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(out: &Output) -> Value {
    let s = text(&out.stdout);
    let last = s.lines().last().unwrap_or("");
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {s}\nstderr: {}", text(&out.stderr)))
}

#[test]
fn help_shows_every_subcommand_with_an_example_and_the_exit_codes() {
    let e = Env::new();
    let out = e.run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for sub in [
        "list",
        "terminate",
        "purge",
        "sweep",
        "extend",
        "status",
        "image",
        "run",
        "run-tests",
        "build",
        "publish",
        "pipeline",
        "agent",
        "self-update",
        "download",
        "checkout",
        "venv",
        "completions",
        "man",
    ] {
        assert!(
            help.contains(&format!("\n  {sub} ")),
            "--help lacks {sub}:\n{help}"
        );
    }
    assert!(help.contains("128+N"), "the exit code table");
    for sub in [
        vec!["list"],
        vec!["terminate"],
        vec!["purge"],
        vec!["sweep"],
        vec!["extend"],
        vec!["status"],
        vec!["image", "build"],
        vec!["run"],
        vec!["run-tests"],
        vec!["build"],
        vec!["publish"],
        vec!["pipeline", "run"],
        vec!["pipeline", "export"],
        vec!["pipeline", "status"],
        vec!["agent", "run"],
        vec!["self-update", "check"],
        vec!["self-update", "watch"],
        vec!["download"],
        vec!["checkout"],
        vec!["venv"],
        vec!["completions"],
        vec!["man"],
    ] {
        let mut args = sub.clone();
        args.push("--help");
        let out = e.run(&args);
        assert!(
            text(&out.stdout).contains("Example"),
            "{sub:?} --help has no example"
        );
    }
    let bash = e.run(&["completions", "bash"]);
    assert!(text(&bash.stdout).contains("_hgauto()"));
    let man = e.run(&["man"]);
    assert!(text(&man.stdout).starts_with(".ie \\n(.g .ds Aq"), "roff");
}

#[test]
fn bad_input_exits_2_with_one_line_and_provisions_nothing() {
    let e = Env::new();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["frobnicate"], "unrecognized subcommand"),
        (vec!["list", "--frob"], "unexpected argument"),
        (vec!["terminate", "a", "--all"], "cannot be used with"),
        (vec!["image", "build", "missing.toml"], "missing.toml"),
        (vec!["--config", "nope.toml", "list"], "nope.toml"),
        (vec!["pipeline", "run", "missing.toml"], "missing.toml"),
    ];
    for (args, says) in cases {
        let out = e.run(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // A config file with a misspelt key: refused with a suggestion and its line.
    std::fs::write(
        e.path("hgauto.toml"),
        "provider = \"local\"\nstate_dri = \"/tmp/x\"\n",
    )
    .unwrap();
    let out = e.run(&["run", "-n", "1", "--", "true"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 2") && err.contains("did you mean \"state_dir\""),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    // None of them provisioned anything: there is no ledger at all.
    assert!(!e.state().join("ledger").exists());
}

#[test]
fn run_passes_the_exit_code_through_collects_and_leaves_nothing() {
    let e = Env::new();
    std::fs::create_dir_all(e.path("proj")).unwrap();
    std::fs::write(e.path("proj/input.txt"), "data\n").unwrap();
    let out = e.run(&[
        "run",
        "-n",
        "2",
        "--sync",
        "proj",
        "--collect",
        "out/*.txt",
        "--out",
        "got",
        "--",
        "sh",
        "-c",
        "mkdir -p out && cp input.txt out/copy.txt && echo built; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with("] built")).count(),
        2,
        "prefixed per machine: {stdout}"
    );
    let collected: Vec<_> = walk(&e.path("got"));
    assert_eq!(collected.len(), 2, "one copy per machine: {collected:?}");
    assert!(e.local_machines().iter().all(|r| r["exists"] == false));

    let out = e.run(&["--json", "run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15), "a signal is 128+N");
    assert_eq!(json(&out)["machines"][0]["exit_code"], 128 + 15);

    // --keep-on-failure keeps the failed machine for a look, in the ledger.
    let out = e.run(&["--json", "run", "--keep-on-failure", "--", "false"]);
    assert_eq!(out.status.code(), Some(1));
    let kept = json(&out)["kept"][0].as_str().unwrap().to_owned();
    assert!(e
        .local_machines()
        .iter()
        .any(|r| r["id"] == kept.as_str() && r["exists"] == true));
    let out = e.run(&["terminate", &kept]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(e.local_machines().iter().all(|r| r["exists"] == false));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn pipeline_run_status_and_export() {
    let e = Env::new();
    std::fs::write(
        e.path("p.toml"),
        r#"
name = "cli"
[dimensions]
v = ["1", "2"]
[workers.w]
max_workers = 2
[[steps]]
name = "build"
worker = "w"
over = ["v"]
run = ["sh", "-c", "test \"$0\" != \"$1\"", "{v}", "{broken}"]
"#,
    )
    .unwrap();
    let out = e.run(&[
        "--json",
        "pipeline",
        "run",
        "p.toml",
        "--input",
        "broken=none",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json(&out)["result"]["ok"], true);
    let out = e.run(&[
        "pipeline", "run", "p.toml", "--input", "broken=2", "--out", "bad",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("1 of 2 tasks failed"),
        "{}",
        text(&out.stderr)
    );
    let out = e.run(&["pipeline", "status", "bad/result.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("build-2"));
    let out = e.run(&["pipeline", "run", "p.toml", "--only", "v=3"]);
    assert_eq!(out.status.code(), Some(2), "an unknown value is bad input");
    let out = e.run(&[
        "pipeline",
        "export",
        "p.toml",
        "--arn-prefix",
        "arn:aws:states:us-east-1:1:activity:",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let def: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(def["StartAt"], "Pipeline: run");
    assert!(e.local_machines().iter().all(|r| r["exists"] == false));
    // The README's own pipeline, whose function steps the control activity runs: the export
    // does not need them registered.
    let readme = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/release.pipeline.toml"
    );
    let out = e.run(&[
        "pipeline",
        "export",
        readme,
        "--arn-prefix",
        "arn:aws:states:us-east-1:1:activity:",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn agent_runs_one_round_over_a_directory_queue() {
    let e = Env::new();
    let queue = hgauto_core::DirJobSource::new(e.path("queue")).unwrap();
    queue
        .enqueue(hgauto_core::Job::new("job-1", "build").with_revision("abc"))
        .unwrap();
    let out = e.run(&[
        "--json",
        "agent",
        "run",
        "agent",
        "--queue",
        "queue",
        "--rounds",
        "1",
        "--",
        "sh",
        "-c",
        "test \"$HGAUTO_JOB_REVISION\" = abc",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc = json(&out);
    assert_eq!(doc["built"][0]["job"], "job-1");
    assert_eq!(doc["built"][0]["status"], "succeeded");
    assert!(e.path("agent/state/status.json").exists());
    assert!(e.local_machines().iter().all(|r| r["exists"] == false));
}

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
    let client = ec2_client(&moto.endpoint());
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

fn ec2_client(endpoint: &str) -> hgauto_aws::sdk::ec2::Client {
    let conf = hgauto_aws::sdk::ec2::Config::builder()
        .behavior_version(hgauto_aws::sdk::ec2::config::BehaviorVersion::latest())
        .region(hgauto_aws::sdk::ec2::config::Region::new("us-east-1"))
        .credentials_provider(hgauto_aws::sdk::ec2::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .build();
    hgauto_aws::sdk::ec2::Client::from_conf(conf)
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
    use hgauto_aws::sdk::ec2::types::Filter;
    let Ok(out) = client
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:hgauto:role")
                .values("image-build")
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .send()
        .await
    else {
        return;
    };
    let ids: Vec<String> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect();
    if !ids.is_empty() {
        let _ = client
            .stop_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await;
    }
}

/// `hgauto run` on a terminal (a pty made by util-linux `script`): the progress spinner
/// draws, and Ctrl-C (typed into the terminal) terminates the machine, leaving nothing in
/// the ledger.
#[test]
fn on_a_terminal_the_spinner_draws_and_ctrl_c_cleans_up() {
    use std::io::{Read, Write};
    let e = Env::new();
    let line = format!("{BIN} run -n 1 -- sleep 60");
    let mut child = Command::new("script")
        .args(["-q", "-f", "-e", "-c", &line, "/dev/null"])
        .current_dir(e.dir.path())
        .env("HGAUTO_STATE_DIR", e.state())
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = tx.send(buf[..n].to_vec());
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // Wait for the spinner with the running message, and a live machine in the ledger.
    loop {
        while let Ok(chunk) = rx.try_recv() {
            seen.extend(chunk);
        }
        let drawn = String::from_utf8_lossy(&seen).contains("running on 1 machine(s)");
        if drawn && e.local_machines().iter().any(|r| r["exists"] == true) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no spinner: {}",
            String::from_utf8_lossy(&seen)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let started = std::time::Instant::now();
    child.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "Ctrl-C took {:?}",
        started.elapsed()
    );
    assert!(!status.success(), "interrupted: {status:?}");
    assert!(
        e.local_machines().iter().all(|r| r["exists"] == false),
        "machines left: {:?}",
        e.local_machines()
    );
}

/// `build`: a recipe for several platforms (here, Python versions x architectures on local
/// machines); every collected artifact lands in `dist/`.
#[test]
fn build_collects_every_platform_into_dist() {
    let e = Env::new();
    std::fs::write(
        e.path("windows-packages.toml"),
        r#"
name = "packages"
[dimensions]
py = ["3.11", "3.12"]
arch = ["x86", "x64"]
[workers.builder]
max_workers = 2
[[steps]]
name = "package"
worker = "builder"
over = ["py", "arch"]
run = ["sh", "-c", "rm -rf out && mkdir -p out && echo $2 > out/pkg-$2-py$0-$1.zip", "{py}", "{arch}", "{revision}"]
collect = ["out/*.zip"]
"#,
    )
    .unwrap();
    let out = e.run(&["build", "windows-packages.toml", "--revision", "6.5.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut got: Vec<String> = std::fs::read_dir(e.path("dist"))
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "pkg-6.5.1-py3.11-x64.zip",
            "pkg-6.5.1-py3.11-x86.zip",
            "pkg-6.5.1-py3.12-x64.zip",
            "pkg-6.5.1-py3.12-x86.zip"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(e.path("dist/pkg-6.5.1-py3.12-x64.zip")).unwrap(),
        "6.5.1\n"
    );
    assert!(e.path("build-out/report.html").exists());
    // Without the revision the recipe's placeholder is unknown: bad input, nothing built.
    let out = e.run(&["build", "windows-packages.toml", "--dist", "dist2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("{revision}"));
    assert!(!e.path("dist2").exists());
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// `checkout` and `self-update check` on a real git repository.
#[test]
fn checkout_and_self_update_check() {
    let e = Env::new();
    let repo = e.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("README"), "v1\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "v1"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let url = format!("file://{}", repo.display());
    let out = e.run(&["--json", "checkout", &url, "wc", "--branch", "main"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json(&out)["revision"], head.as_str());
    assert_eq!(
        std::fs::read_to_string(e.path("wc/README")).unwrap(),
        "v1\n"
    );

    std::fs::write(
        e.path("update.toml"),
        format!(
            "state_dir = \"{}\"\nquiet_window_secs = 0\n[[repositories]]\nname = \"repo\"\nurl = \"{url}\"\nbranch = \"main\"\nworking_copy = \"{}\"\n",
            e.path("update-state").display(),
            e.path("wc").display()
        ),
    )
    .unwrap();
    let out = e.run(&["--json", "self-update", "check", "update.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json(&out)["outcome"], "in_sync");
    std::fs::write(
        e.path("bad-update.toml"),
        "state_dir = \"x\"\nrepositorys = []\n",
    )
    .unwrap();
    let out = e.run(&["self-update", "check", "bad-update.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("did you mean \"repositories\""),
        "{}",
        text(&out.stderr)
    );
}
