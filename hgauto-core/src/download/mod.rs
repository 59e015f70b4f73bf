//! [`download`]: fetch a URL to a file reliably, the way CI scripts need it.
//!
//! - Connect and read timeouts; retries under [`RetryPolicy::network`] for connection
//!   errors, timeouts, 5xx and 429 (a `Retry-After` header lengthens the wait).
//! - Resume: bytes already received stay in `.<name>.hgauto-part` next to `dest`, with the
//!   server's validator (ETag, else Last-Modified) in a sidecar file. The next attempt (or
//!   the next run) asks for the rest with `Range` + `If-Range`, and accepts it only as a
//!   `206` whose `Content-Range` starts where the partial file ends. Anything else (a `200`,
//!   another range) restarts from zero: a full body is never appended to a partial file.
//! - Integrity: the sha256 (and size) are computed while receiving, on a second thread, so
//!   hashing overlaps the network. A mismatch is [`Error::Integrity`]: never retried, the
//!   partial file is removed and nothing appears at `dest`. The file lands at `dest` only by
//!   rename, after verification.
//! - Optional extraction ([`extract`]) into a directory, refusing entries that escape it.
//! - Proxies: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` are honoured.
//! - [`download_many`] runs many downloads concurrently under a limit.

pub mod extract;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE, RETRY_AFTER,
};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use extract::{extract, ArchiveFormat};

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// Progress callback: bytes received so far, and the total when the server said it.
pub type Progress = Arc<dyn Fn(u64, Option<u64>) + Send + Sync>;

/// How to download.
#[derive(Clone)]
pub struct DownloadOptions {
    /// Expected sha256 (hex). Checked before the file appears at `dest`.
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

/// What the sidecar remembers about a partial file.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct PartState {
    url: String,
    validator: String,
}

struct Paths {
    part: PathBuf,
    state: PathBuf,
}

fn paths(dest: &Path) -> Result<Paths> {
    let name = dest
        .file_name()
        .ok_or_else(|| {
            Error::invalid(
                format!("destination {}", dest.display()),
                "has no file name",
            )
        })?
        .to_string_lossy()
        .into_owned();
    let dir = dest.parent().unwrap_or(Path::new("."));
    Ok(Paths {
        part: dir.join(format!(".{name}.hgauto-part")),
        state: dir.join(format!(".{name}.hgauto-part.json")),
    })
}

/// One attempt's failure: the error, and a server-requested delay.
struct Failure {
    error: Error,
    retry_after: Option<Duration>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            retry_after: None,
        }
    }
}

