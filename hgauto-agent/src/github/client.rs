//! A small GitHub REST client over `reqwest`: conditional GETs through an `ETag` cache
//! kept on disk, pagination by `Link` headers, and rate limits waited out (never spun on).
//!
//! Rate limits, as GitHub documents them: when `x-ratelimit-remaining` reaches 0, no
//! request is sent before `x-ratelimit-reset`; a 403 or 429 with `retry-after` waits that
//! long; one that names a (secondary) rate limit without saying how long waits a minute,
//! doubling. A wait longer than the client's `max_wait` is an error
//! ([`ApiErrorClass::Throttled`]) instead of a sleep.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{StatusCode, Url};

use super::cache::{Cached, EtagCache};
use super::urls::next_link;
use hgauto_core::error::{ApiErrorClass, Error, Result};
use hgauto_core::redact::SecretString;

/// How many rate-limit waits one request may go through before it fails.
const MAX_LIMIT_WAITS: u32 = 5;
/// How many times a transport failure or a 5xx is tried again.
const MAX_TRANSIENT: u32 = 3;

/// What a source's GitHub client has done so far: the figures an idle round is judged by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GithubStats {
    /// Requests sent (304s included).
    pub requests: u64,
    /// Conditional requests answered `304 Not Modified` (free against the rate limit).
    pub not_modified: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
    /// Commit statuses written.
    pub status_writes: u64,
    /// Status writes skipped because they would have changed nothing.
    pub status_writes_skipped: u64,
    /// Times a rate limit was waited out.
    pub rate_limit_waits: u64,
}

/// The items of a paginated list, and whether any page differed from the cache.
pub(crate) struct Listing {
    pub items: Vec<serde_json::Value>,
    pub changed: bool,
}

