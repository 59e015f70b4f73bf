//! Keeping credentials out of everything hgauto shows or writes.
//!
//! A URL can carry secrets in three places: its user info (`https://user:token@host`), its
//! query (presigned URLs: `X-Amz-Signature=...`, `token=...`) and its fragment.
//! [`redact_url`] is the one form in which a URL reaches a log line, an error or a file.
//! Tools hgauto runs (git, hg, pip) may still print the URL they were given in full;
//! [`Secrets`] scrubs those secrets from any text before it goes on.

mod text;
pub use text::redact_text;

use std::borrow::Cow;

use url::Url;

/// What replaces a secret.
pub const MASK: &str = "***";

/// `url` with its password, its user name (except for `ssh`/`git+ssh` URLs, where a user
/// name is a login, not a credential), every query value and its fragment replaced by
/// `***`. Text that does not parse as a URL is cut the same way by hand.
///
/// ```
/// use hgauto_core::redact::redact_url;
/// assert_eq!(
///     redact_url("https://ci:s3cret@example.org/a.tgz?X-Amz-Signature=abc&v=1#frag"),
///     "https://***@example.org/a.tgz?X-Amz-Signature=***&v=***"
/// );
/// assert_eq!(redact_url("ssh://git@example.org/repo"), "ssh://git@example.org/repo");
/// // A query part without `=` may be the token itself.
/// assert_eq!(redact_url("https://example.org/f?SECRETTOKEN"), "https://example.org/f?***");
/// ```
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = Url::parse(url) else {
        return redact_by_hand(url);
    };
    if u.password().is_some() || (!u.username().is_empty() && !is_ssh(u.scheme())) {
        let _ = u.set_password(None);
        let _ = u.set_username(MASK);
    }
    if let Some(q) = u.query().map(str::to_owned) {
        // A part without `=` (`?SECRETTOKEN`) may be the credential itself: masked whole.
        let parts: Vec<String> = q
            .split('&')
            .map(|part| match part.split_once('=') {
                Some((k, "")) => format!("{k}="),
                Some((k, _)) => format!("{k}={MASK}"),
                None if part.is_empty() => String::new(),
                None => MASK.to_owned(),
            })
            .collect();
        u.set_query(Some(&parts.join("&")));
    }
    u.set_fragment(None);
    // Url escapes `*` in a user name; the mask reads better bare.
    u.to_string().replacen("%2A%2A%2A@", "***@", 1)
}

fn is_ssh(scheme: &str) -> bool {
    matches!(scheme, "ssh" | "git+ssh" | "ssh+git" | "sftp")
}

fn redact_by_hand(text: &str) -> String {
    let mut out = text.to_owned();
    if let Some(cut) = out.find(['?', '#']) {
        out.truncate(cut);
        out.push('?');
        out.push_str(MASK);
    }
    if let Some(scheme_end) = out.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = out[auth_start..]
            .find('/')
            .map_or(out.len(), |i| auth_start + i);
        if let Some(at) = out[auth_start..auth_end].rfind('@') {
            out.replace_range(auth_start..auth_start + at, MASK);
        }
    } else if let Some(at) = out.rfind('@') {
        // No scheme to find the user info by: whatever precedes an `@` may be it.
        out.replace_range(..at, MASK);
    }
    out
}

/// A password or token. Its `Debug` and `Display` show `***`, so a struct holding one can
/// derive `Debug` and be logged; [`expose`](Self::expose) is the one way to the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for an empty secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl std::fmt::Display for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        SecretString(value.to_owned())
    }
}

/// The secret parts of some URLs, to be scrubbed from text that tools printed about them.
#[derive(Clone, Default)]
pub struct Secrets {
    words: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} hidden)", self.words.len())
    }
}

/// Shorter than this, a "secret" would scrub ordinary words out of messages.
const MIN_SECRET: usize = 4;

