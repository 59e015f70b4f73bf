//! hgauto-ssh against the tools it replaces, side by side in one run, on local sshd
//! instances (127.0.0.2 ...), logged in as a user whose login shell is /bin/sh.
//!
//! ```text
//! ./benches/ssh.sh          # installs the peers (rsync, parallel-ssh), then runs this
//! ```
//!
//! 1. `true` on 32 hosts from a cold start: fan_out vs parallel-ssh vs `xargs -P 32 ssh`;
//!    then over 256 connections (eight handles per host) vs parallel-ssh. Wall time, client
//!    CPU time, and client CPU per connection.
//! 2. 1,000 sequential `true` scripts on one connected host vs a bare libssh2 loop in this
//!    benchmark (the floor: channel, exec, read, exit status) and OpenSSH ControlMaster.
//! 3. A 5,000-file, 100 MB tree: sync_tree vs `tar c | ssh tar x` and `rsync -a`; then a
//!    re-sync after one file changed vs `rsync -a`.
//! 4. A 256 MB file: put and get vs `scp`.
//!
//! Every figure is the median of RUNS (5) runs. Ratios are hgauto / peer (lower is better).

#[path = "../tests/support/mod.rs"]
mod support;
mod timing;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hgauto_core::{fan_out, Command, RemoteMachine, SyncOptions};
use hgauto_ssh::SshMachine;
use hgauto_testkit::fixtures::{random_bytes, random_tree};
use support::{Sshd, UserKeys};
use timing::{median, ms, ours, peer, row, rusage, Cost};

const RUNS: usize = 5;

fn ssh_opts(keys: &UserKeys) -> String {
    format!(
        "-i {} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        keys.private().display()
    )
}

/// The floor for section 2: the least a libssh2 client does per command on a connected
/// session (open a channel, exec, read to the end, close, read the exit status), on the
/// calling thread, with no marker, no pool and no async hand-off.
struct BareLoop {
    sess: ssh2::Session,
    _tcp: std::net::TcpStream,
}