/// A GitHub API client (see the [module docs](self)).
pub(crate) struct Client {
    http: reqwest::Client,
    api: Url,
    token: Option<SecretString>,
    cache: Mutex<EtagCache>,
    stats: Mutex<GithubStats>,
    paused_until: Mutex<Option<SystemTime>>,
    max_wait: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api", &self.api.as_str())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

fn api_error(
    action: &'static str,
    resource: &str,
    class: ApiErrorClass,
    code: impl Into<String>,
    message: impl Into<String>,
) -> Error {
    let mut message: String = message.into();
    if message.len() > 300 {
        message.truncate(hgauto_core::text::clip(&message, 300).len());
        message.push('…');
    }
    Error::Api {
        service: "github",
        action,
        resource: resource.to_owned(),
        class,
        code: code.into().into_boxed_str(),
        message: message.into_boxed_str(),
        source: None,
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The longest wait a server's `retry-after` or reset time is taken at: a day. A larger
/// (or absurd) value is a wait longer than any `max_wait`, never an overflow.
const LONGEST_WAIT: Duration = Duration::from_secs(86_400);

fn epoch(secs: u64) -> SystemTime {
    let latest = SystemTime::now() + LONGEST_WAIT;
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .map_or(latest, |t| t.min(latest))
}

impl Client {
    /// A client for the API at `api` (see [`parse_api_url`]), caching in `cache_path`.
    pub(crate) fn new(
        api: Url,
        token: Option<SecretString>,
        cache_path: &std::path::Path,
        max_wait: Duration,
    ) -> Result<Client> {
        if let Some(t) = &token {
            // A token that cannot be a header value would otherwise be dropped, and every
            // request would go out unauthenticated. The error does not show the token.
            if HeaderValue::from_str(&format!("Bearer {}", t.expose())).is_err() {
                return Err(Error::invalid(
                    "GitHub token",
                    "holds a control character or a byte that cannot go in an HTTP header (a stray newline?)",
                ));
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hgauto/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::invalid("HTTP client", e.without_url().to_string()))?;
        Ok(Client {
            http,
            api,
            token,
            cache: Mutex::new(EtagCache::load(cache_path)),
            stats: Mutex::new(GithubStats::default()),
            paused_until: Mutex::new(None),
            max_wait,
        })
    }

    /// The figures so far.
    pub(crate) fn stats(&self) -> GithubStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut GithubStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Counts a status written.
    pub(crate) fn count_write(&self) {
        self.count(|s| s.status_writes += 1);
    }

    /// Counts a status write that was skipped.
    pub(crate) fn skipped_write(&self) {
        self.count(|s| s.status_writes_skipped += 1);
    }

    /// How long requests must still wait for a rate limit to reset, if they must.
    pub(crate) fn paused_for(&self) -> Option<Duration> {
        let until = (*self.paused_until.lock().unwrap_or_else(|p| p.into_inner()))?;
        until.duration_since(SystemTime::now()).ok()
    }

    fn pause_until(&self, until: SystemTime) {
        let mut p = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none_or(|cur| cur < until) {
            *p = Some(until);
        }
    }

    /// `path` (e.g. `repos/o/r/pulls`) under the API base.
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.api
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::invalid(format!("GitHub API path {path:?}"), e.to_string()))
    }

    /// Writes the conditional-request cache if it changed.
    pub(crate) fn save_cache(&self) {
        if let Err(e) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).save() {
            tracing::warn!(error = %e, "could not save the GitHub cache");
        }
    }

    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .request(method, url)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        if let Some(t) = &self.token {
            if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", t.expose())) {
                v.set_sensitive(true);
                rb = rb.header(AUTHORIZATION, v);
            }
        }
        rb
    }

    /// Sleeps out a known rate-limit pause, or fails when it is longer than `max_wait`.
    async fn wait_out_pause(&self, action: &'static str, resource: &str) -> Result<()> {
        if let Some(wait) = self.paused_for() {
            if wait > self.max_wait {
                return Err(api_error(
                    action,
                    resource,
                    ApiErrorClass::Throttled,
                    "rate limited",
                    format!(
                        "the rate limit resets in {} s, longer than the {} s this source waits",
                        wait.as_secs(),
                        self.max_wait.as_secs()
                    ),
                ));
            }
            tracing::info!(
                seconds = wait.as_secs_f64(),
                "waiting for GitHub's rate limit"
            );
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// Sends a request made by `make` until it gets an answer that is not a rate limit or a
    /// transient failure. Returns 2xx and 304 responses; other statuses are typed errors.
    async fn send(
        &self,
        action: &'static str,
        resource: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let (mut limit_waits, mut transient) = (0u32, 0u32);
        loop {
            self.wait_out_pause(action, resource).await?;
            self.count(|s| s.requests += 1);
            let resp = match make().send().await {
                Ok(r) => r,
                Err(e) => {
                    transient += 1;
                    if transient > MAX_TRANSIENT {
                        return Err(Error::Api {
                            service: "github",
                            action,
                            resource: resource.to_owned(),
                            class: ApiErrorClass::Unavailable,
                            code: "connection".into(),
                            message: e.without_url().to_string().into_boxed_str(),
                            source: None,
                        });
                    }
                    tokio::time::sleep(Duration::from_secs(1 << (transient - 1))).await;
                    continue;
                }
            };
            let headers = resp.headers().clone();
            if header_u64(&headers, "x-ratelimit-remaining") == Some(0) {
                if let Some(reset) = header_u64(&headers, "x-ratelimit-reset") {
                    self.pause_until(epoch(reset) + Duration::from_secs(1));
                }
            }
            let status = resp.status();
            if status.is_success() || status == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            let body = resp.text().await.unwrap_or_default();
            self.count(|s| s.bytes_received += body.len() as u64);
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| body.chars().take(200).collect());
            if status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS {
                let wait = if let Some(secs) = header_u64(&headers, "retry-after") {
                    Some(Duration::from_secs(secs).min(LONGEST_WAIT))
                } else if header_u64(&headers, "x-ratelimit-remaining") == Some(0) {
                    self.paused_for().or(Some(Duration::from_secs(60)))
                } else if message.to_ascii_lowercase().contains("rate limit") {
                    Some(Duration::from_secs(60 << limit_waits.min(4)))
                } else {
                    None
                };
                if let Some(wait) = wait {
                    limit_waits += 1;
                    if limit_waits > MAX_LIMIT_WAITS {
                        return Err(api_error(
                            action,
                            resource,
                            ApiErrorClass::Throttled,
                            status.as_str(),
                            format!("still rate limited after {MAX_LIMIT_WAITS} waits: {message}"),
                        ));
                    }
                    self.count(|s| s.rate_limit_waits += 1);
                    self.pause_until(SystemTime::now() + wait);
                    continue;
                }
            }
            if status.is_server_error() {
                transient += 1;
                if transient <= MAX_TRANSIENT {
                    tokio::time::sleep(Duration::from_secs(1 << (transient - 1))).await;
                    continue;
                }
            }
            let class = match status.as_u16() {
                401 | 403 => ApiErrorClass::Denied,
                404 | 410 => ApiErrorClass::NotFound,
                409 => ApiErrorClass::Conflict,
                422 | 400 => ApiErrorClass::Invalid,
                429 => ApiErrorClass::Throttled,
                500..=599 => ApiErrorClass::Unavailable,
                _ => ApiErrorClass::Other,
            };
            return Err(api_error(action, resource, class, status.as_str(), message));
        }
    }

    /// One page, conditionally: its body, its next page, and whether it changed.
    async fn get_page(&self, url: &Url, resource: &str) -> Result<(String, Option<String>, bool)> {
        let key = url.as_str().to_owned();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key);
        let resp = self
            .send("read", resource, || {
                let rb = self.request(reqwest::Method::GET, url.clone());
                match &cached {
                    Some(c) => rb.header("if-none-match", c.etag.as_str()),
                    None => rb,
                }
            })
            .await?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            self.count(|s| s.not_modified += 1);
            if let Some(c) = cached {
                return Ok((c.body, c.next, false));
            }
            return Err(api_error(
                "read",
                resource,
                ApiErrorClass::Other,
                "304",
                "not modified, but nothing was cached",
            ));
        }
        let next = next_link(resp.headers());
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.text().await.map_err(|e| {
            api_error(
                "read",
                resource,
                ApiErrorClass::Unavailable,
                "body",
                e.without_url().to_string(),
            )
        })?;
        self.count(|s| s.bytes_received += body.len() as u64);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match etag {
            Some(etag) => cache.put(
                &key,
                Cached {
                    etag,
                    body: body.clone(),
                    next: next.clone(),
                    used_ms: 0,
                },
            ),
            None => cache.forget(&key),
        }
        Ok((body, next, true))
    }

    /// Every item of the list at `path`, following `rel="next"` pages on the same server.
    pub(crate) async fn get_list(&self, path: &str) -> Result<Listing> {
        let mut url = self.url(path)?;
        let (mut items, mut changed) = (Vec::new(), false);
        for _ in 0..1000 {
            let (body, next, page_changed) = self.get_page(&url, path).await?;
            changed |= page_changed;
            match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(serde_json::Value::Array(page)) => items.extend(page),
                _ => {
                    self.cache
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .forget(url.as_str());
                    return Err(api_error(
                        "read",
                        path,
                        ApiErrorClass::Other,
                        "payload",
                        "the response is not a JSON list",
                    ));
                }
            }
            let Some(next) = next else {
                return Ok(Listing { items, changed });
            };
            let next = Url::parse(&next).map_err(|e| {
                api_error("read", path, ApiErrorClass::Other, "link", e.to_string())
            })?;
            if next.origin() != self.api.origin() {
                return Err(api_error(
                    "read",
                    path,
                    ApiErrorClass::Other,
                    "link",
                    "the next page is on another server; not following it with the token",
                ));
            }
            url = next;
        }
        Err(api_error(
            "read",
            path,
            ApiErrorClass::Other,
            "link",
            "more than 1000 pages",
        ))
    }

    /// The JSON object at `path`, conditionally.
    pub(crate) async fn get_object(&self, path: &str) -> Result<serde_json::Value> {
        let url = self.url(path)?;
        let (body, _, _) = self.get_page(&url, path).await?;
        serde_json::from_str(&body).map_err(|e| {
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .forget(url.as_str());
            api_error("read", path, ApiErrorClass::Other, "payload", e.to_string())
        })
    }

    /// POSTs `body` to `path`.
    pub(crate) async fn post_json(
        &self,
        action: &'static str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<()> {
        let url = self.url(path)?;
        let data = serde_json::to_vec(body)
            .map_err(|e| Error::invalid(format!("request body for {path}"), e.to_string()))?;
        let resp = self
            .send(action, path, || {
                self.request(reqwest::Method::POST, url.clone())
                    .header("content-type", "application/json")
                    .body(data.clone())
            })
            .await?;
        let n = resp.bytes().await.map(|b| b.len()).unwrap_or(0);
        self.count(|s| s.bytes_received += n as u64);
        Ok(())
    }
}
