//! The publish flow every [`Publisher`](crate::Publisher) follows, written once:
//!
//! 1. validate the whole batch (names, duplicates) before any request;
//! 2. check every artifact (a conflict anywhere stops the batch before anything is written);
//! 3. upload each one not already there (the upload itself re-checks, for a racing
//!    publisher of the same name, and says whether this call stored it);
//! 4. report what was published and what was already present, in the batch's order.
//!
//! A backend supplies only its own check and upload: [`publish_blocking`] for a backend
//! that works on one blocking connection (a directory, an SFTP session),
//! [`publish_async`] for one that makes async requests (S3), and [`upload_missing`] for a
//! backend whose check needs more than the artifact (PyPI parses each distribution first).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt as _;

use crate::artifact::{validate_batch, Artifact};
use crate::error::Result;
use crate::publisher::PublishReport;

impl PublishReport {
    /// Records one artifact's outcome: `uploaded` by this call, or already present.
    pub fn record(&mut self, name: &str, uploaded: bool, destination: &str) {
        if uploaded {
            tracing::info!(artifact = %name, %destination, "published");
            self.published.push(name.to_owned());
        } else {
            self.already_present.push(name.to_owned());
        }
    }
}

/// The whole flow on the calling (blocking) thread: `exists(a)` is `Ok(true)` when an
/// identical artifact is there and an error on a conflict; `upload(a)` is `Ok(true)` when
/// it stored the artifact, `Ok(false)` when an identical one appeared meanwhile. The error
/// type is the backend's own (one that can say "the connection broke, retry" keeps saying
/// it), as long as an [`Error`](crate::Error) converts into it.
pub fn publish_blocking<E: From<crate::Error>>(
    destination: &str,
    artifacts: &[Artifact],
    mut exists: impl FnMut(&Artifact) -> std::result::Result<bool, E>,
    mut upload: impl FnMut(&Artifact) -> std::result::Result<bool, E>,
) -> std::result::Result<PublishReport, E> {
    validate_batch(artifacts)?;
    let mut present = Vec::with_capacity(artifacts.len());
    for a in artifacts {
        present.push(exists(a)?);
    }
    let mut report = PublishReport::default();
    for (a, there) in artifacts.iter().zip(present) {
        let uploaded = !there && upload(a)?;
        report.record(&a.name, uploaded, destination);
    }
    Ok(report)
}

