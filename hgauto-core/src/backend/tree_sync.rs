//! `sync_tree` over SSH: compare a remote manifest (GNU `find -printf`) with the local tree,
//! then stream a tar of what changed into `tar -x` over one exec channel.
//!
//! Files are compared by size and whole-second modification time (what tar carries), like
//! rsync's quick check. Directories are always included (headers only), so their modes
//! follow the source. Deletions, when asked for, go first, as a NUL-separated list on stdin.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::backend::fs::MODE_MASK;
use crate::backend::render::posix_path;
use crate::command::Command;
use crate::error::{Error, Result};
use crate::machine::{RemoteMachine, SyncOptions, SyncReport};

/// The `find` invocation that prints the remote manifest, 6 NUL-terminated fields per entry.
pub fn manifest_command(remote_dir: &str) -> Result<String> {
    let dir = posix_path(OsStr::new(remote_dir), "remote directory")?;
    Ok(format!(
        "mkdir -p {dir} && cd {dir} && LC_ALL=C find . -mindepth 1 -printf '%P\\0%y\\0%s\\0%T@\\0%m\\0%l\\0'"
    ))
}

/// One remote entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// `find -printf %y`: `f` file, `d` directory, `l` symlink, ...
    pub kind: u8,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, whole seconds since the Unix epoch.
    pub mtime: i64,
    /// Permission bits.
    pub mode: u32,
    /// A symlink's target.
    pub link: Vec<u8>,
}

/// Parses the output of [`manifest_command`].
pub fn parse_manifest(out: &[u8]) -> HashMap<Vec<u8>, RemoteEntry> {
    let fields: Vec<&[u8]> = out.split(|&b| b == 0).collect();
    let mut map = HashMap::new();
    for rec in fields.chunks(6).filter(|c| c.len() == 6) {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mtime = text(rec[3])
            .split('.')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1);
        map.insert(
            rec[0].to_vec(),
            RemoteEntry {
                kind: rec[1].first().copied().unwrap_or(b'?'),
                size: text(rec[2]).parse().unwrap_or(u64::MAX),
                mtime,
                mode: u32::from_str_radix(&text(rec[4]), 8).unwrap_or(0),
                link: rec[5].to_vec(),
            },
        );
    }
    map
}

