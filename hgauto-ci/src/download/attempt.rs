//! One HTTP request of a download: resume or restart, check what came back, write it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{
    HeaderMap, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE, RETRY_AFTER,
};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::sink::Sink;
use super::{DownloadOptions, DownloadReport};
use hgauto_core::error::{Error, Result};

/// What the sidecar remembers about a partial file: which URL it came from (as a hash, so
/// no credential or signature is written) and the server's validator for it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct PartState {
    url_sha256: String,
    validator: String,
}

/// Where a download keeps its partial file, the sidecar, and its lock.
pub(super) struct Paths {
    pub part: PathBuf,
    pub state: PathBuf,
    pub lock: PathBuf,
}

impl Paths {
    pub(super) fn of(dest: &Path) -> Result<Paths> {
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
            lock: dir.join(format!(".{name}.hgauto-lock")),
        })
    }

    /// Forgets the partial file: the next request starts from zero.
    pub(super) fn discard(&self) {
        let _ = std::fs::remove_file(&self.part);
        let _ = std::fs::remove_file(&self.state);
    }
}

/// One attempt's failure: the error, a server-requested delay, and whether the partial
/// file was thrown away so that the next request starts over at once.
pub(super) struct Failure {
    pub error: Error,
    pub retry_after: Option<Duration>,
    pub restart: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            retry_after: None,
            restart: false,
        }
    }
}

/// The URL as an attempt knows it: the real one for the request, the redacted one for
/// everything shown, and the hash recorded in the sidecar.
pub(super) struct Target<'a> {
    pub url: &'a str,
    pub shown: &'a str,
    pub url_sha256: String,
    /// The expected sha256, lowercase.
    pub sha256: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub(super) fn new(url: &'a str, shown: &'a str, sha256: Option<&'a str>) -> Self {
        Target {
            url,
            shown,
            url_sha256: hex::encode(Sha256::digest(url.as_bytes())),
            sha256,
        }
    }

    fn http_error(&self, e: reqwest::Error) -> Error {
        Error::Connection {
            machine: self.shown.to_owned(),
            may_have_run: false,
            source: Box::new(e.without_url()),
        }
    }

    fn backend(&self, message: String, retryable: bool) -> Error {
        Error::Backend {
            backend: "http".into(),
            message: format!("{}: {message}", self.shown),
            retryable,
            source: None,
        }
    }

    fn restart(&self, p: &Paths, report: &mut DownloadReport, why: &str) -> Failure {
        report.restarted += 1;
        p.discard();
        tracing::info!(url = %self.shown, "{why}; starting over");
        Failure {
            error: self.backend(format!("{why}; starting over"), true),
            retry_after: None,
            restart: true,
        }
    }
}

/// The server's validator: a strong ETag, else Last-Modified (a weak ETag cannot be used
/// with If-Range).
pub(super) fn validator(headers: &HeaderMap) -> Option<String> {
    headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.starts_with("W/"))
        .or_else(|| headers.get(LAST_MODIFIED).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
}

