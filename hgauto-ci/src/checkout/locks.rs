//! Is anything at work in a repository? Stale-lock removal asks first, so that it never
//! deletes the lock of a live git or hg process (a `git gc` still running, another tool).

use std::path::Path;

/// A description of a process working in `repo` (its git directory or store), if one is:
/// a `gc.pid` naming a live process of this host, or any process whose working directory
/// is inside `repo`.
pub(crate) fn process_in(repo: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(repo.join("gc.pid")) {
        let mut words = text.split_whitespace();
        if let (Some(pid), Some(host)) = (words.next(), words.next()) {
            let pid: i32 = pid.parse().unwrap_or(0);
            if host == hgauto_core::session::hostname() && hgauto_core::session::pid_alive(pid) {
                return Some(format!("git gc (pid {pid})"));
            }
        }
    }
    let repo = std::fs::canonicalize(repo).ok()?;
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&repo)) {
            return Some(format!("process {pid}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_working_in_the_repository_is_found() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(process_in(dir.path()), None);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        let found = process_in(dir.path());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, Some(format!("process {}", child.id())));
        std::fs::write(
            dir.path().join("gc.pid"),
            format!(
                "{} {}",
                std::process::id(),
                hgauto_core::session::hostname()
            ),
        )
        .unwrap();
        assert!(process_in(dir.path()).unwrap().contains("git gc"));
    }
}
