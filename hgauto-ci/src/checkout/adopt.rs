//! Adopting a working copy that hgauto did not make (a person's own clone, or a
//! self-update working copy set up by hand): it is updated in place from the pooled store,
//! never deleted. What it holds that the remote does not (local changes, commits not in
//! the store, and with `purge` the untracked and ignored files) refuses the checkout with
//! an error that names the path and what would be lost.

use std::path::Path;

use super::{run, Ctx, Vcs};
use hgauto_core::error::{Error, Result};

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// How many paths or commits a refusal names before it says "and N more".
const SHOWN: usize = 5;

fn refuse(dest: &Path, what: &str, items: &[&str]) -> Error {
    let mut list = items
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        list.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    Error::invalid(
        format!("checkout destination {}", dest.display()),
        format!(
            "is a clone hgauto did not make, and {what} ({list}); refusing to update it, \
             since that would lose them (commit and push, or move the clone away)"
        ),
    )
}

fn lines(out: &str) -> Vec<&str> {
    out.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Updates the foreign working copy `dest` to `rev` (which `store` holds), in place.
pub(crate) fn adopt(
    cx: &Ctx,
    vcs: Vcs,
    store: &Path,
    dest: &Path,
    rev: &str,
    purge: bool,
) -> Result<()> {
    match vcs {
        Vcs::Git => adopt_git(cx, store, dest, rev, purge),
        Vcs::Hg => adopt_hg(cx, store, dest, rev, purge),
    }
    .map_err(|e| match e {
        Error::CommandFailed {
            command,
            stderr_tail,
            ..
        } => Error::invalid(
            format!("checkout destination {}", dest.display()),
            format!(
                "is a clone hgauto did not make, and updating it in place failed \
                 (`{command}`: {}); it was left as it was",
                stderr_tail.trim()
            ),
        ),
        other => other,
    })
}

fn adopt_git(cx: &Ctx, store: &Path, dest: &Path, rev: &str, purge: bool) -> Result<()> {
    let git = |args: &[&str]| run(cx, "git", args, Some(dest));
    let changed = git(&["status", "--porcelain=v1", "--untracked-files=no"])?;
    if !changed.is_empty() {
        return Err(refuse(dest, "it has local changes", &lines(&changed)));
    }
    // The store's branches land under a namespace of our own, so the clone's own refs
    // (and its remotes) are untouched; what no store ref reaches is the clone's alone.
    git(&[
        "-c",
        "gc.autoDetach=false",
        "fetch",
        "--quiet",
        "--no-write-fetch-head",
        "--",
        s(store),
        "+refs/heads/*:refs/hgauto/store/*",
    ])?;
    let mut tips = vec!["--branches"];
    if git(&["rev-parse", "--verify", "--quiet", "HEAD"]).is_ok() {
        tips.push("HEAD");
    }
    let mut args = vec!["rev-list", "--max-count=100"];
    args.extend(tips);
    args.extend(["--not", "--glob=refs/hgauto/store/*"]);
    let local = git(&args)?;
    if !local.is_empty() {
        return Err(refuse(
            dest,
            "it holds commits that are not in the remote",
            &lines(&local),
        ));
    }
    if purge {
        let extra = git(&[
            "status",
            "--porcelain=v1",
            "--ignored",
            "--untracked-files=all",
        ])?;
        if !extra.is_empty() {
            return Err(refuse(
                dest,
                "purge would delete its untracked and ignored files",
                &lines(&extra),
            ));
        }
    }
    // No --force: git refuses rather than overwrite an untracked file in the way.
    git(&["checkout", "--quiet", "--detach", rev]).map(drop)
}

fn adopt_hg(cx: &Ctx, store: &Path, dest: &Path, rev: &str, purge: bool) -> Result<()> {
    let hg = |args: &[&str]| {
        let mut all = vec!["-R", s(dest)];
        all.extend_from_slice(args);
        run(cx, "hg", &all, None)
    };
    let changed = hg(&["status", "-mard"])?;
    if !changed.is_empty() {
        return Err(refuse(dest, "it has local changes", &lines(&changed)));
    }
    // `hg outgoing` exits 1 when nothing is outgoing, 0 with the list otherwise.
    match hg(&[
        "outgoing",
        "--quiet",
        "-T",
        "{node|short} {desc|firstline}\n",
        "--",
        s(store),
    ]) {
        Ok(out) if !out.is_empty() => {
            return Err(refuse(
                dest,
                "it holds commits that are not in the remote",
                &lines(&out),
            ))
        }
        Ok(_) => {}
        Err(Error::CommandFailed {
            status: hgauto_core::ExitStatus::Code(1),
            ..
        }) => {}
        Err(e) => return Err(e),
    }
    if purge {
        let extra = hg(&["status", "-ui"])?;
        if !extra.is_empty() {
            return Err(refuse(
                dest,
                "purge would delete its untracked and ignored files",
                &lines(&extra),
            ));
        }
    }
    hg(&["pull", "--quiet", "-r", rev, "--", s(store)])?;
    // No -C: with no local changes, hg refuses rather than overwrite an untracked file.
    hg(&["update", "--quiet", "-r", rev]).map(drop)
}
