//! [`download`]: fetch a URL to a file reliably, the way CI scripts need it.
//!
//! - Connect and read timeouts; retries under [`RetryPolicy::network`] for connection
//!   errors, timeouts, 5xx and 429 (a `Retry-After` header lengthens the wait).
//! - Resume: bytes already received stay in `.<name>.hgauto-part` next to `dest`, with the
//!   server's validator (ETag, else Last-Modified) in a private (0600) sidecar file. The
//!   next attempt (or the next run) asks for the rest with `Range` + `If-Range`, and
//!   accepts it only as a `206` that carries the same validator and whose `Content-Range`
//!   starts where the partial file ends. Anything else (a `200`, another range, a server
//!   that ignored `If-Range` and sent part of a newer file) restarts from zero: bytes of
//!   two versions are never spliced.
//! - One download at a time per destination, across threads and processes (a lock next to
//!   `dest`, see [`lock`]).
//! - Credentials never show: errors, logs and the sidecar carry the URL only as
//!   [`redact_url`] shows it (no user info, no query values), and a redirect from https to
//!   http is refused rather than followed.
//! - Integrity: the sha256 (and size) are computed while receiving, on a second thread, so
//!   hashing overlaps the network. A mismatch is [`Error::Integrity`]: never retried, the
//!   partial file is removed and nothing appears at `dest`. The file lands at `dest` only by
//!   rename, after verification.
//! - A body longer than the expected `size` is cut at `size + 1` bytes, never read to its
//!   end (a chunked body has no length to trust).
//! - The part file is created exclusively (`O_EXCL|O_NOFOLLOW`, 0600); one is resumed only
//!   when it and its sidecar are this user's own regular files, so a file planted in a
//!   shared directory is never written through or spliced onto the download.
//! - Optional extraction ([`extract`]) into a directory, refusing entries that escape it,
//!   under [`ExtractLimits`] (8 GiB and 200,000 entries by default).
//! - Proxies: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` are honoured.
//! - [`download_many`] runs many downloads concurrently under a limit.

mod attempt;
pub mod extract;
mod lock;
mod sink;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use extract::{extract, extract_with, ArchiveFormat, ExtractLimits};

use attempt::{attempt, Paths, Target};
use hgauto_core::error::{Error, Result};
use hgauto_core::redact::redact_url;
use hgauto_core::retry::RetryPolicy;

/// Progress callback: bytes received so far, and the total when the server said it.
pub type Progress = Arc<dyn Fn(u64, Option<u64>) + Send + Sync>;

/// How to download.
#[derive(Clone)]
pub struct DownloadOptions {
    /// Expected sha256 (hex, any case). Checked before the file appears at `dest`.
    pub sha256: Option<String>,
    /// Expected size in bytes.
    pub size: Option<u64>,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit between two reads of the body (a stalled transfer).
    pub read_timeout: Duration,
    /// Retries for network errors, 5xx and 429.
    pub retry: RetryPolicy,
    /// After verifying, extract the archive into this directory (which must not exist or be
    /// empty). The archive itself still lands at `dest`.
    pub extract_to: Option<PathBuf>,
    /// The archive format; `None` guesses from the URL's file name.
    pub format: Option<ArchiveFormat>,
    /// Caps on what extraction may unpack.
    pub extract_limits: ExtractLimits,
    /// Called as bytes arrive.
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for DownloadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadOptions")
            .field("sha256", &self.sha256)
            .field("size", &self.size)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("retry", &self.retry)
            .field("extract_to", &self.extract_to)
            .field("extract_limits", &self.extract_limits)
            .finish_non_exhaustive()
    }
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            sha256: None,
            size: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            retry: RetryPolicy::network(),
            extract_to: None,
            format: None,
            extract_limits: ExtractLimits::default(),
            progress: None,
        }
    }
}

impl DownloadOptions {
    /// Expects this sha256 (hex, any case).
    pub fn with_sha256(mut self, sha256: impl Into<String>) -> Self {
        self.sha256 = Some(sha256.into().to_ascii_lowercase());
        self
    }

    /// Expects this size.
    pub fn with_size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    /// Uses this retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Extracts the verified archive into `dir`.
    pub fn extract_to(mut self, dir: impl Into<PathBuf>) -> Self {
        self.extract_to = Some(dir.into());
        self
    }

    /// Reports progress to `f`.
    pub fn with_progress(mut self, f: impl Fn(u64, Option<u64>) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }
}

/// What a download did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadReport {
    /// Where the file is.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its sha256 (hex).
    pub sha256: String,
    /// HTTP requests made (1 when nothing went wrong).
    pub requests: u32,
    /// Requests that continued a partial file (206).
    pub resumed: u32,
    /// Times a partial file was thrown away because the server could not continue it.
    pub restarted: u32,
}

/// How many times one download may start over because the server's file changed.
const MAX_RESTARTS: u32 = 3;

