//! One upload request: the multipart form twine sends, with the file streamed from disk and
//! hashed on the way, and what the index's answer means.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::dist::Distribution;
use crate::error::{ApiErrorClass, Error, Result};

/// How an upload ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    /// The index stored the file.
    Stored,
    /// The index says a file of that name exists already (content unknown yet).
    NameTaken,
}

/// The form for `d`: its text fields, then the file as `content`, streamed.
pub fn form(d: &Distribution, tampered: Arc<AtomicBool>) -> Result<Form> {
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
pub fn classify(
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
                location.map(crate::redact::redact_url).unwrap_or_default()
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
pub fn summary(body: &str) -> String {
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
