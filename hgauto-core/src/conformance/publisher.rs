//! The behaviour every [`Publisher`] backend must show.

use crate::artifact::Artifact;
use crate::error::Error;
use crate::publisher::Publisher;

/// Runs every check in this module.
pub async fn run_all(p: &dyn Publisher) {
    publish_then_exists(p).await;
    republish_is_a_noop(p).await;
    conflicting_name_is_refused_before_any_upload(p).await;
    changed_file_is_an_integrity_error(p).await;
    bad_names_are_refused(p).await;
}

fn artifact(dir: &tempfile::TempDir, tag: &str, content: &str) -> Artifact {
    let name = format!("conformance-{tag}-{:08x}.tar.gz", rand::random::<u32>());
    let path = dir.path().join(&name);
    std::fs::write(&path, content).unwrap();
    Artifact::from_file(&path).unwrap()
}

/// A published artifact exists afterwards; before, it does not.
pub async fn publish_then_exists(p: &dyn Publisher) {
    let dir = tempfile::tempdir().unwrap();
    let a = artifact(&dir, "new", "first content\n");
    assert!(
        !p.exists(&a).await.expect("exists before"),
        "[{}] exists before publish",
        p.destination()
    );
    let report = p.publish(std::slice::from_ref(&a)).await.expect("publish");
    assert_eq!(
        report.published,
        vec![a.name.clone()],
        "[{}]",
        p.destination()
    );
    assert!(
        p.exists(&a).await.expect("exists after"),
        "[{}] missing after publish",
        p.destination()
    );
}

/// Publishing the same artifact again changes nothing and says so.
pub async fn republish_is_a_noop(p: &dyn Publisher) {
    let dir = tempfile::tempdir().unwrap();
    let a = artifact(&dir, "again", "same bytes\n");
    p.publish(std::slice::from_ref(&a))
        .await
        .expect("first publish");
    let report = p
        .publish(std::slice::from_ref(&a))
        .await
        .expect("second publish");
    assert!(
        report.published.is_empty(),
        "[{}] {report:?}",
        p.destination()
    );
    assert_eq!(
        report.already_present,
        vec![a.name.clone()],
        "[{}]",
        p.destination()
    );
}

/// Other content under a published name is a conflict, and a batch containing a conflict
/// uploads nothing.
pub async fn conflicting_name_is_refused_before_any_upload(p: &dyn Publisher) {
    let dir = tempfile::tempdir().unwrap();
    let original = artifact(&dir, "conflict", "original\n");
    p.publish(std::slice::from_ref(&original))
        .await
        .expect("publish original");

    let other_dir = tempfile::tempdir().unwrap();
    let other_path = other_dir.path().join(&original.name);
    std::fs::write(&other_path, "different\n").unwrap();
    let impostor = Artifact::from_file(&other_path).unwrap();
    assert!(
        matches!(p.exists(&impostor).await, Err(Error::Conflict { .. })),
        "[{}] exists() must report a conflict",
        p.destination()
    );
    let innocent = artifact(&dir, "innocent", "innocent\n");
    let r = p.publish(&[innocent.clone(), impostor]).await;
    assert!(
        matches!(r, Err(Error::Conflict { .. })),
        "[{}] got {r:?}",
        p.destination()
    );
    assert!(
        !p.exists(&innocent).await.expect("exists"),
        "[{}] a batch with a conflict uploaded part of itself",
        p.destination()
    );
    assert!(
        p.exists(&original).await.expect("exists"),
        "[{}] original was replaced",
        p.destination()
    );
}

/// A file that changed after it was described is refused and leaves nothing behind.
pub async fn changed_file_is_an_integrity_error(p: &dyn Publisher) {
    let dir = tempfile::tempdir().unwrap();
    let a = artifact(&dir, "changed", "described content\n");
    std::fs::write(&a.path, "tampered content!!\n").unwrap();
    let r = p.publish(std::slice::from_ref(&a)).await;
    assert!(
        matches!(r, Err(Error::Integrity { .. })),
        "[{}] got {r:?}",
        p.destination()
    );
    assert!(
        !p.exists(&a).await.expect("exists"),
        "[{}] partial publish left a file",
        p.destination()
    );
}

/// Names that could escape the destination are refused.
pub async fn bad_names_are_refused(p: &dyn Publisher) {
    let dir = tempfile::tempdir().unwrap();
    let mut a = artifact(&dir, "bad", "x\n");
    for bad in ["../escape.tar.gz", "/etc/passwd", "a/b", ".hidden", ""] {
        a.name = bad.to_owned();
        let r = p.publish(std::slice::from_ref(&a)).await;
        assert!(
            matches!(r, Err(Error::InvalidInput { .. })),
            "[{}] name {bad:?}: {r:?}",
            p.destination()
        );
    }
}