/// Builds the HTTP client for `opts` (proxies from the environment).
fn client(opts: &DownloadOptions) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .read_timeout(opts.read_timeout)
        .user_agent(concat!("hgauto/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::invalid("HTTP client", e.to_string()))
}

/// Downloads `url` to `dest` (see the [module docs](self)).
pub async fn download(url: &str, dest: &Path, opts: &DownloadOptions) -> Result<DownloadReport> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::invalid(format!("URL {url:?}"), e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::invalid(
            format!("URL {url:?}"),
            "must be http or https",
        ));
    }
    if let Some(sha) = &opts.sha256 {
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
    let p = paths(dest)?;
    let client = client(opts)?;
    let mut report = DownloadReport {
        path: dest.to_owned(),
        bytes: 0,
        sha256: String::new(),
        requests: 0,
        resumed: 0,
        restarted: 0,
    };
    let mut retry = 0u32;
    loop {
        match attempt(&client, url, &p, opts, &mut report).await {
            Ok((bytes, sha)) => {
                report.bytes = bytes;
                report.sha256 = sha;
                break;
            }
            Err(f) => {
                if !f.error.is_retryable() || retry >= opts.retry.max_retries {
                    // A definite failure (integrity, 404, bad input) leaves nothing to resume.
                    if !f.error.is_retryable() {
                        let _ = std::fs::remove_file(&p.part);
                        let _ = std::fs::remove_file(&p.state);
                    }
                    return Err(f.error);
                }
                let mut delay = opts.retry.delay(retry, rand::random::<f64>());
                if let Some(after) = f.retry_after {
                    delay = delay.max(after.min(Duration::from_secs(300)));
                }
                tracing::warn!(%url, retry = retry + 1, in_ = ?delay, error = %f.error, "download failed; retrying");
                tokio::time::sleep(delay).await;
                retry += 1;
            }
        }
    }
    std::fs::rename(&p.part, dest).map_err(|e| Error::io("rename into", dest, "localhost", e))?;
    let _ = std::fs::remove_file(&p.state);
    if let Some(to) = &opts.extract_to {
        let format = match opts.format {
            Some(f) => f,
            None => ArchiveFormat::from_name(parsed.path()).ok_or_else(|| {
                Error::invalid(
                    format!("archive {url}"),
                    "format unknown from its name; set DownloadOptions::format",
                )
            })?,
        };
        let (archive, to) = (dest.to_owned(), to.clone());
        crate::task::run_blocking("extract", move || extract(&archive, &to, format)).await?;
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

fn validator(headers: &HeaderMap) -> Option<String> {
    // A weak ETag cannot be used with If-Range; Last-Modified can.
    headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.starts_with("W/"))
        .or_else(|| headers.get(LAST_MODIFIED).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
}

/// `Content-Range: bytes start-end/total` -> (start, total).
fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn http_error(url: &str, e: reqwest::Error) -> Error {
    Error::Connection {
        machine: url.to_owned(),
        may_have_run: false,
        source: Box::new(e),
    }
}

/// One HTTP request; on success returns (size, sha256) of the complete part file.
async fn attempt(
    client: &reqwest::Client,
    url: &str,
    p: &Paths,
    opts: &DownloadOptions,
    report: &mut DownloadReport,
) -> std::result::Result<(u64, String), Failure> {
    // Resume only a partial file whose validator we know, for the same URL.
    let state: Option<PartState> = std::fs::read(&p.state)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|s: &PartState| s.url == url);
    let have = match (&state, std::fs::metadata(&p.part)) {
        (Some(_), Ok(m)) => m.len(),
        _ => 0,
    };
    let mut req = client.get(url);
    if have > 0 {
        let s = state.as_ref().expect("state checked above");
        req = req
            .header(RANGE, format!("bytes={have}-"))
            .header(IF_RANGE, &s.validator);
    }
    report.requests += 1;
    let resp = req.send().await.map_err(|e| http_error(url, e))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let offset = match status {
        StatusCode::PARTIAL_CONTENT if have > 0 => match content_range(&headers) {
            Some((start, _)) if start == have => {
                report.resumed += 1;
                have
            }
            _ => {
                // Not the continuation we asked for: start over.
                report.restarted += 1;
                let _ = std::fs::remove_file(&p.part);
                let _ = std::fs::remove_file(&p.state);
                return Err(Error::Backend {
                    backend: "http".into(),
                    message: format!("{url}: the server answered another range; restarting"),
                    retryable: true,
                    source: None,
                }
                .into());
            }
        },
        StatusCode::OK => {
            if have > 0 {
                report.restarted += 1; // range ignored or file changed
            }
            0
        }
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
            report.restarted += 1;
            let _ = std::fs::remove_file(&p.part);
            let _ = std::fs::remove_file(&p.state);
            return Err(Error::Backend {
                backend: "http".into(),
                message: format!("{url}: range not satisfiable; restarting"),
                retryable: true,
                source: None,
            }
            .into());
        }
        StatusCode::NOT_FOUND | StatusCode::GONE => {
            return Err(Error::NotFound {
                what: url.to_owned(),
            }
            .into())
        }
        s => {
            let retryable = s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS;
            return Err(Failure {
                error: Error::Backend {
                    backend: "http".into(),
                    message: format!("{url}: HTTP {s}"),
                    retryable,
                    source: None,
                },
                retry_after: retry_after(&headers),
            });
        }
    };
    let total = match status {
        StatusCode::PARTIAL_CONTENT => content_range(&headers).and_then(|(_, t)| t),
        _ => resp.content_length(),
    };
    if let (Some(want), Some(got)) = (opts.size, total) {
        if want != got {
            return Err(Error::Integrity {
                what: url.to_owned(),
                expected: format!("{want} bytes"),
                actual: format!("{got} bytes (Content-Length)"),
            }
            .into());
        }
    }
    if let Some(v) = validator(&headers) {
        let s = PartState {
            url: url.to_owned(),
            validator: v,
        };
        crate::ledger::write_atomic(&p.state, &serde_json::to_vec(&s).unwrap_or_default())?;
    } else {
        let _ = std::fs::remove_file(&p.state);
    }
    let sink = Sink::open(&p.part, offset).await?;
    let mut done = offset;
    let mut resp = resp;
    let received = loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                done += bytes.len() as u64;
                if let Some(f) = &opts.progress {
                    f(done, total);
                }
                if let Err(e) = sink.send(bytes).await {
                    break Err(Failure::from(e));
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(Failure::from(http_error(url, e))),
        }
    };
    let (len, sha) = sink.finish().await?;
    received?;
    if let Some(t) = total {
        if len != t {
            return Err(Error::Backend {
                backend: "http".into(),
                message: format!("{url}: connection ended at {len} of {t} bytes"),
                retryable: true,
                source: None,
            }
            .into());
        }
    }
    if let Some(want) = opts.size.filter(|w| *w != len) {
        return Err(Error::Integrity {
            what: url.to_owned(),
            expected: format!("{want} bytes"),
            actual: format!("{len} bytes"),
        }
        .into());
    }
    if let Some(want) = opts.sha256.as_ref().filter(|w| **w != sha) {
        return Err(Error::Integrity {
            what: url.to_owned(),
            expected: want.clone(),
            actual: sha,
        }
        .into());
    }
    Ok((len, sha))
}

