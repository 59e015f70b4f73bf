//! The queue's files: names, atomic writes and reads.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::job::{Job, JobOutcome};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Claim {
    pub(super) token: String,
    pub(super) deadline_ms: u64,
    pub(super) attempt: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Done {
    pub(super) job: Job,
    pub(super) token: String,
    pub(super) outcome: JobOutcome,
}

/// The file-name form of a job id: the id itself when it is a plain name, else its hash.
pub(super) fn file_id(id: &str) -> String {
    let plain = !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@+".contains(&b));
    if plain {
        id.to_owned()
    } else {
        hex::encode(Sha256::digest(id.as_bytes()))
    }
}

pub(super) fn key_file(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The queue file name of `job`: sorts by priority (higher first), then age, then id.
pub(super) fn queue_name(job: &Job) -> String {
    let rank = i64::from(i32::MAX) - i64::from(job.priority);
    format!(
        "{rank:010}-{:016}~{}.json",
        job.created_ms,
        file_id(&job.id)
    )
}

/// The id part of a queue file name (`<order>~<id>.json`, or a dropped `<id>.json`).
pub(super) fn id_part(name: &str) -> &str {
    let stem = name.strip_suffix(".json").unwrap_or(name);
    stem.rsplit_once('~').map_or(stem, |(_, id)| id)
}

/// Job files land by rename without fsync: a claim lost in a crash only makes its job
/// available again.
pub(super) use crate::backend::fs::write_unsynced as replace;

/// The largest file the queue reads (a job, a claim, an outcome): 1 MiB. A job is a
/// description, not a payload store.
pub(super) const MAX_FILE: u64 = 1 << 20;

/// Why a file in the queue cannot be a job file at all, so it is quarantined at once (not
/// given the minute a hand-written file gets): a FIFO, a device, a symlink, a directory,
/// or a file over [`MAX_FILE`].
pub(super) fn refuse_outright(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        Some("is a symbolic link, not a regular file".into())
    } else if !kind.is_file() {
        Some("is not a regular file (a FIFO, device, socket or directory)".into())
    } else if meta.len() > MAX_FILE {
        Some(format!(
            "is {} bytes, over the {MAX_FILE}-byte cap on a queue file",
            meta.len()
        ))
    } else {
        None
    }
}

/// Reads a queue file: opened without following a link and without blocking (a FIFO
/// never wedges a consumer), refused unless it is a regular file of at most [`MAX_FILE`]
/// bytes. `None` when it does not exist.
pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let invalid = |reason: String| Error::invalid(format!("job file {}", path.display()), reason);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(invalid("is a symbolic link, not a regular file".into()))
        }
        Err(e) => return Err(Error::io("read", path, "localhost", e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| Error::io("read", path, "localhost", e))?;
    if !meta.is_file() {
        return Err(invalid("is not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, "localhost", e))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(invalid(format!(
            "is over the {MAX_FILE}-byte cap on a queue file"
        )));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn queue_names_sort_by_priority_then_age() {
        let mut names = [
            queue_name(&Job::new("old", "c").with_created_ms(1)),
            queue_name(&Job::new("urgent", "c").with_created_ms(9).with_priority(3)),
            queue_name(&Job::new("new", "c").with_created_ms(5)),
            queue_name(&Job::new("low", "c").with_created_ms(0).with_priority(-2)),
        ];
        names.sort();
        let ids: Vec<&str> = names.iter().map(|n| id_part(n)).collect();
        assert_eq!(ids, ["urgent", "old", "new", "low"]);
        assert_eq!(id_part("dropped.json"), "dropped");
        assert_eq!(
            file_id("pr-12/abc"),
            hex::encode(Sha256::digest(b"pr-12/abc"))
        );
    }
}
