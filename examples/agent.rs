//! Three builder agents over one directory queue, on the local provider: first sharing the
//! work by shards (each asks only for its slice), then by claims (each takes any free job,
//! its lease being the claim). Each build runs a command on a machine the agent keeps.
//!
//! ```text
//! cargo run --features agent --example agent -- [--out DIR] [--jobs N]
//! ```
//!
//! Exits 1 if a job was built twice, lost, or a machine was left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hgauto::agent::{Agent, CommandBuild, Iteration, Sharing};
use hgauto::{DirJobSource, Job, LocalProvider, MachineSpec, ResourceProvider};

const AGENTS: u32 = 3;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Runs agent `index` until its queue (or its shard of it) is empty.
async fn run_agent(
    root: &Path,
    queue: &Path,
    provider: Arc<dyn ResourceProvider>,
    index: u32,
    sharing: Sharing,
) -> hgauto::Result<Vec<String>> {
    let base = root.join(format!("agent{index}"));
    let config = base.join("config");
    std::fs::create_dir_all(&config)
        .map_err(|e| hgauto::Error::io("create", &config, "localhost", e))?;
    for (file, value) in [
        ("workers-pool-size", AGENTS.to_string()),
        ("worker-index", index.to_string()),
        ("min-loop-seconds", "0".into()),
    ] {
        let path = config.join(file);
        std::fs::write(&path, value)
            .map_err(|e| hgauto::Error::io("write", &path, "localhost", e))?;
    }
    let build = CommandBuild::new(
        provider,
        MachineSpec::linux().with_label("role", "agent"),
        "sh",
        [
            "-c",
            "echo \"$0: building $HGAUTO_JOB_ID at $HGAUTO_JOB_REVISION\"",
            "{check}",
        ],
    )?;
    let agent = Agent::builder(Arc::new(DirJobSource::new(queue)?), base.join("state"))
        .name(format!("agent{index}"))
        .sharing(sharing)
        .build(build.clone())
        .build_agent()?;
    let mut built = Vec::new();
    while let Iteration::Built { job, reported, .. } = agent.run_once().await? {
        if !reported {
            return Err(hgauto::Error::invalid(
                format!("job {job}"),
                "was not reported",
            ));
        }
        built.push(job);
    }
    build.shutdown().await?;
    Ok(built)
}

async fn phase(
    root: &Path,
    provider: Arc<dyn ResourceProvider>,
    sharing: Sharing,
    jobs: usize,
) -> hgauto::Result<bool> {
    let name = match sharing {
        Sharing::Shards => "shards",
        Sharing::Claims => "claims",
    };
    let dir = root.join(name);
    let queue = dir.join("queue");
    let q = DirJobSource::new(&queue)?;
    for i in 0..jobs {
        q.enqueue(
            Job::new(format!("{name}-{i:03}"), "build/linux")
                .with_revision(format!("{:040x}", i * 7919)),
        )?;
    }
    let runs: Vec<_> = (0..AGENTS)
        .map(|i| {
            let (dir, queue, provider) = (dir.clone(), queue.clone(), provider.clone());
            tokio::spawn(async move { run_agent(&dir, &queue, provider, i, sharing).await })
        })
        .collect();
    let mut owner: BTreeMap<String, u32> = BTreeMap::new();
    let mut ok = true;
    for (i, r) in runs.into_iter().enumerate() {
        let built = r
            .await
            .map_err(|e| hgauto::Error::invalid("agent task", e.to_string()))??;
        println!(
            "{name}: agent{i} built {} jobs; status in {}",
            built.len(),
            dir.join(format!("agent{i}/state/status.json")).display()
        );
        for job in built {
            if let Some(other) = owner.insert(job.clone(), i as u32) {
                println!("{name}: {job} was built by agent{other} and agent{i}");
                ok = false;
            }
        }
    }
    let reported = q.outcomes()?.len();
    println!(
        "{name}: {} of {jobs} jobs built once each, {reported} reported",
        owner.len()
    );
    Ok(ok && owner.len() == jobs && reported == jobs)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let jobs: usize = arg("--jobs").and_then(|j| j.parse().ok()).unwrap_or(30);
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let root = arg("--out").map_or_else(|| scratch.path().to_owned(), PathBuf::from);
    let state = root.join("provider-state");
    let provider: Arc<dyn ResourceProvider> =
        Arc::new(LocalProvider::new(&state).expect("the local provider"));
    let mut ok = true;
    for sharing in [Sharing::Shards, Sharing::Claims] {
        match phase(&root, provider.clone(), sharing, jobs).await {
            Ok(good) => ok &= good,
            Err(e) => {
                eprintln!("error: {e}");
                ok = false;
            }
        }
    }
    let left = provider
        .list_managed()
        .await
        .map(|l| l.len())
        .unwrap_or(usize::MAX);
    println!("machines left behind: {left}");
    if !ok || left != 0 {
        std::process::exit(1);
    }
    println!("agents: ok");
}
