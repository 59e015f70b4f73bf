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

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::invalid(format!("job file {}", path.display()), e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, "localhost", e)),
    }
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
