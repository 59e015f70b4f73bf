//! [`SshPublisher`]: publishes artifacts into a directory over SFTP.

use std::io::{Read, Write};
use std::path::Path;

use async_trait::async_trait;
use hgauto_core::artifact::{validate_batch, validate_name};
use hgauto_core::backend::publish::publish_blocking;
use hgauto_core::{Artifact, Error, PublishReport, Publisher, Result};
use sha2::{Digest, Sha256};
use ssh2::{OpenFlags, OpenType, RenameFlags, Sftp};

use crate::conn::TransportError;
use crate::machine::{OpError, SshMachine};

/// LIBSSH2_FX_NO_SUCH_FILE.
const FX_NO_SUCH_FILE: i32 = 2;

/// Uploads artifacts over SFTP into a remote directory, each with a given mode (default
/// 0644).
///
/// Every file is written under a temporary name, verified against the artifact's sha256
/// while it streams, then renamed into place without the OVERWRITE flag (OpenSSH's
/// sftp-server renames by `link(2)`, which never replaces an existing file), so a
/// concurrent publisher cannot overwrite a published artifact and readers never see a
/// partial one. The file is created with the publisher's mode, which never exceeds 0o777.
#[derive(Debug, Clone)]
pub struct SshPublisher {
    machine: SshMachine,
    dir: String,
    mode: i32,
    name: String,
}

impl SshPublisher {
    /// A publisher into `dir` (relative to the login directory, or absolute) on `machine`.
    pub fn new(machine: SshMachine, dir: impl Into<String>) -> Self {
        let dir = dir.into();
        let c = machine.config();
        let name = format!("sftp://{}@{}:{}/{}", c.user, c.host, c.port, dir);
        SshPublisher {
            machine,
            dir,
            mode: 0o644,
            name,
        }
    }

    /// Sets the mode of published files (Mercurial publishes with 0664). Only the
    /// permission bits (0o777) are used.
    pub fn with_mode(mut self, mode: i32) -> Self {
        self.mode = mode & hgauto_core::backend::fs::MODE_MASK as i32;
        self
    }
}

fn sftp_error(what: &str, path: &str, e: ssh2::Error) -> OpError {
    match e.code() {
        ssh2::ErrorCode::SFTP(_) => OpError::Other(Error::io(
            "sftp",
            path,
            what,
            std::io::Error::other(format!("{}: {}", what, e.message())),
        )),
        ssh2::ErrorCode::Session(_) => OpError::Transport {
            sent: false,
            error: TransportError::new(format!("sftp {what} {path}"), e),
        },
    }
}

