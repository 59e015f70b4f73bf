//! Files over SSH: `put` streams into a remote `cat` writing a temporary file that is
//! renamed into place with its mode, `get` reads a remote `cat` (its mode first, on
//! stderr) into a temporary file renamed into place, and `sync_tree` sends a remote
//! manifest's difference as one tar stream ([`hgauto_core::backend::tree_sync`]).

use super::*;

impl SshMachine {
    pub(super) async fn put_file(&self, local: &Path, remote: &str) -> Result<()> {
        self.require_posix("put")?;
        let meta =
            std::fs::metadata(local).map_err(|e| Error::io("read", local, "localhost", e))?;
        if !meta.is_file() {
            return Err(Error::invalid(
                format!("{}", local.display()),
                "is not a regular file",
            ));
        }
        let mode = meta.permissions().mode() & MODE_MASK;
        let dst = posix_path(OsStr::new(remote), "remote path")?;
        let parent = match Path::new(remote).parent().map(|p| p.as_os_str()) {
            Some(p) if !p.is_empty() => posix_path(p, "remote path")?,
            _ => ".".to_owned(),
        };
        // umask 077: the file is private while it travels; its mode is set at the end.
        let script = format!(
            "set -e\numask 077\nmkdir -p {parent}\nt={parent}/.hgauto-put.$$\n\
             trap 'rm -f \"$t\"' EXIT\ncat > \"$t\"\nchmod {mode:o} \"$t\"\nmv -f \"$t\" {dst}\n\
             trap - EXIT"
        );
        let local = local.to_owned();
        let remote = remote.to_owned();
        let keepalive = self.inner.cfg.keepalive;
        let me = self.clone();
        self.with_conn(true, move |conn| {
            let mut file = std::fs::File::open(&local)
                .map_err(|e| OpError::Other(Error::io("open", &local, "localhost", e)))?;
            let (status, err) =
                me.run_plain(conn, keepalive, &script, Some(&mut file), &mut |_| Ok(()))?;
            if status.success() {
                Ok(())
            } else {
                Err(me.remote_failure("write", &remote, status, &err))
            }
        })
        .await
    }

    pub(super) async fn get_file(&self, remote: &str, local: &Path) -> Result<()> {
        self.require_posix("get")?;
        let src = posix_path(OsStr::new(remote), "remote path")?;
        let script = format!("stat -L -c 'hgauto-mode %a' {src} >&2 && exec cat {src}");
        let parent = local
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        std::fs::create_dir_all(&parent)
            .map_err(|e| Error::io("create directory", &parent, "localhost", e))?;
        let local = local.to_owned();
        let remote = remote.to_owned();
        let keepalive = self.inner.cfg.keepalive;
        let me = self.clone();
        self.with_conn(true, move |conn| {
            let tmp = parent.join(format!(".hgauto-get-{:016x}", rand::random::<u64>()));
            let result = (|| {
                // Private (0600) while it fills; the remote file's mode is set at the end.
                let mut file = create_private(&tmp)
                    .map_err(|e| OpError::Other(Error::io("create", &tmp, "localhost", e)))?;
                let (status, err) =
                    me.run_plain(conn, keepalive, &script, None, &mut |d| file.write_all(d))?;
                if !status.success() {
                    return Err(me.remote_failure("read", &remote, status, &err));
                }
                let text = String::from_utf8_lossy(&err);
                let mode = text
                    .lines()
                    .find_map(|l| l.strip_prefix("hgauto-mode "))
                    .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
                    .unwrap_or(0o644);
                // Atomic (rename) but not fsync'd, like scp and rsync: durability is the
                // publishers' job, and forcing a large file to disk costs seconds.
                set_mode(&file, mode)
                    .map_err(|e| OpError::Other(Error::io("chmod", &tmp, "localhost", e)))?;
                std::fs::rename(&tmp, &local).map_err(|e| {
                    OpError::Other(Error::io("rename into place", &local, "localhost", e))
                })
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        })
        .await
    }

    pub(super) async fn sync_dir(
        &self,
        local_dir: &Path,
        remote_dir: &str,
        options: &SyncOptions,
    ) -> Result<SyncReport> {
        self.require_posix("sync_tree")?;
        let meta = std::fs::metadata(local_dir)
            .map_err(|e| Error::io("read", local_dir, "localhost", e))?;
        if !meta.is_dir() {
            return Err(Error::invalid(
                format!("{}", local_dir.display()),
                "is not a directory",
            ));
        }
        let manifest_cmd = sync::manifest_command(remote_dir)?;
        let delete_cmd = sync::delete_command(remote_dir)?;
        let extract_cmd = sync::extract_command(remote_dir, options.compress)?;
        let root = local_dir.to_owned();
        let options = options.clone();
        let remote = remote_dir.to_owned();
        let keepalive = self.inner.cfg.keepalive;
        let me = self.clone();
        self.with_conn(true, move |conn| {
            let mut listing = Vec::new();
            let (status, err) = me.run_plain(conn, keepalive, &manifest_cmd, None, &mut |d| {
                listing.extend_from_slice(d);
                Ok(())
            })?;
            if !status.success() {
                return Err(me.remote_failure("list", &remote, status, &err));
            }
            let plan = sync::plan(&root, &sync::parse_manifest(&listing), options.delete)
                .map_err(OpError::Other)?;
            if !plan.delete.is_empty() {
                let mut list = Vec::new();
                for p in &plan.delete {
                    list.extend_from_slice(p);
                    list.push(0);
                }
                let (status, err) = me.run_plain(
                    conn,
                    keepalive,
                    &delete_cmd,
                    Some(&mut Cursor::new(list)),
                    &mut |_| Ok(()),
                )?;
                if !status.success() {
                    return Err(me.remote_failure("delete in", &remote, status, &err));
                }
            }
            let (reader, writer) = std::io::pipe()
                .map_err(|e| OpError::Other(Error::io("create pipe", "(pipe)", "localhost", e)))?;
            let items = plan.send.clone();
            let compress = options.compress;
            let producer = std::thread::spawn(move || -> std::io::Result<()> {
                if compress {
                    let mut gz = flate2::write::GzEncoder::new(writer, flate2::Compression::fast());
                    sync::write_tar(&items, &mut gz)?;
                    gz.finish().map(drop)
                } else {
                    sync::write_tar(&items, writer)
                }
            });
            let mut reader = reader;
            let ran = me.run_plain(
                conn,
                keepalive,
                &extract_cmd,
                Some(&mut reader),
                &mut |_| Ok(()),
            );
            drop(reader); // unblocks the producer if the remote side stopped reading
            let produced = producer.join();
            let (status, err) = ran?;
            match produced {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(OpError::Other(Error::io(
                        "read local tree",
                        &root,
                        "localhost",
                        e,
                    )))
                }
                Err(_) => return Err(OpError::Other(Error::invalid("tar producer", "panicked"))),
            }
            if !status.success() {
                return Err(me.remote_failure("extract into", &remote, status, &err));
            }
            Ok(plan.report)
        })
        .await
    }
}
