//! `publish DIR --expect ...`: the P7 release flow. Every expected file and every
//! destination is checked first; then each destination gets the files, `SHA256SUMS` and,
//! with `--sign`, minisign signatures.

use std::sync::Arc;

use hgauto_core::{DirPublisher, Error, Publisher, Result};
use hgauto_release::{Expected, PypiPublisher, Release, SigningKey, Status};

use super::args::PublishArgs;
use super::config::Context;
use super::output::{print_json, spinner};

/// `user@host:port/path` (port optional).
#[cfg(feature = "ssh")]
fn sftp_target(
    ctx: &Context,
    spec: &str,
    key: Option<&std::path::Path>,
) -> Result<Arc<dyn Publisher>> {
    use hgauto_ssh::{Auth, HostKeyPolicy, SshConfig, SshMachine, SshPublisher};
    let bad = || Error::invalid(format!("--sftp {spec:?}"), "must be user@host[:port]/path");
    let (user, rest) = spec.split_once('@').ok_or_else(bad)?;
    let slash = rest.find('/').ok_or_else(bad)?;
    let (hostport, path) = rest.split_at(slash);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (hostport, 22),
    };
    if user.is_empty() || host.is_empty() {
        return Err(bad());
    }
    let auth = match key {
        Some(k) => Auth::KeyFile {
            path: k.to_owned(),
            passphrase: None,
        },
        None => Auth::Agent,
    };
    let cfg = SshConfig::new(host, port, user, auth, &ctx.state_dir)
        .with_host_keys(HostKeyPolicy::AcceptNew);
    Ok(Arc::new(SshPublisher::new(
        SshMachine::from_config(cfg),
        path,
    )))
}

#[cfg(not(feature = "ssh"))]
fn sftp_target(_: &Context, _: &str, _: Option<&std::path::Path>) -> Result<Arc<dyn Publisher>> {
    Err(super::config::not_built("--sftp", "ssh"))
}

/// An S3 destination, `bucket/prefix`.
#[cfg(feature = "aws")]
async fn s3_target(ctx: &Context, spec: &str) -> Result<Arc<dyn Publisher>> {
    let (bucket, prefix) = spec.split_once('/').unwrap_or((spec, ""));
    let cfg = ctx.aws_config()?;
    Ok(Arc::new(
        hgauto_aws::S3Publisher::from_config(&cfg, bucket, prefix).await?,
    ))
}

#[cfg(not(feature = "aws"))]
async fn s3_target(_: &Context, _: &str) -> Result<Arc<dyn Publisher>> {
    Err(super::config::not_built("--s3", "aws"))
}

/// `publish`.
pub(super) async fn publish(ctx: &Context, a: PublishArgs) -> Result<i32> {
    if !a.dir.is_dir() {
        return Err(Error::invalid(
            format!("release directory {}", a.dir.display()),
            "is not a directory",
        ));
    }
    let mut release = Release::new(&a.dir);
    let expected = a
        .expect
        .iter()
        .map(|e| Expected::parse(e))
        .collect::<Result<Vec<_>>>()?;
    release = release.expect_all(expected);
    let mut destinations: Vec<(&str, Arc<dyn Publisher>)> = Vec::new();
    if let Some(url) = &a.pypi {
        destinations.push(("pypi", Arc::new(PypiPublisher::new(url.as_str())?)));
    }
    if let Some(spec) = &a.sftp {
        destinations.push(("sftp", sftp_target(ctx, spec, a.ssh_key.as_deref())?));
    }
    if let Some(spec) = &a.s3 {
        destinations.push(("s3", s3_target(ctx, spec).await?));
    }
    if let Some(dir) = &a.to_dir {
        destinations.push(("dir", Arc::new(DirPublisher::new(dir))));
    }
    if destinations.is_empty() {
        return Err(Error::invalid(
            "publish",
            "names no destination (--pypi, --sftp, --s3 or --to-dir)",
        ));
    }
    for (name, publisher) in destinations {
        // Each destination takes its own default files (PyPI: distributions only).
        release = release.publish_to(name, publisher, &[])?;
    }
    for s in &a.skip {
        release = release.skip(s.as_str());
    }
    if let Some(key) = &a.sign {
        release = release.sign_with(SigningKey::from_file(key, None)?);
    }
    let progress = spinner(
        ctx.json,
        ctx.quiet,
        "checking every file and destination, then publishing",
    );
    let report = release.run().await?;
    progress.finish_and_clear();
    if ctx.json {
        print_json("publish", &report);
    } else {
        for e in &report.entries {
            let status = e.status;
            let why = e
                .error
                .as_deref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default();
            println!("{:<8} {:<40} {status}{why}", e.destination, e.artifact);
        }
    }
    Ok(
        if report.entries.iter().any(|e| e.status == Status::Failed) {
            1
        } else {
            0
        },
    )
}
