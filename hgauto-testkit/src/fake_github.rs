//! A fake GitHub REST API on loopback (wiremock, one catch-all responder over shared
//! state): open pull requests with pagination, commit statuses, reviews, `ETag`s with
//! 304 answers, rate-limit headers, and injected rate-limit refusals. Payloads follow the
//! shapes GitHub documents for these endpoints. Every request is recorded by the server,
//! so tests assert what hgauto sent, not only what it concluded.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A refusal to answer the next request with.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    /// 403 "secondary rate limit" with `retry-after: secs`.
    Secondary { retry_after: u64 },
    /// 403 with `x-ratelimit-remaining: 0` and a reset `secs` from now.
    Primary { reset_in: u64 },
    /// Answers this request normally (to aim a refusal queued after it further on).
    Pass,
    /// This HTTP status, with GitHub's error body.
    Status(u16),
}

#[derive(Default)]
struct State {
    base: String,
    token: Option<String>,
    pulls: HashMap<String, Vec<Value>>,
    statuses: HashMap<(String, String), Vec<Value>>,
    reviews: HashMap<(String, u64), Vec<Value>>,
    next_number: HashMap<String, u64>,
    page_cap: usize,
    refusals: VecDeque<Refusal>,
    edits: u64,
}

/// One pull request to open.
#[derive(Debug, Clone)]
pub struct NewPull {
    pub repo: String,
    pub head: String,
    pub author: String,
    pub association: String,
    pub title: String,
    pub draft: bool,
    pub labels: Vec<String>,
    pub created_at: String,
}

impl NewPull {
    pub fn new(repo: &str, head: &str) -> Self {
        NewPull {
            repo: repo.into(),
            head: head.into(),
            author: "octocat".into(),
            association: "MEMBER".into(),
            title: "Make it better".into(),
            draft: false,
            labels: Vec::new(),
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    /// A pull request by `stranger`, a contributor the default trust rules do not trust.
    pub fn by_outsider(repo: &str, head: &str) -> Self {
        NewPull {
            author: "stranger".into(),
            association: "CONTRIBUTOR".into(),
            ..NewPull::new(repo, head)
        }
    }
}

/// A 40-hex commit id made from `seed`.
pub fn sha_of(seed: &str) -> String {
    hex::encode(&Sha256::digest(seed.as_bytes())[..20])
}

/// RFC 3339 for `ms` since the epoch (whole seconds).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn user(login: &str) -> Value {
    json!({"login": login, "id": 1, "node_id": "MDQ6VXNlcjE=", "type": "User", "site_admin": false,
           "html_url": format!("https://github.com/{login}")})
}

fn etag_of(body: &str) -> String {
    format!(
        "W/\"{}\"",
        hex::encode(&Sha256::digest(body.as_bytes())[..16])
    )
}

pub struct FakeGithub {
    pub server: MockServer,
    state: Arc<Mutex<State>>,
}

struct Responder(Arc<Mutex<State>>);

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.lock().unwrap();
        st.answer(req)
    }
}

