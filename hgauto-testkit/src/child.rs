//! Running one ignored test of the current test binary in a child process, for tests that
//! need another environment or must be signalled or killed (the environment and signal
//! handlers are process-wide, so the parent's other tests must not see them).

use std::ffi::OsStr;

/// Runs the ignored test `name` of this test binary in a child process with `set` added to
/// and `remove` taken from its environment, and panics with its output unless it passed.
pub fn run_ignored_test(name: &str, set: &[(&str, &OsStr)], remove: &[&str]) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--ignored", "--exact", name, "--test-threads=1"]);
    for (k, v) in set {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    let out = cmd.output().expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child test {name} did not pass:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
