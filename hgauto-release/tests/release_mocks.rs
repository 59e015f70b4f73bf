//! The release engine's exact calls to its publishers, where the sequence is the point
//! (mockall mocks of `Publisher`, feature `mocks`): every destination is checked before
//! any is published to, a conflict at one destination publishes nowhere, and only what a
//! destination lacks is sent to it.

use std::sync::Arc;

use hgauto_core::{Error, MockPublisher, PublishReport};
use hgauto_release::Release;

/// A release directory holding `names`, each with a little content.
fn dist(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for n in names {
        std::fs::write(dir.path().join(n), format!("content of {n}")).unwrap();
    }
    dir
}

/// A mock called `name` whose own filter takes every file (what the release asks first, for
/// a destination given no filter).
fn named(p: &mut MockPublisher, name: &'static str) {
    p.expect_name().return_const(name.to_owned());
    p.expect_default_filter().times(1).return_const(&[][..]);
}

#[tokio::test]
async fn a_conflict_at_one_destination_publishes_nowhere() {
    let dir = dist(&["tool-1.0.tar.gz"]);
    let mut good = MockPublisher::new();
    named(&mut good, "good");
    good.expect_check()
        .times(1)
        .returning(|a| Ok(vec![false; a.len()]));
    good.expect_publish().never();
    let mut bad = MockPublisher::new();
    named(&mut bad, "bad");
    bad.expect_check().times(1).returning(|a| {
        Err(Error::Conflict {
            what: a[0].name.clone(),
            reason: "other content under this name".into(),
        })
    });
    bad.expect_publish().never();
    let err = Release::new(dir.path())
        .expect("tool-1.0.tar.gz")
        .checksums(false)
        .publish_to("good", Arc::new(good), &[])
        .unwrap()
        .publish_to("bad", Arc::new(bad), &[])
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
}

#[tokio::test]
async fn only_what_a_destination_lacks_is_sent_to_it() {
    let dir = dist(&["tool-1.0.tar.gz", "tool-1.0-py3-none-any.whl"]);
    let mut p = MockPublisher::new();
    named(&mut p, "index");
    // The wheel is there already; the sdist is not.
    p.expect_check().times(1).returning(|a| {
        Ok(a.iter()
            .map(|x| x.name.ends_with(".whl"))
            .collect::<Vec<_>>())
    });
    p.expect_publish()
        .times(1)
        .withf(|a| a.len() == 1 && a[0].name == "tool-1.0.tar.gz")
        .returning(|a| {
            Ok(PublishReport {
                published: vec![a[0].name.clone()],
                already_present: Vec::new(),
            })
        });
    let report = Release::new(dir.path())
        .expect("tool-1.0.tar.gz")
        .expect("tool-1.0-py3-none-any.whl")
        .checksums(false)
        .publish_to("index", Arc::new(p), &[])
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.entries.len(), 2, "{report:?}");
}
