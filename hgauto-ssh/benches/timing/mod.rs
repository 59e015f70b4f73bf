//! Timing for the side-by-side benchmark: wall and CPU time of our code and of a peer's
//! processes, medians, and the printed rows with their ratios.

use std::process::Stdio;
use std::time::{Duration, Instant};

/// Wall and CPU time of one timed run.
#[derive(Clone, Copy, Default)]
pub struct Cost {
    pub wall: Duration,
    pub cpu: Duration,
}

/// CPU time (user + system) of `who`: this process or its reaped children.
pub fn rusage(who: i32) -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The median wall time and the median CPU time of `xs` (each on its own).
pub fn median(mut xs: Vec<Cost>) -> Cost {
    xs.sort_by_key(|c| c.wall);
    let wall = xs[xs.len() / 2].wall;
    xs.sort_by_key(|c| c.cpu);
    Cost {
        wall,
        cpu: xs[xs.len() / 2].cpu,
    }
}

/// Flushes dirty pages so every timed transfer starts from the same state (client and
/// server share this disk; one tool's writeback would otherwise throttle the next).
pub fn settle() {
    let _ = std::process::Command::new("sync").status();
}

/// Times `f` in this process (wall, and this process's CPU).
pub async fn ours<F: std::future::Future<Output = ()>>(f: F) -> Cost {
    settle();
    let (t, c) = (Instant::now(), rusage(libc::RUSAGE_SELF));
    f.await;
    Cost {
        wall: t.elapsed(),
        cpu: rusage(libc::RUSAGE_SELF) - c,
    }
}

/// Times a peer shell command (wall, and the CPU of the processes it ran).
pub fn peer(cmd: &str) -> Cost {
    settle();
    let (t, c) = (Instant::now(), rusage(libc::RUSAGE_CHILDREN));
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "peer failed: {cmd}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Cost {
        wall: t.elapsed(),
        cpu: rusage(libc::RUSAGE_CHILDREN) - c,
    }
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Prints one row: our time, the peer's, and the ratio (lower is better).
pub fn row(what: &str, us: Cost, peer_name: &str, them: Cost, with_cpu: bool) {
    let ratio = ms(us.wall) / ms(them.wall);
    print!(
        "{what:<28} hgauto {:>9.1} ms | {peer_name:<22} {:>9.1} ms | wall {ratio:>5.2}x",
        ms(us.wall),
        ms(them.wall)
    );
    if with_cpu {
        print!(
            " | cpu {:>7.1} vs {:>7.1} ms = {:>5.2}x",
            ms(us.cpu),
            ms(them.cpu),
            ms(us.cpu) / ms(them.cpu)
        );
    }
    println!();
}
