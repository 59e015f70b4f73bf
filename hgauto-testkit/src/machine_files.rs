//! The file half of the [`RemoteMachine`] suite: `put`/`get`, `sync_tree` over a large tree,
//! and hostile remote paths.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use hgauto_core::command::Command;
use hgauto_core::machine::{RemoteMachine, SyncOptions};
use hgauto_core::ExitStatus;

use super::machine_run::{run, run_ok, scratch};

/// `put` and `get` are binary-safe, keep permission bits (but never setuid or setgid), and
/// create missing parent directories.
pub async fn put_get_binary(m: &dyn RemoteMachine) {
    let dir = scratch(m, "putget").await;
    let local = tempfile::tempdir().expect("tempdir");
    let src = local.path().join("blob.bin");
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    // Setuid and setgid never travel: only the permission bits (0o750) arrive.
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o6750)).unwrap();
    let remote = format!("{dir}/nested/deeper/blob.bin");
    m.put(&src, &remote).await.expect("put");

    let sum = run_ok(m, Command::new("sha256sum").arg(&remote))
        .await
        .stdout_str();
    let (want, _) = hgauto_core::artifact::sha256_file(&src).unwrap();
    assert!(
        sum.starts_with(&want),
        "[{}] remote sha256 {sum} != {want}",
        m.id()
    );
    let mode = run_ok(m, Command::new("stat").args(["-c", "%a", &remote])).await;
    assert_eq!(mode.stdout_str().trim(), "750", "[{}] remote mode", m.id());

    let back = local.path().join("back/blob.bin");
    run_ok(m, Command::new("chmod").args(["4750", &remote])).await;
    m.get(&remote, &back).await.expect("get");
    assert!(
        std::fs::read(&back).unwrap() == data,
        "[{}] get differs",
        m.id()
    );
    let mode = std::fs::metadata(&back).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750, "[{}] local mode after get", m.id());

    let missing = m
        .get(&format!("{dir}/missing"), &local.path().join("x"))
        .await;
    assert!(
        missing.is_err(),
        "[{}] get of a missing file must fail",
        m.id()
    );
}

/// A local tree: 2,000 files over nested directories, unicode names, several modes,
/// relative symlinks (to files, to directories, dangling) and an empty directory.
pub fn make_tree(root: &Path) {
    let names = [
        "plain",
        "ünïcödé",
        "日本語",
        "emoji😀",
        "sp ace",
        "quote'd",
        "dash-",
        "$(x)",
    ];
    let modes = [0o644, 0o755, 0o600, 0o640];
    for i in 0..2000u32 {
        let dir = root
            .join(format!("d{}", i % 40))
            .join(names[(i % 8) as usize]);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join(format!("{}-{i}.txt", names[((i / 8) % 8) as usize]));
        std::fs::write(&f, format!("file {i}\n").repeat((i % 7) as usize + 1)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(modes[(i % 4) as usize]))
            .unwrap();
    }
    symlink("d0/plain", root.join("link-to-dir")).unwrap();
    symlink("d1/ünïcödé/日本語-9.txt", root.join("link-to-file")).unwrap();
    symlink("does/not/exist", root.join("dangling")).unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    std::fs::set_permissions(root.join("d3"), std::fs::Permissions::from_mode(0o750)).unwrap();
}

/// `path\0type\0mode\0size\0link\0` for every entry, sorted: what the remote `find` prints.
fn local_manifest(root: &Path) -> (BTreeMap<Vec<u8>, Vec<u8>>, String) {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let mut entries = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let (ty, size, link) = if meta.file_type().is_symlink() {
                (
                    "l",
                    String::new(),
                    std::fs::read_link(&p)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else if meta.is_dir() {
                stack.push(p.clone());
                ("d", String::new(), Vec::new())
            } else {
                ("f", meta.len().to_string(), Vec::new())
            };
            let mode = if ty == "l" {
                String::new()
            } else {
                format!("{:o}", meta.mode() & 0o7777)
            };
            let mut v = Vec::new();
            for field in [ty.as_bytes(), mode.as_bytes(), size.as_bytes(), &link] {
                v.extend_from_slice(field);
                v.push(0);
            }
            entries.insert(rel, v);
        }
    }
    let mut hasher = Sha256::new();
    for (rel, v) in &entries {
        if v.starts_with(b"f\0") {
            hasher.update(std::fs::read(root.join(std::ffi::OsStr::from_bytes(rel))).unwrap());
        }
    }
    (entries, hex::encode(hasher.finalize()))
}

async fn remote_manifest(m: &dyn RemoteMachine, dir: &str) -> (BTreeMap<Vec<u8>, Vec<u8>>, String) {
    let listing = run_ok(
        m,
        Command::script(
            "find . -mindepth 1 \\( -type l -printf '%P\\0l\\0\\0\\0%l\\0' \\) -o \
             \\( -type d -printf '%P\\0d\\0%m\\0\\0\\0' \\) -o \
             \\( -type f -printf '%P\\0f\\0%m\\0%s\\0\\0' \\)",
        )
        .current_dir(dir)
        .env("LC_ALL", "C"),
    )
    .await;
    let fields: Vec<&[u8]> = listing.stdout.split(|&b| b == 0).collect();
    let mut entries = BTreeMap::new();
    for rec in fields.chunks(5).filter(|c| c.len() == 5) {
        let mut v = Vec::new();
        for f in &rec[1..] {
            v.extend_from_slice(f);
            v.push(0);
        }
        entries.insert(rec[0].to_vec(), v);
    }
    // Content of every regular file, in the same (byte) order as the local manifest.
    let sum = run_ok(
        m,
        Command::script("find . -type f -printf '%P\\0' | sort -z | xargs -0 -r cat | sha256sum")
            .current_dir(dir)
            .env("LC_ALL", "C"),
    )
    .await;
    let hash = sum
        .stdout_str()
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned();
    (entries, hash)
}

