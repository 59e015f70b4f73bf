//! Bad pipeline input is refused before anything is provisioned, a `should_run` check
//! cannot hang a run, and a worker keeps its deadline ahead of its task: on the local
//! provider, with real processes.

use std::sync::Arc;
use std::time::Duration;

use hgauto_core::{LocalProvider, MachineSpec, ResourceProvider};
use hgauto_pipeline::{
    Mode, Pipeline, PipelineFile, Runner, ShouldRun, Step, StepCommand, TaskState, WorkerKind,
};

fn alive(pid: i32) -> bool {
    // Signal 0 probes; a zombie has no /proc/<pid>/cmdline content.
    let signalled = unsafe { libc::kill(pid, 0) } == 0;
    signalled && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_should_run_check_past_its_timeout_fails_the_task_and_its_group_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = format!(
        "sleep 600 & echo $! > '{p}.tmp'; mv '{p}.tmp' '{p}'; wait",
        p = pids.display()
    );
    let p = Pipeline::builder("hang")
        .worker("w", WorkerKind::new(MachineSpec::linux()))
        .step(
            Step::command("build", "w", StepCommand::argv(["true"]))
                .should_run(ShouldRun::Command(vec!["sh".into(), "-c".into(), script])),
        )
        .build()
        .unwrap();
    let r = Runner::new(p, dir.path().join("out"))
        .mode(Mode::Local)
        .state_dir(dir.path().join("state"))
        .check_timeout(Duration::from_secs(1))
        .run()
        .await
        .unwrap();
    let t = r.task("build").unwrap();
    assert_eq!(t.state, TaskState::Failed);
    let error = t.error.as_deref().unwrap_or("");
    assert!(error.contains("did not end within 1s"), "{error}");
    let pid: i32 = std::fs::read_to_string(&pids)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL is sent before the run returns; the kernel may take a moment to finish it.
    let gone = (0..3000).any(|_| {
        let a = alive(pid);
        if a {
            std::thread::sleep(Duration::from_millis(10));
        }
        !a
    });
    assert!(gone, "the check's background child {pid} outlived it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_name_no_shell_can_set_is_refused_before_provisioning() {
    let dir = tempfile::tempdir().unwrap();
    let provider = Arc::new(LocalProvider::new(dir.path().join("state")).unwrap());
    let mut cmd = StepCommand::argv(["true"]);
    cmd.env.insert("MY-VAR".into(), "1".into());
    let p = Pipeline::builder("env")
        .worker("w", WorkerKind::new(MachineSpec::linux()))
        .step(Step::command("build", "w", cmd))
        .build()
        .unwrap();
    let e = Runner::new(p, dir.path().join("out"))
        .provider(provider.clone())
        .run()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"MY-VAR\"") && e.contains("task build"), "{e}");
    assert!(provider.list_managed().await.unwrap().is_empty());
    assert!(!dir.path().join("out/result.json").exists());
}

#[test]
fn a_misspelled_key_of_a_custom_step_kind_is_refused_by_name() {
    let toml = r#"name = "p"
[[steps]]
name = "a"
worker = "w"
run = ["true"]
kind = { max_retires = 2, base_delay_secs = 1 }
"#;
    let e = PipelineFile::from_toml(toml).unwrap_err().to_string();
    assert!(e.contains("unknown field `max_retires`"), "{e}");
    assert!(e.contains("line 6"), "{e}");
    let ok = toml.replace("max_retires", "max_retries");
    PipelineFile::from_toml(&ok).unwrap();
    let named = toml.replace("{ max_retires = 2, base_delay_secs = 1 }", "\"heavy\"");
    PipelineFile::from_toml(&named).unwrap();
    let e = PipelineFile::from_toml(&toml.replace("{ max_retires = 2, base_delay_secs = 1 }", "7"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("a step kind is"), "{e}");
}

/// A worker moves its deadline past the end of the task it starts, so that a sweep never
/// takes it mid-task: here a 60 s lifetime and a one-hour step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_moves_its_deadline_past_the_task_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let provider = Arc::new(LocalProvider::new(&state).unwrap());
    let ledger = hgauto_core::Ledger::open(&state, provider.name()).unwrap();
    let script = format!(
        "cat '{}'/ledger/local/* | tr -d ' \\n' | grep -o '\"deadline\":[0-9]*' | tr -d '\"' | tr : = >> \"$HGAUTO_OUTPUT\"",
        state.display()
    );
    let p = Pipeline::builder("long")
        .worker(
            "w",
            WorkerKind::new(MachineSpec::linux().with_lifetime(Duration::from_secs(60))),
        )
        .step(
            Step::command("build", "w", StepCommand::script(script))
                .timeout(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    let before = hgauto_core::clock::unix_now();
    let r = Runner::new(p, dir.path().join("out"))
        .provider(provider.clone())
        .run()
        .await
        .unwrap();
    assert!(r.ok, "{}", r.failure_summary());
    let deadline: u64 = r.task("build").unwrap().outputs["deadline"]
        .parse()
        .unwrap();
    assert!(deadline >= before + 3600 + 600, "{deadline} vs {before}");
    assert!(
        ledger.records().unwrap().is_empty(),
        "the worker was terminated"
    );
}
