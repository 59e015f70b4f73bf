//! The builder agent over real job sources (directory queue, in-memory list): claims and
//! shards, silent mode, timeouts, heartbeats, lost leases, stopping, config files and the
//! status it shows.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hgauto_agent::{Agent, AgentContext, Iteration, Sharing};
use hgauto_core::clock::ManualClock;
use hgauto_core::{DirJobSource, Job, JobFilter, JobOutcome, JobSource, ListJobSource, Result};

fn ok(job: &Job) -> JobOutcome {
    JobOutcome::Succeeded {
        summary: format!("built {}", job.id),
    }
}

async fn quick(job: Job, _ctx: AgentContext) -> Result<JobOutcome> {
    Ok(ok(&job))
}

fn write(dir: &Path, file: &str, value: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(file), value).unwrap();
}

/// Runs iterations until one finds nothing to do; returns the jobs built.
async fn drain(agent: &Agent) -> Vec<String> {
    let mut built = Vec::new();
    loop {
        match agent.run_once().await.unwrap() {
            Iteration::Built { job, .. } => built.push(job),
            Iteration::Idle | Iteration::Stopped => return built,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_with_claims_report_every_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let q = DirJobSource::new(dir.path().join("q")).unwrap();
    for i in 0..60 {
        q.enqueue(Job::new(format!("j{i}"), "build").with_revision(format!("r{i}")))
            .unwrap();
    }
    let tasks: Vec<_> = (0..3)
        .map(|n| {
            let root = dir.path().to_owned();
            tokio::spawn(async move {
                let source = Arc::new(DirJobSource::new(root.join("q")).unwrap());
                let agent = Agent::builder(source, root.join(format!("agent{n}/state")))
                    .name(format!("agent{n}"))
                    .build(|job: Job, _ctx: AgentContext| async move {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        Ok(ok(&job))
                    })
                    .build_agent()
                    .unwrap();
                drain(&agent).await
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (60, 60), "each job built once");
    let outcomes = q.outcomes().unwrap();
    assert_eq!(outcomes.len(), 60);
    assert!(outcomes.values().all(|o| o.status() == "succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_come_from_the_config_files_and_partition_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let q = DirJobSource::new(dir.path().join("q")).unwrap();
    for i in 0..40 {
        q.enqueue(Job::new(format!("j{i}"), "build").with_revision(format!("r{i}")))
            .unwrap();
    }
    let mut owners: HashMap<String, usize> = HashMap::new();
    for index in 0..2 {
        let base = dir.path().join(format!("agent{index}"));
        write(&base.join("config"), "workers-pool-size", "2");
        write(&base.join("config"), "worker-index", &index.to_string());
        let source = Arc::new(DirJobSource::new(dir.path().join("q")).unwrap());
        let agent = Agent::builder(source, base.join("state"))
            .sharing(Sharing::Shards)
            .build(quick)
            .build_agent()
            .unwrap();
        let shard = JobFilter::shard(index, 2);
        for id in drain(&agent).await {
            let rev = id.trim_start_matches('j');
            let job = Job::new(id.clone(), "build").with_revision(format!("r{rev}"));
            assert!(shard.matches(&job), "{id} is not agent {index}'s");
            *owners.entry(id).or_default() += 1;
        }
    }
    assert_eq!(owners.len(), 40);
    assert!(owners.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_agents_build_but_tell_the_source_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = Arc::new(ListJobSource::new([
        Job::new("j1", "build").with_revision("r1")
    ]));
    write(&dir.path().join("config"), "silent", "1");
    let agent = Agent::builder(source.clone(), dir.path().join("state"))
        .build(quick)
        .build_agent()
        .unwrap();
    let it = agent.run_once().await.unwrap();
    assert!(
        matches!(
            &it,
            Iteration::Built {
                reported: false,
                ..
            }
        ),
        "{it:?}"
    );
    assert!(source.outcomes().is_empty(), "nothing reported");
    assert!(source.started_builds().is_empty(), "nothing started");
    // The job was given back: a non-silent agent takes it.
    std::fs::remove_file(dir.path().join("config/silent")).unwrap();
    let it = agent.run_once().await.unwrap();
    assert!(
        matches!(&it, Iteration::Built { reported: true, .. }),
        "{it:?}"
    );
    assert_eq!(source.outcomes().len(), 1);
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/status.json")).unwrap())
            .unwrap();
    assert_eq!(status["last"][0]["reported"], true);
    assert_eq!(status["last"][1]["reported"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_long_build_leased_and_timeouts_fail_it() {
    let dir = tempfile::tempdir().unwrap();
    let q = DirJobSource::new(dir.path().join("q"))
        .unwrap()
        .with_lease_ttl(Duration::from_millis(300));
    q.enqueue(Job::new("long", "build")).unwrap();
    q.enqueue(Job::new("stuck", "hang")).unwrap();
    let agent = Agent::builder(Arc::new(q.clone()), dir.path().join("state"))
        .build(|job: Job, _ctx: AgentContext| async move {
            let secs = if job.check == "hang" { 60 } else { 1 };
            tokio::time::sleep(Duration::from_secs(secs)).await;
            Ok(ok(&job))
        })
        .build_agent()
        .unwrap();
    let other = q.clone();
    let thief = tokio::spawn(async move {
        // While the 1 s build runs with a 300 ms lease, nobody else gets its job.
        tokio::time::sleep(Duration::from_millis(700)).await;
        other
            .next(&JobFilter {
                checks: vec!["build".into()],
                shard: None,
            })
            .await
            .unwrap()
    });
    let it = agent.run_once().await.unwrap();
    assert!(
        matches!(&it, Iteration::Built { reported: true, job, .. } if job == "long"),
        "{it:?}"
    );
    assert!(
        thief.await.unwrap().is_none(),
        "a renewed lease was handed out"
    );
    assert!(
        agent.status().lease_renewals >= 2,
        "{:?}",
        agent.status().lease_renewals
    );

    write(&dir.path().join("config"), "timeout", "0.3");
    let it = agent.run_once().await.unwrap();
    match it {
        Iteration::Built {
            outcome: JobOutcome::Failed { summary, retryable },
            reported: true,
            ..
        } => {
            assert!(summary.contains("timed out after 0.3 s"), "{summary}");
            assert!(retryable);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_abandons_the_build_without_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let source = Arc::new(
        ListJobSource::new([Job::new("j", "build")])
            .with_clock(Arc::new(clock.clone()))
            .with_lease_ttl(Duration::from_millis(600)),
    );
    let cancelled = Arc::new(Mutex::new(false));
    let seen = cancelled.clone();
    let agent = Agent::builder(source.clone(), dir.path().join("state"))
        .clock(Arc::new(clock.clone()))
        .build(move |_job: Job, ctx: AgentContext| {
            let seen = seen.clone();
            async move {
                ctx.cancelled().await;
                *seen.lock().unwrap() = true;
                Ok(JobOutcome::Succeeded {
                    summary: "late".into(),
                })
            }
        })
        .build_agent()
        .unwrap();
    // The lease runs out on the source's clock before the first renewal (200 ms in).
    let ticker = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        clock.advance(Duration::from_secs(5));
    });
    let it = agent.run_once().await.unwrap();
    ticker.await.unwrap();
    match it {
        Iteration::Built {
            outcome: JobOutcome::Skipped { reason },
            reported: false,
            ..
        } => {
            assert!(reason.contains("lease"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(source.outcomes().is_empty());
    assert_eq!(agent.status().leases_lost, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_gives_the_job_back_when_the_build_outlives_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let source = Arc::new(ListJobSource::new([
        Job::new("a", "slow"),
        Job::new("b", "polite"),
    ]));
    let agent = Arc::new(
        Agent::builder(source.clone(), dir.path().join("state"))
            .stop_bound(Duration::from_millis(300))
            .build(|job: Job, ctx: AgentContext| async move {
                if job.check == "slow" {
                    // Ignores the stop request.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                } else {
                    ctx.cancelled().await;
                }
                Ok(ok(&job))
            })
            .build_agent()
            .unwrap(),
    );
    let stop = agent.stop_handle();
    let a = agent.clone();
    let run = tokio::spawn(async move { a.run().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.stop();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("stopped within the bound")
        .unwrap()
        .unwrap();
    let status = agent.status();
    assert_eq!(status.state, "stopped");
    assert_eq!(status.last.len(), 1);
    assert!(!status.last[0].reported);
    // The abandoned job is available at once to another agent.
    let again = source.next(&JobFilter::any()).await.unwrap();
    assert!(again.is_some());
    assert!(source.outcomes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_files_are_named_and_the_previous_values_stay() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    write(&config, "workers-pool-size", "3");
    write(&config, "worker-index", "2");
    let source = Arc::new(ListJobSource::new([]));
    let agent = Agent::builder(source, dir.path().join("state"))
        .sharing(Sharing::Shards)
        .build(quick)
        .build_agent()
        .unwrap();
    assert_eq!(agent.run_once().await.unwrap(), Iteration::Idle);
    write(&config, "worker-index", "7");
    write(&config, "timeout", "soon");
    assert_eq!(agent.run_once().await.unwrap(), Iteration::Idle);
    let status = agent.status();
    assert_eq!((status.config.pool_size, status.config.index), (3, 2));
    // The bad file keeps the previous value: the default build timeout.
    assert_eq!(
        status.config.timeout,
        Some(hgauto_agent::DEFAULT_BUILD_TIMEOUT)
    );
    let problems = status.config_problems.join("\n");
    assert!(problems.contains("config/worker-index"), "{problems}");
    assert!(problems.contains("config/timeout"), "{problems}");
    let state = dir.path().join("state");
    assert!(state.join("ready").exists());
    let prom = std::fs::read_to_string(state.join("metrics.prom")).unwrap();
    assert!(prom.contains("hgauto_agent_ready{"), "{prom}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("status.json")).unwrap()).unwrap();
    assert_eq!(json["config"]["pool_size"], 3);
    assert_eq!(json["state"], "idle");
}

/// The pool grows from 2 to 4 agents by config files while they run, silent during the
/// change: once every agent has re-read its config, each builds only its new shard, and
/// every job is reported exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_grows_from_two_to_four_by_config_files_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let q = DirJobSource::new(dir.path().join("q")).unwrap();
    for i in 0..160 {
        q.enqueue(Job::new(format!("j{i:03}"), "build").with_revision(format!("r{i}")))
            .unwrap();
    }
    let built: Arc<Mutex<Vec<(u32, Job, bool)>>> = Arc::default();
    let changed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let config = |i: u32| dir.path().join(format!("agent{i}/config"));
    let start = |i: u32| {
        let (root, built, changed) = (dir.path().to_owned(), built.clone(), changed.clone());
        let source = Arc::new(DirJobSource::new(root.join("q")).unwrap());
        let agent = Arc::new(
            Agent::builder(source, root.join(format!("agent{i}/state")))
                .name(format!("agent{i}"))
                .sharing(Sharing::Shards)
                .build(move |job: Job, _ctx: AgentContext| {
                    let (built, changed) = (built.clone(), changed.clone());
                    async move {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        let after = changed.load(std::sync::atomic::Ordering::SeqCst);
                        built.lock().unwrap().push((i, job.clone(), after));
                        Ok(ok(&job))
                    }
                })
                .build_agent()
                .unwrap(),
        );
        let a = agent.clone();
        (agent, tokio::spawn(async move { a.run().await }))
    };
    for i in 0..2 {
        write(&config(i), "workers-pool-size", "2");
        write(&config(i), "worker-index", &i.to_string());
        write(&config(i), "min-loop-seconds", "0.02");
    }
    let mut agents = vec![start(0), start(1)];
    let wait_for = |what: &str, f: &dyn Fn() -> bool| {
        let t = std::time::Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for("40 jobs", &|| q.outcomes().unwrap().len() >= 40);

    // The change: silent first, then the new pool for the old agents, then two new ones.
    for i in 0..2 {
        write(&config(i), "silent", "1");
    }
    for i in 0..2 {
        write(&config(i), "workers-pool-size", "4");
    }
    for i in 2..4 {
        write(&config(i), "silent", "1");
        write(&config(i), "workers-pool-size", "4");
        write(&config(i), "worker-index", &i.to_string());
        write(&config(i), "min-loop-seconds", "0.02");
    }
    agents.push(start(2));
    agents.push(start(3));
    // Every agent re-reads its config at least twice after the change.
    let marks: Vec<u64> = agents.iter().map(|(a, _)| a.status().iterations).collect();
    wait_for("every agent to re-read its config", &|| {
        agents
            .iter()
            .zip(&marks)
            .all(|((a, _), m)| a.status().iterations >= m + 2 && a.status().config.pool_size == 4)
    });
    changed.store(true, std::sync::atomic::Ordering::SeqCst);
    for i in 0..4 {
        std::fs::remove_file(config(i).join("silent")).unwrap();
    }
    wait_for("all 160 jobs reported", &|| {
        q.outcomes().unwrap().len() == 160
    });
    for (a, _) in &agents {
        a.stop_handle().stop();
    }
    for (_, t) in agents {
        t.await.unwrap().unwrap();
    }
    let built = built.lock().unwrap().clone();
    for (i, job, after) in &built {
        if *after {
            assert!(
                JobFilter::shard(*i, 4).matches(job),
                "agent{i} built {} outside its new shard",
                job.id
            );
        }
    }
    let outcomes = q.outcomes().unwrap();
    assert_eq!(outcomes.len(), 160);
    assert!(outcomes.values().all(|o| o.status() == "succeeded"));
    assert!(
        built.iter().any(|(i, _, after)| *after && *i >= 2),
        "the new agents worked"
    );
}

/// With nothing untested, the agent re-checks a failed build seven times in ten and a
/// passed one otherwise, through the source; the same seed picks the same sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rechecks_favour_failed_builds_seven_to_three_and_replay_by_seed() {
    async fn picks(seed: u64) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let q = Arc::new(DirJobSource::new(dir.path().join("q")).unwrap());
        q.enqueue(Job::new("bad", "build").with_revision("r-bad"))
            .unwrap();
        q.enqueue(Job::new("good", "build").with_revision("r-good"))
            .unwrap();
        write(&dir.path().join("config"), "min-loop-seconds", "0");
        let agent = Agent::builder(q.clone(), dir.path().join("state"))
            .rechecks(seed)
            .build(|job: Job, _ctx: AgentContext| async move {
                Ok(if job.revision.as_deref() == Some("r-bad") {
                    JobOutcome::Failed {
                        summary: "red".into(),
                        retryable: true,
                    }
                } else {
                    ok(&job)
                })
            })
            .build_agent()
            .unwrap();
        let mut revisions = Vec::new();
        for _ in 0..202 {
            match agent.run_once().await.unwrap() {
                Iteration::Built { job, reported, .. } => {
                    assert!(reported);
                    revisions.push(job);
                }
                other => panic!("{other:?}"),
            }
        }
        // The first two are the untested jobs; the rest re-checks, each a new queued job.
        assert_eq!(
            revisions[..2]
                .iter()
                .filter(|j| !j.contains("~recheck"))
                .count(),
            2
        );
        assert!(revisions[2..].iter().all(|j| j.contains("~recheck-")));
        assert_eq!(q.outcomes().unwrap().len(), 202);
        revisions[2..].to_vec()
    }
    let first = picks(7).await;
    let failed = first.iter().filter(|j| j.starts_with("bad~")).count();
    assert!(
        (120..=160).contains(&failed),
        "{failed} of 200 re-checks were of the failed build"
    );
    assert_eq!(picks(7).await, first, "the same seed, the same picks");
    assert_ne!(picks(8).await, first);
}
