//! The behaviour every [`RemoteMachine`] backend must show. Each function checks one
//! behaviour and panics with a description of what differed.
//!
//! The checks drive the machine only through the trait, and use a few POSIX tools on it
//! (`sh`, `printf`, `cat`, `find`, `sort`, `sha256sum`, `stat`), so they run unchanged
//! against the local backend, SSH and SSM.

use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use hgauto_core::command::{Command, Stream};
use hgauto_core::error::Error;
use hgauto_core::machine::RemoteMachine;
use hgauto_core::ExitStatus;

use super::machine_files::assert_no_canary;
pub use super::machine_files::{hostile_paths, make_tree, put_get_binary, sync_tree_2000_files};
use super::machine_run::{run, run_ok, scratch};

/// What a backend can do, for checks that not every platform supports.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// Reports death by signal as [`ExitStatus::Signal`].
    pub signals: bool,
    /// Passes arguments that are not valid UTF-8.
    pub non_utf8_args: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            signals: true,
            non_utf8_args: true,
        }
    }
}

/// Runs every check in this module.
pub async fn run_all(m: &dyn RemoteMachine, caps: Capabilities) {
    exit_codes(m).await;
    if caps.signals {
        signals(m).await;
    }
    stdout_and_stderr(m).await;
    env(m).await;
    cwd(m).await;
    stdin(m).await;
    timeout_kills_process_tree(m).await;
    abandoned_exec_kills_process_tree(m).await;
    large_output(m).await;
    put_get_binary(m).await;
    sync_tree_2000_files(m).await;
    hostile_arguments(m, caps).await;
    hostile_paths(m).await;
}

/// A fresh directory (relative to the machine's home) for one check.
/// Exit codes arrive exactly; a missing program is an error or exit code 127.
pub async fn exit_codes(m: &dyn RemoteMachine) {
    for code in [0, 1, 2, 7, 42, 126, 255] {
        let out = run(m, Command::script(format!("exit {code}"))).await;
        assert_eq!(
            out.status,
            ExitStatus::Code(code),
            "[{}] exit {code}",
            m.id()
        );
    }
    let out = run(m, Command::new("false")).await;
    assert_eq!(out.status, ExitStatus::Code(1));
    match m.exec(&Command::new("hgauto-no-such-program-x")).await {
        Err(Error::Spawn { .. }) => {}
        Ok(o) => assert_eq!(
            o.status,
            ExitStatus::Code(127),
            "[{}] missing program",
            m.id()
        ),
        Err(e) => panic!("[{}] missing program gave an unexpected error: {e}", m.id()),
    }
}

/// Death by signal is reported as the signal, not as an exit code.
pub async fn signals(m: &dyn RemoteMachine) {
    let out = run(m, Command::script("kill -TERM $$; sleep 5")).await;
    assert_eq!(out.status, ExitStatus::Signal(15), "[{}] SIGTERM", m.id());
    let out = run(m, Command::script("kill -KILL $$; sleep 5")).await;
    assert_eq!(out.status, ExitStatus::Signal(9), "[{}] SIGKILL", m.id());
}

/// Stdout and stderr are captured separately and streamed line by line.
pub async fn stdout_and_stderr(m: &dyn RemoteMachine) {
    let mut lines: Vec<(Stream, Vec<u8>)> = Vec::new();
    let cmd = Command::script("echo out1; echo err1 >&2; printf 'out2'; printf 'err2' >&2");
    let out = m
        .exec_streaming(&cmd, &mut |s, l| lines.push((s, l.to_vec())))
        .await
        .expect("exec");
    assert_eq!(out.stdout, b"out1\nout2", "[{}] stdout", m.id());
    assert_eq!(out.stderr, b"err1\nerr2", "[{}] stderr", m.id());
    let mut got = lines.clone();
    got.sort();
    let mut want = vec![
        (Stream::Stdout, b"out1".to_vec()),
        (Stream::Stdout, b"out2".to_vec()),
        (Stream::Stderr, b"err1".to_vec()),
        (Stream::Stderr, b"err2".to_vec()),
    ];
    want.sort();
    assert_eq!(got, want, "[{}] streamed lines", m.id());
}

