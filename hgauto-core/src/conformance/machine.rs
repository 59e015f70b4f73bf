//! The behaviour every [`RemoteMachine`] backend must show. Each function checks one
//! behaviour and panics with a description of what differed.
//!
//! The checks drive the machine only through the trait, and use a few POSIX tools on it
//! (`sh`, `printf`, `cat`, `find`, `sort`, `sha256sum`, `stat`), so they run unchanged
//! against the local backend, SSH and SSM.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::command::{Command, ExitStatus, Output, Stream};
use crate::error::Error;
use crate::machine::{RemoteMachine, SyncOptions};

/// What a backend can do, for checks that not every platform supports.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// Reports death by signal as [`ExitStatus::Signal`].
    pub signals: bool,
    /// Passes arguments that are not valid UTF-8.
    pub non_utf8_args: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            signals: true,
            non_utf8_args: true,
        }
    }
}

/// Runs every check in this module.
pub async fn run_all(m: &dyn RemoteMachine, caps: Capabilities) {
    exit_codes(m).await;
    if caps.signals {
        signals(m).await;
    }
    stdout_and_stderr(m).await;
    env(m).await;
    cwd(m).await;
    stdin(m).await;
    timeout_kills_process_tree(m).await;
    abandoned_exec_kills_process_tree(m).await;
    large_output(m).await;
    put_get_binary(m).await;
    sync_tree_2000_files(m).await;
    hostile_arguments(m, caps).await;
    hostile_paths(m).await;
}

/// A fresh directory (relative to the machine's home) for one check.
async fn scratch(m: &dyn RemoteMachine, what: &str) -> String {
    let dir = format!("hgauto-conformance/{what}-{:08x}", rand::random::<u32>());
    run_ok(m, Command::new("mkdir").arg("-p").arg(&dir)).await;
    dir
}

async fn run(m: &dyn RemoteMachine, cmd: Command) -> Output {
    match m.exec(&cmd).await {
        Ok(o) => o,
        Err(e) => panic!("[{}] `{}` failed to run: {e}", m.id(), cmd.display()),
    }
}

async fn run_ok(m: &dyn RemoteMachine, cmd: Command) -> Output {
    let out = run(m, cmd.clone()).await;
    assert!(
        out.status.success(),
        "[{}] `{}` ended with {}; stderr: {}",
        m.id(),
        cmd.display(),
        out.status,
        out.stderr_str()
    );
    out
}

/// Exit codes arrive exactly; a missing program is an error or exit code 127.
pub async fn exit_codes(m: &dyn RemoteMachine) {
    for code in [0, 1, 2, 7, 42, 126, 255] {
        let out = run(m, Command::script(format!("exit {code}"))).await;
        assert_eq!(
            out.status,
            ExitStatus::Code(code),
            "[{}] exit {code}",
            m.id()
        );
    }
    let out = run(m, Command::new("false")).await;
    assert_eq!(out.status, ExitStatus::Code(1));
    match m.exec(&Command::new("hgauto-no-such-program-x")).await {
        Err(Error::Spawn { .. }) => {}
        Ok(o) => assert_eq!(
            o.status,
            ExitStatus::Code(127),
            "[{}] missing program",
            m.id()
        ),
        Err(e) => panic!("[{}] missing program gave an unexpected error: {e}", m.id()),
    }
}

/// Death by signal is reported as the signal, not as an exit code.
pub async fn signals(m: &dyn RemoteMachine) {
    let out = run(m, Command::script("kill -TERM $$; sleep 5")).await;
    assert_eq!(out.status, ExitStatus::Signal(15), "[{}] SIGTERM", m.id());
    let out = run(m, Command::script("kill -KILL $$; sleep 5")).await;
    assert_eq!(out.status, ExitStatus::Signal(9), "[{}] SIGKILL", m.id());
}

/// Stdout and stderr are captured separately and streamed line by line.
pub async fn stdout_and_stderr(m: &dyn RemoteMachine) {
    let lines: Mutex<Vec<(Stream, Vec<u8>)>> = Mutex::new(Vec::new());
    let sink = |s: Stream, l: &[u8]| lines.lock().unwrap().push((s, l.to_vec()));
    let cmd = Command::script("echo out1; echo err1 >&2; printf 'out2'; printf 'err2' >&2");
    let out = m.exec_streaming(&cmd, &sink).await.expect("exec");
    assert_eq!(out.stdout, b"out1\nout2", "[{}] stdout", m.id());
    assert_eq!(out.stderr, b"err1\nerr2", "[{}] stderr", m.id());
    let mut got = lines.lock().unwrap().clone();
    got.sort();
    let mut want = vec![
        (Stream::Stdout, b"out1".to_vec()),
        (Stream::Stdout, b"out2".to_vec()),
        (Stream::Stderr, b"err1".to_vec()),
        (Stream::Stderr, b"err2".to_vec()),
    ];
    want.sort();
    assert_eq!(got, want, "[{}] streamed lines", m.id());
}

