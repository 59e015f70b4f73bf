//! One upload request: the multipart form twine sends, with the file streamed from disk and
//! hashed on the way, and what the index's answer means.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::LOCATION;
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::dist::Distribution;
use super::index::read_bounded;
use super::PypiPublisher;
use hgauto_core::error::{ApiErrorClass, Error, Result};

/// How an upload ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Uploaded {
    /// The index stored the file.
    Stored,
    /// The index says a file of that name exists already (content unknown yet).
    NameTaken,
}

/// The form for `d`: its text fields, then the file as `content`, streamed.
pub(super) fn form(d: &Distribution, tampered: Arc<AtomicBool>) -> Result<Form> {
    let mut form = Form::new();
    for (key, value) in d.form_fields() {
        form = form.text(key, value);
    }
    let body = file_body(d.artifact.path.clone(), d.artifact.sha256.clone(), tampered);
    let part = Part::stream_with_length(body, d.artifact.size)
        .file_name(d.artifact.name.clone())
        .mime_str("application/octet-stream")
        .map_err(|e| Error::invalid("upload form", e.to_string()))?;
    Ok(form.part("content", part))
}

/// The file as a stream of 256 KiB chunks, hashed as it goes. If its sha256 at the end is
/// not `expected`, the stream fails (so the request is cut short and the index stores
/// nothing) and `tampered` is set.
fn file_body(path: PathBuf, expected: String, tampered: Arc<AtomicBool>) -> reqwest::Body {
    struct State {
        path: PathBuf,
        file: Option<tokio::fs::File>,
        hasher: Sha256,
        expected: String,
        tampered: Arc<AtomicBool>,
    }
    let state = State {
        path,
        file: None,
        hasher: Sha256::new(),
        expected,
        tampered,
    };
    let stream = futures::stream::try_unfold(state, |mut st| async move {
        let file = match &mut st.file {
            Some(f) => f,
            None => st.file.insert(tokio::fs::File::open(&st.path).await?),
        };
        let mut buf = vec![0u8; 256 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            let actual = hex::encode(std::mem::take(&mut st.hasher).finalize());
            if actual != st.expected {
                st.tampered.store(true, Ordering::SeqCst);
                return Err(std::io::Error::other(format!(
                    "{} changed while it was uploaded",
                    st.path.display()
                )));
            }
            return Ok(None);
        }
        buf.truncate(n);
        st.hasher.update(&buf);
        Ok(Some((Bytes::from(buf), st)))
    });
    reqwest::Body::wrap_stream(stream)
}

/// What the index's answer to an upload means. `shown` is the redacted endpoint, `user` the
/// user name (for an authentication error), `body` the start of the response body.
pub(super) fn classify(
    status: StatusCode,
    location: Option<&str>,
    body: &str,
    name: &str,
    shown: &str,
    user: Option<&str>,
) -> Result<Uploaded> {
    if status.is_success() {
        return Ok(Uploaded::Stored);
    }
    let said = summary(body);
    let lower = said.to_lowercase();
    if status == StatusCode::CONFLICT
        || (status == StatusCode::BAD_REQUEST
            && (lower.contains("already exist") || lower.contains("already been used")))
    {
        return Ok(Uploaded::NameTaken);
    }
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return Err(Error::Auth {
            machine: shown.to_owned(),
            user: user.unwrap_or("(anonymous)").to_owned(),
            reason: format!(
                "{status}{}",
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ),
        });
    }
    let (class, message) = if status.is_redirection() {
        (
            ApiErrorClass::Invalid,
            format!(
                "the index redirects uploads to {}: use that as the repository URL",
                location
                    .map(hgauto_core::redact::redact_url)
                    .unwrap_or_default()
            ),
        )
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        (ApiErrorClass::Throttled, said)
    } else if status.is_server_error() {
        (ApiErrorClass::Unavailable, said)
    } else if status == StatusCode::NOT_FOUND {
        (
            ApiErrorClass::NotFound,
            format!("no upload endpoint here (is the repository URL right?) {said}"),
        )
    } else {
        (ApiErrorClass::Invalid, said)
    };
    Err(Error::Api {
        service: "pypi",
        action: "upload",
        resource: format!("{name} to {shown}"),
        class,
        code: format!("HTTP {}", status.as_u16()).into(),
        message: message.trim().to_owned().into(),
        source: None,
    })
}

/// The first 300 characters of a response body's text, tags and blank space squeezed out.
pub(super) fn summary(body: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let squeezed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    squeezed.chars().take(300).collect()
}