fn open_sftp(conn: &crate::conn::Conn) -> std::result::Result<Sftp, OpError> {
    conn.sess.sftp().map_err(|e| sftp_error("start", "sftp", e))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir == "." {
        name.to_owned()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

/// `Ok(true)` identical, `Ok(false)` absent, `Conflict` when other content is there.
fn check_existing(
    sftp: &Sftp,
    path: &str,
    artifact: &Artifact,
) -> std::result::Result<bool, OpError> {
    let stat = match sftp.stat(Path::new(path)) {
        Ok(s) => s,
        Err(e) if e.code() == ssh2::ErrorCode::SFTP(FX_NO_SUCH_FILE) => return Ok(false),
        Err(e) => return Err(sftp_error("stat", path, e)),
    };
    if !stat.is_file() {
        return Err(OpError::Other(Error::Conflict {
            what: path.to_owned(),
            reason: "exists and is not a regular file".into(),
        }));
    }
    let mut file = sftp
        .open(Path::new(path))
        .map_err(|e| sftp_error("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|e| OpError::Transport {
            sent: false,
            error: TransportError::new(format!("sftp read {path}"), e),
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let sha = hex::encode(hasher.finalize());
    if sha == artifact.sha256 {
        Ok(true)
    } else {
        Err(OpError::Other(Error::Conflict {
            what: path.to_owned(),
            reason: format!(
                "already published with sha256 {sha}, not {}",
                artifact.sha256
            ),
        }))
    }
}

fn mkdir_p(sftp: &Sftp, dir: &str) -> std::result::Result<(), OpError> {
    let mut path = if dir.starts_with('/') {
        String::from("/")
    } else {
        String::new()
    };
    for part in dir.split('/').filter(|p| !p.is_empty() && *p != ".") {
        path.push_str(part);
        let _ = sftp.mkdir(Path::new(&path), 0o755);
        path.push('/');
    }
    if dir.is_empty() || dir == "." {
        return Ok(());
    }
    match sftp.stat(Path::new(dir)) {
        Ok(s) if s.is_dir() => Ok(()),
        Ok(_) => Err(OpError::Other(Error::Conflict {
            what: dir.to_owned(),
            reason: "exists and is not a directory".into(),
        })),
        Err(e) => Err(sftp_error("mkdir", dir, e)),
    }
}

/// Uploads one artifact; `Ok(false)` when it was already there.
fn upload(sftp: &Sftp, dir: &str, a: &Artifact, mode: i32) -> std::result::Result<bool, OpError> {
    let dest = join(dir, &a.name);
    if check_existing(sftp, &dest, a)? {
        return Ok(false);
    }
    let tmp = join(
        dir,
        &format!(".{}.hgauto-{:016x}", a.name, rand::random::<u64>()),
    );
    let result = (|| {
        let mut local = std::fs::File::open(&a.path)
            .map_err(|e| OpError::Other(Error::io("open", &a.path, "localhost", e)))?;
        let mut remote = sftp
            .open_mode(
                Path::new(&tmp),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                mode,
                OpenType::File,
            )
            .map_err(|e| sftp_error("create", &tmp, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = local
                .read(&mut buf)
                .map_err(|e| OpError::Other(Error::io("read", &a.path, "localhost", e)))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            remote
                .write_all(&buf[..n])
                .map_err(|e| OpError::Transport {
                    sent: false,
                    error: TransportError::new(format!("sftp write {tmp}"), e),
                })?;
        }
        let actual = hex::encode(hasher.finalize());
        if actual != a.sha256 {
            return Err(OpError::Other(Error::Integrity {
                what: format!("{} (changed since it was described)", a.path.display()),
                expected: a.sha256.clone(),
                actual,
            }));
        }
        let _ = remote.fsync(); // an extension; not every server has it
        drop(remote);
        let stat = ssh2::FileStat {
            size: None,
            uid: None,
            gid: None,
            perm: Some(mode as u32),
            atime: None,
            mtime: None,
        };
        sftp.setstat(Path::new(&tmp), stat)
            .map_err(|e| sftp_error("chmod", &tmp, e))?;
        // Never OVERWRITE: libssh2's default for `None` is ATOMIC|OVERWRITE|NATIVE, which an
        // SFTPv5+ server would honour by replacing a concurrently published artifact.
        // (OpenSSH speaks v3, where no flags travel and rename never replaces.)
        let flags = Some(RenameFlags::ATOMIC | RenameFlags::NATIVE);
        match sftp.rename(Path::new(&tmp), Path::new(&dest), flags) {
            Ok(()) => Ok(true),
            // The name was taken meanwhile: identical is fine, anything else conflicts.
            Err(_) => check_existing(sftp, &dest, a).and_then(|same| {
                if same {
                    Ok(false)
                } else {
                    Err(OpError::Other(Error::Conflict {
                        what: dest.clone(),
                        reason: "could not rename into place".into(),
                    }))
                }
            }),
        }
    })();
    let _ = sftp.unlink(Path::new(&tmp));
    result
}

#[async_trait]
impl Publisher for SshPublisher {
    fn name(&self) -> &str {
        &self.name
    }

    async fn exists(&self, artifact: &Artifact) -> Result<bool> {
        validate_name(&artifact.name)?;
        let path = join(&self.dir, &artifact.name);
        let artifact = artifact.clone();
        self.machine
            .with_conn(true, move |conn| {
                let sftp = open_sftp(conn)?;
                check_existing(&sftp, &path, &artifact)
            })
            .await
    }

    async fn publish(&self, artifacts: &[Artifact]) -> Result<PublishReport> {
        validate_batch(artifacts)?;
        let dir = self.dir.clone();
        let mode = self.mode;
        let destination = self.name().to_owned();
        let artifacts = artifacts.to_vec();
        self.machine
            .with_conn(true, move |conn| {
                let sftp = open_sftp(conn)?;
                mkdir_p(&sftp, &dir)?;
                publish_blocking(
                    &destination,
                    &artifacts,
                    |a| check_existing(&sftp, &join(&dir, &a.name), a),
                    |a| upload(&sftp, &dir, a, mode),
                )
            })
            .await
    }
}
