//! `run`, `run-tests` and `build`: work on fresh machines, with output streamed and
//! prefixed per machine, artifacts collected, and every machine terminated at the end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use hgauto_core::{
    Command, Error, ExitStatus, MachineSpec, Platform, RemoteMachine, Result, Stream, SyncOptions,
    TemporaryMachines,
};
use hgauto_pipeline::{PipelineFile, Runner, TaskState};

use super::args::{BuildArgs, RunArgs, RunTestsArgs};
use super::config::Context;
use super::exit::status_code;
use super::output::{print_json, run_pipeline, spinner};

/// `run`.
pub(super) async fn run(ctx: &Context, a: RunArgs) -> Result<i32> {
    let platform: Platform = a.platform.parse()?;
    if a.machines == 0 {
        return Err(Error::invalid("-n 0", "at least one machine is needed"));
    }
    if let Some(dir) = &a.sync {
        if !dir.is_dir() {
            return Err(Error::invalid(
                format!("--sync {}", dir.display()),
                "is not a directory",
            ));
        }
    }
    let mut cmd = Command::new(&a.argv[0]).args(&a.argv[1..]);
    if a.sync.is_some() {
        cmd = cmd.current_dir("src");
    }
    if let Some(t) = a.timeout {
        cmd = cmd.timeout(Duration::from_secs(t));
    }
    let provider = ctx.provider().await?;
    let spec = MachineSpec::for_platform(platform).with_label("purpose", "hgauto-run");
    let progress = spinner(
        ctx.json,
        ctx.quiet,
        format!("provisioning {} machine(s)", a.machines),
    );
    let guard = TemporaryMachines::provision(provider.clone(), &spec, a.machines).await?;
    progress.set_message(format!("running on {} machine(s)", a.machines));
    let machines = guard.machines().to_vec();
    let several = machines.len() > 1;
    let runs = machines.iter().map(|m| {
        let (cmd, progress, a) = (cmd.clone(), progress.clone(), &a);
        async move { on_machine(m.as_ref(), &cmd, a, several, &progress, ctx.json).await }
    });
    let outcomes = futures::future::join_all(runs).await;
    progress.finish_and_clear();

    let mut results = Vec::new();
    let mut failed_ids = Vec::new();
    let mut first_error = None;
    for (m, outcome) in machines.iter().zip(outcomes) {
        match outcome {
            Ok((status, files)) => {
                if !status.success() {
                    failed_ids.push(m.id().to_owned());
                }
                results.push(json!({"machine": m.id(), "exit_code": status_code(status), "collected": files}));
            }
            Err(e) => {
                failed_ids.push(m.id().to_owned());
                results.push(json!({"machine": m.id(), "error": e.to_string()}));
                first_error.get_or_insert(e);
            }
        }
    }
    let kept = if a.keep_on_failure && !failed_ids.is_empty() {
        // The failed machines stay for a look; the ledger keeps them for `terminate`.
        guard.keep(&failed_ids).await?
    } else {
        guard.terminate().await?;
        Vec::new()
    };
    let code = results
        .iter()
        .filter_map(|r| r["exit_code"].as_i64())
        .find(|c| *c != 0)
        .map(|c| c as i32);
    if ctx.json {
        print_json("run", &json!({"machines": results, "kept": kept}));
    } else if !kept.is_empty() {
        eprintln!(
            "kept for a look (hgauto terminate {}): {}",
            kept.join(" "),
            kept.join(", ")
        );
    }
    match (code, first_error) {
        (Some(c), _) => Ok(c),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(0),
    }
}

