//! [`FaultProxy`]: a TCP proxy for fault tests. It cuts its first connections after a
//! number of bytes (both directions counted), and can flip one byte of what the server
//! sends, so transports can be tested for resume, reconnect and integrity checks against
//! real servers (sshd, nginx).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// What the proxy does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Close a connection once it has carried this many bytes.
    pub cut_after: u64,
    /// How many connections (the first ones) get cut; later ones pass untouched.
    pub cut_connections: usize,
    /// Flip the bits of the byte at this offset of every server-to-client stream.
    pub corrupt_at: Option<u64>,
}

impl Faults {
    /// Cut the first `connections` connections after `bytes` bytes.
    pub fn cut(bytes: u64, connections: usize) -> Self {
        Faults {
            cut_after: bytes,
            cut_connections: connections,
            corrupt_at: None,
        }
    }

    /// Corrupt byte `offset` of every response stream, cut nothing.
    pub fn corrupt(offset: u64) -> Self {
        Faults {
            cut_after: u64::MAX,
            cut_connections: 0,
            corrupt_at: Some(offset),
        }
    }
}

/// A running proxy on `127.0.0.1:port` (its threads live as long as the process).
#[derive(Debug)]
pub struct FaultProxy {
    /// The port it listens on.
    pub port: u16,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Connections cut so far.
    pub cuts: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// Proxies to `target` with `faults`.
    pub fn start(target: (String, u16), faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (conns, cut_count) = (connections.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let n = conns.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect((target.0.as_str(), target.1)) else {
                    continue;
                };
                let limit = if n < faults.cut_connections {
                    faults.cut_after
                } else {
                    u64::MAX
                };
                let moved = Arc::new(AtomicU64::new(0));
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                for (from, to, corrupt) in [(c2, s2, None), (server, client, faults.corrupt_at)] {
                    let moved = moved.clone();
                    let cut_count = cut_count.clone();
                    std::thread::spawn(move || pipe(from, to, &moved, limit, corrupt, &cut_count));
                }
            }
        });
        FaultProxy {
            port,
            connections,
            cuts,
        }
    }
}

fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    moved: &AtomicU64,
    limit: u64,
    corrupt_at: Option<u64>,
    cuts: &AtomicUsize,
) {
    let mut buf = [0u8; 16 * 1024];
    let mut seen = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let total = moved.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        if total > limit {
            cuts.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if let Some(at) = corrupt_at {
            if (seen..seen + n as u64).contains(&at) {
                buf[(at - seen) as usize] ^= 0xff;
            }
        }
        seen += n as u64;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