/// Builds the HTTP client for `opts` (proxies from the environment).
fn client(opts: &DownloadOptions) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .read_timeout(opts.read_timeout)
        .redirect(redirect_policy())
        .user_agent(concat!("hgauto/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::invalid("HTTP client", e.without_url().to_string()))
}

/// Follows up to 10 redirects, but never from https to http: a downgrade would send the
/// request, and any credentials in it, in clear text.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt
            .previous()
            .last()
            .is_some_and(|prev| is_downgrade(prev, attempt.url()));
        if downgrade {
            let to = redact_url(attempt.url().as_str());
            attempt.error(format!("refusing to follow a redirect from https to {to}"))
        } else if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else {
            attempt.follow()
        }
    })
}

fn is_downgrade(from: &reqwest::Url, to: &reqwest::Url) -> bool {
    from.scheme() == "https" && to.scheme() != "https"
}

/// Downloads `url` to `dest` (see the [module docs](self)).
pub async fn download(url: &str, dest: &Path, opts: &DownloadOptions) -> Result<DownloadReport> {
    let shown = redact_url(url);
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::invalid(format!("URL {shown:?}"), e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::invalid(
            format!("URL {shown:?}"),
            "must be http or https",
        ));
    }
    // Normalised once: every comparison below is against lowercase hex.
    let sha256 = opts.sha256.as_deref().map(str::to_ascii_lowercase);
    if let Some(sha) = &sha256 {
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(
                format!("sha256 {sha:?}"),
                "must be 64 hex digits",
            ));
        }
    }
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::io("create", dir, "localhost", e))?;
    let p = Paths::of(dest)?;
    let client = client(opts)?;
    let target = Target::new(url, &shown, sha256.as_deref());
    let _lock = lock::PartLock::acquire(p.lock.clone()).await?;
    let mut report = DownloadReport {
        path: dest.to_owned(),
        bytes: 0,
        sha256: String::new(),
        requests: 0,
        resumed: 0,
        restarted: 0,
    };
    let (mut retry, mut restarts) = (0u32, 0u32);
    loop {
        match attempt(&client, &target, &p, opts, &mut report).await {
            Ok((bytes, sha)) => {
                report.bytes = bytes;
                report.sha256 = sha;
                break;
            }
            // The partial file is gone; the next request starts from zero, at once.
            Err(f) if f.restart && restarts < MAX_RESTARTS => restarts += 1,
            Err(f) => {
                if !f.error.is_retryable() || retry >= opts.retry.max_retries {
                    // A definite failure (integrity, 404, bad input) leaves nothing to resume.
                    if !f.error.is_retryable() {
                        p.discard();
                    }
                    return Err(f.error);
                }
                let mut delay = opts.retry.delay(retry, rand::random::<f64>());
                if let Some(after) = f.retry_after {
                    delay = delay.max(after.min(Duration::from_secs(300)));
                }
                tracing::warn!(url = %shown, retry = retry + 1, in_ = ?delay, error = %f.error, "download failed; retrying");
                tokio::time::sleep(delay).await;
                retry += 1;
            }
        }
    }
    // Private while it was written; readable like any downloaded file once verified.
    std::fs::set_permissions(&p.part, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(|e| Error::io("chmod", &p.part, "localhost", e))?;
    std::fs::rename(&p.part, dest).map_err(|e| Error::io("rename into", dest, "localhost", e))?;
    let _ = std::fs::remove_file(&p.state);
    if let Some(to) = &opts.extract_to {
        let format = match opts.format {
            Some(f) => f,
            None => ArchiveFormat::from_name(parsed.path()).ok_or_else(|| {
                Error::invalid(
                    format!("archive {shown}"),
                    "format unknown from its name; set DownloadOptions::format",
                )
            })?,
        };
        let (archive, to, limits) = (dest.to_owned(), to.clone(), opts.extract_limits);
        hgauto_core::backend::task::run_blocking("extract", move || {
            extract_with(&archive, &to, format, limits)
        })
        .await?;
    }
    Ok(report)
}

/// Runs `items` (url, dest, options) with at most `limit` at a time; results in order.
pub async fn download_many(
    items: Vec<(String, PathBuf, DownloadOptions)>,
    limit: usize,
) -> Vec<Result<DownloadReport>> {
    use futures::stream::StreamExt;
    futures::stream::iter(items)
        .map(|(url, dest, opts)| async move { download(&url, &dest, &opts).await })
        .buffered(limit.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_input_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        let o = DownloadOptions::default();
        let e = download("ftp://x/y", &dest, &o).await.unwrap_err();
        assert!(e.to_string().contains("ftp://x/y"), "{e}");
        let e = download("not a url", &dest, &o).await.unwrap_err();
        assert!(e.to_string().contains("not a url"), "{e}");
        let e = download("http://127.0.0.1:9/x", &dest, &o.clone().with_sha256("abc"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("abc"), "{e}");
        assert!(!dest.exists());
    }

    #[test]
    fn only_https_to_http_is_a_downgrade() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(is_downgrade(&u("https://a/x"), &u("http://a/x")));
        assert!(!is_downgrade(&u("http://a/x"), &u("https://a/x")));
        assert!(!is_downgrade(&u("https://a/x"), &u("https://b/y")));
        assert!(!is_downgrade(&u("http://a/x"), &u("http://b/y")));
    }
}