/// Sync, run and collect on one machine.
async fn on_machine(
    m: &dyn RemoteMachine,
    cmd: &Command,
    a: &RunArgs,
    several: bool,
    progress: &indicatif::ProgressBar,
    json: bool,
) -> Result<(ExitStatus, Vec<PathBuf>)> {
    if let Some(dir) = &a.sync {
        m.sync_tree(
            dir,
            "src",
            &SyncOptions {
                delete: true,
                compress: false,
            },
        )
        .await?;
    }
    let id = m.id().to_owned();
    let mut sink = |s: Stream, line: &[u8]| {
        if json {
            return;
        }
        let line = String::from_utf8_lossy(line);
        progress.suspend(|| match s {
            Stream::Stdout => println!("[{id}] {line}"),
            Stream::Stderr => eprintln!("[{id}] {line}"),
        });
    };
    let out = m.exec_streaming(cmd, &mut sink).await?;
    if !json {
        progress.suspend(|| eprintln!("[{id}] {}", out.status));
    }
    let dest = if several {
        a.out.join(&id)
    } else {
        a.out.clone()
    };
    let mut files = Vec::new();
    for pattern in &a.collect {
        files.extend(collect(m, pattern, a.sync.is_some(), &dest).await?);
    }
    Ok((out.status, files))
}

/// Copies the files matching `pattern` on `m` into `dest`.
async fn collect(
    m: &dyn RemoteMachine,
    pattern: &str,
    in_src: bool,
    dest: &Path,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dest).map_err(|e| Error::io("create", dest, "localhost", e))?;
    let files = hgauto_core::machine::matching_files(m, pattern, in_src.then_some("src")).await?;
    let mut got = Vec::new();
    for f in files {
        let remote = if in_src {
            format!("src/{}", f.path)
        } else {
            f.path.clone()
        };
        let local = dest.join(&f.name);
        m.get(&remote, &local).await?;
        got.push(local);
    }
    Ok(got)
}

/// `run-tests`: `run` with the config's `[run_tests]`.
pub(super) async fn run_tests(ctx: &Context, a: RunTestsArgs) -> Result<i32> {
    let t = ctx.file.run_tests.clone().ok_or_else(|| {
        Error::invalid(
            "run-tests",
            "needs a [run_tests] table with `command` in the config file",
        )
    })?;
    if t.command.is_empty() {
        return Err(Error::invalid("[run_tests] command", "is empty"));
    }
    let args = RunArgs {
        machines: a.machines.or(t.machines).unwrap_or(1),
        sync: Some(t.sync.unwrap_or_else(|| PathBuf::from("."))),
        collect: Vec::new(),
        out: PathBuf::from("dist"),
        keep_on_failure: a.keep_on_failure,
        timeout: t.timeout_secs,
        platform: "linux".into(),
        argv: t.command,
    };
    run(ctx, args).await
}

/// `build RECIPE`: a pipeline whose steps collect artifacts, on the provider; everything
/// collected lands in `--dist`.
pub(super) async fn build(ctx: &Context, a: BuildArgs) -> Result<i32> {
    let pipeline = PipelineFile::read(&a.recipe)?.into_pipeline(&Default::default())?;
    let mut runner = Runner::new(pipeline, &a.out);
    if let Some(r) = &a.revision {
        runner = runner.input("revision", r);
    }
    // Checked before any machine: the recipe's placeholders and the revision.
    let tasks = runner.plan()?.len();
    let runner = runner.provider(ctx.provider().await?);
    let result = run_pipeline(runner, tasks, ctx.json, ctx.quiet).await?;
    std::fs::create_dir_all(&a.dist).map_err(|e| Error::io("create", &a.dist, "localhost", e))?;
    let mut artifacts = Vec::new();
    for t in result.tasks().filter(|t| t.state == TaskState::Succeeded) {
        for f in &t.artifacts {
            let name = f.file_name().unwrap_or_default();
            let to = a.dist.join(name);
            if artifacts.contains(&to) {
                return Err(Error::Conflict {
                    what: format!("{} (collected by two tasks)", to.display()),
                    reason: "two platforms built a file of the same name".into(),
                });
            }
            std::fs::copy(f, &to).map_err(|e| Error::io("copy", f, "localhost", e))?;
            artifacts.push(to);
        }
    }
    if ctx.json {
        print_json(
            "build",
            &json!({"ok": result.ok, "artifacts": artifacts, "result": result}),
        );
    } else {
        for f in &artifacts {
            println!("{}", f.display());
        }
        if !result.ok {
            eprintln!("{}", result.failure_summary());
        }
        eprintln!("report: {}", a.out.join("report.html").display());
    }
    Ok(if result.ok { 0 } else { 1 })
}
