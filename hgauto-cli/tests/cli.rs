//! The `hgauto` binary driven as a user would, on the local provider: help, exit codes,
//! `--json` output, what exists afterwards, a terminal, and `build`.

mod common;
use std::process::Command;

use common::*;

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
        vec!["self-update", "once"],
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
        // One name cannot match three files: the release crate's rule, not the CLI's own.
        (
            vec![
                "publish",
                ".",
                "--expect",
                "app.tar.gz=3",
                "--to-dir",
                "out",
            ],
            "one name, not a pattern",
        ),
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
