//! One worker: a machine of one worker kind that takes that kind's tasks until it is idle
//! too long, the run ends, or an attempt fails (then it stops, so a retry gets a fresh
//! machine). Its name shows its state, HHVM style: `ww-N-<task>` waiting after N tasks,
//! `wa-N-<task>` active on its N-th.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hgauto_core::cleanup::TemporaryMachines;
use hgauto_core::command::{Command, Platform, Stream};
use hgauto_core::error::Result;
use hgauto_core::machine::{RemoteMachine, SyncOptions};
use hgauto_core::ExitStatus;

use super::results::WorkerRecord;
use super::shared::{Event, Shared};
use super::step::{Outputs, StepFailure};

/// A worker's log file: every line of every task it ran, each prefixed by the task's name,
/// so one task's part is found by searching for its name.
pub(crate) struct WorkerLog {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl WorkerLog {
    pub(super) fn open(path: PathBuf) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(
                |e| tracing::warn!(log = %path.display(), error = %e, "cannot open worker log"),
            )
            .ok();
        WorkerLog {
            path,
            file: Mutex::new(file),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn line(&self, task: &str, text: &str) {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = f.as_mut() {
            let _ = writeln!(f, "[{task}] {text}");
        }
    }
}

/// Runs one worker of `kind` to its end, reporting to the scheduler.
pub(crate) async fn run_worker(shared: Arc<Shared>, kind: String, from_health_check: bool) {
    let gone = |record: Option<WorkerRecord>, provision_error: Option<String>| Event::WorkerGone {
        kind: kind.clone(),
        record,
        provision_error,
    };
    let (provider, spec) = shared.worker_spec(&kind);
    let guard = match TemporaryMachines::provision(provider.clone(), &spec, 1).await {
        Ok(g) => g,
        Err(e) => {
            shared.send(gone(None, Some(e.to_string())));
            return;
        }
    };
    let machine = guard.machines()[0].clone();
    if let Err(e) = machine.wait_ready(shared.cfg.ready_timeout).await {
        let _ = guard.terminate().await;
        shared.send(gone(None, Some(e.to_string())));
        return;
    }
    shared.send(Event::WorkerUp { kind: kind.clone() });
    let log = WorkerLog::open(
        shared
            .cfg
            .out_dir
            .join("logs")
            .join(format!("{}.log", machine.id())),
    );
    let label = |text: String| {
        let provider = provider.clone();
        let id = machine.id().to_owned();
        async move {
            // Not worth a retry (HHVM did not retry its renames either).
            if let Err(e) = provider.set_label(&id, &text).await {
                tracing::debug!(machine = %id, label = %text, error = %e, "cannot label worker");
            }
            text
        }
    };
    let mut last = label(format!("ww-0-{kind}")).await;
    let mut received = 0u32;
    let ended = loop {
        let Some((task, attempt)) = shared.take(&kind).await else {
            break if shared.is_done() { "finished" } else { "idle" };
        };
        received += 1;
        let name = shared.tasks[task].name.clone();
        last = label(format!("wa-{received}-{name}")).await;
        extend_deadline(&shared, provider.as_ref(), &spec, machine.id(), task).await;
        let started = Instant::now();
        let outcome = run_attempt(&shared, machine.as_ref(), task, attempt, &log).await;
        let failed = outcome.is_err();
        let lost = matches!(&outcome, Err(f) if f.retry && f.message.contains("was lost"));
        shared.send(Event::Attempt {
            task,
            attempt,
            machine: Some(machine.id().to_owned()),
            log: Some(log.path().to_owned()),
            elapsed: started.elapsed(),
            outcome,
        });
        if failed {
            break if lost { "lost" } else { "failed" };
        }
        last = label(format!("ww-{received}-{name}")).await;
    };
    if let Err(e) = guard.terminate().await {
        tracing::warn!(machine = %machine.id(), error = %e, "cannot terminate worker; a sweep or purge will");
    }
    shared.send(gone(
        Some(WorkerRecord {
            machine: machine.id().to_owned(),
            kind: kind.clone(),
            tasks: received,
            label: last,
            ended: ended.into(),
            log: log.path().to_owned(),
            from_health_check,
        }),
        None,
    ));
}

/// Moves the worker's deadline past the end of this task's attempt (and at least a whole
/// lifetime on), so that a sweep never takes a worker in use, however long the run. Best
/// effort: a provider without deadlines has nothing to move.
async fn extend_deadline(
    shared: &Shared,
    provider: &dyn hgauto_core::provider::ResourceProvider,
    spec: &hgauto_core::spec::MachineSpec,
    id: &str,
    task: usize,
) {
    let step = &shared.pipeline.steps[shared.tasks[task].step];
    let needed = spec.lifetime.max(step.timeout + Duration::from_secs(600));
    let until = match hgauto_core::spec::deadline_after(needed) {
        Ok(u) => u,
        Err(e) => return tracing::warn!(machine = %id, error = %e, "cannot compute a deadline"),
    };
    if let Err(e) = provider.extend_deadline(&[id.to_owned()], until).await {
        tracing::debug!(machine = %id, error = %e, "cannot move the worker's deadline on");
    }
}

/// One attempt of a command task on `machine`: sync, run, collect, read outputs.
async fn run_attempt(
    shared: &Shared,
    machine: &dyn RemoteMachine,
    task: usize,
    attempt: u32,
    log: &WorkerLog,
) -> Result<(Outputs, Vec<PathBuf>), StepFailure> {
    let t = &shared.tasks[task];
    let step = &shared.pipeline.steps[t.step];
    let prep = &shared.prepared[task];
    let pc = prep.command.as_ref().expect("command tasks only");
    log.line(
        &t.name,
        &format!("=== attempt {attempt} on {} ===", machine.id()),
    );
    for (local, remote) in &pc.sync {
        let sync = SyncOptions {
            delete: true,
            compress: false,
        };
        if let Err(e) = machine.sync_tree(local, remote, &sync).await {
            return Err(lost_or(machine, e.into()).await);
        }
    }
    let deps = shared.dependency_outputs(task);
    let cmd = pc.render(
        machine.platform(),
        &prep.values,
        t.cell.pairs(),
        &deps,
        step.timeout,
        attempt,
    );
    let hook = shared.cfg.on_line.clone();
    let mut sink = |stream: Stream, line: &[u8]| {
        let text = String::from_utf8_lossy(line);
        log.line(&t.name, &text);
        if let Some(h) = &hook {
            h(&t.name, stream, &text);
        }
    };
    let out = match machine.exec_streaming(&cmd, &mut sink).await {
        Ok(out) => out,
        Err(e) => return Err(lost_or(machine, e.into()).await),
    };
    if !out.status.success() {
        let what = match &pc.command.script {
            Some(_) => "the script".to_owned(),
            None => format!("`{}`", cmd.display()),
        };
        let failure = if pc
            .command
            .retry_exit_codes
            .iter()
            .any(|c| Some(*c) == out.status.code())
        {
            StepFailure::retryable(format!(
                "{what} failed with {}, which means try again",
                out.status
            ))
        } else {
            StepFailure::fatal(format!("{what} failed with {}", out.status))
        };
        // A command killed by a signal nobody sent may mean the machine is going down:
        // give it a moment before asking whether it is still there.
        if matches!(out.status, ExitStatus::Signal(_)) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let failure = lost_or(machine, failure).await;
        log.line(&t.name, &format!("=== failed: {failure} ==="));
        return Err(failure);
    }
    let artifacts = collect(shared, machine, task).await?;
    let outputs = read_outputs(shared, machine, task, attempt).await?;
    log.line(&t.name, "=== succeeded ===");
    Ok((outputs, artifacts))
}

/// `failure`, unless the machine itself is gone: then a retryable "was lost".
async fn lost_or(machine: &dyn RemoteMachine, failure: StepFailure) -> StepFailure {
    if alive(machine).await {
        failure
    } else {
        StepFailure::retryable(format!(
            "machine {} was lost during the step ({failure})",
            machine.id()
        ))
    }
}

async fn alive(machine: &dyn RemoteMachine) -> bool {
    let probe = match machine.platform() {
        Platform::Linux => Command::new("true"),
        Platform::Windows => Command::script("exit 0"),
    }
    .timeout(Duration::from_secs(10));
    matches!(machine.exec(&probe).await, Ok(o) if o.status.success())
}

/// Brings back the files the step's `collect` patterns match, into
/// `<out>/artifacts/<task>/`. A pattern that matches nothing fails the step.
async fn collect(
    shared: &Shared,
    machine: &dyn RemoteMachine,
    task: usize,
) -> Result<Vec<PathBuf>, StepFailure> {
    let t = &shared.tasks[task];
    let pc = shared.prepared[task]
        .command
        .as_ref()
        .expect("command task");
    let mut got = Vec::new();
    if pc.collect.is_empty() {
        return Ok(got);
    }
    let dir = shared.cfg.out_dir.join("artifacts").join(&t.name);
    std::fs::create_dir_all(&dir)
        .map_err(|e| StepFailure::retryable(format!("create {}: {e}", dir.display())))?;
    for pattern in &pc.collect {
        let files =
            hgauto_core::machine::matching_files(machine, pattern, pc.command.cwd.as_deref())
                .await
                .map_err(StepFailure::from)?;
        if files.is_empty() {
            return Err(StepFailure::fatal(format!(
                "collect: no file on {} matches {pattern:?}",
                machine.id()
            )));
        }
        for f in files {
            let local = dir.join(&f.name);
            machine
                .get(&pc.in_cwd(&f.path), &local)
                .await
                .map_err(StepFailure::from)?;
            got.push(local);
        }
    }
    Ok(got)
}

/// The `KEY=VALUE` lines the command wrote to `$HGAUTO_OUTPUT`, if it wrote any. Whether
/// it wrote the file is asked first; a file that is there but cannot be read is retried,
/// then fails the attempt (retryably): outputs are never taken as absent because a read
/// failed. The file is removed once read.
async fn read_outputs(
    shared: &Shared,
    machine: &dyn RemoteMachine,
    task: usize,
    attempt: u32,
) -> Result<Outputs, StepFailure> {
    let pc = shared.prepared[task]
        .command
        .as_ref()
        .expect("command task");
    let path = pc.in_cwd(&pc.output_file(attempt));
    let unreadable = |e: hgauto_core::Error| {
        StepFailure::retryable(format!(
            "the step's outputs {path} on {} could not be read: {e}",
            machine.id()
        ))
    };
    let retry = hgauto_core::retry::RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(250),
        factor: 2.0,
        max_delay: Duration::from_secs(2),
        ..Default::default()
    };
    let probe = retry
        .run_if(
            "look for the step's outputs",
            |_| true,
            |_| remote_file_exists(machine, &path),
        )
        .await
        .map_err(unreadable)?;
    if !probe {
        return Ok(Outputs::new());
    }
    let tmp = tempfile::NamedTempFile::new()
        .map_err(|e| StepFailure::retryable(format!("temporary file: {e}")))?;
    retry
        .run_if(
            "read the step's outputs",
            |_| true,
            |_| machine.get(&path, tmp.path()),
        )
        .await
        .map_err(unreadable)?;
    let text = std::fs::read_to_string(tmp.path())
        .map_err(|e| StepFailure::fatal(format!("outputs: {e}")))?;
    let _ = machine.exec(&remove_remote_file(machine, &path)).await;
    parse_outputs(&text).map_err(StepFailure::fatal)
}

/// Whether anything is at `path` on `machine` (the path reaches the shell as data): what
/// is there but is no readable file fails the read, rather than passing for "no outputs".
async fn remote_file_exists(machine: &dyn RemoteMachine, path: &str) -> hgauto_core::Result<bool> {
    let probe = match machine.platform() {
        Platform::Linux => {
            Command::new("sh").args(["-c", "[ -e \"$1\" ] || [ -L \"$1\" ] || exit 3", "sh", path])
        }
        Platform::Windows => Command::script(
            "if (Test-Path -LiteralPath $env:HGAUTO_PATH) { exit 0 } else { exit 3 }",
        )
        .env("HGAUTO_PATH", path),
    }
    .timeout(Duration::from_secs(60));
    let out = machine.exec(&probe).await?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(3) => Ok(false),
        _ => Err(hgauto_core::Error::invalid(
            format!("the check for {path} on {}", machine.id()),
            format!("ended with {}: {}", out.status, out.stderr_str().trim()),
        )),
    }
}

fn remove_remote_file(machine: &dyn RemoteMachine, path: &str) -> Command {
    match machine.platform() {
        Platform::Linux => Command::new("rm").args(["-f", "--", path]),
        Platform::Windows => Command::script(
            "Remove-Item -LiteralPath $env:HGAUTO_PATH -Force -ErrorAction SilentlyContinue",
        )
        .env("HGAUTO_PATH", path),
    }
    .timeout(Duration::from_secs(60))
}

/// `KEY=VALUE` lines; blank lines are ignored; anything else is an error naming the line.
pub(crate) fn parse_outputs(text: &str) -> std::result::Result<Outputs, String> {
    let mut out = Outputs::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_owned(), v.to_owned());
            }
            _ => return Err(format!("output line {} is not KEY=VALUE: {line:?}", n + 1)),
        }
    }
    Ok(out)
}
