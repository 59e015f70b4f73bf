//! LocalProvider lifecycle: ledger-before-create, terminate, purge, image cache, bad input.

use std::sync::Arc;
use std::time::Duration;

use hgauto_core::{
    Command, Error, ImageRecipe, LocalProvider, MachineSpec, Platform, RemoteMachine, ResourceKind,
    ResourceProvider,
};

fn provider() -> (tempfile::TempDir, LocalProvider) {
    let state = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(state.path()).unwrap();
    (state, p)
}

fn sandbox_count(state: &std::path::Path) -> usize {
    std::fs::read_dir(state.join("local/machines"))
        .unwrap()
        .count()
}

#[tokio::test]
async fn provision_records_then_terminate_removes_everything() {
    let (state, p) = provider();
    let spec = MachineSpec::linux()
        .with_label("job", "demo")
        .with_lifetime(Duration::from_secs(600));
    let ms = p.provision(&spec, 3).await.unwrap();
    assert_eq!(ms.len(), 3);
    let listed = p.list_managed().await.unwrap();
    assert_eq!(listed.len(), 3);
    for r in &listed {
        assert_eq!(r.kind, ResourceKind::Machine);
        assert!(r.exists);
        assert!(r.deadline.unwrap() >= r.created_at + 600);
    }
    let rec = p.ledger().get(ms[0].id()).unwrap().unwrap();
    assert_eq!(
        rec.details.get("label:job").map(String::as_str),
        Some("demo")
    );
    assert_eq!(rec.session, hgauto_core::session::session_id());

    // Each machine is its own sandbox with its own home.
    let home0 = ms[0]
        .exec(&Command::script("cd && pwd"))
        .await
        .unwrap()
        .stdout_str();
    let home1 = ms[1]
        .exec(&Command::script("cd && pwd"))
        .await
        .unwrap()
        .stdout_str();
    assert_ne!(home0, home1);

    let ids: Vec<String> = ms.iter().map(|m| m.id().to_owned()).collect();
    p.terminate(&ids).await.unwrap();
    p.terminate(&ids).await.unwrap(); // idempotent
    assert!(p.list_managed().await.unwrap().is_empty());
    assert_eq!(sandbox_count(state.path()), 0);
}

#[tokio::test]
async fn terminate_kills_processes_the_machine_started() {
    let (_state, p) = provider();
    let ms = p.provision(&MachineSpec::linux(), 1).await.unwrap();
    let m = ms[0].clone();
    // A daemon that escapes the command's process group with setsid.
    let out = m
        .exec(&Command::script(
            "setsid sleep 300 > /dev/null 2>&1 < /dev/null & echo $!",
        ))
        .await
        .unwrap();
    let pid: i32 = out.stdout_str().trim().parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    p.terminate(&[m.id().to_owned()]).await.unwrap();
    // Reaped by init eventually; it must not be running.
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit_once(')').unwrap().1.trim_start().starts_with('Z'))
        .unwrap_or(false);
    assert!(!alive, "process {pid} survived terminate");
}

#[tokio::test]
async fn purge_removes_what_another_process_left() {
    let (state, p) = provider();
    let ms = p.provision(&MachineSpec::linux(), 2).await.unwrap();
    drop(ms);
    // A second provider on the same state dir (as after a crash) finds them in the ledger.
    let p2 = LocalProvider::new(state.path()).unwrap();
    assert_eq!(p2.list_managed().await.unwrap().len(), 2);
    let report = p2.purge().await.unwrap();
    assert_eq!(report.removed.len(), 2);
    assert!(p2.list_managed().await.unwrap().is_empty());
    assert_eq!(sandbox_count(state.path()), 0);
}

#[tokio::test]
async fn image_cache_hit_miss_and_stale_cleanup() {
    let (state, p) = provider();
    let files = tempfile::tempdir().unwrap();
    let tool = files.path().join("tool.sh");
    std::fs::write(&tool, "#!/bin/sh\necho tool v1\n").unwrap();
    let recipe = ImageRecipe::new("builder", Platform::Linux, "host")
        .with_file(&tool, "bin/tool.sh")
        .with_script("chmod +x bin/tool.sh && echo bootstrapped > marker");
    let id1 = p.ensure_image(&recipe).await.unwrap();
    let marker = state.path().join("local/images").join(&id1).join("marker");
    let built_at = std::fs::metadata(&marker).unwrap().modified().unwrap();

    // Same recipe: cache hit, not rebuilt.
    let again = p.ensure_image(&recipe).await.unwrap();
    assert_eq!(again, id1);
    assert_eq!(
        std::fs::metadata(&marker).unwrap().modified().unwrap(),
        built_at
    );

    // Machines start from the image.
    let ms = p
        .provision(&MachineSpec::linux().with_image(&id1), 1)
        .await
        .unwrap();
    let out = ms[0].exec(&Command::new("bin/tool.sh")).await.unwrap();
    assert_eq!(out.stdout_str(), "tool v1\n");
    p.terminate(&[ms[0].id().to_owned()]).await.unwrap();

    // Changed file content: a new image, and the stale one is gone.
    std::fs::write(&tool, "#!/bin/sh\necho tool v2\n").unwrap();
    let id2 = p.ensure_image(&recipe).await.unwrap();
    assert_ne!(id1, id2);
    assert!(!state.path().join("local/images").join(&id1).exists());
    let images: Vec<_> = p
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == ResourceKind::Image)
        .collect();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, id2);
}

