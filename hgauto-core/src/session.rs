//! Who created a resource, and whether that process is still alive.
//!
//! A [`session_id`] names this process so that another process, later, can tell whether it
//! still runs: `<host>/<boot id>/<pid namespace>/<pid>/<start time>/<random>`. The host is
//! only for people; the decision rests on the rest. Only a process on the same boot of the
//! same kernel, in the same pid namespace, can judge: there the pid is meaningful, and the
//! start time tells a live creator from an unrelated process that reuses its pid. Anything
//! else (another machine with the same host name, a container with its own pid namespace,
//! a `/proc` that hides other users' processes, an id written by an older hgauto) is
//! [`Liveness::Unknown`], which a sweep leaves to the resource's deadline. Only
//! [`Liveness::Dead`] lets a sweep remove a resource early.

use std::sync::OnceLock;

/// What can be said about the process behind a session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It runs (this is us, or the same process is still there).
    Alive,
    /// It is gone: no process has its pid, a newer process reuses the pid, or it is a
    /// zombie.
    Dead,
    /// This process cannot tell (another boot, host or pid namespace, or a hidden /proc).
    Unknown,
}

/// The parts of a session id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    boot: String,
    pid_ns: String,
    pid: i32,
    start: u64,
}

impl Session {
    fn parse(id: &str) -> Option<Session> {
        let parts: Vec<&str> = id.split('/').collect();
        let [_host, boot, pid_ns, pid, start, _rand] = parts[..] else {
            return None;
        };
        Some(Session {
            boot: boot.to_owned(),
            pid_ns: pid_ns.to_owned(),
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        })
    }

    /// This process, as the kernel describes it.
    fn current() -> Session {
        let pid = std::process::id() as i32;
        Session {
            boot: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            pid_ns: pid_namespace().unwrap_or_default(),
            pid,
            start: match proc_state(pid) {
                ProcState::Running { start } | ProcState::Zombie { start } => start,
                _ => 0,
            },
        }
    }
}

/// This host's name, as `gethostname` gives it (empty if it cannot be read).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The inode of this process's pid namespace (`pid:[4026531836]` -> `4026531836`).
fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let text = link.to_string_lossy();
    let inode = text.strip_prefix("pid:[")?.strip_suffix(']')?;
    Some(inode.to_owned())
}

/// What the kernel says about a pid in our namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcState {
    /// No process has this pid.
    Missing,
    /// A process exists but its details are hidden from us (`hidepid`).
    Hidden,
    /// A process that started `start` clock ticks after boot.
    Running { start: u64 },
    /// A zombie that started at `start`.
    Zombie { start: u64 },
}

/// Is process `pid` of this host alive? A process we may not signal (EPERM: another
/// user's) is alive; only "no such process" (ESRCH) is dead.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn proc_state(pid: i32) -> ProcState {
    if pid <= 0 {
        return ProcState::Missing;
    }
    // SAFETY: signal 0 only checks that the process exists. EPERM means it does.
    if unsafe { libc::kill(pid, 0) } != 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    {
        return ProcState::Missing;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return ProcState::Hidden;
    };
    // Fields after the command name (which may hold spaces and parentheses).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return ProcState::Hidden;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); starttime is field 22.
    let start = fields.get(19).and_then(|s| s.parse().ok()).unwrap_or(0);
    if fields.first() == Some(&"Z") {
        ProcState::Zombie { start }
    } else {
        ProcState::Running { start }
    }
}

/// The id of this process (see the [module docs](self)). Ledger records and resource tags
/// carry it as "created by". It uses only characters EC2 tags accept.
pub fn session_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let host = Some(hostname())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into());
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let me = Session::current();
        format!(
            "{host}/{}/{}/{}/{}/{:08x}",
            me.boot,
            me.pid_ns,
            me.pid,
            me.start,
            rand::random::<u32>()
        )
    })
}

/// Whether the process behind `session` still runs, as far as this process can tell.
pub fn liveness(session: &str) -> Liveness {
    if session == session_id() {
        return Liveness::Alive;
    }
    judge(
        Session::parse(session).as_ref(),
        &Session::current(),
        proc_state,
    )
}

fn judge(them: Option<&Session>, me: &Session, probe: impl Fn(i32) -> ProcState) -> Liveness {
    let Some(them) = them else {
        return Liveness::Unknown;
    };
    if me.boot.is_empty()
        || them.boot != me.boot
        || me.pid_ns.is_empty()
        || them.pid_ns != me.pid_ns
    {
        return Liveness::Unknown;
    }
    match probe(them.pid) {
        ProcState::Missing | ProcState::Zombie { .. } => Liveness::Dead,
        ProcState::Hidden => Liveness::Unknown,
        ProcState::Running { start } if start == them.start => Liveness::Alive,
        // The pid now belongs to a process that started at another time.
        ProcState::Running { .. } => Liveness::Dead,
    }
}

/// True only when the process behind `session` is known to be gone ([`Liveness::Dead`]).
pub fn session_is_dead(session: &str) -> bool {
    liveness(session) == Liveness::Dead
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Session {
        Session::current()
    }

    #[test]
    fn our_own_id_parses_back_and_is_alive() {
        let id = session_id();
        let parsed = Session::parse(id).unwrap();
        assert_eq!(parsed, me());
        assert!(parsed.start > 0 && !parsed.boot.is_empty() && !parsed.pid_ns.is_empty());
        assert_eq!(liveness(id), Liveness::Alive);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.:/=+-@".contains(c)),
            "{id}"
        );
    }

    #[test]
    fn a_finished_process_of_this_boot_and_namespace_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = match proc_state(pid as i32) {
            ProcState::Running { start } | ProcState::Zombie { start } => start,
            other => panic!("{other:?}"),
        };
        child.wait().unwrap();
        let m = me();
        let id = format!("h/{}/{}/{pid}/{start}/0", m.boot, m.pid_ns);
        assert_eq!(liveness(&id), Liveness::Dead);
    }

    #[test]
    fn a_reused_pid_is_dead_and_a_live_one_alive() {
        let m = me();
        let live = |start| Session { start, ..m.clone() };
        let probe = |_| ProcState::Running { start: 500 };
        assert_eq!(judge(Some(&live(500)), &m, probe), Liveness::Alive);
        assert_eq!(judge(Some(&live(499)), &m, probe), Liveness::Dead);
        assert_eq!(
            judge(Some(&live(500)), &m, |_| ProcState::Zombie { start: 500 }),
            Liveness::Dead
        );
    }

    #[test]
    fn what_this_process_cannot_see_is_unknown_never_dead() {
        let m = me();
        let gone = |_| ProcState::Missing;
        let other_boot = Session {
            boot: "another-boot".into(),
            ..m.clone()
        };
        let other_ns = Session {
            pid_ns: "1".into(),
            ..m.clone()
        };
        assert_eq!(judge(Some(&other_boot), &m, gone), Liveness::Unknown);
        assert_eq!(judge(Some(&other_ns), &m, gone), Liveness::Unknown);
        assert_eq!(
            judge(Some(&m), &m, |_| ProcState::Hidden),
            Liveness::Unknown
        );
        assert_eq!(judge(None, &m, gone), Liveness::Unknown);
    }

    #[test]
    fn a_same_named_host_is_not_judged_by_our_proc() {
        // The old form `<host>-<pid>-<random>`: another CI host, container or user with our
        // host name and a pid that does not exist here.
        let host = read_trimmed("/proc/sys/kernel/hostname").unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!session_is_dead(&format!("{host}-{pid}-0000abcd")));
        assert!(!session_is_dead("garbage"));
    }
}