/// Environment variables reach the program with their exact values.
pub async fn env(m: &dyn RemoteMachine) {
    let value = "a b'c\"$HOME`x`\n\\end ü";
    let out = run_ok(
        m,
        Command::new("printenv")
            .arg("HGAUTO_TEST_VAR")
            .env("HGAUTO_TEST_VAR", value),
    )
    .await;
    assert_eq!(
        out.stdout,
        format!("{value}\n").as_bytes(),
        "[{}] env value",
        m.id()
    );
}

/// The working directory is set, and relative directories start at the home directory.
pub async fn cwd(m: &dyn RemoteMachine) {
    let dir = scratch(m, "cwd").await;
    let sub = format!("{dir}/with space's");
    run_ok(m, Command::new("mkdir").arg("-p").arg(&sub)).await;
    let out = run_ok(m, Command::new("pwd").current_dir(&sub)).await;
    let home = run_ok(m, Command::script("cd && pwd")).await.stdout_str();
    assert_eq!(
        out.stdout_str().trim_end(),
        format!("{}/{sub}", home.trim_end()),
        "[{}] cwd",
        m.id()
    );
    // A missing directory fails: as an error naming it, or as a non-zero exit of the shell.
    match m
        .exec(&Command::new("true").current_dir(format!("{dir}/missing")))
        .await
    {
        Ok(o) => assert!(
            matches!(o.status, ExitStatus::Code(c) if c != 0),
            "[{}] a missing cwd must fail, got {}",
            m.id(),
            o.status
        ),
        Err(e) => assert!(
            e.to_string().contains("missing"),
            "[{}] the error must name the directory: {e}",
            m.id()
        ),
    }
}

/// Stdin bytes (binary, with NULs) reach the program; without stdin it reads EOF at once.
pub async fn stdin(m: &dyn RemoteMachine) {
    let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let out = run_ok(m, Command::new("cat").stdin(data.clone())).await;
    assert!(out.stdout == data, "[{}] stdin round trip differs", m.id());
    let out = run_ok(m, Command::new("cat").timeout(Duration::from_secs(20))).await;
    assert!(out.stdout.is_empty(), "[{}] empty stdin", m.id());
}

/// A timeout kills the command and everything it started, and says so.
pub async fn timeout_kills_process_tree(m: &dyn RemoteMachine) {
    let dir = scratch(m, "timeout").await;
    let script = format!("sleep 60 & echo $! > {dir}/bg.pid; sleep 60");
    let started = Instant::now();
    let r = m
        .exec(&Command::script(script).timeout(Duration::from_secs(1)))
        .await;
    assert!(
        matches!(r, Err(Error::Timeout { .. })),
        "[{}] expected a timeout error, got {r:?}",
        m.id()
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "[{}] timeout took {:?}",
        m.id(),
        started.elapsed()
    );
    // The background child must be gone too (allow a moment for the kill to land).
    assert_dies(
        m,
        &dir,
        &["bg"],
        5,
        "the background child survived the timeout",
    )
    .await;
}

/// Asserts that each process whose pid is in `{dir}/{name}.pid` is gone within `secs`
/// seconds (each). A zombie counts as gone: it runs nothing, and reaping it is up to its
/// parent (the test process itself, for a local machine's shell).
async fn assert_dies(m: &dyn RemoteMachine, dir: &str, names: &[&str], secs: u32, what: &str) {
    let check = Command::script(format!(
        "alive() {{ kill -0 \"$1\" 2>/dev/null || return 1; [ -r /proc/$1/stat ] || return 0; \
         [ \"$(cut -d' ' -f3 /proc/$1/stat)\" != Z ]; }}; \
         for f in {}; do pid=$(cat {dir}/$f.pid) || exit 2; i=0; \
         while alive \"$pid\"; do i=$((i+1)); [ $i -gt {} ] && exit 1; \
         sleep 0.1; done; done; exit 0",
        names.join(" "),
        secs * 10
    ));
    let out = run(m, check).await;
    assert_eq!(out.status, ExitStatus::Code(0), "[{}] {what}", m.id());
}

