//! Credentials in a repository URL travel apart from it. `https://user:TOKEN@host/repo`
//! would otherwise sit in git's or hg's argv, readable by every local user in
//! `/proc/*/cmdline`. [`Remote::parse`] takes the user info out of an http(s) URL; git gets
//! it from a credential helper that reads the environment (readable only by the same user),
//! hg from an `[auth]` section in the 0600 `.hg/hgrc` of the repository the command runs
//! in, written for that command and restored after it.

use std::path::{Path, PathBuf};

/// A remote as git and hg are given it: the URL without user info, and the credentials.
#[derive(Clone)]
pub(crate) struct Remote {
    /// The URL to put in argv (user info removed).
    pub url: String,
    /// The user name and password, when the URL carried them.
    pub creds: Option<Creds>,
}

/// Credentials for one http(s) host.
#[derive(Clone)]
pub(crate) struct Creds {
    scheme: String,
    /// `host` or `host:port`, as the URL had it.
    authority: String,
    /// The URL without user info, query or fragment: what hg's `auth.*.prefix` matches.
    prefix: String,
    user: String,
    password: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &hgauto_core::redact::redact_url(&self.url))
            .field("creds", &self.creds.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Remote {
    /// Splits `url`. Only http and https URLs lose their user info (an ssh user name is not
    /// a secret, and ssh takes no password in a URL).
    pub(crate) fn parse(url: &str) -> Remote {
        let plain = Remote {
            url: url.to_owned(),
            creds: None,
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return plain;
        };
        if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
            return plain;
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let Some((userinfo, authority)) = rest[..end].rsplit_once('@') else {
            return plain;
        };
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let clean = format!("{scheme}://{authority}{}", &rest[end..]);
        let path_end = clean.find(['?', '#']).unwrap_or(clean.len());
        Remote {
            creds: Some(Creds {
                scheme: scheme.to_ascii_lowercase(),
                authority: authority.to_owned(),
                prefix: clean[..path_end].to_owned(),
                user: percent_decode(user),
                password: percent_decode(password),
            }),
            url: clean,
        }
    }

    /// The environment that hands the credentials to git: a credential helper (after
    /// clearing any configured one) that answers only for this URL's host.
    pub(crate) fn git_env(&self) -> Vec<(&'static str, String)> {
        let Some(c) = &self.creds else {
            return Vec::new();
        };
        const HELPER: &str = "!f() { test \"$1\" = get || exit 0; h=; p=; \
            while read -r l; do case \"$l\" in host=*) h=${l#host=};; protocol=*) p=${l#protocol=};; esac; done; \
            test \"$h\" = \"$HGAUTO_GIT_CRED_HOST\" && test \"$p\" = \"$HGAUTO_GIT_CRED_PROTOCOL\" || exit 0; \
            printf 'username=%s\\npassword=%s\\n' \"$HGAUTO_GIT_CRED_USER\" \"$HGAUTO_GIT_CRED_PASSWORD\"; }; f";
        vec![
            ("GIT_CONFIG_COUNT", "2".into()),
            ("GIT_CONFIG_KEY_0", "credential.helper".into()),
            ("GIT_CONFIG_VALUE_0", String::new()),
            ("GIT_CONFIG_KEY_1", "credential.helper".into()),
            ("GIT_CONFIG_VALUE_1", HELPER.into()),
            ("HGAUTO_GIT_CRED_HOST", c.authority.clone()),
            ("HGAUTO_GIT_CRED_PROTOCOL", c.scheme.clone()),
            ("HGAUTO_GIT_CRED_USER", c.user.clone()),
            ("HGAUTO_GIT_CRED_PASSWORD", c.password.clone()),
        ]
    }

    /// Writes the credentials into `repo/.hg/hgrc` (0600) for as long as the guard lives;
    /// `None` when there are none. The file's earlier content comes back on drop.
    pub(crate) fn hg_auth(&self, repo: &Path) -> hgauto_core::Result<Option<HgAuth>> {
        let Some(c) = &self.creds else {
            return Ok(None);
        };
        let path = repo.join(".hg/hgrc");
        let original = std::fs::read(&path).ok();
        let mut text = original.clone().unwrap_or_default();
        let clean = |s: &str| s.replace(['\n', '\r'], "");
        text.extend_from_slice(
            format!(
                "\n[auth]\nhgauto.prefix = {}\nhgauto.schemes = {}\nhgauto.username = {}\nhgauto.password = {}\n",
                clean(&c.prefix),
                c.scheme,
                clean(&c.user),
                clean(&c.password)
            )
            .as_bytes(),
        );
        hgauto_core::backend::fs::write_atomic_private(&path, &text)?;
        Ok(Some(HgAuth { path, original }))
    }
}

/// Restores a repository's hgrc when dropped (see [`Remote::hg_auth`]).
pub(crate) struct HgAuth {
    path: PathBuf,
    original: Option<Vec<u8>>,
}

impl Drop for HgAuth {
    fn drop(&mut self) {
        match &self.original {
            Some(bytes) => {
                let _ = hgauto_core::backend::fs::write_atomic(&self.path, bytes);
            }
            None => {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Decodes `%XX` escapes (user info is percent-encoded in a URL).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_leaves_http_urls_only() {
        let r = Remote::parse("https://bot:p%40ss@example.com:8443/org/repo.git?x=1");
        assert_eq!(r.url, "https://example.com:8443/org/repo.git?x=1");
        let c = r.creds.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("bot", "p@ss"));
        assert_eq!(c.prefix, "https://example.com:8443/org/repo.git");
        assert_eq!(c.authority, "example.com:8443");
        assert!(!format!("{r:?}").contains("p@ss") && !format!("{r:?}").contains("bot"));
        let token = Remote::parse("http://TOKEN@h/r");
        assert_eq!(token.url, "http://h/r");
        assert_eq!(token.creds.unwrap().user, "TOKEN");
        for plain in ["ssh://git@h/r", "file:///x", "/local/path", "https://h/a@b"] {
            let r = Remote::parse(plain);
            assert_eq!(r.url, plain);
            assert!(r.creds.is_none(), "{plain}");
        }
    }
}
