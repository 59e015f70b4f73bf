//! The pooled store of a repository: found by the URL's root commit, locked, repaired or
//! cloned. [`checkout`](super::checkout) and [`resolve_heads`] share it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{backend, CheckoutOptions, Ctx, Vcs, STORE_OK};
use crate::progress::step;
use hgauto_core::backend::fs::ExclusiveLock;
use hgauto_core::error::{Error, Result};
use hgauto_core::redact::{redact_url, Secrets};

/// One index entry: a URL's root commit, and the URL as it may be shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Known {
    root: String,
    url: String,
}

/// The key of `url` in the index: its sha256, so no credential in it is written.
fn url_key(url: &str) -> String {
    hex::encode(Sha256::digest(url.as_bytes()))
}

/// Opens the store of `url`: found (or cloned) under `opts.share_base`, locked for this
/// caller, repaired when a clone was interrupted or it fails verification. Returns the
/// store, its lock, and whether it was cloned now; repairs are added to `recovered`.
pub(super) fn open(
    cx: &Ctx,
    vcs: Vcs,
    url: &str,
    opts: &CheckoutOptions,
    recovered: &mut Vec<String>,
) -> Result<(PathBuf, ExclusiveLock, bool)> {
    let be = backend(vcs);
    let shown = cx.shown.as_str();
    let base = opts.share_base.join(vcs.name());
    std::fs::create_dir_all(&base).map_err(|e| Error::io("create", &base, "localhost", e))?;
    let mut cloned = false;
    let root = {
        let _index = ExclusiveLock::acquire(&base.join("urls.lock"))?;
        let index_path = base.join("urls-v2.json");
        // The first index was keyed by the URL itself, credentials and all: drop it.
        let _ = std::fs::remove_file(base.join("urls.json"));
        let mut index: BTreeMap<String, Known> = std::fs::read(&index_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        match index.get(&url_key(url)) {
            Some(known) => known.root.clone(),
            None => {
                let scratch = tempfile::Builder::new()
                    .prefix(".root-")
                    .tempdir_in(&base)
                    .map_err(|e| Error::io("create", &base, "localhost", e))?;
                step(&opts.progress, &format!("looking up {shown}"));
                let root = be.root_of(cx, url, scratch.path())?;
                // A git scratch clone is a full store: keep it if there is none yet.
                let store = base.join(&root);
                if vcs == Vcs::Git
                    && !store.join(STORE_OK).exists()
                    && scratch.path().join("repo").exists()
                {
                    let _ = std::fs::remove_dir_all(&store);
                    std::fs::rename(scratch.path().join("repo"), &store)
                        .map_err(|e| Error::io("rename into", &store, "localhost", e))?;
                    hgauto_core::backend::fs::write_atomic(
                        &store.join(STORE_OK),
                        shown.as_bytes(),
                    )?;
                    cloned = true;
                }
                let known = Known {
                    root: root.clone(),
                    url: shown.to_owned(),
                };
                index.insert(url_key(url), known);
                hgauto_core::backend::fs::write_atomic(
                    &index_path,
                    &serde_json::to_vec_pretty(&index).unwrap_or_default(),
                )?;
                root
            }
        }
    };
    let store = base.join(&root);
    let _lock = ExclusiveLock::acquire(&base.join(format!("{root}.lock")))?;

    // An interrupted clone, or a corrupt store: start it over.
    if store.exists() && !store.join(STORE_OK).exists() {
        recovered.push(format!("removed the unfinished store {}", store.display()));
        std::fs::remove_dir_all(&store).map_err(|e| Error::io("remove", &store, "localhost", e))?;
    }
    if store.exists() {
        recovered.extend(be.clear_locks(cx, &store));
        if let Err(e) = be.verify(cx, &store) {
            recovered.push(format!(
                "removed the corrupt store {} ({e})",
                store.display()
            ));
            std::fs::remove_dir_all(&store)
                .map_err(|e| Error::io("remove", &store, "localhost", e))?;
        }
    }
    if !store.exists() {
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{root}-clone-"))
            .tempdir_in(&base)
            .map_err(|e| Error::io("create", &base, "localhost", e))?;
        let staged = tmp.path().join("repo");
        step(
            &opts.progress,
            &format!("cloning {shown} into {}", store.display()),
        );
        be.clone_store(cx, url, &staged)?;
        std::fs::rename(&staged, &store)
            .map_err(|e| Error::io("rename into", &store, "localhost", e))?;
        hgauto_core::backend::fs::write_atomic(&store.join(STORE_OK), shown.as_bytes())?;
        cloned = true;
    }
    Ok((store, _lock, cloned))
}

/// The revision the `vcs` working copy at `dest` has checked out (a full hash), read with
/// the same bounded, scrubbed VCS runs as [`checkout`](super::checkout).
pub async fn working_revision(vcs: Vcs, dest: &Path, opts: &CheckoutOptions) -> Result<String> {
    let cx = Ctx {
        timeout: opts.timeout,
        shown: dest.display().to_string(),
        stale_lock_age: opts.stale_lock_age,
    };
    let dest = dest.to_owned();
    let rev = hgauto_core::backend::task::run_blocking("checkout", move || {
        backend(vcs).checked_out(&cx, &dest).map(|r| (r, dest))
    })
    .await?;
    match rev {
        (r, _) if super::is_full_hash(&r) => Ok(r),
        (r, dest) => Err(Error::invalid(
            format!("working copy {}", dest.display()),
            format!("has no readable {} revision (got {r:?})", vcs.name()),
        )),
    }
}

/// The revision each of `branches` points to in the `vcs` repository at `url`, read
/// through the pooled store (pulled first), without a working copy. Branches that do not
/// exist are left out of the map.
pub async fn resolve_heads(
    vcs: Vcs,
    url: &str,
    branches: &[String],
    opts: &CheckoutOptions,
) -> Result<BTreeMap<String, String>> {
    for b in branches {
        if b.is_empty() || b.starts_with('-') || b.contains(['\n', '\0']) {
            return Err(Error::invalid(
                format!("branch {b:?}"),
                "is not a branch name",
            ));
        }
    }
    let secrets = Secrets::of_urls([url]);
    let cx = Ctx {
        timeout: opts.timeout,
        shown: redact_url(url),
        stale_lock_age: opts.stale_lock_age,
    };
    let mut attempt = 0u32;
    loop {
        let (cx2, url2, branches2, opts2) =
            (cx.clone(), url.to_owned(), branches.to_vec(), opts.clone());
        let result = hgauto_core::backend::task::run_blocking("checkout", move || {
            let mut recovered = Vec::new();
            let (store, _lock, cloned) = open(&cx2, vcs, &url2, &opts2, &mut recovered)?;
            let be = backend(vcs);
            if !cloned {
                be.pull(&cx2, &store, &url2)?;
            }
            let mut heads = BTreeMap::new();
            for b in &branches2 {
                if let Ok(rev) = be.resolve(&cx2, &store, b) {
                    heads.insert(b.clone(), rev);
                }
            }
            Ok(heads)
        })
        .await
        .map_err(|e| secrets.scrub_error(e));
        match result {
            Err(e) if super::is_network(&e) && attempt < opts.retry.max_retries => {
                let delay = opts.retry.delay(attempt, rand::random::<f64>());
                tracing::warn!(url = %cx.shown, retry = attempt + 1, error = %e, "resolving heads failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