/// Environment variables reach the program with their exact values.
pub async fn env(m: &dyn RemoteMachine) {
    let value = "a b'c\"$HOME`x`\n\\end ü";
    let out = run_ok(
        m,
        Command::new("printenv")
            .arg("HGAUTO_TEST_VAR")
            .env("HGAUTO_TEST_VAR", value),
    )
    .await;
    assert_eq!(
        out.stdout,
        format!("{value}\n").as_bytes(),
        "[{}] env value",
        m.id()
    );
}

/// The working directory is set, and relative directories start at the home directory.
pub async fn cwd(m: &dyn RemoteMachine) {
    let dir = scratch(m, "cwd").await;
    let sub = format!("{dir}/with space's");
    run_ok(m, Command::new("mkdir").arg("-p").arg(&sub)).await;
    let out = run_ok(m, Command::new("pwd").current_dir(&sub)).await;
    let home = run_ok(m, Command::script("cd && pwd")).await.stdout_str();
    assert_eq!(
        out.stdout_str().trim_end(),
        format!("{}/{sub}", home.trim_end()),
        "[{}] cwd",
        m.id()
    );
    // A missing directory fails: as an error naming it, or as a non-zero exit of the shell.
    match m
        .exec(&Command::new("true").current_dir(format!("{dir}/missing")))
        .await
    {
        Ok(o) => assert!(
            matches!(o.status, ExitStatus::Code(c) if c != 0),
            "[{}] a missing cwd must fail, got {}",
            m.id(),
            o.status
        ),
        Err(e) => assert!(
            e.to_string().contains("missing"),
            "[{}] the error must name the directory: {e}",
            m.id()
        ),
    }
}

/// Stdin bytes (binary, with NULs) reach the program; without stdin it reads EOF at once.
pub async fn stdin(m: &dyn RemoteMachine) {
    let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let out = run_ok(m, Command::new("cat").stdin(data.clone())).await;
    assert!(out.stdout == data, "[{}] stdin round trip differs", m.id());
    let out = run_ok(m, Command::new("cat").timeout(Duration::from_secs(20))).await;
    assert!(out.stdout.is_empty(), "[{}] empty stdin", m.id());
}

/// A timeout kills the command and everything it started, and says so.
pub async fn timeout_kills_process_tree(m: &dyn RemoteMachine) {
    let dir = scratch(m, "timeout").await;
    let script = format!("sleep 60 & echo $! > {dir}/bg.pid; sleep 60");
    let started = Instant::now();
    let r = m
        .exec(&Command::script(script).timeout(Duration::from_secs(1)))
        .await;
    assert!(
        matches!(r, Err(Error::Timeout { .. })),
        "[{}] expected a timeout error, got {r:?}",
        m.id()
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "[{}] timeout took {:?}",
        m.id(),
        started.elapsed()
    );
    // The background child must be gone too (allow a moment for the kill to land).
    assert_dies(
        m,
        &dir,
        &["bg"],
        5,
        "the background child survived the timeout",
    )
    .await;
}

/// Asserts that each process whose pid is in `{dir}/{name}.pid` is gone within `secs`
/// seconds (each). A zombie counts as gone: it runs nothing, and reaping it is up to its
/// parent (the test process itself, for a local machine's shell).
async fn assert_dies(m: &dyn RemoteMachine, dir: &str, names: &[&str], secs: u32, what: &str) {
    let check = Command::script(format!(
        "alive() {{ kill -0 \"$1\" 2>/dev/null || return 1; [ -r /proc/$1/stat ] || return 0; \
         [ \"$(cut -d' ' -f3 /proc/$1/stat)\" != Z ]; }}; \
         for f in {}; do pid=$(cat {dir}/$f.pid) || exit 2; i=0; \
         while alive \"$pid\"; do i=$((i+1)); [ $i -gt {} ] && exit 1; \
         sleep 0.1; done; done; exit 0",
        names.join(" "),
        secs * 10
    ));
    let out = run(m, check).await;
    assert_eq!(out.status, ExitStatus::Code(0), "[{}] {what}", m.id());
}

