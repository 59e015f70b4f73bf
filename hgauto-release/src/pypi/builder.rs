//! [`PypiPublisherBuilder`]: settings, credentials and the HTTP clients of a
//! [`PypiPublisher`].

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Url;

use super::credentials::{self, PypiSettings, TOKEN_USER};
use super::PypiPublisher;
use hgauto_core::error::{Error, Result};
use hgauto_core::redact::{redact_url, SecretString};
use hgauto_core::retry::RetryPolicy;

/// Builds a [`PypiPublisher`]: explicit settings first, then the environment, then
/// `.pypirc` (see [`PypiSettings`]).
#[derive(Debug, Clone, Default)]
pub struct PypiPublisherBuilder {
    settings: PypiSettings,
    index_url: Option<String>,
    retry: Option<RetryPolicy>,
    concurrency: Option<usize>,
    env: Option<HashMap<String, String>>,
}

impl PypiPublisherBuilder {
    /// The upload endpoint (default: `TWINE_REPOSITORY_URL`, the `.pypirc` section's
    /// `repository`, else PyPI's).
    pub fn repository_url(mut self, url: impl Into<String>) -> Self {
        self.settings.repository_url = Some(url.into());
        self
    }

    /// The `.pypirc` section to read (default `TWINE_REPOSITORY`, else `pypi`).
    pub fn repository(mut self, name: impl Into<String>) -> Self {
        self.settings.repository = Some(name.into());
        self
    }

    /// The user name.
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.settings.username = Some(user.into());
        self
    }

    /// The password.
    pub fn password(mut self, password: impl Into<SecretString>) -> Self {
        self.settings.password = Some(password.into());
        self
    }

    /// An API token: sent as the password of user `__token__`.
    pub fn token(mut self, token: impl Into<SecretString>) -> Self {
        self.settings.username = Some(TOKEN_USER.to_owned());
        self.settings.password = Some(token.into());
        self
    }

    /// The `.pypirc` file to read (default `~/.pypirc`).
    pub fn pypirc(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.settings.pypirc = Some(path.into());
        self
    }

    /// The simple index to check for existing files. Default: PyPI's and TestPyPI's own,
    /// else `simple/` under the upload URL (pypiserver); devpi needs `…/+simple/`.
    pub fn index_url(mut self, url: impl Into<String>) -> Self {
        self.index_url = Some(url.into());
        self
    }

    /// The retry policy of uploads and index reads (default [`RetryPolicy::network`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// How many files are uploaded at once (default 4).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }

    /// Reads `TWINE_*` and `HOME` from `vars` instead of the process environment.
    pub fn environment(mut self, vars: HashMap<String, String>) -> Self {
        self.env = Some(vars);
        self
    }

    /// Resolves the settings and builds the publisher.
    pub fn build(self) -> Result<PypiPublisher> {
        let resolved = match &self.env {
            Some(map) => credentials::resolve(&self.settings, &|k| map.get(k).cloned()),
            None => credentials::resolve(&self.settings, &|k| std::env::var(k).ok()),
        }?;
        let shown = redact_url(resolved.url.as_str());
        let index_url = match &self.index_url {
            Some(text) => {
                let mut u = Url::parse(text).map_err(|e| {
                    Error::invalid(format!("index URL {:?}", redact_url(text)), e.to_string())
                })?;
                if !u.path().ends_with('/') {
                    u.set_path(&format!("{}/", u.path()));
                }
                u
            }
            None => default_index(&resolved.url),
        };
        let client = |redirects| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(300))
                .redirect(redirects)
                .user_agent(concat!("hgauto/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::invalid("HTTP client", e.without_url().to_string()))
        };
        Ok(PypiPublisher {
            upload_client: client(reqwest::redirect::Policy::none())?,
            index_client: client(same_origin_redirects())?,
            upload_url: resolved.url,
            index_url,
            username: resolved.username,
            password: resolved.password,
            name: format!("pypi:{shown}"),
            shown,
            retry: self.retry.unwrap_or_else(RetryPolicy::network),
            concurrency: self.concurrency.unwrap_or(4),
        })
    }
}

/// PyPI's and TestPyPI's simple indexes for their upload endpoints, else `simple/` under
/// the upload URL.
fn default_index(upload: &Url) -> Url {
    let known = match upload.host_str() {
        Some("upload.pypi.org") => Some("https://pypi.org/simple/"),
        Some("test.pypi.org") => Some("https://test.pypi.org/simple/"),
        _ => None,
    };
    if let Some(k) = known.and_then(|k| Url::parse(k).ok()) {
        return k;
    }
    let mut u = upload.clone();
    let base = upload.path().trim_end_matches('/');
    u.set_path(&format!("{base}/simple/"));
    u.set_query(None);
    u
}

/// Follows redirects within one origin only: an index that sends a missing project to
/// another index (pypiserver's fallback to PyPI) does not have it.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if !same || attempt.previous().len() > 10 {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pypi::{PYPI_UPLOAD_URL, TESTPYPI_UPLOAD_URL};

    #[test]
    fn default_index_follows_the_upload_url() {
        let idx = |u: &str| default_index(&Url::parse(u).unwrap()).to_string();
        assert_eq!(idx(PYPI_UPLOAD_URL), "https://pypi.org/simple/");
        assert_eq!(idx(TESTPYPI_UPLOAD_URL), "https://test.pypi.org/simple/");
        assert_eq!(
            idx("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080/simple/"
        );
        assert_eq!(
            idx("http://127.0.0.1:8080/prefix"),
            "http://127.0.0.1:8080/prefix/simple/"
        );
    }
}