/// The whole flow with async checks and uploads, at most `concurrency` uploads at once
/// (checks run one after the other, so a conflict is found before any upload starts).
pub async fn publish_async<'a, E, EF, U, UF>(
    destination: &str,
    artifacts: &'a [Artifact],
    concurrency: usize,
    exists: E,
    upload: U,
) -> Result<PublishReport>
where
    E: Fn(&'a Artifact) -> EF,
    EF: Future<Output = Result<bool>>,
    U: Fn(&'a Artifact) -> UF,
    UF: Future<Output = Result<bool>>,
{
    validate_batch(artifacts)?;
    let mut present = Vec::with_capacity(artifacts.len());
    for a in artifacts {
        present.push(exists(a).await?);
    }
    upload_missing(
        destination,
        artifacts,
        &present,
        |a| &a.name,
        concurrency,
        upload,
    )
    .await
}

/// Steps 3 and 4 for a batch a backend has checked itself: uploads each item whose
/// `present` flag is false (at most `concurrency` at once) and reports every item by
/// `name`, in order. After a failed upload no other one starts, but those under way
/// finish: an upload cut mid-body could leave a partial file on an index that checks no
/// digest (pypiserver), and the re-run would then find a bare conflict. The first error is
/// returned.
pub async fn upload_missing<'a, T, U, UF>(
    destination: &str,
    items: &'a [T],
    present: &[bool],
    name: impl Fn(&T) -> &str,
    concurrency: usize,
    upload: U,
) -> Result<PublishReport>
where
    U: Fn(&'a T) -> UF,
    UF: Future<Output = Result<bool>>,
{
    // Futures do nothing until polled, so an upload whose turn comes after a failure
    // never begins.
    let failed = AtomicBool::new(false);
    let uploads: Vec<_> = items
        .iter()
        .zip(present)
        .filter(|(_, there)| !**there)
        .map(|(item, _)| unless_failed(&failed, upload(item)))
        .collect();
    let outcomes: Vec<Result<Option<bool>>> = futures::stream::iter(uploads)
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let stored: Vec<Option<bool>> = outcomes.into_iter().collect::<Result<_>>()?;
    let mut stored = stored.into_iter().map(|s| s.unwrap_or(false));
    let mut report = PublishReport::default();
    for (item, there) in items.iter().zip(present) {
        let uploaded = !*there && stored.next().unwrap_or(false);
        report.record(name(item), uploaded, destination);
    }
    Ok(report)
}

/// Runs `upload` unless `failed` is set by then (`Ok(None)`); sets it when `upload` fails.
async fn unless_failed<F: Future<Output = Result<bool>>>(
    failed: &AtomicBool,
    upload: F,
) -> Result<Option<bool>> {
    if failed.load(Ordering::SeqCst) {
        return Ok(None);
    }
    let stored = upload.await;
    if stored.is_err() {
        failed.store(true, Ordering::SeqCst);
    }
    stored.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn art(name: &str) -> Artifact {
        Artifact {
            name: name.into(),
            path: "/dev/null".into(),
            sha256: "0".repeat(64),
            size: 0,
        }
    }

    #[test]
    fn checks_all_before_uploading_any_and_reports_in_order() {
        let batch = [art("a.tar.gz"), art("b.tar.gz"), art("c.tar.gz")];
        let mut calls = Vec::new();
        let report = publish_blocking::<Error>(
            "test",
            &batch,
            |a| {
                calls.push(format!("check {}", a.name));
                Ok(a.name == "b.tar.gz")
            },
            |a| Ok(a.name != "c.tar.gz"), // c appeared meanwhile
        )
        .unwrap();
        assert_eq!(
            calls,
            ["check a.tar.gz", "check b.tar.gz", "check c.tar.gz"]
        );
        assert_eq!(report.published, ["a.tar.gz"]);
        assert_eq!(report.already_present, ["b.tar.gz", "c.tar.gz"]);
    }

    #[test]
    fn a_conflict_anywhere_uploads_nothing() {
        let batch = [art("a.tar.gz"), art("b.tar.gz")];
        let mut uploads = 0;
        let err = publish_blocking(
            "test",
            &batch,
            |a| {
                if a.name == "b.tar.gz" {
                    Err(Error::Conflict {
                        what: a.name.clone(),
                        reason: "other content".into(),
                    })
                } else {
                    Ok(false)
                }
            },
            |_| {
                uploads += 1;
                Ok(true)
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }));
        assert_eq!(uploads, 0);
        // A bad batch fails before any check.
        let dup = [art("a.tar.gz"), art("a.tar.gz")];
        assert!(
            publish_blocking::<Error>("test", &dup, |_| unreachable!(), |_| unreachable!())
                .is_err()
        );
    }

    #[tokio::test]
    async fn async_flow_uploads_concurrently_and_keeps_the_order() {
        let batch: Vec<Artifact> = (0..6).map(|i| art(&format!("p{i}.whl"))).collect();
        let report = publish_async(
            "test",
            &batch,
            3,
            |a| async move { Ok(a.name == "p2.whl") },
            |a| async move {
                // Later uploads finish first.
                let n: u64 = a.name[1..2].parse().unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(30 - 5 * n)).await;
                Ok(true)
            },
        )
        .await
        .unwrap();
        assert_eq!(
            report.published,
            ["p0.whl", "p1.whl", "p3.whl", "p4.whl", "p5.whl"]
        );
        assert_eq!(report.already_present, ["p2.whl"]);
    }

    /// A failed upload lets the ones under way finish and starts no other.
    #[tokio::test]
    async fn after_a_failed_upload_those_under_way_finish_and_no_other_starts() {
        let batch: Vec<Artifact> = ["a.whl", "b.whl", "c.whl"].map(art).to_vec();
        let present = [false; 3];
        let (a_failed, a_failed_rx) = tokio::sync::watch::channel(false);
        let (b_started, b_started_rx) = tokio::sync::watch::channel(false);
        let log = std::sync::Mutex::new(Vec::new());
        let e = upload_missing(
            "test",
            &batch,
            &present,
            |a| &a.name,
            2,
            |a| {
                let (log, a_failed, b_started) = (&log, &a_failed, &b_started);
                let (mut a_seen, mut b_seen) = (a_failed_rx.clone(), b_started_rx.clone());
                async move {
                    log.lock().unwrap().push(format!("start {}", a.name));
                    if a.name == "a.whl" {
                        // a fails while b is still sending.
                        b_seen.wait_for(|s| *s).await.unwrap();
                        a_failed.send_replace(true);
                        return Err(Error::invalid("a.whl", "refused by the index"));
                    }
                    b_started.send_replace(true);
                    a_seen.wait_for(|f| *f).await.unwrap();
                    tokio::task::yield_now().await;
                    log.lock().unwrap().push(format!("end {}", a.name));
                    Ok(true)
                }
            },
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("refused by the index"), "{e}");
        assert_eq!(
            *log.lock().unwrap(),
            ["start a.whl", "start b.whl", "end b.whl"]
        );
    }
}