/// `Content-Range: bytes start-end/total` -> (start, total).
pub(super) fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The bytes of the sidecar at `path` (at most 64 KiB), if it is this user's own file.
fn read_own(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = hgauto_core::backend::fs::open_own_file(path, false).ok()??;
    let mut bytes = Vec::new();
    file.take(64 * 1024).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// The length of the part file, `Some(0)` when there is none, `None` when something that is
/// not this user's own regular file is there.
fn own_len(path: &Path) -> Option<u64> {
    match hgauto_core::backend::fs::open_own_file(path, false) {
        Ok(Some(f)) => f.metadata().ok().map(|m| m.len()),
        Ok(None) => None,
        Err(_) => Some(0),
    }
}

/// One HTTP request; on success returns (size, sha256) of the complete part file.
pub(super) async fn attempt(
    client: &reqwest::Client,
    t: &Target<'_>,
    p: &Paths,
    opts: &DownloadOptions,
    report: &mut DownloadReport,
) -> std::result::Result<(u64, String), Failure> {
    // Resume only a partial file whose validator we know, for the same URL, and only when
    // both are this user's own files: a part file and sidecar planted in a shared directory
    // would otherwise splice their bytes onto the download.
    let state: Option<PartState> = read_own(&p.state)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|s: &PartState| s.url_sha256 == t.url_sha256);
    let have = match &state {
        Some(_) => own_len(&p.part).unwrap_or_else(|| {
            tracing::warn!(url = %t.shown, part = %p.part.display(), "the partial file is not this user's own; starting over");
            0
        }),
        None => 0,
    };
    let mut req = client.get(t.url);
    if let (true, Some(s)) = (have > 0, &state) {
        req = req
            .header(RANGE, format!("bytes={have}-"))
            .header(IF_RANGE, &s.validator);
    }
    report.requests += 1;
    let resp = req.send().await.map_err(|e| t.http_error(e))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let offset = match (status, &state) {
        (StatusCode::PARTIAL_CONTENT, Some(s)) if have > 0 => {
            // A server or proxy that ignores If-Range sends the rest of *another* version:
            // only the same validator proves the bytes continue ours.
            if validator(&headers).as_deref() != Some(s.validator.as_str()) {
                return Err(t.restart(p, report, "the file changed on the server"));
            }
            match content_range(&headers) {
                Some((start, _)) if start == have => {
                    report.resumed += 1;
                    have
                }
                _ => return Err(t.restart(p, report, "the server answered another range")),
            }
        }
        (StatusCode::OK, _) => {
            if have > 0 {
                report.restarted += 1; // range ignored or file changed
            }
            0
        }
        (StatusCode::RANGE_NOT_SATISFIABLE, _) if have > 0 => {
            return Err(t.restart(p, report, "range not satisfiable"));
        }
        (StatusCode::NOT_FOUND | StatusCode::GONE, _) => {
            return Err(Error::NotFound {
                what: t.shown.to_owned(),
            }
            .into())
        }
        (s, _) => {
            let retryable = s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS;
            return Err(Failure {
                error: t.backend(format!("HTTP {s}"), retryable),
                retry_after: retry_after(&headers),
                restart: false,
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
                what: t.shown.to_owned(),
                expected: format!("{want} bytes"),
                actual: format!("{got} bytes (Content-Length)"),
            }
            .into());
        }
    }
    match validator(&headers) {
        Some(v) => {
            let s = PartState {
                url_sha256: t.url_sha256.clone(),
                validator: v,
            };
            let json = serde_json::to_vec(&s).unwrap_or_default();
            hgauto_core::backend::fs::write_atomic_private(&p.state, &json)?;
        }
        None => {
            let _ = std::fs::remove_file(&p.state);
        }
    }
    let sink = Sink::open(&p.part, offset).await?;
    let mut done = offset;
    let mut resp = resp;
    let received = loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                done += bytes.len() as u64;
                // A body (chunked, or lying about its length) longer than the size we were
                // told is cut here: it is never read to its end.
                if let Some(want) = opts.size.filter(|w| done > *w) {
                    break Err(Failure::from(Error::Integrity {
                        what: t.shown.to_owned(),
                        expected: format!("{want} bytes"),
                        actual: format!("more than {want} bytes"),
                    }));
                }
                if let Some(f) = &opts.progress {
                    f(done, total);
                }
                if let Err(e) = sink.send(bytes).await {
                    break Err(Failure::from(e));
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(Failure::from(t.http_error(e))),
        }
    };
    let (len, sha) = sink.finish().await?;
    received?;
    if let Some(total) = total.filter(|total| *total != len) {
        return Err(t
            .backend(format!("connection ended at {len} of {total} bytes"), true)
            .into());
    }
    if let Some(want) = opts.size.filter(|w| *w != len) {
        return Err(Error::Integrity {
            what: t.shown.to_owned(),
            expected: format!("{want} bytes"),
            actual: format!("{len} bytes"),
        }
        .into());
    }
    if let Some(want) = t.sha256.filter(|w| *w != sha) {
        return Err(Error::Integrity {
            what: t.shown.to_owned(),
            expected: want.to_owned(),
            actual: sha,
        }
        .into());
    }
    Ok((len, sha))
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
}
