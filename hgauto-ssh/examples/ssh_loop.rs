//! Runs `true` N times, one after the other, on one SSH host, and prints the wall time in
//! milliseconds. The Rust side of the Python module's benchmark (`benches/python.sh`): the
//! same loop as `for _ in range(n): m.run("true")`, so the ratio is the binding's cost.
//!
//! ```text
//! ssh_loop HOST PORT USER KEY_FILE STATE_DIR N
//! ```

use std::time::Instant;

use hgauto_core::{Command, RemoteMachine};
use hgauto_ssh::{Auth, HostKeyPolicy, SshConfig, SshMachine};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [host, port, user, key, state, n] = args.as_slice() else {
        return Err("usage: ssh_loop HOST PORT USER KEY_FILE STATE_DIR N".into());
    };
    let cfg = SshConfig::new(
        host.as_str(),
        port.parse()?,
        user.as_str(),
        Auth::KeyFile {
            path: key.into(),
            passphrase: None,
        },
        state,
    )
    .with_host_keys(HostKeyPolicy::AcceptNew);
    let m = SshMachine::from_config(cfg);
    // Connected first, as the Python side is: the loop measures commands, not the handshake.
    m.exec(&Command::script("true")).await?;
    let n: usize = n.parse()?;
    let started = Instant::now();
    for _ in 0..n {
        let out = m.exec(&Command::script("true")).await?;
        if !out.status.success() {
            return Err(format!("`true` failed: {}", out.status).into());
        }
    }
    println!("{:.3}", started.elapsed().as_secs_f64() * 1e3);
    Ok(())
}