/// The first regular file under `dir`, in sorted order.
fn first_file_under(dir: &Path) -> std::path::PathBuf {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_file() {
            return p;
        }
        if meta.is_dir() {
            return first_file_under(&p);
        }
    }
    panic!("no file under {}", dir.display())
}

/// `sync_tree` of 2,000 files keeps names, modes, symlinks and content; a re-sync sends
/// only what changed and, with `delete`, removes what is gone.
pub async fn sync_tree_2000_files(m: &dyn RemoteMachine) {
    let dir = scratch(m, "sync").await;
    let remote = format!("{dir}/tree");
    let local = tempfile::tempdir().expect("tempdir");
    let root = local.path().join("src");
    make_tree(&root);
    let opts = SyncOptions {
        delete: true,
        compress: false,
    };
    let first = m
        .sync_tree(&root, &remote, &opts)
        .await
        .expect("first sync");
    assert_eq!(first.files_sent, 2000, "[{}] first sync: {first:?}", m.id());
    assert_eq!(first.symlinks, 3, "[{}] first sync: {first:?}", m.id());
    assert_eq!(
        remote_manifest(m, &remote).await,
        local_manifest(&root),
        "[{}] tree after first sync",
        m.id()
    );

    // Change one file (new size) and remove another.
    std::fs::write(first_file_under(&root.join("d5")), "changed content\n").unwrap();
    std::fs::remove_file(first_file_under(&root.join("d7"))).unwrap();
    let second = m
        .sync_tree(&root, &remote, &opts)
        .await
        .expect("second sync");
    assert_eq!(
        second.files_sent,
        1,
        "[{}] re-sync sent more than the change: {second:?}",
        m.id()
    );
    assert_eq!(
        second.deleted,
        1,
        "[{}] re-sync deletions: {second:?}",
        m.id()
    );
    assert_eq!(
        remote_manifest(m, &remote).await,
        local_manifest(&root),
        "[{}] tree after re-sync",
        m.id()
    );
}

/// Remote paths that would be shell code in a generated script (`put`, `get` and
/// `sync_tree` build scripts around them) name exactly that file, and the canary they try
/// to create never appears. A leading `-` is a file name, not an option, and `-` alone is
/// not `$OLDPWD`.
pub async fn hostile_paths(m: &dyn RemoteMachine) {
    let dir = scratch(m, "hostile-paths").await;
    let local = tempfile::tempdir().expect("tempdir");
    let src = local.path().join("payload");
    std::fs::write(&src, b"payload\n").unwrap();
    let names = [
        "it's",
        "a'$(touch canary)'b",
        "`touch canary`",
        "\"; touch canary; \"",
        "-rf",
        "-",
        "sp ace & touch canary",
        "!!",
        "$HOME",
    ];
    for name in names {
        let remote = format!("{dir}/{name}");
        if let Err(e) = m.put(&src, &remote).await {
            panic!("[{}] put to {remote:?}: {e}", m.id());
        }
        let back = local.path().join("back");
        let _ = std::fs::remove_file(&back);
        if let Err(e) = m.get(&remote, &back).await {
            panic!("[{}] get of {remote:?}: {e}", m.id());
        }
        assert_eq!(
            std::fs::read(&back).unwrap(),
            b"payload\n",
            "[{}] {name:?}",
            m.id()
        );
    }
    // The files are where their names say, one per name, and nothing else appeared.
    let listing = run_ok(m, Command::new("ls").arg("-A").arg(&dir)).await;
    let mut got: Vec<String> = listing.stdout_str().lines().map(str::to_owned).collect();
    got.sort();
    let mut want: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    want.sort();
    assert_eq!(got, want, "[{}] files under {dir}", m.id());
    let tree = local.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), "f").unwrap();
    for name in ["-", "it's $(touch canary)"] {
        let remote = format!("{dir}/sync/{name}");
        m.sync_tree(
            &tree,
            &remote,
            &SyncOptions {
                delete: true,
                compress: false,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("[{}] sync_tree to {remote:?}: {e}", m.id()));
        let f = run_ok(m, Command::new("cat").arg(format!("{remote}/f"))).await;
        assert_eq!(f.stdout, b"f", "[{}] synced into {remote:?}", m.id());
    }
    assert_no_canary(m, &dir).await;
}

/// Asserts that no file named `canary` appeared under `dir` or in the home directory: what
/// the hostile inputs of these checks try to create.
pub(super) async fn assert_no_canary(m: &dyn RemoteMachine, dir: &str) {
    let found = run(
        m,
        Command::script(format!(
            "find {dir} -name canary | grep -q . && exit 1; test ! -e ~/canary && test ! -e canary"
        )),
    )
    .await;
    assert_eq!(
        found.status,
        ExitStatus::Code(0),
        "[{}] a canary file was created",
        m.id()
    );
}