/// A local entry to send.
#[derive(Debug, Clone)]
pub enum Item {
    /// A directory.
    Dir {
        /// Its path relative to the tree's root.
        rel: PathBuf,
        /// Permission bits.
        mode: u32,
        /// Modification time (Unix seconds).
        mtime: i64,
    },
    /// A regular file.
    File {
        /// Its path relative to the tree's root.
        rel: PathBuf,
        /// Its path on this host.
        abs: PathBuf,
        /// Permission bits.
        mode: u32,
        /// Modification time (Unix seconds).
        mtime: i64,
        /// Size in bytes.
        size: u64,
    },
    /// A symbolic link.
    Symlink {
        /// Its path relative to the tree's root.
        rel: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
}

/// What to do to make the remote tree match.
#[derive(Debug, Default)]
pub struct Plan {
    /// Entries to send (new or changed), parents before children.
    pub send: Vec<Item>,
    /// Remote paths to delete (with `delete`).
    pub delete: Vec<Vec<u8>>,
    /// What the sync will have done.
    pub report: SyncReport,
}

/// Walks `root` and compares it with `remote`.
pub fn plan(root: &Path, remote: &HashMap<Vec<u8>, RemoteEntry>, delete: bool) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut local: HashSet<Vec<u8>> = HashSet::new();
    let mut stack = vec![PathBuf::new()];
    let io = |op, p: &Path, e| Error::io(op, p, "localhost", e);
    while let Some(rel_dir) = stack.pop() {
        let abs_dir = root.join(&rel_dir);
        let mut entries: Vec<_> = std::fs::read_dir(&abs_dir)
            .map_err(|e| io("list", &abs_dir, e))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| io("list", &abs_dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let rel = rel_dir.join(entry.file_name());
            let abs = entry.path();
            let meta = std::fs::symlink_metadata(&abs).map_err(|e| io("inspect", &abs, e))?;
            let key = rel.as_os_str().as_bytes().to_vec();
            let theirs = remote.get(&key);
            local.insert(key.clone());
            let ft = meta.file_type();
            let wanted_kind = if ft.is_symlink() {
                b'l'
            } else if ft.is_dir() {
                b'd'
            } else if ft.is_file() {
                b'f'
            } else {
                tracing::warn!(path = %abs.display(), "skipping special file");
                continue;
            };
            // A remote entry of another type must go before ours can land.
            if let Some(t) = theirs {
                if t.kind != wanted_kind {
                    plan.delete.push(key.clone());
                }
            }
            let same_kind = theirs.filter(|t| t.kind == wanted_kind);
            match wanted_kind {
                b'l' => {
                    let target = std::fs::read_link(&abs).map_err(|e| io("read link", &abs, e))?;
                    if same_kind.is_some_and(|t| t.link == target.as_os_str().as_bytes()) {
                        continue;
                    }
                    plan.report.symlinks += 1;
                    plan.send.push(Item::Symlink { rel, target });
                }
                b'd' => {
                    plan.send.push(Item::Dir {
                        rel: rel.clone(),
                        mode: meta.mode() & MODE_MASK,
                        mtime: meta.mtime(),
                    });
                    stack.push(rel);
                }
                _ => {
                    let mode = meta.mode() & MODE_MASK;
                    let unchanged = same_kind.is_some_and(|t| {
                        t.size == meta.len() && t.mtime == meta.mtime() && t.mode == mode
                    });
                    if unchanged {
                        plan.report.files_unchanged += 1;
                        continue;
                    }
                    plan.report.files_sent += 1;
                    plan.report.bytes_sent += meta.len();
                    plan.send.push(Item::File {
                        rel,
                        abs,
                        mode,
                        mtime: meta.mtime(),
                        size: meta.len(),
                    });
                }
            }
        }
    }
    if delete {
        let mut extra: Vec<&Vec<u8>> = remote.keys().filter(|k| !local.contains(*k)).collect();
        extra.sort();
        // Only the topmost of each removed subtree.
        let mut last: Option<&Vec<u8>> = None;
        for k in extra {
            if let Some(p) = last {
                if k.starts_with(p) && k.get(p.len()) == Some(&b'/') {
                    continue;
                }
            }
            plan.delete.push(k.clone());
            plan.report.deleted += 1;
            last = Some(k);
        }
    }
    // Parents before children, so tar can set directory modes on the way.
    plan.send.sort_by(|a, b| item_rel(a).cmp(item_rel(b)));
    Ok(plan)
}

fn item_rel(i: &Item) -> &Path {
    match i {
        Item::Dir { rel, .. } | Item::File { rel, .. } | Item::Symlink { rel, .. } => rel,
    }
}

/// The remote command that removes the NUL-separated paths on stdin (relative to `dir`).
pub fn delete_command(remote_dir: &str) -> Result<String> {
    let dir = posix_path(OsStr::new(remote_dir), "remote directory")?;
    Ok(format!("cd {dir} && xargs -0 -r rm -rf --"))
}

/// The remote command that extracts the tar on stdin into `dir`.
pub fn extract_command(remote_dir: &str, gzip: bool) -> Result<String> {
    let dir = posix_path(OsStr::new(remote_dir), "remote directory")?;
    let z = if gzip { "z" } else { "" };
    Ok(format!(
        "mkdir -p {dir} && cd {dir} && exec tar -x{z}pf - --no-same-owner --delay-directory-restore"
    ))
}

