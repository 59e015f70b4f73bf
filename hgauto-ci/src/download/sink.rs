//! [`Sink`]: writes and hashes received bytes on a blocking thread.

use std::path::Path;

use sha2::{Digest, Sha256};

use hgauto_core::backend::fs::{create_private, open_own_file};
use hgauto_core::error::{Error, Result};

/// Writes and hashes received bytes on a blocking thread, so the network task never waits
/// for the disk or the hash.
pub(super) struct Sink {
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    worker: tokio::task::JoinHandle<Result<(u64, String)>>,
}

impl Sink {
    /// Opens `part`, keeping its first `offset` bytes (hashed first) and dropping the rest.
    /// A fresh part file is created exclusively, 0600, never through a link; one that is
    /// continued must still be this user's own (see [`open_own_file`]).
    pub(super) async fn open(part: &Path, offset: u64) -> Result<Sink> {
        use std::io::{Read, Seek, Write};
        let path = part.to_owned();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
        let worker = tokio::task::spawn_blocking(move || -> Result<(u64, String)> {
            let io = |op, e| Error::io(op, &path, "localhost", e);
            let mut file = open_part(&path, offset).map_err(|e| io("open", e))?;
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            if offset > 0 {
                let mut prefix = (&mut file).take(offset);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = prefix.read(&mut buf).map_err(|e| io("read", e))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    len += n as u64;
                }
                file.set_len(offset).map_err(|e| io("truncate", e))?;
                file.seek(std::io::SeekFrom::Start(offset))
                    .map_err(|e| io("seek", e))?;
            }
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
                out.write_all(&chunk).map_err(|e| io("write", e))?;
                len += chunk.len() as u64;
            }
            let file = out.into_inner().map_err(|e| io("write", e.into_error()))?;
            file.sync_data().map_err(|e| io("sync", e))?;
            Ok((len, hex::encode(hasher.finalize())))
        });
        Ok(Sink { tx, worker })
    }

    pub(super) async fn send(&self, chunk: bytes::Bytes) -> Result<()> {
        self.tx.send(chunk).await.map_err(|_| Error::Backend {
            backend: "download".into(),
            message: "the writer thread stopped".into(),
            retryable: false,
            source: None,
        })
    }

    pub(super) async fn finish(self) -> Result<(u64, String)> {
        drop(self.tx);
        self.worker.await.map_err(|e| Error::Backend {
            backend: "download".into(),
            message: format!("writer thread: {e}"),
            retryable: false,
            source: None,
        })?
    }
}

/// The part file to write: a new one (whatever was at the path is unlinked first, so a
/// planted symlink is removed, not followed) or, to resume, the existing one if it is ours.
fn open_part(path: &Path, offset: u64) -> std::io::Result<std::fs::File> {
    if offset > 0 {
        return open_own_file(path, true)?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the partial file is not this user's own regular file",
            )
        });
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    create_private(path)
}
