//! `download`, `checkout` and `venv`: the CI helpers, for shell scripts.

use serde_json::json;

use hgauto_ci::checkout::{checkout as vcs_checkout, CheckoutOptions, Vcs, Want};
use hgauto_ci::download::{download as fetch, DownloadOptions, ExtractLimits};
use hgauto_ci::venv::{create_virtualenv, VenvOptions};
use hgauto_core::Result;

use super::args::{CheckoutArgs, DownloadArgs, VenvArgs};
use super::config::Context;
use super::output::{print_json, spinner};

/// `download URL DEST`.
pub(super) async fn download(ctx: &Context, a: DownloadArgs) -> Result<i32> {
    let opts = DownloadOptions {
        sha256: a.sha256,
        size: a.size,
        extract_to: a.extract_to,
        extract_limits: ExtractLimits {
            max_bytes: a.max_unpacked_bytes,
            max_entries: a.max_entries,
        },
        ..DownloadOptions::default()
    };
    let progress = spinner(
        ctx.json,
        ctx.quiet,
        format!("downloading to {}", a.dest.display()),
    );
    let report = fetch(&a.url, &a.dest, &opts).await?;
    progress.finish_and_clear();
    if ctx.json {
        print_json("download", &report);
    } else {
        println!("{}", a.dest.display());
    }
    Ok(0)
}

/// `checkout URL DEST`.
pub(super) async fn checkout(ctx: &Context, a: CheckoutArgs) -> Result<i32> {
    let vcs: Vcs = a.vcs.parse()?;
    let want = Want::from_options(vcs, a.revision, a.branch)?;
    let opts = CheckoutOptions::new(hgauto_ci::checkout::share_base_in(&ctx.state_dir));
    let progress = spinner(
        ctx.json,
        ctx.quiet,
        format!("checking out into {}", a.dest.display()),
    );
    let report = vcs_checkout(vcs, &a.url, &a.dest, &want, &opts).await?;
    progress.finish_and_clear();
    if ctx.json {
        print_json("checkout", &report);
    } else {
        println!(
            "{}",
            serde_json::to_value(&report)
                .ok()
                .and_then(|v| v["revision"].as_str().map(str::to_owned))
                .unwrap_or_default()
        );
    }
    Ok(0)
}

/// `venv DIR -r requirements.txt`.
pub(super) async fn venv(ctx: &Context, a: VenvArgs) -> Result<i32> {
    let opts = VenvOptions {
        requirements: a.requirements,
        ..VenvOptions::default()
    };
    let progress = spinner(ctx.json, ctx.quiet, format!("creating {}", a.dir.display()));
    let report = create_virtualenv(&a.dir, &opts).await?;
    progress.finish_and_clear();
    if ctx.json {
        print_json("venv", &json!({"report": report}));
    } else {
        println!("{}", a.dir.display());
    }
    Ok(0)
}