/// Makes `remote_dir` on `machine` mirror `local_dir` using only `exec` and `put`: for
/// POSIX machines whose transport has no stream to pipe a tar into (SSM). Same plan as the
/// SSH path: a remote manifest, deletions first, then one archive of what changed, uploaded
/// next to the target and extracted there.
pub async fn sync_over_exec(
    machine: &dyn RemoteMachine,
    local_dir: &Path,
    remote_dir: &str,
    options: &SyncOptions,
) -> Result<SyncReport> {
    let meta =
        std::fs::metadata(local_dir).map_err(|e| Error::io("read", local_dir, "localhost", e))?;
    if !meta.is_dir() {
        return Err(Error::invalid(
            format!("{}", local_dir.display()),
            "is not a directory",
        ));
    }
    let list = Command::script(manifest_command(remote_dir)?).idempotent(true);
    let listing = machine.exec_checked(&list).await?;
    let remote = parse_manifest(&listing.stdout);
    let root = local_dir.to_owned();
    let delete = options.delete;
    let plan =
        crate::backend::task::run_blocking("sync", move || plan(&root, &remote, delete)).await?;
    if !plan.delete.is_empty() {
        let mut list = Vec::new();
        for p in &plan.delete {
            list.extend_from_slice(p);
            list.push(0);
        }
        let cmd = Command::script(delete_command(remote_dir)?).stdin(list);
        machine.exec_checked(&cmd).await?;
    }
    let archive = tempfile::NamedTempFile::new()
        .map_err(|e| Error::io("create", std::env::temp_dir(), "localhost", e))?;
    let file = archive
        .reopen()
        .map_err(|e| Error::io("open", archive.path(), "localhost", e))?;
    let items = plan.send.clone();
    let compress = options.compress;
    crate::backend::task::run_blocking("sync", move || {
        let out = std::io::BufWriter::new(file);
        let written = if compress {
            let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            write_tar(&items, &mut gz).and_then(|()| gz.finish().map(drop))
        } else {
            write_tar(&items, out)
        };
        written.map_err(|e| Error::io("write archive of", "local tree", "localhost", e))
    })
    .await?;
    let remote_archive = format!(
        "{}.hgauto-sync-{:016x}.tar",
        remote_dir.trim_end_matches('/'),
        rand::random::<u64>()
    );
    machine.put(archive.path(), &remote_archive).await?;
    let dir = posix_path(OsStr::new(remote_dir), "remote directory")?;
    let file = posix_path(OsStr::new(&remote_archive), "archive")?;
    let z = if options.compress { "z" } else { "" };
    let extract = Command::script(format!(
        "unset CDPATH\na={file}\ncase $a in /*) ;; *) a=$PWD/$a ;; esac\n\
         mkdir -p {dir} && cd {dir} && \
         tar -x{z}pf \"$a\" --no-same-owner --delay-directory-restore\n\
         rc=$?; rm -f \"$a\"; exit $rc"
    ));
    machine.exec_checked(&extract).await?;
    Ok(plan.report)
}

