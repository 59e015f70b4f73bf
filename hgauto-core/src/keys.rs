//! Writing secrets to disk: private keys are created with mode 0600 from the first byte.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{IoContext, Result};

/// Writes private key material to `path` atomically (temporary file, sync, rename). The file
/// is created with mode 0600, so the key is never readable by others, whatever the umask.
/// Parent directories are created with mode 0700.
pub fn write_private_key(path: &Path, material: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .at("create key directory", dir, "localhost")?;
    let tmp = dir.join(format!(".key-tmp-{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .at("create key file", &tmp, "localhost")?;
        f.write_all(material)
            .at("write key file", &tmp, "localhost")?;
        f.sync_all().at("sync key file", &tmp, "localhost")?;
        std::fs::rename(&tmp, path).at("rename key file into place", path, "localhost")
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_is_0600_even_with_a_permissive_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/id_ed25519");
        // SAFETY: umask has no memory-safety preconditions; restored right after.
        let old = unsafe { libc::umask(0) };
        let r = write_private_key(&path, b"test key material, not a real key\n");
        unsafe { libc::umask(old) };
        r.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temporary left"
        );
    }
}
