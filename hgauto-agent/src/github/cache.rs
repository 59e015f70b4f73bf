//! The conditional-request cache: for each URL read, its `ETag` and the body that came
//! with it, kept in a file so that a restarted agent's first round is as cheap as the
//! others (GitHub does not count a 304 against the rate limit).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use hgauto_core::error::Result;

/// Entries not used for this long are dropped when the cache is saved (statuses of heads
/// that are long gone, closed repositories).
const KEEP_UNUSED_MS: u64 = 7 * 24 * 3600 * 1000;

/// One cached response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cached {
    /// The validator the server gave, sent back as `If-None-Match`.
    pub etag: String,
    /// The body that came with it.
    pub body: String,
    /// The `rel="next"` page, when the response had one.
    #[serde(default)]
    pub next: Option<String>,
    /// When the entry was last used, in ms since the epoch.
    #[serde(default)]
    pub used_ms: u64,
}

/// The cache file's content, by URL.
#[derive(Debug, Default)]
pub(crate) struct EtagCache {
    path: PathBuf,
    entries: BTreeMap<String, Cached>,
    dirty: bool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl EtagCache {
    /// The cache kept in `path`; an unreadable file is an empty cache (it is only a cache).
    pub(super) fn load(path: &Path) -> EtagCache {
        let entries = match std::fs::read(path) {
            Ok(data) => serde_json::from_slice(&data).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable GitHub cache");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        EtagCache {
            path: path.to_owned(),
            entries,
            dirty: false,
        }
    }

    /// The entry for `url`, marked used.
    pub(super) fn get(&mut self, url: &str) -> Option<Cached> {
        let e = self.entries.get_mut(url)?;
        e.used_ms = now_ms();
        Some(e.clone())
    }

    /// Stores `entry` for `url`.
    pub(super) fn put(&mut self, url: &str, mut entry: Cached) {
        entry.used_ms = now_ms();
        self.entries.insert(url.to_owned(), entry);
        self.dirty = true;
    }

    /// Drops the entry for `url` (its body turned out unusable).
    pub(super) fn forget(&mut self, url: &str) {
        self.dirty |= self.entries.remove(url).is_some();
    }

    /// Writes the cache if it changed, by atomic rename, readable by its owner only (the
    /// bodies may come from private repositories).
    pub(super) fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let cutoff = now_ms().saturating_sub(KEEP_UNUSED_MS);
        self.entries.retain(|_, e| e.used_ms >= cutoff);
        let data = serde_json::to_vec(&self.entries)
            .map_err(|e| hgauto_core::Error::invalid("GitHub cache", e.to_string()))?;
        hgauto_core::backend::fs::write_atomic_private(&self.path, &data)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_reload_and_the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        let mut c = EtagCache::load(&path);
        assert!(c.get("u").is_none());
        c.put(
            "u",
            Cached {
                etag: "W/\"1\"".into(),
                body: "[]".into(),
                next: None,
                used_ms: 0,
            },
        );
        c.save().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut again = EtagCache::load(&path);
        assert_eq!(again.get("u").unwrap().etag, "W/\"1\"");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(EtagCache::load(&path).get("u").is_none());
    }
}