#[tokio::test]
async fn concurrent_ensure_image_builds_once() {
    let (_state, p) = provider();
    let p = Arc::new(p);
    let counter = tempfile::tempdir().unwrap();
    let script = format!("echo built >> '{}/count'", counter.path().display());
    let recipe = ImageRecipe::new("once", Platform::Linux, "host").with_script(script);
    let (a, b) = tokio::join!(p.ensure_image(&recipe), p.ensure_image(&recipe));
    assert_eq!(a.unwrap(), b.unwrap());
    let count = std::fs::read_to_string(counter.path().join("count")).unwrap();
    assert_eq!(count.lines().count(), 1);
}

#[tokio::test]
async fn failing_bootstrap_is_a_provision_error_and_leaves_nothing() {
    let (state, p) = provider();
    let recipe =
        ImageRecipe::new("broken", Platform::Linux, "host").with_script("echo nope >&2; exit 3");
    let e = p.ensure_image(&recipe).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Provision { .. }), "{e:?}");
    assert!(msg.contains("exit code 3") && msg.contains("nope"), "{msg}");
    assert!(p.list_managed().await.unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(state.path().join("local/images"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_created() {
    let (state, p) = provider();
    let e = p.provision(&MachineSpec::windows(), 1).await.unwrap_err();
    assert!(matches!(e, Error::NotSupported { .. }), "{e:?}");
    let e = p
        .provision(&MachineSpec::linux().with_image("no-such-image"), 1)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no-such-image"), "{e}");
    let e = p.terminate(&["../../etc".to_owned()]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    let e = p
        .ensure_image(&ImageRecipe::new("bad name!", Platform::Linux, "x"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("bad name!"), "{e}");
    let e = p
        .ensure_image(
            &ImageRecipe::new("abs", Platform::Linux, "x").with_file("/etc/hostname", "/etc/x"),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("/etc/x"), "{e}");
    assert!(LocalProvider::new(state.path())
        .unwrap()
        .with_prefix("a/b")
        .is_err());
    assert!(p.list_managed().await.unwrap().is_empty());
    assert_eq!(sandbox_count(state.path()), 0);
}

#[tokio::test]
async fn machines_are_shareable_across_tasks() {
    let (_state, p) = provider();
    let ms = p.provision(&MachineSpec::linux(), 1).await.unwrap();
    let m: Arc<dyn RemoteMachine> = ms[0].clone();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move {
                m.exec(&Command::new("echo").arg(i.to_string()))
                    .await
                    .unwrap()
                    .stdout_str()
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), format!("{i}\n"));
    }
    p.purge().await.unwrap();
}

#[tokio::test]
async fn deadlines_can_be_moved_on_and_unknown_machines_are_named() {
    let (_state, p) = provider();
    let m = p.provision(&MachineSpec::linux(), 1).await.unwrap();
    let id = m[0].id().to_owned();
    let until = hgauto_core::clock::unix_now() + 7 * 24 * 3600;
    p.extend_deadline(std::slice::from_ref(&id), until)
        .await
        .unwrap();
    let listed = p.list_managed().await.unwrap();
    let rec = listed.iter().find(|r| r.id == id).expect("listed");
    assert_eq!(rec.deadline, Some(until));
    let e = p
        .extend_deadline(&["local-000000000000".to_owned()], until)
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    p.terminate(&[id]).await.unwrap();
}

/// A lifetime so large that now + lifetime would wrap around (a deadline in the past, so
/// a sweep would take the machine at once) is refused before anything is created.
#[tokio::test]
async fn a_huge_lifetime_is_refused_before_anything_exists() {
    let (_dir, p) = provider();
    let spec = MachineSpec::linux().with_lifetime(Duration::from_secs(u64::MAX / 2));
    let e = p.provision(&spec, 1).await.unwrap_err();
    assert!(matches!(e, hgauto_core::Error::InvalidInput { .. }), "{e}");
    assert!(e.to_string().contains("lifetime"), "{e}");
    assert!(p.list_managed().await.unwrap().is_empty());
}
