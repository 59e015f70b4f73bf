//! Where a PyPI upload's URL and credentials come from, in twine's order: explicit
//! settings, then `TWINE_USERNAME` / `TWINE_PASSWORD` / `TWINE_REPOSITORY_URL` (and
//! `TWINE_REPOSITORY` for the section name), then a section of `.pypirc`.

use std::path::{Path, PathBuf};

use reqwest::Url;

use hgauto_core::error::{Error, Result};
use hgauto_core::redact::{redact_url, SecretString};

/// PyPI's upload endpoint.
pub const PYPI_UPLOAD_URL: &str = "https://upload.pypi.org/legacy/";
/// TestPyPI's upload endpoint.
pub const TESTPYPI_UPLOAD_URL: &str = "https://test.pypi.org/legacy/";

/// The user name that says "the password is an API token".
pub const TOKEN_USER: &str = "__token__";

/// Settings given explicitly (arguments). Anything left `None` is looked up in the
/// environment, then in `.pypirc`. `Debug` hides the password and any credentials in the
/// URL.
#[derive(Clone, Default)]
pub struct PypiSettings {
    /// The upload endpoint (`https://upload.pypi.org/legacy/`, a pypiserver's root, a
    /// devpi index).
    pub repository_url: Option<String>,
    /// The `.pypirc` section to read (default `pypi`, or `$TWINE_REPOSITORY`).
    pub repository: Option<String>,
    /// The user name (`__token__` for an API token).
    pub username: Option<String>,
    /// The password or API token.
    pub password: Option<SecretString>,
    /// The `.pypirc` file (default `~/.pypirc`; a missing default file is not an error).
    pub pypirc: Option<PathBuf>,
}

impl std::fmt::Debug for PypiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PypiSettings")
            .field(
                "repository_url",
                &self
                    .repository_url
                    .as_deref()
                    .map(hgauto_core::redact::redact_url),
            )
            .field("repository", &self.repository)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("pypirc", &self.pypirc)
            .finish()
    }
}

/// What the settings, the environment and `.pypirc` resolve to.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    /// The upload endpoint, without credentials in it.
    pub url: Url,
    /// The user name, if any.
    pub username: Option<String>,
    /// The password or token, if any.
    pub password: Option<SecretString>,
}

/// Resolves `settings` against an environment (`env` returns a variable's value).
pub(super) fn resolve(
    settings: &PypiSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let section_name = settings
        .repository
        .clone()
        .or_else(|| var("TWINE_REPOSITORY"))
        .unwrap_or_else(|| "pypi".to_owned());
    let (pypirc_path, explicit_file) = match &settings.pypirc {
        Some(p) => (Some(p.clone()), true),
        None => (var("HOME").map(|h| Path::new(&h).join(".pypirc")), false),
    };
    let section = match &pypirc_path {
        Some(p) => read_section(p, &section_name, explicit_file)?,
        None => None,
    };
    let from_file = |key: &str| section.as_ref().and_then(|s| s.get(key).cloned());

    let url_text = settings
        .repository_url
        .clone()
        .or_else(|| var("TWINE_REPOSITORY_URL"))
        .or_else(|| from_file("repository"))
        .or_else(|| match section_name.as_str() {
            "pypi" => Some(PYPI_UPLOAD_URL.to_owned()),
            "testpypi" => Some(TESTPYPI_UPLOAD_URL.to_owned()),
            _ => None,
        })
        .ok_or_else(|| {
            Error::invalid(
                "PyPI repository",
                format!(
                    "no URL for repository {section_name:?}: pass one, set TWINE_REPOSITORY_URL, \
                     or add a [{section_name}] section with `repository = URL` to {}",
                    pypirc_path
                        .as_deref()
                        .map_or_else(|| ".pypirc".to_owned(), |p| p.display().to_string())
                ),
            )
        })?;
    let (url, url_user, url_password) = parse_url(&url_text)?;

    let password = settings
        .password
        .clone()
        .or_else(|| var("TWINE_PASSWORD").map(SecretString::new))
        .or_else(|| from_file("password").map(SecretString::new))
        .or(url_password)
        .filter(|p| !p.is_empty());
    let username = settings
        .username
        .clone()
        .or_else(|| var("TWINE_USERNAME"))
        .or_else(|| from_file("username"))
        .or(url_user)
        .filter(|u| !u.is_empty())
        .or_else(|| password.as_ref().map(|_| TOKEN_USER.to_owned()));
    if username.is_some() && password.is_none() {
        return Err(Error::invalid(
            format!("PyPI credentials for {}", redact_url(url.as_str())),
            "a user name but no password: pass one, set TWINE_PASSWORD, or add `password` \
             to the .pypirc section",
        ));
    }
    Ok(Resolved {
        url,
        username,
        password,
    })
}