impl State {
    fn answer(&mut self, req: &Request) -> ResponseTemplate {
        if let Some(token) = &self.token {
            let auth = req
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            if auth != Some(&format!("Bearer {token}")) {
                return ResponseTemplate::new(401)
                    .set_body_json(json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}));
            }
        }
        if let Some(r) = self
            .refusals
            .pop_front()
            .filter(|r| !matches!(r, Refusal::Pass))
        {
            return match r {
                Refusal::Pass => unreachable!("filtered above"),
                Refusal::Status(code) => ResponseTemplate::new(code)
                    .set_body_json(json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})),
                Refusal::Secondary { retry_after } => ResponseTemplate::new(403)
                    .insert_header("retry-after", retry_after.to_string().as_str())
                    .insert_header("x-ratelimit-remaining", "4000")
                    .set_body_json(json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."})),
                Refusal::Primary { reset_in } => {
                    let reset = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                        + reset_in;
                    ResponseTemplate::new(403)
                        .insert_header("x-ratelimit-remaining", "0")
                        .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                        .set_body_json(json!({"message": "API rate limit exceeded for user ID 1."}))
                }
            };
        }
        let path = req.url.path().to_owned();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let query: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        match (req.method.as_str(), parts.as_slice()) {
            ("GET", ["repos", o, r, "pulls"]) => {
                let repo = format!("{o}/{r}");
                let per_page: usize = query
                    .get("per_page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(30);
                let per_page = per_page.min(self.page_cap).max(1);
                let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let all = self.pulls.get(&repo).cloned().unwrap_or_default();
                let items: Vec<Value> = all
                    .iter()
                    .skip((page - 1) * per_page)
                    .take(per_page)
                    .cloned()
                    .collect();
                let mut t = self.conditional(req, &Value::Array(items));
                if page * per_page < all.len() {
                    let next = format!(
                        "<{}/repos/{repo}/pulls?state=open&per_page={per_page}&page={}>; rel=\"next\", <{}/repos/{repo}/pulls?page=1>; rel=\"first\"",
                        self.base, page + 1, self.base
                    );
                    t = t.insert_header("link", next.as_str());
                }
                t
            }
            ("GET", ["repos", o, r, "pulls", n, "reviews"]) => {
                let n: u64 = n.parse().unwrap_or(0);
                let items = self
                    .reviews
                    .get(&(format!("{o}/{r}"), n))
                    .cloned()
                    .unwrap_or_default();
                self.conditional(req, &Value::Array(items))
            }
            ("GET", ["repos", o, r, "commits", sha, "status"]) => {
                let all = self
                    .statuses
                    .get(&(format!("{o}/{r}"), sha.to_string()))
                    .cloned()
                    .unwrap_or_default();
                let mut latest: Vec<Value> = Vec::new();
                for s in all.iter().rev() {
                    if !latest.iter().any(|l| l["context"] == s["context"]) {
                        latest.push(s.clone());
                    }
                }
                let state = if latest
                    .iter()
                    .any(|s| s["state"] == "failure" || s["state"] == "error")
                {
                    "failure"
                } else if latest.iter().all(|s| s["state"] == "success") && !latest.is_empty() {
                    "success"
                } else {
                    "pending"
                };
                let body = json!({"state": state, "sha": sha, "total_count": latest.len(), "statuses": latest,
                                  "repository": {"full_name": format!("{o}/{r}")}});
                self.conditional(req, &body)
            }
            ("POST", ["repos", o, r, "statuses", sha]) => {
                let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
                    return ResponseTemplate::new(400)
                        .set_body_json(json!({"message": "Problems parsing JSON"}));
                };
                let state_ok = matches!(
                    body["state"].as_str(),
                    Some("error" | "failure" | "pending" | "success")
                );
                if !state_ok || body["context"].as_str().is_none() {
                    return ResponseTemplate::new(422)
                        .set_body_json(json!({"message": "Validation Failed"}));
                }
                if body["description"]
                    .as_str()
                    .is_some_and(|d| d.chars().count() > 140)
                {
                    return ResponseTemplate::new(422).set_body_json(json!({"message": "Validation Failed: description is too long (maximum is 140 characters)"}));
                }
                let key = (format!("{o}/{r}"), sha.to_string());
                let id = self.statuses.values().map(Vec::len).sum::<usize>() + 1;
                let status = json!({
                    "id": id, "state": body["state"], "description": body["description"],
                    "target_url": body["target_url"], "context": body["context"],
                    "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                    "creator": user("hgauto-bot"),
                });
                self.statuses.entry(key).or_default().push(status.clone());
                ResponseTemplate::new(201).set_body_json(status)
            }
            _ => ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})),
        }
    }

    /// 200 with an ETag, or 304 when the request's If-None-Match matches it.
    fn conditional(&self, req: &Request, body: &Value) -> ResponseTemplate {
        let text = serde_json::to_string(body).unwrap();
        let etag = etag_of(&text);
        let limit = |t: ResponseTemplate| {
            t.insert_header("x-ratelimit-limit", "5000")
                .insert_header("x-ratelimit-remaining", "4999")
                .insert_header("x-ratelimit-reset", "4102444800")
        };
        let sent = req
            .headers
            .get("if-none-match")
            .and_then(|v| v.to_str().ok());
        if sent == Some(etag.as_str()) {
            return limit(ResponseTemplate::new(304).insert_header("etag", etag.as_str()));
        }
        limit(
            ResponseTemplate::new(200)
                .insert_header("etag", etag.as_str())
                .set_body_raw(text, "application/json; charset=utf-8"),
        )
    }
}

