//! # hgauto-release
//!
//! [`Release`]: check every expected artifact and every destination, then publish to each,
//! with `SHA256SUMS` (optionally signed) beside the artifacts.
//!
//! The order of a run:
//! 1. Find the expected artifacts in the directory ([`Expected`]). A missing one, a pattern
//!    that matches the wrong number of files, or an unexpected file fails the release
//!    before anything is uploaded, naming every problem.
//! 2. Write `SHA256SUMS` (unless switched off) and, with a [`SigningKey`], one `.minisig`
//!    per file and for `SHA256SUMS`. Signatures already there that verify are kept, so a
//!    re-run publishes the same bytes.
//! 3. Check every destination ([`Publisher::check`]) for the files its filter takes. A
//!    conflict or bad input at any destination fails the release with nothing uploaded
//!    anywhere. A destination that cannot be reached is marked failed, and the others go
//!    on (or, with [`strict`](Release::strict), nothing is uploaded).
//! 4. Publish what is missing, to every destination at once. A failure at one does not stop
//!    the others. The report has one [`Status`] per (artifact, destination); a re-run after
//!    a partial failure uploads only what is still missing.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

mod checksums;
mod expect;
#[cfg(feature = "pypi")]
pub mod pypi;
mod report;
mod sign;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hgauto_core::artifact::Artifact;
use hgauto_core::backend::task::blocking;
use hgauto_core::error::{Error, Result};
use hgauto_core::publisher::Publisher;

pub use checksums::{render as render_sha256sums, SUMS_NAME};
pub use expect::{collect, is_generated, Collected, Expected};
#[cfg(feature = "pypi")]
pub use pypi::{PypiPublisher, PypiPublisherBuilder};
pub use report::{DestinationInfo, Entry, ReleaseReport, Status, REPORT_VERSION};
pub use sign::{SigningKey, SIGNATURE_SUFFIX};

/// Where a release publishes, and which files it takes.
#[derive(Clone)]
struct Destination {
    name: String,
    publisher: Arc<dyn Publisher>,
    filter: Vec<glob::Pattern>,
}

impl Destination {
    fn takes(&self, name: &str) -> bool {
        self.filter.is_empty() || self.filter.iter().any(|p| p.matches(name))
    }
}