/// An http(s) URL, with any credentials in it taken out.
fn parse_url(text: &str) -> Result<(Url, Option<String>, Option<SecretString>)> {
    let shown = redact_url(text);
    let mut url = Url::parse(text.trim())
        .map_err(|e| Error::invalid(format!("PyPI repository URL {shown:?}"), e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(
            format!("PyPI repository URL {shown:?}"),
            "must be http or https",
        ));
    }
    let user = Some(url.username().to_owned()).filter(|u| !u.is_empty());
    let password = url.password().map(SecretString::new);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url, user, password))
}

/// The keys of section `name` in a `.pypirc` file. A missing file is an error only when the
/// caller named it; a missing section is never one (the environment may have it all).
fn read_section(
    path: &Path,
    name: &str,
    explicit: bool,
) -> Result<Option<std::collections::HashMap<String, String>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(e) => return Err(Error::io("read", path, "localhost", e)),
    };
    let mut ini = configparser::ini::Ini::new_cs();
    // Line numbers and the section are enough: the parser's message may quote a password.
    ini.read(text).map_err(|_| {
        Error::invalid(
            format!(".pypirc file {}", path.display()),
            "is not a valid INI file",
        )
    })?;
    let Some(section) = ini.get_map_ref().get(name) else {
        return Ok(None);
    };
    Ok(Some(
        section
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.to_lowercase(), v)))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn pypirc(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".pypirc");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    const PYPIRC: &str = "[distutils]\nindex-servers =\n    pypi\n    local\n\n\
        [pypi]\nusername: __token__\npassword: pypi-filetoken\n\n\
        [local]\nrepository = http://127.0.0.1:8080/\nusername = alice\npassword = from-file\n";

    #[test]
    fn explicit_beats_environment_beats_pypirc() {
        let (dir, path) = pypirc(PYPIRC);
        let env = env_of(&[
            ("HOME", dir.path().to_str().unwrap()),
            ("TWINE_USERNAME", "bob"),
            ("TWINE_PASSWORD", "from-env"),
        ]);
        let mut s = PypiSettings {
            repository: Some("local".into()),
            ..Default::default()
        };
        let r = resolve(&s, &env).unwrap();
        assert_eq!(r.url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(r.username.as_deref(), Some("bob"));
        assert_eq!(r.password.unwrap().expose(), "from-env");

        s.username = Some("carol".into());
        s.password = Some("explicit".into());
        s.pypirc = Some(path);
        let r = resolve(&s, &env_of(&[])).unwrap();
        assert_eq!(r.username.as_deref(), Some("carol"));
        assert_eq!(r.password.unwrap().expose(), "explicit");

        let r = resolve(
            &PypiSettings {
                repository: Some("local".into()),
                ..Default::default()
            },
            &env_of(&[("HOME", dir.path().to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(r.username.as_deref(), Some("alice"));
        assert_eq!(r.password.unwrap().expose(), "from-file");
    }

    #[test]
    fn default_section_is_pypi_and_a_bare_token_is_sent_as_token_user() {
        let (dir, _) = pypirc(PYPIRC);
        let r = resolve(
            &PypiSettings::default(),
            &env_of(&[("HOME", dir.path().to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(r.url.as_str(), PYPI_UPLOAD_URL);
        assert_eq!(r.username.as_deref(), Some(TOKEN_USER));

        let r = resolve(
            &PypiSettings {
                password: Some("pypi-abc".into()),
                repository_url: Some("https://test.example/legacy/".into()),
                ..Default::default()
            },
            &env_of(&[]),
        )
        .unwrap();
        assert_eq!(r.username.as_deref(), Some(TOKEN_USER));
    }

    #[test]
    fn credentials_in_the_url_are_taken_out_of_it() {
        let r = resolve(
            &PypiSettings {
                repository_url: Some("http://u:p%40ss@127.0.0.1:1/".into()),
                ..Default::default()
            },
            &env_of(&[]),
        )
        .unwrap();
        assert_eq!(r.url.as_str(), "http://127.0.0.1:1/");
        assert_eq!(r.username.as_deref(), Some("u"));
        assert!(r.password.is_some());
    }

    #[test]
    fn problems_are_named_without_the_password() {
        let e = resolve(
            &PypiSettings {
                repository: Some("nowhere".into()),
                ..Default::default()
            },
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"nowhere\""), "{e}");

        let e = resolve(
            &PypiSettings {
                repository_url: Some("ftp://x/".into()),
                ..Default::default()
            },
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("http or https"), "{e}");

        let e = resolve(
            &PypiSettings {
                username: Some("alice".into()),
                repository_url: Some("http://127.0.0.1:1/".into()),
                ..Default::default()
            },
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no password"), "{e}");

        let (_dir, path) = pypirc("[pypi\npassword = hunter2-secret\n");
        let e = resolve(
            &PypiSettings {
                pypirc: Some(path),
                ..Default::default()
            },
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(!format!("{e} {e:?}").contains("hunter2"), "{e}");

        let missing = PypiSettings {
            pypirc: Some("/nonexistent/.pypirc".into()),
            ..Default::default()
        };
        assert!(resolve(&missing, &env_of(&[])).is_err());
    }
}