impl FakeGithub {
    pub async fn start() -> FakeGithub {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            base: server.uri(),
            page_cap: 100,
            ..State::default()
        }));
        Mock::given(wiremock::matchers::any())
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        FakeGithub { server, state }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Requires `Authorization: Bearer <token>` on every request.
    pub fn require_token(&self, token: &str) {
        self.state.lock().unwrap().token = Some(token.into());
    }

    /// Serves at most `n` items per page.
    pub fn cap_pages(&self, n: usize) {
        self.state.lock().unwrap().page_cap = n;
    }

    /// Answers the next request with `r`.
    pub fn refuse_next(&self, r: Refusal) {
        self.state.lock().unwrap().refusals.push_back(r);
    }

    /// Opens a pull request; returns its number.
    pub fn open(&self, p: NewPull) -> u64 {
        let mut st = self.state.lock().unwrap();
        let n = {
            let c = st.next_number.entry(p.repo.clone()).or_insert(0);
            *c += 1;
            *c
        };
        let labels: Vec<Value> = p
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| json!({"id": i, "name": l, "color": "ededed", "default": false}))
            .collect();
        let repo_obj = json!({"full_name": p.repo, "private": false, "html_url": format!("https://github.com/{}", p.repo)});
        let pr = json!({
            "url": format!("{}/repos/{}/pulls/{n}", st.base, p.repo),
            "id": n, "node_id": "PR_kwDO", "html_url": format!("https://github.com/{}/pull/{n}", p.repo),
            "number": n, "state": "open", "locked": false, "title": p.title,
            "user": user(&p.author), "body": "Please pull.", "labels": labels,
            "created_at": p.created_at, "updated_at": p.created_at,
            "closed_at": null, "merged_at": null, "draft": p.draft,
            "head": {"label": format!("{}:topic-{n}", p.author), "ref": format!("topic-{n}"), "sha": p.head, "user": user(&p.author), "repo": repo_obj},
            "base": {"label": "main", "ref": "main", "sha": sha_of("base"), "user": user("owner"), "repo": repo_obj},
            "author_association": p.association,
            "auto_merge": null, "active_lock_reason": null,
        });
        st.pulls.entry(p.repo).or_default().push(pr);
        n
    }

    /// Changes pull request `n` with `f` (a new head, a label...), moving its updated_at.
    pub fn edit(&self, repo: &str, n: u64, f: impl FnOnce(&mut Value)) {
        let mut st = self.state.lock().unwrap();
        st.edits += 1;
        let stamp = format!(
            "2026-01-02T{:02}:{:02}:00Z",
            st.edits / 60 % 24,
            st.edits % 60
        );
        let pr = st
            .pulls
            .get_mut(repo)
            .and_then(|v| v.iter_mut().find(|p| p["number"] == n))
            .expect("pull request");
        f(pr);
        pr["updated_at"] = stamp.into();
    }

    /// Closes pull request `n`.
    pub fn close(&self, repo: &str, n: u64) {
        let mut st = self.state.lock().unwrap();
        if let Some(v) = st.pulls.get_mut(repo) {
            v.retain(|p| p["number"] != n);
        }
    }

    /// Adds an item to the list as it is, however malformed.
    pub fn push_raw(&self, repo: &str, item: Value) {
        self.state
            .lock()
            .unwrap()
            .pulls
            .entry(repo.into())
            .or_default()
            .push(item);
    }

    /// Adds a review of pull request `n`.
    pub fn review(
        &self,
        repo: &str,
        n: u64,
        login: &str,
        association: &str,
        state: &str,
        commit: &str,
    ) {
        let mut st = self.state.lock().unwrap();
        st.reviews.entry((repo.into(), n)).or_default().push(json!({
            "id": 80, "user": user(login), "body": "", "state": state,
            "author_association": association, "commit_id": commit,
            "submitted_at": "2026-01-01T00:00:00Z",
        }));
    }

    /// Dismisses `login`'s reviews of pull request `n`, as GitHub does: their state becomes
    /// `DISMISSED` and the pull request's `updated_at` moves.
    pub fn dismiss(&self, repo: &str, n: u64, login: &str) {
        {
            let mut st = self.state.lock().unwrap();
            for r in st.reviews.entry((repo.into(), n)).or_default() {
                if r["user"]["login"] == login {
                    r["state"] = "DISMISSED".into();
                }
            }
        }
        self.edit(repo, n, |_| {});
    }

    /// Every status written to (`repo`, `sha`), oldest first: (context, state, description).
    pub fn statuses(&self, repo: &str, sha: &str) -> Vec<(String, String, String)> {
        let st = self.state.lock().unwrap();
        st.statuses
            .get(&(repo.to_owned(), sha.to_owned()))
            .map(|v| {
                v.iter()
                    .map(|s| {
                        (
                            s["context"].as_str().unwrap_or("").to_owned(),
                            s["state"].as_str().unwrap_or("").to_owned(),
                            s["description"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every request so far.
    pub async fn requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap_or_default()
    }

    /// Forgets the requests so far.
    pub async fn reset_requests(&self) {
        self.server.reset().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(Responder(self.state.clone()))
            .mount(&self.server)
            .await;
    }
}
