//! The `hgauto` command: seed 000's automation.py on any provider, driving the engines.
//!
//! Everything here is for the binary (`src/bin/hgauto.rs`) and the Python wheel's console
//! entry point, which call [`main_with_args`]. Output is human-readable by default, with
//! progress bars on a terminal; `--json` prints one versioned JSON document per command.

mod args;
mod config;
mod engines;
mod exit;
mod helpers;
mod machines;
mod output;
mod publish;
mod run;

use std::ffi::OsString;

use clap::{CommandFactory, Parser};

pub use args::Cli;
pub use exit::{code_for, ExitCode, EXIT_CODES};

/// Runs the command line `args` (the program name first) and returns the process exit
/// code. Parse errors print clap's message; other errors print one line, `hgauto: ...`.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                ExitCode::Usage as i32
            } else {
                0
            };
            let _ = e.print();
            return code;
        }
    };
    output::init_logging(cli.quiet, cli.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hgauto: cannot start the runtime: {e}");
            return ExitCode::Infrastructure as i32;
        }
    };
    let json = cli.json;
    let result = rt.block_on(dispatch(cli));
    // A signal's cleanup kills the commands it interrupts: their exit is not the answer.
    if let Some(signal) = rt.block_on(hgauto_core::cleanup::interrupt_settled()) {
        return 128 + signal;
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = code_for(&e);
            if json {
                output::print_json(
                    "error",
                    &serde_json::json!({"error": e.to_string(), "exit_code": code}),
                );
            } else {
                eprintln!("hgauto: {e}");
            }
            code
        }
    }
}

async fn dispatch(cli: Cli) -> hgauto_core::Result<i32> {
    use args::Cmd;
    let ctx = config::Context::load(&cli)?;
    match cli.command {
        Cmd::List => machines::list(&ctx).await,
        Cmd::Terminate { ids, all } => machines::terminate(&ctx, ids, all).await,
        Cmd::Purge => machines::purge(&ctx).await,
        Cmd::Sweep { grace_secs } => machines::sweep(&ctx, grace_secs).await,
        Cmd::Extend { ids, hours } => machines::extend(&ctx, ids, hours).await,
        Cmd::Status => machines::status(&ctx).await,
        Cmd::Image { command } => machines::image(&ctx, command).await,
        Cmd::Run(a) => run::run(&ctx, a).await,
        Cmd::RunTests(a) => run::run_tests(&ctx, a).await,
        Cmd::Build(a) => run::build(&ctx, a).await,
        Cmd::Publish(a) => publish::publish(&ctx, a).await,
        Cmd::Pipeline { command } => engines::pipeline(&ctx, command).await,
        Cmd::Agent { command } => engines::agent(&ctx, command).await,
        Cmd::SelfUpdate { command } => engines::self_update(&ctx, command).await,
        Cmd::Download(a) => helpers::download(&ctx, a).await,
        Cmd::Checkout(a) => helpers::checkout(&ctx, a).await,
        Cmd::Venv(a) => helpers::venv(&ctx, a).await,
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "hgauto", &mut std::io::stdout());
            Ok(0)
        }
        Cmd::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| hgauto_core::Error::invalid("man page", e.to_string()))?;
            Ok(0)
        }
    }
}
