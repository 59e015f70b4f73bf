//! Test and benchmark inputs shared by backends.

use std::path::Path;

/// Fills `root` with `files` files of pseudo-random (incompressible) content spread over 50
/// directories, sizes varying around `total_bytes / files`. Deterministic for a given
/// argument set. Returns the total size written.
pub fn random_tree(root: &Path, files: usize, total_bytes: usize) -> usize {
    let mean = (total_bytes / files.max(1)).max(1);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut total = 0;
    for i in 0..files {
        let dir = root.join(format!("dir{:02}", i % 50));
        std::fs::create_dir_all(&dir).expect("create fixture directory");
        // Sizes from mean/2 to 3*mean/2, averaging `mean`.
        let size = mean / 2 + (i * 7919) % mean.max(1);
        std::fs::write(
            dir.join(format!("file{i:05}.bin")),
            random_bytes(&mut seed, size),
        )
        .expect("write fixture file");
        total += size;
    }
    total
}

/// `len` pseudo-random bytes (xorshift64), advancing `seed`.
pub fn random_bytes(seed: &mut u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    for chunk in data.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
    data
}

/// A retry policy for tests: one retry after 10 ms, no jitter.
pub fn quick_retry() -> hgauto_core::retry::RetryPolicy {
    hgauto_core::retry::RetryPolicy {
        max_retries: 1,
        base_delay: std::time::Duration::from_millis(10),
        factor: 1.0,
        max_delay: std::time::Duration::from_millis(10),
        jitter: hgauto_core::retry::Jitter::None,
    }
}

/// Runs `cmd`, panics with its output unless it succeeded, and returns its stdout.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
