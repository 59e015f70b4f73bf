//! [`DirPublisher`]: publishes artifacts into a local directory.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::artifact::{sha256_file, validate_batch, validate_name, Artifact};
use crate::backend::fs::tempfile_in;
use crate::backend::publish::publish_blocking;
use crate::backend::task::blocking;
use crate::error::{Error, IoContext, Result};
use crate::publisher::{PublishReport, Publisher};

/// Publishes into a directory (created if missing), each file with mode 0644.
///
/// Files are copied to a temporary name in the same directory, verified against the
/// artifact's sha256 while copying, synced, and then hard-linked to their final name, which
/// fails if the name was taken meanwhile: a concurrent publisher can never overwrite a file,
/// and readers never see a partial one.
#[derive(Debug, Clone)]
pub struct DirPublisher {
    dir: PathBuf,
    name: String,
}

impl DirPublisher {
    /// A publisher into `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let name = format!("dir:{}", dir.display());
        DirPublisher { dir, name }
    }

    /// The target directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Whether `path` holds `artifact`'s content: `Ok(false)` if absent, `Conflict` if different.
fn check_existing(path: &Path, artifact: &Artifact) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("inspect", path, "localhost", e)),
        Ok(m) if !m.is_file() => {
            return Err(Error::Conflict {
                what: path.display().to_string(),
                reason: "exists and is not a regular file".into(),
            })
        }
        Ok(_) => {}
    }
    let (sha, _) = sha256_file(path)?;
    if sha == artifact.sha256 {
        Ok(true)
    } else {
        Err(Error::Conflict {
            what: path.display().to_string(),
            reason: format!(
                "already published with sha256 {sha}, not {}",
                artifact.sha256
            ),
        })
    }
}

fn publish_one(dir: &Path, artifact: &Artifact) -> Result<bool> {
    let dest = dir.join(&artifact.name);
    if check_existing(&dest, artifact)? {
        return Ok(false);
    }
    let (tmp_path, mut tmp) = tempfile_in(dir, 0o600)?;
    let result = (|| {
        let mut src =
            std::fs::File::open(&artifact.path).at("open", &artifact.path, "localhost")?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = src.read(&mut buf).at("read", &artifact.path, "localhost")?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .at("write", &tmp_path, "localhost")?;
        }
        let actual = hex::encode(hasher.finalize());
        if actual != artifact.sha256 {
            return Err(Error::Integrity {
                what: format!(
                    "{} (changed since it was described)",
                    artifact.path.display()
                ),
                expected: artifact.sha256.clone(),
                actual,
            });
        }
        tmp.set_permissions(std::fs::Permissions::from_mode(0o644))
            .at("chmod", &tmp_path, "localhost")?;
        tmp.sync_all().at("sync", &tmp_path, "localhost")?;
        match std::fs::hard_link(&tmp_path, &dest) {
            Ok(()) => Ok(true),
            // Someone published the same name between our check and now.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                check_existing(&dest, artifact).map(|_| false)
            }
            Err(e) => Err(Error::io("link into place", &dest, "localhost", e)),
        }
    })();
    let _ = std::fs::remove_file(&tmp_path);
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    result
}

#[async_trait]
impl Publisher for DirPublisher {
    fn name(&self) -> &str {
        &self.name
    }

    async fn exists(&self, artifact: &Artifact) -> Result<bool> {
        validate_name(&artifact.name)?;
        let path = self.dir.join(&artifact.name);
        let artifact = artifact.clone();
        blocking(move || check_existing(&path, &artifact)).await
    }

    async fn publish(&self, artifacts: &[Artifact]) -> Result<PublishReport> {
        validate_batch(artifacts)?;
        let dir = self.dir.clone();
        let destination = self.name().to_owned();
        let artifacts = artifacts.to_vec();
        blocking(move || {
            std::fs::create_dir_all(&dir).at("create directory", &dir, "localhost")?;
            publish_blocking(
                &destination,
                &artifacts,
                |a| check_existing(&dir.join(&a.name), a),
                |a| publish_one(&dir, a),
            )
        })
        .await
    }
}
