//! Starting test servers on free loopback ports without two of them sharing one.
//!
//! A free port is found by binding port 0 and letting go of it, and the server binds it a
//! moment later. Tests run in parallel processes, so another process can be handed the
//! same port in between: one server then fails to bind, and its test, seeing the port
//! answer, talks to the other test's server (until that one is stopped under it).
//! [`spawn_listening`] waits until the listening socket belongs to the process it started
//! (read from `/proc`), and starts it again on another port when it does not.

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A port on `ip` that was free a moment ago.
pub fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The inodes of sockets listening on `ip:port` (IPv4), from `/proc/net/tcp`.
fn listening_inodes(ip: Ipv4Addr, port: u16) -> Vec<u64> {
    let want = format!("{:08X}:{port:04X}", u32::from_le_bytes(ip.octets()));
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return Vec::new();
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 9 && f[1] == want && f[3] == "0A").then(|| f[9].parse().ok())?
        })
        .collect()
}

/// Whether process `pid` holds a socket listening on `ip:port`.
pub fn owns_listener(pid: u32, ip: Ipv4Addr, port: u16) -> bool {
    let inodes = listening_inodes(ip, port);
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .ok()
            .and_then(|t| {
                let t = t.to_string_lossy().into_owned();
                t.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse::<u64>()
                    .ok()
            })
            .is_some_and(|inode| inodes.contains(&inode))
    })
}

/// Waits until `child` listens on `ip:port`: `true` once it does, `false` if it exits
/// first or someone else listens there. Panics naming `what` after `limit`.
pub fn wait_own_listener(
    child: &mut Child,
    ip: Ipv4Addr,
    port: u16,
    what: &str,
    limit: Duration,
) -> bool {
    let started = Instant::now();
    loop {
        if owns_listener(child.id(), ip, port) {
            return true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        let taken = !listening_inodes(ip, port).is_empty();
        if taken
            && started.elapsed() > Duration::from_millis(500)
            && !owns_listener(child.id(), ip, port)
        {
            // Someone else's server holds the port: ours cannot bind it.
            return false;
        }
        assert!(
            started.elapsed() < limit,
            "{what} did not start listening on {ip}:{port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the server `make(port)` builds on a free port of `ip`, and returns it once it is
/// the one listening there; on a lost race for the port, starts it again on another.
pub fn spawn_listening(
    what: &str,
    ip: Ipv4Addr,
    mut make: impl FnMut(u16) -> Command,
) -> (Child, u16) {
    for _ in 0..10 {
        let port = free_port(ip);
        let mut child = make(port)
            .spawn()
            .unwrap_or_else(|e| panic!("{what} starts (run scripts/test-all to install it): {e}"));
        if wait_own_listener(&mut child, ip, port, what, Duration::from_secs(60)) {
            return (child, port);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{what} lost the race for a free port ten times");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_found_for_its_own_process_only() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(owns_listener(std::process::id(), Ipv4Addr::LOCALHOST, port));
        assert!(!owns_listener(1, Ipv4Addr::LOCALHOST, port));
        drop(l);
        assert!(!owns_listener(
            std::process::id(),
            Ipv4Addr::LOCALHOST,
            port
        ));
    }
}
