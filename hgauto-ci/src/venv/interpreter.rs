//! Asking a Python interpreter about itself, with the answer cached per binary in a
//! directory only this user can write.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use hgauto_core::error::{Error, Result};

/// What the interpreter says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Interpreter {
    pub executable: PathBuf,
    pub version: String,
    pub major_minor: String,
    pub stdlib: PathBuf,
    /// The file the answer belongs to, and its mtime (cache key).
    #[serde(default)]
    key: String,
}

const QUERY: &str = "import json, sys, sysconfig; print(json.dumps({'executable': sys.executable, \
'version': '%d.%d.%d' % sys.version_info[:3], 'major_minor': '%d.%d' % sys.version_info[:2], \
'stdlib': sysconfig.get_paths()['stdlib']}))";

pub(super) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Where interpreter answers are cached: `<state>/python-info`, or `$TMPDIR/hgauto-<uid>`
/// without a state directory. `None` (no caching) when the directory is not owned by this
/// user or others may write to it: anyone who can plant an answer there could choose the
/// interpreter our virtualenvs link to.
fn cache_dir() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let dir = match hgauto_core::env::default_state_dir() {
        Ok(state) => state.join("python-info"),
        Err(_) => std::env::temp_dir()
            .join(format!("hgauto-{uid}"))
            .join("python-info"),
    };
    if let Err(e) = private_dir(&dir, uid) {
        tracing::warn!(dir = %dir.display(), error = %e, "not caching interpreter answers");
        return None;
    }
    Some(dir)
}

/// Creates `dir` (and missing parents) as 0700, then checks that it and its parent belong
/// to `uid` and that no one else may write to them.
fn private_dir(dir: &Path, uid: u32) -> std::result::Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let m = std::fs::symlink_metadata(d).map_err(|e| e.to_string())?;
        if !m.is_dir() || m.uid() != uid || m.mode() & 0o022 != 0 {
            return Err(format!(
                "{} must be a directory owned by uid {uid} that only its owner can write \
                 (it is uid {}, mode {:o})",
                d.display(),
                m.uid(),
                m.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// Asks the interpreter about itself, or reads the cached answer.
pub(super) fn interpreter(python: &Path) -> Result<Interpreter> {
    let resolved = if python.components().count() == 1 {
        which(&python.to_string_lossy()).ok_or_else(|| {
            Error::invalid(format!("python {}", python.display()), "is not on PATH")
        })?
    } else {
        python.to_owned()
    };
    let meta =
        std::fs::metadata(&resolved).map_err(|e| Error::io("stat", &resolved, "localhost", e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // A launcher script (pyenv shim, wrapper) may pick another interpreter tomorrow with
    // the same mtime: only real binaries are cached.
    let mut head = [0u8; 2];
    let is_script = std::fs::File::open(&resolved)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"#!";
    let key = if is_script {
        String::new()
    } else {
        format!("{}@{mtime}", resolved.display())
    };
    let cache = cache_dir().filter(|_| !key.is_empty()).map(|d| {
        d.join(format!(
            "{}.json",
            hex::encode(&Sha256::digest(key.as_bytes())[..12])
        ))
    });
    if let Some(info) = cache
        .as_ref()
        .and_then(|c| std::fs::read(c).ok())
        .and_then(|b| serde_json::from_slice::<Interpreter>(&b).ok())
        .filter(|i| i.key == key && i.executable.exists())
    {
        return Ok(info);
    }
    let out = std::process::Command::new(&resolved)
        .args(["-I", "-c", QUERY])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            machine: "localhost".into(),
            program: resolved.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::invalid(
            format!("python {}", resolved.display()),
            format!(
                "did not answer: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let mut info: Interpreter = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::invalid(format!("python {}", resolved.display()), e.to_string()))?;
    info.key = key.clone();
    if let Some(cache) = cache {
        let json = serde_json::to_vec(&info).unwrap_or_default();
        let _ = hgauto_core::backend::fs::write_atomic_private(&cache, &json);
    }
    Ok(info)
}