/// A caller that stops waiting (drops the `exec` future) leaves no process behind: the
/// command and its background child are killed, possibly by work the backend hands to
/// [`hgauto_core::backend::background`], which is drained here as a program would before exiting.
pub async fn abandoned_exec_kills_process_tree(m: &dyn RemoteMachine) {
    let dir = scratch(m, "abandoned").await;
    let script = format!("sleep 60 & echo $! > {dir}/bg.pid; echo $$ > {dir}/sh.pid; sleep 60");
    let cmd = Command::script(script).timeout(Duration::from_secs(120));
    let started = async {
        let probe = Command::script(format!("test -s {dir}/bg.pid && test -s {dir}/sh.pid"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !run(m, probe.clone()).await.status.success() {
            assert!(
                Instant::now() < deadline,
                "[{}] the command never started",
                m.id()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // When `started` completes, select! drops the exec future: the caller has gone.
    tokio::select! {
        r = m.exec(&cmd) => panic!("[{}] the 60 s command ended early: {r:?}", m.id()),
        () = started => {}
    }
    hgauto_core::backend::background::drain(Duration::from_secs(60)).await;
    let what = "the abandoned command or its background child survived";
    assert_dies(m, &dir, &["bg", "sh"], 10, what).await;
}

/// 50 MB on stdout while stderr also writes does not deadlock, and nothing is lost.
pub async fn large_output(m: &dyn RemoteMachine) {
    let line = "x".repeat(99);
    let script = format!(
        "yes 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee' | head -n 100000 >&2 & \
         yes '{line}' | head -n 500000; wait"
    );
    let (mut out_lines, mut err_lines) = (0usize, 0usize);
    let mut sink = |s: Stream, l: &[u8]| {
        let counter = match s {
            Stream::Stdout => &mut out_lines,
            Stream::Stderr => &mut err_lines,
        };
        if !l.is_empty() {
            *counter += 1;
        }
    };
    let out = m
        .exec_streaming(
            &Command::script(script).timeout(Duration::from_secs(300)),
            &mut sink,
        )
        .await
        .expect("large output");
    assert!(out.status.success(), "[{}] {}", m.id(), out.status);
    assert_eq!(out.stdout.len(), 500_000 * 100, "[{}] stdout bytes", m.id());
    assert_eq!(out.stderr.len(), 100_000 * 41, "[{}] stderr bytes", m.id());
    assert_eq!(out_lines, 500_000);
    assert_eq!(err_lines, 100_000);
}

/// Arguments that would be shell code if pasted into a command line arrive as plain bytes,
/// and the canary file they try to create never appears.
pub async fn hostile_arguments(m: &dyn RemoteMachine, caps: Capabilities) {
    let dir = scratch(m, "hostile").await;
    let mut args: Vec<std::ffi::OsString> = [
        "$(touch canary)",
        "`touch canary`",
        "; touch canary",
        "| touch canary",
        "&& touch canary",
        "'; touch canary; '",
        "\"; touch canary; \"",
        "\\'$(touch canary)\\'",
        "\n touch canary \n",
        "${IFS}touch${IFS}canary",
        "*",
        "~",
        "-n",
        "--",
        "",
        " ",
        "%s%n%d",
        "$HOME",
        "!!",
        "# comment",
        "\t\r",
        "ünï€😀",
        "\u{2019}; touch canary",
    ]
    .iter()
    .map(Into::into)
    .collect();
    if caps.non_utf8_args {
        use std::os::unix::ffi::OsStringExt;
        args.push(std::ffi::OsString::from_vec(vec![
            0xff, b'$', b'(', 0xfe, b')', 0x80,
        ]));
    }
    let hostile_dir = format!("{dir}/we ird'$(touch canary)`x`");
    run_ok(m, Command::new("mkdir").arg("-p").arg(&hostile_dir)).await;
    let cmd = Command::new("printf")
        .arg("%s\\0")
        .args(&args)
        .current_dir(&hostile_dir)
        .env("HGAUTO_HOSTILE", "$(touch canary)");
    let out = run_ok(m, cmd).await;
    let mut want = Vec::new();
    for a in &args {
        want.extend_from_slice(a.as_bytes());
        want.push(0);
    }
    assert!(
        out.stdout == want,
        "[{}] arguments changed in transit:\n got {:?}\nwant {:?}",
        m.id(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&want)
    );
    let env_out = run_ok(
        m,
        Command::new("printenv")
            .arg("HGAUTO_HOSTILE")
            .env("HGAUTO_HOSTILE", "$(touch canary)"),
    )
    .await;
    assert_eq!(env_out.stdout, b"$(touch canary)\n");
    assert_no_canary(m, &dir).await;
}
