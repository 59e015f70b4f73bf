//! `pipeline run|export|status`, `agent run` and `self-update once|watch`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use hgauto_agent::selfupdate::{SelfUpdateFile, UpdateOutcome};
use hgauto_agent::{Agent, CommandBuild, Iteration};
use hgauto_core::{DirJobSource, MachineSpec, Result};
use hgauto_pipeline::{asl, Mode, PipelineFile, RunResult, Runner, Selection};

use super::args::{AgentCmd, PipelineCmd, SelfUpdateCmd};
use super::config::Context;
use super::output::{print_json, run_pipeline};

fn show_result(ctx: &Context, command: &str, result: &RunResult, out: Option<&Path>) -> i32 {
    if ctx.json {
        print_json(command, &json!({"result": result}));
    } else {
        for t in result.tasks() {
            let state = t.state.as_str();
            let why = t
                .error
                .as_deref()
                .or(t.reason.as_deref())
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            println!("{:<28} {state:<10} attempts {}{why}", t.task, t.attempts);
        }
        if !result.ok {
            eprintln!("{}", result.failure_summary());
        }
        if let Some(out) = out {
            eprintln!("report: {}", out.join("report.html").display());
        }
    }
    if result.ok {
        0
    } else {
        1
    }
}

/// `pipeline ...`.
pub(super) async fn pipeline(ctx: &Context, cmd: PipelineCmd) -> Result<i32> {
    match cmd {
        PipelineCmd::Run {
            file,
            out,
            inputs,
            steps,
            only,
            mode,
        } => {
            let pipeline = PipelineFile::read(&file)?.into_pipeline(&Default::default())?;
            let mut selection = Selection::all().steps(steps);
            for (dim, value) in only {
                selection.values.entry(dim).or_default().push(value);
            }
            let mode: Mode = mode.parse()?;
            let mut runner = Runner::new(pipeline, &out)
                .selection(selection)
                .mode(mode)
                .state_dir(&ctx.state_dir);
            for (k, v) in inputs {
                runner = runner.input(k, v);
            }
            // Checked before any machine: the selection and every placeholder.
            let tasks = runner.plan()?.len();
            if mode != Mode::Local {
                runner = runner.provider(ctx.provider().await?);
            }
            let result = run_pipeline(runner, tasks, ctx.json, ctx.quiet).await?;
            Ok(show_result(ctx, "pipeline run", &result, Some(&out)))
        }
        PipelineCmd::Export {
            file,
            arn_prefix,
            health_check_secs,
        } => {
            let pipeline = PipelineFile::read(&file)?.into_exportable_pipeline()?;
            let activities = asl::Activities::named(&pipeline, &arn_prefix);
            let def = asl::definition(
                &pipeline,
                &activities,
                &Selection::all(),
                Duration::from_secs(health_check_secs),
            )?;
            if ctx.json {
                print_json("pipeline export", &json!({"definition": def}));
            } else {
                println!("{}", serde_json::to_string_pretty(&def).unwrap_or_default());
            }
            Ok(0)
        }
        PipelineCmd::Status { file } => {
            let result = RunResult::read(&file)?;
            Ok(show_result(ctx, "pipeline status", &result, None))
        }
    }
}

/// `agent run DIR --queue Q -- CMD...`.
pub(super) async fn agent(ctx: &Context, cmd: AgentCmd) -> Result<i32> {
    let AgentCmd::Run {
        dir,
        queue,
        rounds,
        build_timeout,
        argv,
    } = cmd;
    let source = Arc::new(DirJobSource::new(&queue)?);
    let build = CommandBuild::new(
        ctx.provider().await?,
        MachineSpec::linux(),
        &argv[0],
        argv[1..].iter().cloned(),
    )?;
    let mut agent = Agent::builder(source, dir.join("state"))
        .config_dir(dir.join("config"))
        .build(build.clone());
    if let Some(secs) = build_timeout {
        agent = agent.build_timeout(Duration::from_secs(secs));
    }
    let agent = agent.build_agent()?;
    let outcome = match rounds {
        None => agent.run_until_signal().await,
        Some(n) => {
            let mut built = Vec::new();
            for _ in 0..n {
                if let Iteration::Built { job, outcome, .. } = agent.run_once().await? {
                    built.push(json!({"job": job, "status": outcome.status()}));
                    if !ctx.json {
                        println!("{job}: {}", outcome.status());
                    }
                }
            }
            if ctx.json {
                print_json(
                    "agent run",
                    &json!({"built": built, "status": agent.status()}),
                );
            }
            Ok(())
        }
    };
    build.shutdown().await?;
    outcome?;
    Ok(0)
}

/// `self-update once|watch`.
pub(super) async fn self_update(ctx: &Context, cmd: SelfUpdateCmd) -> Result<i32> {
    let (config, every) = match cmd {
        SelfUpdateCmd::Once { file } => (file, None),
        SelfUpdateCmd::Watch { file, every } => (file, Some(every)),
    };
    let u = SelfUpdateFile::read(&config)?.into_self_update()?;
    let show = |o: &UpdateOutcome| {
        let doc = serde_json::to_value(o).unwrap_or_default();
        if ctx.json {
            print_json("self-update", &doc);
        } else {
            println!("{}", doc["outcome"].as_str().unwrap_or(""));
        }
    };
    let Some(every) = every else {
        let o = u.update_once().await?;
        show(&o);
        return Ok(match o {
            UpdateOutcome::Blocked { .. } | UpdateOutcome::RolledBack { .. } => 1,
            _ => 0,
        });
    };
    let watch = u.watch(Duration::from_secs(every), |r| match r {
        Ok(o) => show(o),
        Err(e) => eprintln!("hgauto: self-update round failed (retrying): {e}"),
    });
    tokio::select! {
        _ = watch => Ok(0),
        _ = tokio::signal::ctrl_c() => Ok(130),
    }
}