/// Writes the tar stream of `items` into `out`.
pub fn write_tar(items: &[Item], out: impl Write) -> std::io::Result<()> {
    use super::tar_writer::{Entry, EntryKind, TarWriter};
    use std::io::Read as _;
    let mut tar = TarWriter::new(out);
    for item in items {
        let (kind, rel, mode, mtime, size, link) = match item {
            Item::Dir { rel, mode, mtime } => (EntryKind::Dir, rel, *mode, *mtime, 0, None),
            Item::File {
                rel,
                mode,
                mtime,
                size,
                ..
            } => (EntryKind::File, rel, *mode, *mtime, *size, None),
            Item::Symlink { rel, target } => {
                (EntryKind::Symlink, rel, 0o777, 0, 0, Some(target.as_path()))
            }
        };
        let entry = Entry {
            kind,
            rel,
            mode,
            mtime: mtime.max(0) as u64,
            size,
            link,
        };
        match item {
            Item::File { abs, size, .. } => {
                // Guard against a file that changes size while we send it: tar needs
                // exactly `size` bytes.
                let file = std::fs::File::open(abs)?;
                let data = file.take(*size).chain(std::io::repeat(0)).take(*size);
                tar.append(&entry, data)?;
            }
            _ => tar.append(&entry, std::io::empty())?,
        }
    }
    tar.finish().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parsing_and_plan() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/same"), "12345").unwrap();
        std::fs::write(root.join("d/new"), "x").unwrap();
        std::os::unix::fs::symlink("d/same", root.join("ln")).unwrap();
        let same = std::fs::metadata(root.join("d/same")).unwrap();
        let mut out = Vec::new();
        let mut rec = |p: &str, k: &str, size: &str, mtime: String, mode: &str, link: &str| {
            for f in [p, k, size, &mtime, mode, link] {
                out.extend_from_slice(f.as_bytes());
                out.push(0);
            }
        };
        rec("d", "d", "4096", "1.5".into(), "755", "");
        rec(
            "d/same",
            "f",
            "5",
            format!("{}.25", same.mtime()),
            &format!("{:o}", same.mode() & 0o7777),
            "",
        );
        rec("gone", "d", "4096", "1".into(), "755", "");
        rec("gone/child", "f", "1", "1".into(), "644", "");
        rec("ln", "l", "6", "1".into(), "777", "d/other");
        let remote = parse_manifest(&out);
        assert_eq!(remote.len(), 5);
        let plan = plan(root, &remote, true).unwrap();
        assert_eq!(plan.report.files_sent, 1, "{:?}", plan.report);
        assert_eq!(plan.report.files_unchanged, 1);
        assert_eq!(plan.report.symlinks, 1, "changed link target is re-sent");
        assert_eq!(
            plan.delete,
            vec![b"gone".to_vec()],
            "only the top of a removed subtree"
        );
    }

    /// The stream extracts with the system's `tar` exactly: long names and link targets,
    /// a name that is not UTF-8, modes, mtimes and contents.
    #[test]
    fn system_tar_extracts_the_stream_exactly() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt as _;
        let src = tempfile::tempdir().unwrap();
        let long_dir = PathBuf::from("d".repeat(120));
        let long_file = long_dir.join(format!("{}.txt", "f".repeat(130)));
        let odd = PathBuf::from(OsStr::from_bytes(b"caf\xe9 \"q\" $x"));
        std::fs::create_dir(src.path().join(&long_dir)).unwrap();
        std::fs::write(src.path().join(&long_file), b"long").unwrap();
        std::fs::write(src.path().join(&odd), vec![7u8; 70_000]).unwrap();
        let file = |rel: &Path, mode: u32| Item::File {
            rel: rel.to_path_buf(),
            abs: src.path().join(rel),
            mode,
            mtime: 1_000_000_000,
            size: std::fs::metadata(src.path().join(rel)).unwrap().len(),
        };
        let link_target = PathBuf::from("t".repeat(150));
        let items = vec![
            Item::Dir {
                rel: long_dir.clone(),
                mode: 0o750,
                mtime: 1_000_000_000,
            },
            file(&long_file, 0o755),
            file(&odd, 0o600),
            Item::Symlink {
                rel: "ln".into(),
                target: link_target.clone(),
            },
        ];
        let mut archive = Vec::new();
        write_tar(&items, &mut archive).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let mut tar = std::process::Command::new("tar")
            .args(["-xpf", "-", "--no-same-owner", "--delay-directory-restore"])
            .current_dir(dst.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        tar.stdin.take().unwrap().write_all(&archive).unwrap();
        assert!(tar.wait().unwrap().success());
        let d = dst.path();
        assert_eq!(std::fs::read(d.join(&long_file)).unwrap(), b"long");
        assert_eq!(std::fs::read(d.join(&odd)).unwrap(), vec![7u8; 70_000]);
        let mode = |p: &Path| std::fs::metadata(d.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(
            (mode(&long_dir), mode(&long_file), mode(&odd)),
            (0o750, 0o755, 0o600)
        );
        assert_eq!(
            std::fs::metadata(d.join(&long_file)).unwrap().mtime(),
            1_000_000_000
        );
        assert_eq!(std::fs::read_link(d.join("ln")).unwrap(), link_target);
    }
}