/// A caller that stops waiting (drops the `exec` future) leaves no process behind: the
/// command and its background child are killed, possibly by work the backend hands to
/// [`crate::background`], which is drained here as a program would before exiting.
pub async fn abandoned_exec_kills_process_tree(m: &dyn RemoteMachine) {
    let dir = scratch(m, "abandoned").await;
    let script = format!("sleep 60 & echo $! > {dir}/bg.pid; echo $$ > {dir}/sh.pid; sleep 60");
    let cmd = Command::script(script).timeout(Duration::from_secs(120));
    let started = async {
        let probe = Command::script(format!("test -s {dir}/bg.pid && test -s {dir}/sh.pid"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !run(m, probe.clone()).await.status.success() {
            assert!(
                Instant::now() < deadline,
                "[{}] the command never started",
                m.id()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // When `started` completes, select! drops the exec future: the caller has gone.
    tokio::select! {
        r = m.exec(&cmd) => panic!("[{}] the 60 s command ended early: {r:?}", m.id()),
        () = started => {}
    }
    crate::background::drain(Duration::from_secs(60)).await;
    let what = "the abandoned command or its background child survived";
    assert_dies(m, &dir, &["bg", "sh"], 10, what).await;
}

/// 50 MB on stdout while stderr also writes does not deadlock, and nothing is lost.
pub async fn large_output(m: &dyn RemoteMachine) {
    let line = "x".repeat(99);
    let script = format!(
        "yes 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee' | head -n 100000 >&2 & \
         yes '{line}' | head -n 500000; wait"
    );
    let out_lines = AtomicUsize::new(0);
    let err_lines = AtomicUsize::new(0);
    let sink = |s: Stream, l: &[u8]| {
        let counter = match s {
            Stream::Stdout => &out_lines,
            Stream::Stderr => &err_lines,
        };
        if !l.is_empty() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    };
    let out = m
        .exec_streaming(
            &Command::script(script).timeout(Duration::from_secs(300)),
            &sink,
        )
        .await
        .expect("large output");
    assert!(out.status.success(), "[{}] {}", m.id(), out.status);
    assert_eq!(out.stdout.len(), 500_000 * 100, "[{}] stdout bytes", m.id());
    assert_eq!(out.stderr.len(), 100_000 * 41, "[{}] stderr bytes", m.id());
    assert_eq!(out_lines.load(Ordering::Relaxed), 500_000);
    assert_eq!(err_lines.load(Ordering::Relaxed), 100_000);
}

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
    let (want, _) = crate::artifact::sha256_file(&src).unwrap();
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

/// Arguments that would be shell code if pasted into a command line arrive as plain bytes,
/// and the canary file they try to create never appears.
pub async fn hostile_arguments(m: &dyn RemoteMachine, caps: Capabilities) {
    let dir = scratch(m, "hostile").await;
    let mut args: Vec<std::ffi::OsString> = [
        "$(touch canary)",
        "`touch canary`",
        "; touch canary",
        "| touch canary",
        "&& touch canary",
        "'; touch canary; '",
        "\"; touch canary; \"",
        "\\'$(touch canary)\\'",
        "\n touch canary \n",
        "${IFS}touch${IFS}canary",
        "*",
        "~",
        "-n",
        "--",
        "",
        " ",
        "%s%n%d",
        "$HOME",
        "!!",
        "# comment",
        "\t\r",
        "ünï€😀",
        "\u{2019}; touch canary",
    ]
    .iter()
    .map(Into::into)
    .collect();
    if caps.non_utf8_args {
        use std::os::unix::ffi::OsStringExt;
        args.push(std::ffi::OsString::from_vec(vec![
            0xff, b'$', b'(', 0xfe, b')', 0x80,
        ]));
    }
    let hostile_dir = format!("{dir}/we ird'$(touch canary)`x`");
    run_ok(m, Command::new("mkdir").arg("-p").arg(&hostile_dir)).await;
    let cmd = Command::new("printf")
        .arg("%s\\0")
        .args(&args)
        .current_dir(&hostile_dir)
        .env("HGAUTO_HOSTILE", "$(touch canary)");
    let out = run_ok(m, cmd).await;
    let mut want = Vec::new();
    for a in &args {
        want.extend_from_slice(a.as_bytes());
        want.push(0);
    }
    assert!(
        out.stdout == want,
        "[{}] arguments changed in transit:\n got {:?}\nwant {:?}",
        m.id(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&want)
    );
    let env_out = run_ok(
        m,
        Command::new("printenv")
            .arg("HGAUTO_HOSTILE")
            .env("HGAUTO_HOSTILE", "$(touch canary)"),
    )
    .await;
    assert_eq!(env_out.stdout, b"$(touch canary)\n");
    assert_no_canary(m, &dir).await;
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
async fn assert_no_canary(m: &dyn RemoteMachine, dir: &str) {
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
