//! What an index already holds: its simple page for a project, and each file's digest.

use futures::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};

use super::simple::{self, Listing};
use super::{normalize_project, PypiPublisher};
use hgauto_core::artifact::Artifact;
use hgauto_core::error::{ApiErrorClass, Error, Result};
use hgauto_core::redact::redact_url;

/// The largest simple page or error body read (a project with thousands of files).
const MAX_PAGE: usize = 64 * 1024 * 1024;

/// The normalised project a file name belongs to, without reading the file.
pub(super) fn project_of(name: &str) -> Result<String> {
    let project = if let Some(stem) = name.strip_suffix(".whl") {
        stem.split('-').next()
    } else {
        name.strip_suffix(".tar.gz")
            .or_else(|| name.strip_suffix(".zip"))
            .and_then(|stem| stem.rsplit_once('-'))
            .map(|(project, _)| project)
    };
    project
        .filter(|p| !p.is_empty())
        .map(normalize_project)
        .ok_or_else(|| {
            Error::invalid(
                format!("distribution {name}"),
                "is not a wheel (.whl) or an sdist (.tar.gz, .zip)",
            )
        })
}

impl PypiPublisher {
    /// The files the index lists for `project` (empty when it has none).
    pub(super) async fn listing(&self, project: &str) -> Result<(Url, Listing)> {
        let url = self
            .index_url
            .join(&format!("{project}/"))
            .map_err(|e| Error::invalid(format!("project name {project:?}"), e.to_string()))?;
        let what = format!("read the simple page of {project}");
        self.retry
            .run(&what, |_| async {
                let req = self.index_client.get(url.clone()).header(ACCEPT, simple::ACCEPT);
                let resp = self
                    .authorize(req, &url)
                    .send()
                    .await
                    .map_err(|e| self.connection_error(e))?;
                let status = resp.status();
                let page_url = resp.url().clone();
                if status == StatusCode::NOT_FOUND || status.is_redirection() {
                    if status.is_redirection() {
                        tracing::debug!(project, index = %self.index_url, "the index sends this project elsewhere; it has no file of it");
                    }
                    return Ok((page_url, Listing::new()));
                }
                if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                    return Err(Error::Auth {
                        machine: redact_url(self.index_url.as_str()),
                        user: self.username.clone().unwrap_or_else(|| "(anonymous)".into()),
                        reason: format!("{status} reading the simple index"),
                    });
                }
                let content_type = resp
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("text/html")
                    .to_owned();
                let body = read_bounded(resp).await.map_err(|e| self.connection_error(e))?;
                if !status.is_success() {
                    return Err(self.api_error("read the simple index", project.to_owned(), status, &body));
                }
                let listing = simple::parse(&content_type, &body).map_err(|reason| {
                    self.api_error_text("read the simple index", project, reason)
                })?;
                Ok((page_url, listing))
            })
            .await
    }

    fn api_error_text(&self, action: &'static str, project: &str, reason: String) -> Error {
        Error::Api {
            service: "pypi",
            action,
            resource: project.to_owned(),
            class: ApiErrorClass::Invalid,
            code: "unreadable page".into(),
            message: reason.into(),
            source: None,
        }
    }

    /// Whether `a` is listed with its content, given the project's listing.
    pub(super) async fn presence(
        &self,
        page: &Url,
        listing: &Listing,
        a: &Artifact,
    ) -> Result<bool> {
        let Some(listed) = listing.get(&a.name) else {
            return Ok(false);
        };
        let sha256 = match &listed.sha256 {
            Some(h) => h.clone(),
            None => self.remote_sha256(page, &listed.url).await?,
        };
        if sha256 == a.sha256 {
            Ok(true)
        } else {
            Err(Error::Conflict {
                what: format!("{} on {}", a.name, self.shown),
                reason: format!("the index has it with sha256 {sha256}, not {}", a.sha256),
            })
        }
    }

    /// The sha256 of a listed file that the page gives no digest for, by downloading it.
    async fn remote_sha256(&self, page: &Url, href: &str) -> Result<String> {
        use sha2::{Digest, Sha256};
        let url = page
            .join(href)
            .map_err(|e| Error::invalid(format!("link {:?}", redact_url(href)), e.to_string()))?;
        self.retry
            .run("download a listed file to hash it", |_| async {
                let req = self.index_client.get(url.clone());
                let resp = self
                    .authorize(req, &url)
                    .send()
                    .await
                    .map_err(|e| self.connection_error(e))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(self.api_error("download", redact_url(url.as_str()), status, ""));
                }
                let mut hasher = Sha256::new();
                let mut stream = resp.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    hasher.update(chunk.map_err(|e| self.connection_error(e))?);
                }
                Ok(hex::encode(hasher.finalize()))
            })
            .await
    }
}

/// A response body as text, at most [`MAX_PAGE`] bytes of it.
pub(super) async fn read_bounded(
    resp: reqwest::Response,
) -> std::result::Result<String, reqwest::Error> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = MAX_PAGE.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_from_file_names() {
        assert_eq!(project_of("My_Pkg-1.0-py3-none-any.whl").unwrap(), "my-pkg");
        assert_eq!(project_of("my-pkg-1.0.tar.gz").unwrap(), "my-pkg");
        assert_eq!(project_of("my_pkg-1.0.zip").unwrap(), "my-pkg");
        assert!(project_of("notes.txt").is_err());
        assert!(project_of("-1.0.tar.gz").is_err());
    }
}
