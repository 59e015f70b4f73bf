//! `list`, `terminate`, `purge`, `sweep`, `extend`, `status` and `image build`.

use std::time::Duration;

use serde_json::json;

use hgauto_core::clock::unix_now;
use hgauto_core::{Error, ImageRecipe, ManagedResource, ResourceKind, Result};

use super::args::ImageCmd;
#[cfg(feature = "aws")]
use super::args::ProviderKind;
use super::config::Context;
use super::output::{print_json, spinner};

fn print_resources(resources: &[ManagedResource]) {
    if resources.is_empty() {
        println!("nothing managed");
        return;
    }
    println!("{:<28} {:<16} {:<8} deadline", "id", "kind", "exists");
    let now = unix_now();
    for r in resources {
        let kind = r.kind.as_str();
        let deadline = match r.deadline {
            Some(d) if d > now => format!("in {} min", (d - now) / 60),
            Some(d) => format!("{} min ago", (now - d) / 60),
            None => "-".into(),
        };
        println!(
            "{:<28} {:<16} {:<8} {deadline}",
            r.id,
            kind,
            if r.exists { "yes" } else { "no" }
        );
    }
}

/// `list`.
pub(super) async fn list(ctx: &Context) -> Result<i32> {
    let resources = ctx.provider().await?.list_managed().await?;
    if ctx.json {
        print_json(
            "list",
            &json!({"provider": ctx.provider().await?.name(), "resources": resources}),
        );
    } else {
        print_resources(&resources);
    }
    Ok(0)
}

/// `terminate IDS` or `terminate --all`.
pub(super) async fn terminate(ctx: &Context, ids: Vec<String>, all: bool) -> Result<i32> {
    let p = ctx.provider().await?;
    let ids = if all {
        p.list_managed()
            .await?
            .into_iter()
            .filter(|r| r.kind == ResourceKind::Machine && r.exists)
            .map(|r| r.id)
            .collect()
    } else {
        ids
    };
    let bar = spinner(
        ctx.json,
        ctx.quiet,
        format!("terminating {} machine(s)", ids.len()),
    );
    p.terminate(&ids).await?;
    bar.finish_and_clear();
    if ctx.json {
        print_json("terminate", &json!({"terminated": ids}));
    } else {
        for id in &ids {
            println!("terminated {id}");
        }
    }
    Ok(0)
}

/// `purge`.
pub(super) async fn purge(ctx: &Context) -> Result<i32> {
    let bar = spinner(ctx.json, ctx.quiet, "purging");
    let report = ctx.provider().await?.purge().await?;
    bar.finish_and_clear();
    if ctx.json {
        print_json("purge", &report);
    } else {
        println!("removed {} resource(s)", report.removed.len());
        for id in &report.removed {
            println!("  {id}");
        }
    }
    Ok(0)
}

/// `sweep`: EC2's own sweep (tags, reachability); elsewhere, machines past their deadline
/// or whose creator is gone, never one whose creator still runs.
pub(super) async fn sweep(ctx: &Context, grace_secs: u64) -> Result<i32> {
    let bar = spinner(ctx.json, ctx.quiet, "sweeping");
    let removed = match ctx.kind {
        #[cfg(feature = "aws")]
        ProviderKind::Ec2 => {
            ctx.ec2()
                .await?
                .sweep(Duration::from_secs(grace_secs))
                .await?
                .removed
        }
        _ => {
            // Machines whose creator still runs stay; see `hgauto_core::sweep`.
            let p = ctx.provider().await?;
            let ledger = hgauto_core::Ledger::open(&ctx.state_dir, p.name())?;
            hgauto_core::sweep::sweep_ledger(p.as_ref(), &ledger, Duration::from_secs(grace_secs))
                .await?
                .removed
        }
    };
    bar.finish_and_clear();
    if ctx.json {
        print_json("sweep", &json!({"removed": removed}));
    } else {
        println!("swept {} resource(s)", removed.len());
        for id in &removed {
            println!("  {id}");
        }
    }
    Ok(0)
}

/// `extend IDS --hours N`.
pub(super) async fn extend(ctx: &Context, ids: Vec<String>, hours: u64) -> Result<i32> {
    let until = hgauto_core::spec::deadline_after(std::time::Duration::from_secs(
        hours.saturating_mul(3600),
    ))?;
    ctx.provider().await?.extend_deadline(&ids, until).await?;
    if ctx.json {
        print_json("extend", &json!({"machines": ids, "deadline": until}));
    } else {
        println!(
            "{} machine(s) now live until {} (Unix time)",
            ids.len(),
            until
        );
    }
    Ok(0)
}

/// `status`: every provider's ledger under this state directory, without touching a
/// service.
pub(super) async fn status(ctx: &Context) -> Result<i32> {
    let ledgers = ctx.state_dir.join("ledger");
    let mut providers = serde_json::Map::new();
    if let Ok(entries) = std::fs::read_dir(&ledgers) {
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        names.sort();
        for name in names {
            let records = hgauto_core::Ledger::open(&ctx.state_dir, &name)?.records()?;
            providers.insert(name, serde_json::to_value(records).unwrap_or_default());
        }
    }
    if ctx.json {
        print_json(
            "status",
            &json!({"state_dir": ctx.state_dir, "providers": providers}),
        );
        return Ok(0);
    }
    println!("state directory: {}", ctx.state_dir.display());
    if providers.is_empty() {
        println!("no ledger yet: nothing was ever created here");
    }
    for (name, records) in &providers {
        let n = records.as_array().map_or(0, Vec::len);
        println!("{name}: {n} recorded resource(s)");
        for r in records.as_array().into_iter().flatten() {
            println!(
                "  {} ({})",
                r["id"].as_str().unwrap_or(""),
                r["kind"].as_str().unwrap_or("")
            );
        }
    }
    Ok(0)
}

/// `image build RECIPE`.
pub(super) async fn image(ctx: &Context, cmd: ImageCmd) -> Result<i32> {
    let ImageCmd::Build { recipe } = cmd;
    let what = format!("image recipe {}", recipe.display());
    let text =
        std::fs::read_to_string(&recipe).map_err(|e| Error::invalid(&what, e.to_string()))?;
    let recipe: ImageRecipe = toml::from_str(&text).map_err(|e| {
        Error::invalid(
            &what,
            hgauto_core::suggest::parse_error(&text, e.message(), e.span()),
        )
    })?;
    let p = ctx.provider().await?;
    let bar = spinner(
        ctx.json,
        ctx.quiet,
        format!(
            "building image {} (fingerprint {})",
            recipe.name,
            recipe.fingerprint()?
        ),
    );
    let id = p.ensure_image(&recipe).await?;
    bar.finish_and_clear();
    if ctx.json {
        print_json("image build", &json!({"image": id, "name": recipe.name}));
    } else {
        println!("{id}");
    }
    Ok(0)
}