impl Secrets {
    /// The secrets of every URL in `urls` (see [`redact_url`] for which parts are secret).
    pub fn of_urls<'a>(urls: impl IntoIterator<Item = &'a str>) -> Self {
        let mut s = Secrets::default();
        for url in urls {
            s.add_url(url);
        }
        s
    }

    /// Adds the secrets of `url`.
    pub fn add_url(&mut self, url: &str) {
        let Ok(u) = Url::parse(url) else {
            // Whatever a redaction by hand would hide is secret.
            let shown = redact_by_hand(url);
            if shown != url {
                self.add(url);
            }
            return;
        };
        if let Some(p) = u.password() {
            self.add_encoded(p);
        }
        if !u.username().is_empty() && (u.password().is_some() || !is_ssh(u.scheme())) {
            self.add_encoded(u.username());
        }
        if let Some(q) = u.query() {
            for part in q.split('&') {
                match part.split_once('=') {
                    Some((_, v)) => self.add_encoded(v),
                    None => self.add_encoded(part),
                }
            }
        }
        if let Some(f) = u.fragment() {
            self.add_encoded(f);
        }
        // The whole URL too, in case a tool prints it verbatim with parts we keep.
        self.add(url);
    }

    fn add_encoded(&mut self, raw: &str) {
        self.add(raw);
        if let Ok(decoded) = percent_decode(raw) {
            self.add(&decoded);
        }
    }

    /// Adds a secret given whole (a password, a token), with its percent-encoded form.
    pub fn add_secret(&mut self, secret: &SecretString) {
        self.add(secret.expose());
        let encoded: String = secret
            .expose()
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        self.add(&encoded);
    }

    fn add(&mut self, word: &str) {
        if word.len() >= MIN_SECRET && !self.words.iter().any(|w| w == word) {
            self.words.push(word.to_owned());
            // Longest first, so a secret containing another is masked whole.
            self.words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        }
    }

    /// `text` with every secret replaced by `***`.
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for w in &self.words {
            if out.contains(w.as_str()) {
                out = Cow::Owned(out.replace(w.as_str(), MASK));
            }
        }
        out
    }

    /// `err` with every secret scrubbed from its text (a source error that cannot be
    /// rewritten is replaced by its scrubbed description).
    pub fn scrub_error(&self, err: crate::Error) -> crate::Error {
        use crate::Error as E;
        if self.words.is_empty() {
            return err;
        }
        let s = |t: String| self.scrub(&t).into_owned();
        match err {
            E::InvalidInput { what, reason } => E::InvalidInput {
                what: s(what),
                reason: s(reason),
            },
            E::Io {
                op,
                path,
                machine,
                source,
            } => E::Io {
                op,
                path: s(path.display().to_string()).into(),
                machine: s(machine),
                source: std::io::Error::new(source.kind(), s(source.to_string())),
            },
            E::Spawn {
                machine,
                program,
                source,
            } => E::Spawn {
                machine: s(machine),
                program: s(program),
                source: std::io::Error::new(source.kind(), s(source.to_string())),
            },
            E::Timeout {
                machine,
                what,
                after,
            } => E::Timeout {
                machine: s(machine),
                what: s(what),
                after,
            },
            E::CommandFailed {
                machine,
                command,
                status,
                stderr_tail,
            } => E::CommandFailed {
                machine: s(machine),
                command: s(command),
                status,
                stderr_tail: s(stderr_tail),
            },
            E::Integrity {
                what,
                expected,
                actual,
            } => E::Integrity {
                what: s(what),
                expected,
                actual,
            },
            E::Conflict { what, reason } => E::Conflict {
                what: s(what),
                reason: s(reason),
            },
            E::NotFound { what } => E::NotFound { what: s(what) },
            E::Connection {
                machine,
                may_have_run,
                source,
            } => E::Connection {
                machine: s(machine),
                may_have_run,
                source: s(source.to_string()).into(),
            },
            E::Backend {
                backend,
                message,
                retryable,
                source,
            } => E::Backend {
                backend,
                message: s(message),
                retryable,
                source: source.map(|e| s(e.to_string()).into()),
            },
            E::Auth {
                machine,
                user,
                reason,
            } => E::Auth {
                machine: s(machine),
                user: s(user),
                reason: s(reason),
            },
            other => other,
        }
    }
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| ())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_every_secret_part() {
        let cases = [
            (
                "http://user:SECRET@127.0.0.1:9/x",
                "http://***@127.0.0.1:9/x",
            ),
            (
                "https://SECRETTOKEN@github.com/o/r",
                "https://***@github.com/o/r",
            ),
            (
                "https://b.s3.amazonaws.com/k?X-Amz-Signature=SECRET&X-Amz-Date=1",
                "https://b.s3.amazonaws.com/k?X-Amz-Signature=***&X-Amz-Date=***",
            ),
            ("https://h/p#access_token=SECRET", "https://h/p"),
            ("ssh://git@h/r", "ssh://git@h/r"),
            ("ssh://git:SECRET@h/r", "ssh://***@h/r"),
            (
                "not a url://u:SECRET@h/x?t=SECRET",
                "not a url://***@h/x?***",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
            assert!(!redact_url(url).contains("SECRET"));
        }
    }

    #[test]
    fn secrets_are_scrubbed_from_tool_output_and_errors() {
        let s = Secrets::of_urls([
            "https://ci:p%40ss%2Fword@h/r",
            "https://h/x?sig=SIGNATURE",
            "ssh://git@h/r",
        ]);
        let text =
            "fatal: unable to access 'https://ci:p%40ss%2Fword@h/r': p@ss/word SIGNATURE git";
        let out = s.scrub(text);
        assert!(
            !out.contains("p@ss/word") && !out.contains("p%40ss") && !out.contains("SIGNATURE")
        );
        assert!(
            out.ends_with(" git"),
            "short or non-secret words stay: {out}"
        );
        let e = s.scrub_error(crate::Error::CommandFailed {
            machine: "localhost".into(),
            command: "git fetch https://ci:p%40ss%2Fword@h/r".into(),
            status: crate::ExitStatus::Code(128),
            stderr_tail: "SIGNATURE".into(),
        });
        assert!(!format!("{e} {e:?}").contains("SIGNATURE"));
        assert!(!format!("{e} {e:?}").contains("word"));
        assert!(!format!("{s:?}").contains("word"));
    }
}
