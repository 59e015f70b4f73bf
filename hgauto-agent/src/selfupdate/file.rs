//! The self-update config file (TOML), read by the command line and by programs alike, so
//! its keys and defaults are one rule: unknown keys are refused with a suggestion, and a
//! repository's `vcs` is `git` unless it says `hg`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hgauto_ci::Vcs;
use hgauto_core::error::{Error, Result};
use serde::Deserialize;

use super::{SelfUpdate, UpdateRepo};

/// The file: where the state lives, the repositories, and the optional commands.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfUpdateFile {
    /// The state directory (state file, lock, status).
    pub state_dir: PathBuf,
    /// The watched repositories, updated in this order.
    pub repositories: Vec<RepositoryFile>,
    /// Seconds a moved head must stay put before it is applied.
    #[serde(default)]
    pub quiet_window_secs: Option<u64>,
    /// A file that must exist for an update to start.
    #[serde(default)]
    pub ready_flag: Option<PathBuf>,
    /// A command that must accept the new revisions.
    #[serde(default)]
    pub check_command: Option<Vec<String>>,
    /// A CI gate that must pass for them.
    #[serde(default)]
    pub ci_gate: Option<Vec<String>>,
    /// The command run after an update (and again after a roll-back).
    #[serde(default)]
    pub hook: Option<Vec<String>>,
}

/// One `[[repositories]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryFile {
    /// A short name (in the state, the status and the environment of commands).
    pub name: String,
    /// `git` (the default) or `hg`.
    #[serde(default)]
    pub vcs: Option<String>,
    /// Where to fetch from.
    pub url: String,
    /// The production branch.
    pub branch: String,
    /// The working copy that runs it.
    pub working_copy: PathBuf,
}

impl RepositoryFile {
    /// The repository, with `vcs` parsed (`git` when absent).
    pub fn into_repo(self) -> Result<UpdateRepo> {
        let vcs: Vcs = self.vcs.as_deref().unwrap_or("git").parse()?;
        Ok(UpdateRepo {
            name: self.name,
            vcs,
            url: self.url,
            branch: self.branch,
            working_copy: self.working_copy,
        })
    }
}

impl SelfUpdateFile {
    /// Reads and checks the file at `path`: a syntax error or an unknown key is named with
    /// its line (and a suggestion for a misspelt key).
    pub fn read(path: &Path) -> Result<SelfUpdateFile> {
        let what = format!("self-update config {}", path.display());
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::invalid(&what, e.to_string()))?;
        toml::from_str(&text).map_err(|e| {
            Error::invalid(
                &what,
                hgauto_core::suggest::parse_error(&text, e.message(), e.span()),
            )
        })
    }

    /// The updater the file describes.
    pub fn into_self_update(self) -> Result<SelfUpdate> {
        let mut b = SelfUpdate::builder(self.state_dir);
        if let Some(q) = self.quiet_window_secs {
            b = b.quiet_window(Duration::from_secs(q));
        }
        if let Some(r) = self.ready_flag {
            b = b.ready_flag(r);
        }
        if let Some(c) = self.check_command {
            b = b.check_command(c);
        }
        if let Some(c) = self.ci_gate {
            b = b.ci_gate(c);
        }
        if let Some(c) = self.hook {
            b = b.hook(c);
        }
        for r in self.repositories {
            b = b.repository(r.into_repo()?);
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcs_defaults_to_git_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("update.toml");
        let repo =
            "name = \"app\"\nurl = \"file:///r\"\nbranch = \"main\"\nworking_copy = \"/w\"\n";
        std::fs::write(
            &path,
            format!("state_dir = \"/s\"\n[[repositories]]\n{repo}"),
        )
        .unwrap();
        let f = SelfUpdateFile::read(&path).unwrap();
        let r = f.repositories[0].clone().into_repo().unwrap();
        assert_eq!(r.vcs, Vcs::Git);
        std::fs::write(
            &path,
            format!("state_dir = \"/s\"\nquiet_window = 5\n[[repositories]]\n{repo}"),
        )
        .unwrap();
        let e = SelfUpdateFile::read(&path).unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("quiet_window_secs"),
            "{e}"
        );
        let bad = RepositoryFile {
            vcs: Some("svn".into()),
            ..f.repositories[0].clone()
        };
        assert!(bad.into_repo().unwrap_err().to_string().contains("svn"));
    }
}