impl BareLoop {
    fn connect(ip: &str, port: u16, user: &str, key: &std::path::Path) -> Self {
        let tcp = std::net::TcpStream::connect((ip, port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut sess = ssh2::Session::new().unwrap();
        sess.set_tcp_stream(tcp.try_clone().unwrap());
        sess.handshake().unwrap();
        sess.userauth_pubkey_file(user, None, key, None).unwrap();
        BareLoop { sess, _tcp: tcp }
    }

    fn run(&mut self, n: usize) -> Cost {
        use std::io::Read;
        let (t, c) = (Instant::now(), rusage(libc::RUSAGE_SELF));
        let mut sink = Vec::new();
        for _ in 0..n {
            let mut ch = self.sess.channel_session().unwrap();
            ch.exec("true").unwrap();
            sink.clear();
            ch.read_to_end(&mut sink).unwrap();
            ch.wait_close().unwrap();
            assert_eq!(ch.exit_status().unwrap(), 0);
        }
        Cost {
            wall: t.elapsed(),
            cpu: rusage(libc::RUSAGE_SELF) - c,
        }
    }
}

/// Prints the client CPU per connection of a fan-out over `handles` connections.
fn per_connection_cpu(us: Cost, peer_name: &str, them: Option<Cost>, handles: usize) {
    let each = |c: Cost| ms(c.cpu) / handles as f64;
    print!("client CPU per connection: hgauto {:.2} ms", each(us));
    if let Some(them) = them {
        print!(" | {peer_name} {:.2} ms", each(them));
    }
    println!();
}

/// Runs parallel-ssh's script over `targets` (HOST:PORT, repeated for several connections
/// to one host): the time it reports from inside, and the whole process's.
fn pssh_run(
    python: &str,
    script: &std::path::Path,
    user: &str,
    keys: &UserKeys,
    targets: &[String],
) -> (Cost, Cost) {
    let (t, c) = (Instant::now(), rusage(libc::RUSAGE_CHILDREN));
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(user)
        .arg(keys.private())
        .args(targets)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let process = Cost {
        wall: t.elapsed(),
        cpu: rusage(libc::RUSAGE_CHILDREN) - c,
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<f64> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let inside = Cost {
        wall: Duration::from_secs_f64(nums[0] / 1e3),
        cpu: Duration::from_secs_f64(nums[1] / 1e3),
    };
    (inside, process)
}

/// parallel-ssh's side of section 1, shared with the Python module's benchmark.
const PSSH: &str = include_str!("../../benches/peers/pssh_true.py");

#[tokio::main]
async fn main() {
    let python = std::env::var("HGAUTO_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let keys = UserKeys::new();
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let user = support::user();
    let only = std::env::var("HGAUTO_BENCH_ONLY").unwrap_or_else(|_| "1,2,3,4".into());
    let run_section = |n: &str| only.split(',').any(|s| s.trim() == n);
    let opts = ssh_opts(&keys);
    println!("login user: {user}; {RUNS} runs each, medians");

    // ---- 1. 32 hosts, cold -------------------------------------------------------------
    if run_section("1") {
        let servers: Vec<Sshd> = (2..=33)
            .map(|i| Sshd::start(&format!("127.0.0.{i}"), &keys))
            .collect();
        // Record host keys once (as a real fleet's known_hosts would hold them).
        let warm: Vec<Arc<dyn RemoteMachine>> = servers
            .iter()
            .map(|s| Arc::new(SshMachine::from_config(s.config(&keys, state.path()))) as _)
            .collect();
        assert!(fan_out(&warm, &Command::new("true"), 32)
            .await
            .iter()
            .all(|r| r.result.is_ok()));
        let pssh_script = work.path().join("pssh_true.py");
        std::fs::write(&pssh_script, PSSH).unwrap();
        let have_pssh = std::process::Command::new(&python)
            .args(["-c", "import pssh"])
            .status()
            .is_ok_and(|s| s.success());
        // 32 handles (one per host), then 256 (eight per host, each its own connection).
        for per_host in [1usize, 8] {
            let handles = servers.len() * per_host;
            let each = || {
                servers
                    .iter()
                    .flat_map(|s| std::iter::repeat_n(s, per_host))
            };
            let targets: Vec<String> = each().map(|s| format!("{}:{}", s.ip, s.port)).collect();
            let (mut h, mut p_in, mut p_proc, mut x) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..RUNS {
                let machines: Vec<Arc<dyn RemoteMachine>> = each()
                    .map(|s| Arc::new(SshMachine::from_config(s.config(&keys, state.path()))) as _)
                    .collect();
                h.push(
                    ours(async {
                        let results = fan_out(&machines, &Command::new("true"), handles).await;
                        assert!(results
                            .iter()
                            .all(|r| r.result.as_ref().is_ok_and(|o| o.status.success())));
                    })
                    .await,
                );
                if have_pssh {
                    let (inside, process) = pssh_run(&python, &pssh_script, &user, &keys, &targets);
                    p_in.push(inside);
                    p_proc.push(process);
                }
                if per_host == 1 {
                    let list: Vec<String> = servers
                        .iter()
                        .map(|s| format!("'{} {}'", s.port, s.ip))
                        .collect();
                    x.push(peer(&format!(
                        "printf '%s\\n' {} | xargs -P 32 -L 1 sh -c 'ssh {opts} -p \"$0\" {user}@\"$1\" true'",
                        list.join(" ")
                    )));
                }
            }
            println!("\n== 1. `true` over {handles} connections to 32 hosts, cold start ==");
            let h = median(h);
            if have_pssh {
                let p_in = median(p_in);
                per_connection_cpu(h, "parallel-ssh (in-proc)", Some(p_in), handles);
                row("in-process", h, "parallel-ssh (in-proc)", p_in, true);
                row(
                    "whole process",
                    h,
                    "parallel-ssh (process)",
                    median(p_proc),
                    true,
                );
            } else {
                per_connection_cpu(h, "", None, handles);
                println!(
                    "parallel-ssh not importable by {python}: rows skipped (run benches/ssh.sh)"
                );
            }
            if !x.is_empty() {
                row("cold", h, "xargs -P 32 ssh", median(x), true);
            }
        }
    }

    // ---- 2. 1,000 sequential commands on one connected host --------------------------------
    let sshd = Sshd::start("127.0.0.2", &keys);
    let m = SshMachine::from_config(sshd.config(&keys, state.path()));
    m.wait_ready(Duration::from_secs(20)).await.unwrap();
    let sock = work.path().join("cm.sock");
    let target = format!("-p {} {user}@{}", sshd.port, sshd.ip);
    assert!(std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ssh {opts} -M -S {} -o ControlPersist=yes -fN {target}",
            sock.display()
        ))
        .status()
        .unwrap()
        .success());
    if run_section("2") {
        let (mut h, mut bare, mut cm) = (Vec::new(), Vec::new(), Vec::new());
        let mut floor = BareLoop::connect(&sshd.ip, sshd.port, &user, &keys.private());
        for _ in 0..RUNS {
            bare.push(floor.run(1000));
            h.push(
                ours(async {
                    for _ in 0..1000 {
                        assert!(m
                            .exec(&Command::script("true"))
                            .await
                            .unwrap()
                            .status
                            .success());
                    }
                })
                .await,
            );
            let (t, c) = (Instant::now(), rusage(libc::RUSAGE_CHILDREN));
            for _ in 0..1000 {
                let st = std::process::Command::new("ssh")
                    .args(opts.split(' '))
                    .args([
                        "-S",
                        &sock.display().to_string(),
                        "-p",
                        &sshd.port.to_string(),
                        &format!("{user}@{}", sshd.ip),
                        "true",
                    ])
                    .status()
                    .unwrap();
                assert!(st.success());
            }
            cm.push(Cost {
                wall: t.elapsed(),
                cpu: rusage(libc::RUSAGE_CHILDREN) - c,
            });
        }
        let _ = std::process::Command::new("ssh")
            .args(["-S", &sock.display().to_string(), "-O", "exit", "x"])
            .stderr(Stdio::null())
            .status();
        println!("\n== 2. 1,000 sequential `true`, one connected host ==");
        let h = median(h);
        row("1000 x true", h, "bare libssh2 loop", median(bare), true);
        row("1000 x true", h, "ssh ControlMaster", median(cm), true);
    }

    let src = work.path().join("tree");
    let total = random_tree(&src, 5000, 100_000_000);
    let big: PathBuf = work.path().join("big.bin");
    {
        let mut seed = 42u64;
        let mut f = std::fs::File::create(&big).unwrap();
        for _ in 0..256 {
            std::io::Write::write_all(&mut f, &random_bytes(&mut seed, 1 << 20)).unwrap();
        }
    }
    // libssh2's default order (chacha20-poly1305 first, like OpenSSH) and AES-GCM first.
    // libssh2's default order (chacha20-poly1305 first, like OpenSSH); with
    // HGAUTO_BENCH_CIPHERS=1 also AES-GCM first, for comparison.
    let mut settings = vec![("default (chacha20-poly1305)", None)];
    if std::env::var_os("HGAUTO_BENCH_CIPHERS").is_some() {
        settings.push((
            "aes128-gcm first",
            Some("aes128-gcm@openssh.com,chacha20-poly1305@openssh.com"),
        ));
    }
    for (label, ciphers) in settings {
        let mut cfg = sshd.config(&keys, state.path());
        cfg.ciphers = ciphers.map(str::to_owned);
        let m = SshMachine::from_config(cfg);
        // ---- 3. tree push -------------------------------------------------------------------------
        let remote = |name: &str| format!("{user}@{}:{name}", sshd.ip);
        if run_section("3") {
            println!(
                "\n== 3. push a 5,000-file, {:.0} MB tree (hgauto ciphers: {label}) ==",
                total as f64 / 1e6
            );
            let have_rsync = std::process::Command::new("rsync")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            let rsh = format!("ssh {opts} -p {}", sshd.port);
            let (mut ours_first, mut tarssh, mut rs_first, mut ours_re, mut rs_re) =
                (vec![], vec![], vec![], vec![], vec![]);
            let sync_opts = SyncOptions {
                delete: true,
                compress: false,
            };
            for run in 0..RUNS {
                let d = format!("bench-sync-{run}");
                ours_first.push(
                    ours(async { m.sync_tree(&src, &d, &sync_opts).await.map(drop).unwrap() })
                        .await,
                );
                tarssh.push(peer(&format!(
                "tar -C {} -cf - . | ssh {opts} {target} 'mkdir -p bench-tar-{run} && tar -C bench-tar-{run} -xf -'",
                src.display()
            )));
                let changed = src.join(format!("dir07/file{:05}.bin", 7 + 50 * run));
                if have_rsync {
                    rs_first.push(peer(&format!(
                        "rsync -a -e '{rsh}' {}/ {}/",
                        src.display(),
                        remote(&format!("bench-rsync-{run}"))
                    )));
                    std::fs::write(&changed, format!("changed {run}")).unwrap();
                    rs_re.push(peer(&format!(
                        "rsync -a --delete -e '{rsh}' {}/ {}/",
                        src.display(),
                        remote(&format!("bench-rsync-{run}"))
                    )));
                } else {
                    std::fs::write(&changed, format!("changed {run}")).unwrap();
                }
                ours_re.push(
                    ours(async {
                        let r = m.sync_tree(&src, &d, &sync_opts).await.unwrap();
                        assert_eq!(r.files_sent, 1);
                    })
                    .await,
                );
                m.exec(&Command::script(format!(
                    "rm -rf bench-sync-{run} bench-tar-{run} bench-rsync-{run}"
                )))
                .await
                .unwrap();
            }
            let first = median(ours_first);
            row(
                "first sync",
                first,
                "tar c | ssh tar x",
                median(tarssh),
                true,
            );
            if have_rsync {
                row("first sync", first, "rsync -a", median(rs_first), true);
                row(
                    "re-sync, 1 file changed",
                    median(ours_re),
                    "rsync -a",
                    median(rs_re),
                    true,
                );
            } else {
                println!("rsync not installed: rsync rows skipped (run benches/ssh.sh)");
            }
        }
        // ---- 4. 256 MB put / get ----------------------------------------------------------------------
        if run_section("4") {
            let back: PathBuf = work.path().join("back.bin");
            let (mut hp, mut sp, mut hg, mut sg) = (vec![], vec![], vec![], vec![]);
            for _ in 0..RUNS {
                hp.push(ours(async { m.put(&big, "bench-big.bin").await.unwrap() }).await);
                sp.push(peer(&format!(
                    "scp -q {opts} -P {} {} {}",
                    sshd.port,
                    big.display(),
                    remote("bench-scp.bin")
                )));
                hg.push(ours(async { m.get("bench-big.bin", &back).await.unwrap() }).await);
                sg.push(peer(&format!(
                    "scp -q {opts} -P {} {} {}",
                    sshd.port,
                    remote("bench-scp.bin"),
                    work.path().join("scp-back.bin").display()
                )));
                assert_eq!(std::fs::metadata(&back).unwrap().len(), 256 << 20);
            }
            println!("\n== 4. 256 MB file (hgauto ciphers: {label}) ==");
            row("put", median(hp), "scp (upload)", median(sp), true);
            row("get", median(hg), "scp (download)", median(sg), true);
        }
    }
    m.exec(&Command::new("rm").args(["-f", "bench-big.bin", "bench-scp.bin"]))
        .await
        .unwrap();
}