/// Writes and hashes received bytes on a blocking thread, so the network task never waits
/// for the disk or the hash.
struct Sink {
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    worker: tokio::task::JoinHandle<Result<(u64, String)>>,
}

impl Sink {
    /// Opens `part`, keeping its first `offset` bytes (hashed first) and dropping the rest.
    async fn open(part: &Path, offset: u64) -> Result<Sink> {
        use std::io::{Read, Seek, Write};
        let path = part.to_owned();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
        let worker = tokio::task::spawn_blocking(move || -> Result<(u64, String)> {
            let io = |op, e| Error::io(op, &path, "localhost", e);
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(offset == 0)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io("open", e))?;
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            if offset > 0 {
                let mut prefix = (&mut file).take(offset);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = prefix.read(&mut buf).map_err(|e| io("read", e))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    len += n as u64;
                }
                file.set_len(offset).map_err(|e| io("truncate", e))?;
                file.seek(std::io::SeekFrom::Start(offset))
                    .map_err(|e| io("seek", e))?;
            }
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
                out.write_all(&chunk).map_err(|e| io("write", e))?;
                len += chunk.len() as u64;
            }
            let file = out.into_inner().map_err(|e| io("write", e.into_error()))?;
            file.sync_data().map_err(|e| io("sync", e))?;
            Ok((len, hex::encode(hasher.finalize())))
        });
        Ok(Sink { tx, worker })
    }

    async fn send(&self, chunk: bytes::Bytes) -> Result<()> {
        self.tx.send(chunk).await.map_err(|_| Error::Backend {
            backend: "download".into(),
            message: "the writer thread stopped".into(),
            retryable: false,
            source: None,
        })
    }

    async fn finish(self) -> Result<(u64, String)> {
        drop(self.tx);
        self.worker.await.map_err(|e| Error::Backend {
            backend: "download".into(),
            message: format!("writer thread: {e}"),
            retryable: false,
            source: None,
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn content_range_and_validators_parse() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/1000"),
        );
        assert_eq!(content_range(&h), Some((100, Some(1000))));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 5-9/*"));
        assert_eq!(content_range(&h), Some((5, None)));
        h.insert(ETAG, HeaderValue::from_static("W/\"weak\""));
        h.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Sun, 22 Nov 2026 05:00:00 GMT"),
        );
        assert_eq!(
            validator(&h).as_deref(),
            Some("Sun, 22 Nov 2026 05:00:00 GMT")
        );
        h.insert(ETAG, HeaderValue::from_static("\"strong\""));
        assert_eq!(validator(&h).as_deref(), Some("\"strong\""));
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    }

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
}
