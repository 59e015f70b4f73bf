//! The local ledger: a record of every resource, written *before* the resource is created.
//!
//! One JSON file per resource under `<state>/ledger/<provider>/`, written by atomic rename,
//! so concurrent processes never see a half-written record and a crash at any point leaves
//! either no resource or a record of it. Purge and sweep read the ledger to find what a
//! crashed run left behind; a record is removed only after its resource is gone.

use crate::clock::unix_now;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::fs::write_atomic;
use crate::error::{Error, IoContext, Result};
use crate::provider::ResourceKind;
use crate::session::session_id;

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// The resource id (also its file name in the ledger, percent-encoded).
    pub id: String,
    /// What it is.
    pub kind: ResourceKind,
    /// Seconds since the epoch when it was recorded.
    pub created_at: u64,
    /// Seconds since the epoch after which a sweep may remove it.
    pub deadline: Option<u64>,
    /// The [`session_id`] of the process that created it.
    pub session: String,
    /// Provider-specific details (path, region, idempotency token...).
    pub details: BTreeMap<String, String>,
}

impl LedgerRecord {
    /// A record created now by this process.
    pub fn new(id: impl Into<String>, kind: ResourceKind) -> Self {
        LedgerRecord {
            id: id.into(),
            kind,
            created_at: unix_now(),
            deadline: None,
            session: session_id().to_owned(),
            details: BTreeMap::new(),
        }
    }
}

/// A directory of [`LedgerRecord`]s for one provider.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    /// Opens (creating if needed) the ledger of `provider` under `state_dir`.
    pub fn open(state_dir: &Path, provider: &str) -> Result<Self> {
        let dir = state_dir.join("ledger").join(provider);
        std::fs::create_dir_all(&dir).at("create ledger directory", &dir, "localhost")?;
        Ok(Ledger { dir })
    }

    /// The directory holding the records.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes (or replaces) a record durably.
    pub fn record(&self, record: &LedgerRecord) -> Result<()> {
        let path = self.path_of(&record.id);
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::invalid("ledger record", e.to_string()))?;
        write_atomic(&path, &json)
    }

    /// Removes a record (absent is fine).
    pub fn forget(&self, id: &str) -> Result<()> {
        crate::backend::fs::remove_if_exists(&self.path_of(id), "remove ledger record")
    }

    /// The record for `id`, if any.
    pub fn get(&self, id: &str) -> Result<Option<LedgerRecord>> {
        let path = self.path_of(id);
        match std::fs::read(&path) {
            Ok(data) => parse(&path, &data).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read ledger record", path, "localhost", e)),
        }
    }

    /// Changes the record for `id` with `change` and writes it back; `NotFound` naming
    /// `what` when there is none.
    pub fn update(
        &self,
        id: &str,
        what: &str,
        change: impl FnOnce(&mut LedgerRecord),
    ) -> Result<()> {
        let mut rec = self.get(id)?.ok_or_else(|| Error::NotFound {
            what: format!("{what} {id}"),
        })?;
        change(&mut rec);
        self.record(&rec)
    }

    /// All records, oldest first.
    pub fn records(&self) -> Result<Vec<LedgerRecord>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).at("list ledger", &self.dir, "localhost")?;
        for entry in entries {
            let entry = entry.at("list ledger", &self.dir, "localhost")?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue; // temporary files of writers in progress
            }
            match std::fs::read(&path) {
                Ok(data) => out.push(parse(&path, &data)?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // removed meanwhile
                Err(e) => return Err(Error::io("read ledger record", path, "localhost", e)),
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{}.json", encode_file_name(id)))
    }
}

fn parse(path: &Path, data: &[u8]) -> Result<LedgerRecord> {
    serde_json::from_slice(data).map_err(|e| {
        Error::invalid(
            format!("ledger record {}", path.display()),
            format!("is not valid JSON ({e}); inspect or delete it"),
        )
    })
}

/// Percent-encodes everything but `[A-Za-z0-9._-]`, so any id is a safe file name.
fn encode_file_name(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip_and_forget() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), "local").unwrap();
        let mut r = LedgerRecord::new("i-../../etc/passwd", ResourceKind::Machine);
        r.details.insert("path".into(), "/x".into());
        l.record(&r).unwrap();
        // The hostile id stays inside the ledger directory.
        let files: Vec<_> = std::fs::read_dir(l.dir()).unwrap().collect();
        assert_eq!(files.len(), 1);
        assert_eq!(l.records().unwrap(), vec![r.clone()]);
        assert_eq!(l.get(&r.id).unwrap(), Some(r.clone()));
        l.forget(&r.id).unwrap();
        l.forget(&r.id).unwrap();
        assert!(l.records().unwrap().is_empty());
    }

    #[test]
    fn corrupt_record_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), "local").unwrap();
        std::fs::write(l.dir().join("x.json"), "{").unwrap();
        let e = l.records().unwrap_err().to_string();
        assert!(e.contains("x.json") && e.contains("not valid JSON"), "{e}");
    }
}