/// A release: expected artifacts in one directory, published to many destinations (see the
/// [module docs](self)).
///
/// ```no_run
/// # async fn demo() -> hgauto_core::Result<()> {
/// use std::sync::Arc;
/// use hgauto_core::DirPublisher;
/// use hgauto_release::{PypiPublisher, Release};
///
/// let report = Release::new("dist")
///     .expect_glob("*.whl", Some(4))
///     .expect("demo-1.0.tar.gz")
///     .publish_to("pypi", Arc::new(PypiPublisher::new("http://127.0.0.1:8080/")?), &["*.whl", "*.tar.gz"])?
///     .publish_to("mirror", Arc::new(DirPublisher::new("/srv/releases/1.0")), &[])?
///     .run()
///     .await?;
/// println!("{}", report.to_json());
/// # Ok(()) }
/// ```
pub struct Release {
    dir: PathBuf,
    expected: Vec<Expected>,
    allow_unexpected: bool,
    destinations: Vec<Destination>,
    skip: HashSet<String>,
    checksums: bool,
    signer: Option<Arc<SigningKey>>,
    strict: bool,
    report_path: Option<PathBuf>,
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release")
            .field("dir", &self.dir)
            .field("expected", &self.expected)
            .field(
                "destinations",
                &self
                    .destinations
                    .iter()
                    .map(|d| &d.name)
                    .collect::<Vec<_>>(),
            )
            .field("skip", &self.skip)
            .field("checksums", &self.checksums)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl Release {
    /// A release of the artifacts collected in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Release {
            dir: dir.into(),
            expected: Vec::new(),
            allow_unexpected: false,
            destinations: Vec::new(),
            skip: HashSet::new(),
            checksums: true,
            signer: None,
            strict: false,
            report_path: None,
        }
    }

    /// Expects a file of exactly this name.
    pub fn expect(mut self, name: impl Into<String>) -> Self {
        self.expected.push(Expected::Name(name.into()));
        self
    }

    /// Expects `count` files matching `pattern` (`None`: at least one).
    pub fn expect_glob(mut self, pattern: impl Into<String>, count: Option<usize>) -> Self {
        self.expected.push(Expected::Glob {
            pattern: pattern.into(),
            count,
        });
        self
    }

    /// Adds expectations.
    pub fn expect_all(mut self, expected: impl IntoIterator<Item = Expected>) -> Self {
        self.expected.extend(expected);
        self
    }

    /// Leaves files no expectation matches alone instead of failing (default: fail).
    pub fn allow_unexpected(mut self, allow: bool) -> Self {
        self.allow_unexpected = allow;
        self
    }

    /// Publishes to `publisher`, known as `name` in skips and the report, the files whose
    /// names match one of `filter`'s glob patterns. An empty `filter` takes the publisher's
    /// own ([`Publisher::default_filter`]): a PyPI index gets only the distributions
    /// ([`pypi::DISTRIBUTION_FILES`]), any other destination every file.
    pub fn publish_to(
        mut self,
        name: impl Into<String>,
        publisher: Arc<dyn Publisher>,
        filter: &[&str],
    ) -> Result<Self> {
        let name = name.into();
        if name.is_empty() || self.destinations.iter().any(|d| d.name == name) {
            return Err(Error::invalid(
                format!("release destination {name:?}"),
                "needs a name of its own",
            ));
        }
        let filter = if filter.is_empty() {
            publisher.default_filter()
        } else {
            filter
        };
        let filter = filter
            .iter()
            .map(|p| {
                glob::Pattern::new(p).map_err(|e| {
                    Error::invalid(format!("filter {p:?} of destination {name}"), e.to_string())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.destinations.push(Destination {
            name,
            publisher,
            filter,
        });
        Ok(self)
    }

    /// Switches destination `name` off for this run: its entries are [`Status::Skipped`].
    pub fn skip(mut self, name: impl Into<String>) -> Self {
        self.skip.insert(name.into());
        self
    }

    /// Writes and publishes `SHA256SUMS` (default: yes).
    pub fn checksums(mut self, on: bool) -> Self {
        self.checksums = on;
        self
    }

    /// Signs every file and `SHA256SUMS` with `key`.
    pub fn sign_with(mut self, key: SigningKey) -> Self {
        self.signer = Some(Arc::new(key));
        self
    }

    /// Signs with a key shared with other releases.
    pub fn sign_with_shared(mut self, key: Arc<SigningKey>) -> Self {
        self.signer = Some(key);
        self
    }

    /// With `true`, a destination that cannot be reached stops the whole release before any
    /// upload (default: the others go on).
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Also writes the report as JSON to `path` (atomically), however the run ends after
    /// the checks.
    pub fn report_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.report_path = Some(path.into());
        self
    }

    /// Runs the release (see the [module docs](self)). `Err` means nothing was uploaded:
    /// a missing or unexpected file, a conflict, bad input, or (when strict) a destination
    /// down. Otherwise the report says what happened at each destination; check
    /// [`ReleaseReport::ok`].
    pub async fn run(&self) -> Result<ReleaseReport> {
        for name in &self.skip {
            if !self.destinations.iter().any(|d| &d.name == name) {
                return Err(Error::invalid(
                    format!("skipped destination {name:?}"),
                    format!(
                        "is not one of this release's: {}",
                        self.destinations
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        if self.destinations.is_empty() {
            return Err(Error::invalid(
                format!("release of {}", self.dir.display()),
                "has no destination: add one with publish_to",
            ));
        }
        let (files, ignored) = self.prepare().await?;
        let files = &files;
        let mut entries = Vec::new();
        let mut plans = Vec::new();
        let checks = self.destinations.iter().map(|d| async move {
            let wanted: Vec<Artifact> =
                files.iter().filter(|a| d.takes(&a.name)).cloned().collect();
            if self.skip.contains(&d.name) || wanted.is_empty() {
                return (d, wanted, Ok(Vec::new()));
            }
            let checked = d.publisher.check(&wanted).await;
            (d, wanted, checked)
        });
        let mut fatal = Vec::new();
        for (d, wanted, checked) in futures::future::join_all(checks).await {
            match checked {
                Err(e) if is_fatal(&e) || self.strict => {
                    tracing::error!(destination = %d.name, error = %e, "release check failed");
                    fatal.push(e);
                }
                checked => plans.push((d, wanted, checked)),
            }
        }
        if let Some(first) = fatal.into_iter().next() {
            return Err(first);
        }

        let uploads = plans.into_iter().map(|(d, wanted, checked)| async move {
            publish_at(d, files, wanted, checked, self.skip.contains(&d.name)).await
        });
        for mut e in futures::future::join_all(uploads).await {
            entries.append(&mut e);
        }
        let report = ReleaseReport {
            version: REPORT_VERSION,
            artifacts: files.to_vec(),
            ignored,
            destinations: self
                .destinations
                .iter()
                .map(|d| DestinationInfo {
                    name: d.name.clone(),
                    location: d.publisher.name().to_owned(),
                })
                .collect(),
            entries,
        };
        if let Some(path) = &self.report_path {
            hgauto_core::backend::fs::write_atomic(path, report.to_json().as_bytes())?;
        }
        Ok(report)
    }

    /// Finds the expected artifacts, writes checksums and signatures, and describes every
    /// file the release covers.
    async fn prepare(&self) -> Result<(Vec<Artifact>, Vec<String>)> {
        let dir = self.dir.clone();
        let expected = self.expected.clone();
        let allow = self.allow_unexpected;
        let checksums = self.checksums;
        let signer = self.signer.clone();
        blocking(move || {
            let collected = collect(&dir, &expected, allow)?;
            let mut files = collected
                .selected
                .iter()
                .map(|n| Artifact::from_file(dir.join(n)))
                .collect::<Result<Vec<_>>>()?;
            if checksums {
                let sums = checksums::write(&dir, &files)?;
                files.push(sums);
            }
            if let Some(key) = signer {
                let mut signatures = Vec::new();
                for a in &files {
                    let (sig, fresh) = key.sign_file(&a.path)?;
                    if fresh {
                        tracing::info!(artifact = %a.name, key = %key.key_id(), "signed");
                    }
                    signatures.push(Artifact::from_file(sig)?);
                }
                files.extend(signatures);
            }
            Ok((files, collected.ignored))
        })
        .await
    }

    /// The directory the release reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Errors that stop the whole release: they would not go away by trying again, and
/// publishing elsewhere would leave the destinations disagreeing.
fn is_fatal(e: &Error) -> bool {
    matches!(
        e,
        Error::Conflict { .. } | Error::InvalidInput { .. } | Error::Integrity { .. }
    )
}

/// Publishes the missing files at one destination and says what happened to each file.
async fn publish_at(
    d: &Destination,
    files: &[Artifact],
    wanted: Vec<Artifact>,
    checked: Result<Vec<bool>>,
    skipped: bool,
) -> Vec<Entry> {
    let entry = |a: &Artifact, status, error: Option<String>| Entry {
        artifact: a.name.clone(),
        destination: d.name.clone(),
        status,
        error,
    };
    let not_taken = files.iter().filter(|a| !d.takes(&a.name));
    let mut entries: Vec<Entry> = not_taken
        .map(|a| entry(a, Status::SkippedByFilter, None))
        .collect();
    if skipped {
        entries.extend(wanted.iter().map(|a| entry(a, Status::Skipped, None)));
        return order(entries, files);
    }
    let present = match checked {
        Ok(p) => p,
        Err(e) => {
            let msg = e.to_string();
            entries.extend(
                wanted
                    .iter()
                    .map(|a| entry(a, Status::Failed, Some(msg.clone()))),
            );
            return order(entries, files);
        }
    };
    let missing: Vec<Artifact> = wanted
        .iter()
        .zip(&present)
        .filter(|(_, p)| !**p)
        .map(|(a, _)| a.clone())
        .collect();
    for (a, p) in wanted.iter().zip(&present) {
        if *p {
            entries.push(entry(a, Status::AlreadyPresent, None));
        }
    }
    if missing.is_empty() {
        return order(entries, files);
    }
    match d.publisher.publish(&missing).await {
        Ok(r) => {
            for a in &missing {
                let status = if r.published.contains(&a.name) {
                    Status::Published
                } else {
                    Status::AlreadyPresent
                };
                entries.push(entry(a, status, None));
            }
        }
        Err(e) => {
            // Some files may have landed before the failure: ask the destination.
            tracing::warn!(destination = %d.name, error = %e, "publishing failed");
            let msg = e.to_string();
            for a in &missing {
                let landed = matches!(d.publisher.exists(a).await, Ok(true));
                entries.push(if landed {
                    entry(a, Status::Published, None)
                } else {
                    entry(a, Status::Failed, Some(msg.clone()))
                });
            }
        }
    }
    order(entries, files)
}

/// `entries` in the order of `files`.
fn order(mut entries: Vec<Entry>, files: &[Artifact]) -> Vec<Entry> {
    entries.sort_by_key(|e| files.iter().position(|a| a.name == e.artifact));
    entries
}
