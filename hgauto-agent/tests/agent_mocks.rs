//! The agent loop's exact calls to its source, where the sequence is the point (mockall
//! mocks of `JobSource`, feature `mocks`): silent mode neither marks started nor reports,
//! a stop past the bound releases, and the lease is renewed before it runs out.

use std::sync::Arc;
use std::time::Duration;

use hgauto_agent::{Agent, AgentContext, Iteration};
use hgauto_core::job_source::MockJobSource;
use hgauto_core::{Job, JobOutcome, Lease};
use mockall::predicate::always;
use mockall::Sequence;

fn leased(id: &str, deadline_ms: u64) -> Job {
    let mut j = Job::new(id, "build");
    j.lease = Some(Lease {
        token: "t1".into(),
        deadline_ms,
    });
    j
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `next` hands out `job` once, in `seq`; then, if `started`, `started` is called once.
fn hands_out(source: &mut MockJobSource, seq: &mut Sequence, job: Job, started: bool) {
    source
        .expect_next()
        .times(1)
        .in_sequence(seq)
        .returning(move |_| Ok(Some(job.clone())));
    if started {
        source
            .expect_started()
            .times(1)
            .in_sequence(seq)
            .returning(|_| Ok(()));
    }
}

fn base(source: &mut MockJobSource) {
    source.expect_name().return_const("mock".to_owned());
    source
        .expect_stats()
        .return_const(hgauto_core::job_source::SourceStats::default());
}

#[tokio::test]
async fn silent_mode_takes_builds_and_releases_without_started_or_report() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/silent"), "1").unwrap();
    let mut source = MockJobSource::new();
    base(&mut source);
    let mut seq = Sequence::new();
    let job = leased("j", now_ms() + 60_000);
    hands_out(&mut source, &mut seq, job, false);
    source
        .expect_release()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(()));
    source.expect_started().never();
    source.expect_report().never();
    let agent = Agent::builder(Arc::new(source), dir.path().join("state"))
        .build(|job: Job, _ctx: AgentContext| async move {
            Ok(JobOutcome::Succeeded { summary: job.id })
        })
        .build_agent()
        .unwrap();
    let it = agent.run_once().await.unwrap();
    assert!(
        matches!(
            it,
            Iteration::Built {
                reported: false,
                ..
            }
        ),
        "{it:?}"
    );
}

#[tokio::test]
async fn a_stop_past_the_bound_releases_and_never_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mut source = MockJobSource::new();
    base(&mut source);
    let mut seq = Sequence::new();
    let job = leased("j", now_ms() + 60_000);
    hands_out(&mut source, &mut seq, job, true);
    source
        .expect_release()
        .with(always())
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(()));
    source.expect_report().never();
    source.expect_heartbeat().never();
    let agent = Agent::builder(Arc::new(source), dir.path().join("state"))
        .stop_bound(Duration::from_millis(100))
        .build(|_job: Job, _ctx: AgentContext| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(JobOutcome::Succeeded {
                summary: "never".into(),
            })
        })
        .build_agent()
        .unwrap();
    let stop = agent.stop_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.stop();
    });
    let it = agent.run_once().await.unwrap();
    assert!(
        matches!(
            it,
            Iteration::Built {
                reported: false,
                ..
            }
        ),
        "{it:?}"
    );
    assert_eq!(agent.run_once().await.unwrap(), Iteration::Stopped);
}

#[tokio::test]
async fn the_lease_is_renewed_before_it_runs_out_then_the_job_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut source = MockJobSource::new();
    base(&mut source);
    let mut seq = Sequence::new();
    // A 600 ms lease and a 1 s build: renewals come before each deadline.
    let job = leased("j", now_ms() + 600);
    hands_out(&mut source, &mut seq, job, true);
    let renewed = Arc::new(std::sync::Mutex::new(Vec::<(u64, u64)>::new()));
    let log = renewed.clone();
    source.expect_heartbeat().times(2..).returning(move |j| {
        let now = now_ms();
        let old = j.lease.as_ref().unwrap().deadline_ms;
        log.lock().unwrap().push((now, old));
        Ok(Lease {
            token: "t1".into(),
            deadline_ms: now + 600,
        })
    });
    let reported_at = Arc::new(std::sync::Mutex::new(0u64));
    let at = reported_at.clone();
    source
        .expect_report()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, _| {
            *at.lock().unwrap() = now_ms();
            Ok(())
        });
    let agent = Agent::builder(Arc::new(source), dir.path().join("state"))
        .build(|_job: Job, _ctx: AgentContext| async move {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            Ok(JobOutcome::Succeeded {
                summary: "ok".into(),
            })
        })
        .build_agent()
        .unwrap();
    let it = agent.run_once().await.unwrap();
    assert!(
        matches!(it, Iteration::Built { reported: true, .. }),
        "{it:?}"
    );
    // Every renewal came before the deadline it renewed, and before the report.
    let renewals = renewed.lock().unwrap().clone();
    for (at, deadline) in &renewals {
        assert!(
            at < deadline,
            "a renewal came after its deadline: {renewals:?}"
        );
        assert!(*at <= *reported_at.lock().unwrap());
    }
}

/// A command build provisions one machine, moves its deadline on before each job, and
/// terminates it when the agent is done with it: exactly these provider calls.
#[tokio::test]
async fn a_command_build_keeps_one_machine_and_moves_its_deadline_before_each_job() {
    use hgauto_agent::CommandBuild;
    use hgauto_core::provider::MockResourceProvider;
    use hgauto_core::{ListJobSource, LocalMachine, MachineSpec, RemoteMachine};

    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("machine");
    std::fs::create_dir_all(home.join("tmp")).unwrap();
    let machine: Arc<dyn RemoteMachine> = Arc::new(LocalMachine::open("m-1", &home).unwrap());
    let mut provider = MockResourceProvider::new();
    provider.expect_name().return_const("mock".to_owned());
    let mut seq = Sequence::new();
    provider
        .expect_provision()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, n| {
            assert_eq!(n, 1);
            Ok(vec![machine.clone()])
        });
    let before = now_ms() / 1000;
    for _ in 0..2 {
        provider
            .expect_extend_deadline()
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |ids, until| {
                assert_eq!(ids, ["m-1".to_owned()]);
                assert!(
                    until >= before + 2 * 3600,
                    "the spec's lifetime from now: {until}"
                );
                Ok(())
            });
    }
    provider
        .expect_terminate()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|ids| {
            assert_eq!(ids, ["m-1".to_owned()]);
            Ok(())
        });
    let build = CommandBuild::new(
        Arc::new(provider),
        MachineSpec::linux(),
        "sh",
        [
            "-c",
            "test \"$HGAUTO_JOB_CHECK\" = build && echo \"$0 $HGAUTO_JOB_ID\"",
            "{id}",
        ],
    )
    .unwrap();
    let source = Arc::new(ListJobSource::new([
        Job::new("a", "build"),
        Job::new("b", "build"),
    ]));
    let agent = Agent::builder(source.clone(), dir.path().join("state"))
        .build(build.clone())
        .build_agent()
        .unwrap();
    for _ in 0..2 {
        let it = agent.run_once().await.unwrap();
        assert!(
            matches!(
                &it,
                Iteration::Built {
                    reported: true,
                    outcome: JobOutcome::Succeeded { .. },
                    ..
                }
            ),
            "{it:?}"
        );
    }
    assert_eq!(build.machine_ids().await, ["m-1"]);
    build.shutdown().await.unwrap();
    assert!(build.machine_ids().await.is_empty());
}
