//! The automation CLI: inspect and clean up what hgauto created, and run one-off commands
//! on fresh machines.
//!
//! ```text
//! cargo run --example hgauto -- list                 # what the ledger knows, and whether it exists
//! cargo run --example hgauto -- purge                # remove all of it (after a crash, say)
//! cargo run --example hgauto -- run -n 2 -- uname -a # run a command on 2 fresh machines
//! ```
//!
//! The exit code of `run` is the first non-zero exit code of the command on any machine.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use hgauto::{with_machines, Command, LocalProvider, MachineSpec, ResourceProvider, Stream};

/// hgauto: machines for release engineering.
#[derive(Debug, Parser)]
#[command(name = "hgauto")]
struct Cli {
    /// State directory (ledger, sandboxes). Default: $HGAUTO_STATE_DIR or ~/.hgauto.
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List managed resources as JSON lines.
    List,
    /// Remove every managed resource.
    Purge,
    /// Run a command on fresh machines, in parallel, then terminate them.
    Run {
        /// How many machines.
        #[arg(short = 'n', long, default_value_t = 1)]
        machines: usize,
        /// Kill the command after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// The program and its arguments (passed verbatim, never through a shell).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        argv: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("hgauto: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> hgauto::Result<u8> {
    let provider = Arc::new(match &cli.state_dir {
        Some(d) => LocalProvider::new(d)?,
        None => LocalProvider::from_env()?,
    });
    match cli.command {
        Cmd::List => {
            for r in provider.list_managed().await? {
                println!(
                    "{}",
                    serde_json::to_string(&r)
                        .map_err(|e| hgauto::Error::invalid("resource", e.to_string()))?
                );
            }
            Ok(0)
        }
        Cmd::Purge => {
            let report = provider.purge().await?;
            println!("removed {} resource(s)", report.removed.len());
            for id in report.removed {
                println!("  {id}");
            }
            Ok(0)
        }
        Cmd::Run {
            machines,
            timeout,
            argv,
        } => {
            let mut cmd = Command::new(&argv[0]).args(&argv[1..]);
            if let Some(t) = timeout {
                cmd = cmd.timeout(std::time::Duration::from_secs(t));
            }
            let codes = with_machines(provider, &MachineSpec::linux(), machines, |ms| async move {
                let runs = ms.iter().map(|m| {
                    let cmd = cmd.clone();
                    async move {
                        let id = m.id().to_owned();
                        let sink = |s: Stream, line: &[u8]| {
                            let line = String::from_utf8_lossy(line);
                            match s {
                                Stream::Stdout => println!("[{id}] {line}"),
                                Stream::Stderr => eprintln!("[{id}] {line}"),
                            }
                        };
                        let out = m.exec_streaming(&cmd, &sink).await?;
                        eprintln!("[{id}] {}", out.status);
                        Ok::<_, hgauto::Error>(out.status)
                    }
                });
                futures::future::try_join_all(runs).await
            })
            .await?;
            let first_failure = codes.iter().find(|s| !s.success());
            Ok(match first_failure {
                None => 0,
                Some(s) => s.code().map_or(1, |c| u8::try_from(c).unwrap_or(1).max(1)),
            })
        }
    }
}