impl PypiPublisher {
    /// Uploads one distribution, with retries; `true` if this call stored it.
    pub(super) async fn upload(&self, d: &Distribution) -> Result<bool> {
        let name = &d.artifact.name;
        // Whether an attempt died after it may have sent part of the file.
        let cut = AtomicBool::new(false);
        let outcome = self
            .retry
            .run(&format!("upload {name}"), |_| async {
                let tampered = Arc::new(AtomicBool::new(false));
                let form = form(d, tampered.clone())?;
                let req = self
                    .upload_client
                    .post(self.upload_url.clone())
                    .multipart(form);
                let sent = self.authorize(req, &self.upload_url).send().await;
                if tampered.load(Ordering::SeqCst) {
                    return Err(Error::Integrity {
                        what: format!(
                            "{} (changed while it was uploaded)",
                            d.artifact.path.display()
                        ),
                        expected: d.artifact.sha256.clone(),
                        actual: "other content".into(),
                    });
                }
                let resp = match sent {
                    Ok(resp) => resp,
                    Err(e) => {
                        cut.store(true, Ordering::SeqCst);
                        // A server that refuses the credentials may answer at once and
                        // close while the file is still being sent, and the answer is
                        // lost: ask again without a file before retrying.
                        self.probe_credentials().await?;
                        return Err(self.connection_error(e));
                    }
                };
                let status = resp.status();
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = read_bounded(resp).await.unwrap_or_default();
                classify(
                    status,
                    location.as_deref(),
                    &body,
                    name,
                    &self.shown,
                    self.username.as_deref(),
                )
            })
            .await?;
        if outcome == Uploaded::Stored {
            tracing::info!(artifact = %name, index = %self.shown, "uploaded");
            return Ok(true);
        }
        // Ours from an earlier attempt whose answer was lost, or someone else's.
        let (url, listing) = self.listing(&d.project).await?;
        match self.presence(&url, &listing, &d.artifact).await {
            Ok(true) => Ok(false),
            Ok(false) => Err(Error::Conflict {
                what: format!("{name} on {}", self.shown),
                reason: "the index refuses the name (it exists, or was used before and \
                         deleted), and does not list this content under it"
                    .into(),
            }),
            // The index kept what it received of a cut attempt (pypiserver does: it checks
            // no digest). Only someone with access to the index can remove it.
            Err(Error::Conflict { reason, .. }) if cut.load(Ordering::SeqCst) => {
                Err(Error::Integrity {
                    what: format!(
                        "{name} on {}: an upload was cut off and the index kept the part it \
                         received ({reason}); delete that file from the index, then publish \
                         again",
                        self.shown
                    ),
                    expected: d.artifact.sha256.clone(),
                    actual: "a partial file".into(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// An upload form without a file: `Err(Auth)` when the index refuses the credentials,
    /// `Ok` for any other answer (or none).
    async fn probe_credentials(&self) -> Result<()> {
        let form = Form::new()
            .text(":action", "file_upload")
            .text("protocol_version", "1");
        let req = self
            .upload_client
            .post(self.upload_url.clone())
            .multipart(form);
        let Ok(resp) = self.authorize(req, &self.upload_url).send().await else {
            return Ok(());
        };
        let status = resp.status();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            let body = read_bounded(resp).await.unwrap_or_default();
            return classify(
                status,
                None,
                &body,
                "",
                &self.shown,
                self.username.as_deref(),
            )
            .map(|_| ());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: u16, body: &str) -> Result<Uploaded> {
        classify(
            StatusCode::from_u16(status).unwrap(),
            None,
            body,
            "demo-1.0.tar.gz",
            "http://127.0.0.1:1/",
            Some("alice"),
        )
    }

    #[test]
    fn answers_map_onto_the_publisher_contract() {
        assert_eq!(class(200, "").unwrap(), Uploaded::Stored);
        // pypiserver (409, or 400 for twine) and PyPI (400) on a taken name.
        assert_eq!(
            class(409, "Package already exists").unwrap(),
            Uploaded::NameTaken
        );
        assert_eq!(
            class(400, "<h1>400 File already exists ('demo-1.0.tar.gz')</h1>").unwrap(),
            Uploaded::NameTaken
        );
        assert_eq!(
            class(400, "This filename has already been used").unwrap(),
            Uploaded::NameTaken
        );
        assert!(matches!(class(401, ""), Err(Error::Auth { .. })));
        assert!(matches!(
            class(403, "Invalid API Token"),
            Err(Error::Auth { .. })
        ));
        let e = class(503, "down").unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert!(class(429, "").unwrap_err().is_retryable());
        let e = class(
            400,
            "<html><body>Invalid value for blake2_256_digest</body></html>",
        )
        .unwrap_err();
        assert!(!e.is_retryable());
        assert!(
            e.to_string()
                .contains("Invalid value for blake2_256_digest"),
            "{e}"
        );
        let e = classify(
            StatusCode::MOVED_PERMANENTLY,
            Some("https://u:secret@elsewhere/legacy/"),
            "",
            "x",
            "y",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("elsewhere") && !e.to_string().contains("secret"));
    }
}
