//! The behaviour every [`Publisher`] backend must show.

use std::path::Path;

use hgauto_core::artifact::Artifact;
use hgauto_core::error::Error;
use hgauto_core::publisher::Publisher;

/// Makes the files a suite publishes. A destination that only takes certain files (a
/// Python index takes wheels and sdists) gets a maker of such files.
pub trait ArtifactMaker: Sync {
    /// Writes a file into `dir` whose name depends only on `stem` (so two calls with one
    /// stem give one name) and whose content depends on `content`, and describes it.
    fn make(&self, dir: &Path, stem: &str, content: &str) -> Artifact;
}

/// Any bytes, as `{stem}.tar.gz`: for destinations that take any file.
pub struct PlainFiles;

impl ArtifactMaker for PlainFiles {
    fn make(&self, dir: &Path, stem: &str, content: &str) -> Artifact {
        let path = dir.join(format!("{stem}.tar.gz"));
        std::fs::write(&path, content).unwrap();
        Artifact::from_file(&path).unwrap()
    }
}

/// Python sdists of project `{stem}`, version 1.0, holding `content`.
pub struct Sdists;

impl ArtifactMaker for Sdists {
    fn make(&self, dir: &Path, stem: &str, content: &str) -> Artifact {
        let path = super::dists::sdist(dir, stem, "1.0", content.as_bytes());
        Artifact::from_file(&path).unwrap()
    }
}

/// Runs every check in this module with plain files.
pub async fn run_all(p: &dyn Publisher) {
    run_all_with(p, &PlainFiles).await;
}

/// Runs every check in this module with the files `maker` makes.
pub async fn run_all_with(p: &dyn Publisher, maker: &dyn ArtifactMaker) {
    publish_then_exists(p, maker).await;
    republish_is_a_noop(p, maker).await;
    conflicting_name_is_refused_before_any_upload(p, maker).await;
    changed_file_is_an_integrity_error(p, maker).await;
    bad_names_are_refused(p, maker).await;
    check_reports_presence_without_publishing(p, maker).await;
}

fn stem(tag: &str) -> String {
    format!("conformance-{tag}-{:08x}", rand::random::<u32>())
}

fn artifact(
    maker: &dyn ArtifactMaker,
    dir: &tempfile::TempDir,
    tag: &str,
    content: &str,
) -> Artifact {
    maker.make(dir.path(), &stem(tag), content)
}

/// A published artifact exists afterwards; before, it does not.
pub async fn publish_then_exists(p: &dyn Publisher, maker: &dyn ArtifactMaker) {
    let dir = tempfile::tempdir().unwrap();
    let a = artifact(maker, &dir, "new", "first content\n");
    assert!(
        !p.exists(&a).await.expect("exists before"),
        "[{}] exists before publish",
        p.name()
    );
    let report = p.publish(std::slice::from_ref(&a)).await.expect("publish");
    assert_eq!(report.published, vec![a.name.clone()], "[{}]", p.name());
    assert!(
        p.exists(&a).await.expect("exists after"),
        "[{}] missing after publish",
        p.name()
    );
    assert!(
        p.name_taken(&a.name).await.expect("name_taken after"),
        "[{}] name_taken is false for a published name",
        p.name()
    );
    let free = stem("free");
    assert!(
        !p.name_taken(&format!("{free}.tar.gz"))
            .await
            .expect("name_taken"),
        "[{}] name_taken is true for a free name",
        p.name()
    );
}

/// Publishing the same artifact again changes nothing and says so.
pub async fn republish_is_a_noop(p: &dyn Publisher, maker: &dyn ArtifactMaker) {
    let dir = tempfile::tempdir().unwrap();
    let a = artifact(maker, &dir, "again", "same bytes\n");
    p.publish(std::slice::from_ref(&a))
        .await
        .expect("first publish");
    let report = p
        .publish(std::slice::from_ref(&a))
        .await
        .expect("second publish");
    assert!(report.published.is_empty(), "[{}] {report:?}", p.name());
    assert_eq!(
        report.already_present,
        vec![a.name.clone()],
        "[{}]",
        p.name()
    );
}

/// Other content under a published name is a conflict, and a batch containing a conflict
/// uploads nothing.
pub async fn conflicting_name_is_refused_before_any_upload(
    p: &dyn Publisher,
    maker: &dyn ArtifactMaker,
) {
    let dir = tempfile::tempdir().unwrap();
    let original_stem = stem("conflict");
    let original = maker.make(dir.path(), &original_stem, "original\n");
    p.publish(std::slice::from_ref(&original))
        .await
        .expect("publish original");

    let other_dir = tempfile::tempdir().unwrap();
    let impostor = maker.make(other_dir.path(), &original_stem, "different\n");
    assert_eq!(impostor.name, original.name, "the maker must name by stem");
    assert!(
        matches!(p.exists(&impostor).await, Err(Error::Conflict { .. })),
        "[{}] exists() must report a conflict",
        p.name()
    );
    let innocent = artifact(maker, &dir, "innocent", "innocent\n");
    let r = p.publish(&[innocent.clone(), impostor]).await;
    assert!(
        matches!(r, Err(Error::Conflict { .. })),
        "[{}] got {r:?}",
        p.name()
    );
    assert!(
        !p.exists(&innocent).await.expect("exists"),
        "[{}] a batch with a conflict uploaded part of itself",
        p.name()
    );
    assert!(
        p.exists(&original).await.expect("exists"),
        "[{}] original was replaced",
        p.name()
    );
}

/// A file that changed after it was described is refused and leaves nothing behind.
pub async fn changed_file_is_an_integrity_error(p: &dyn Publisher, maker: &dyn ArtifactMaker) {
    let dir = tempfile::tempdir().unwrap();
    let a = artifact(maker, &dir, "changed", "described content\n");
    std::fs::write(&a.path, "tampered content!!\n").unwrap();
    let r = p.publish(std::slice::from_ref(&a)).await;
    assert!(
        matches!(r, Err(Error::Integrity { .. })),
        "[{}] got {r:?}",
        p.name()
    );
    assert!(
        !p.exists(&a).await.expect("exists"),
        "[{}] partial publish left a file",
        p.name()
    );
}

/// Names that could escape the destination are refused.
pub async fn bad_names_are_refused(p: &dyn Publisher, maker: &dyn ArtifactMaker) {
    let dir = tempfile::tempdir().unwrap();
    let mut a = artifact(maker, &dir, "bad", "x\n");
    for bad in ["../escape.tar.gz", "/etc/passwd", "a/b", ".hidden", ""] {
        a.name = bad.to_owned();
        let r = p.publish(std::slice::from_ref(&a)).await;
        assert!(
            matches!(r, Err(Error::InvalidInput { .. })),
            "[{}] name {bad:?}: {r:?}",
            p.name()
        );
    }
}

/// `check` says which files of a batch are there, in order, and uploads nothing.
pub async fn check_reports_presence_without_publishing(
    p: &dyn Publisher,
    maker: &dyn ArtifactMaker,
) {
    let dir = tempfile::tempdir().unwrap();
    let there = artifact(maker, &dir, "checked-there", "there\n");
    let absent = artifact(maker, &dir, "checked-absent", "absent\n");
    p.publish(std::slice::from_ref(&there))
        .await
        .expect("publish");
    let present = p
        .check(&[absent.clone(), there.clone()])
        .await
        .expect("check");
    assert_eq!(present, vec![false, true], "[{}]", p.name());
    assert!(
        !p.exists(&absent).await.expect("exists"),
        "[{}] check uploaded a file",
        p.name()
    );
}
