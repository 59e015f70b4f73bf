//! Fingerprinted images: `ensure_image` for EC2.
//!
//! The recipe's fingerprint (sha256 of its canonical JSON, see `ImageRecipe::fingerprint`)
//! is a tag on the image, so an unchanged recipe reuses its image. Otherwise a temporary
//! instance boots the base image with the recipe as user data (files, then the bootstrap
//! scripts, then `poweroff`; shutdown behaviour *stop*). When it has stopped, the image is
//! created from it, tagged, waited for, and stale images of the same name are deregistered
//! with their snapshots. The build instance is always terminated.

use std::time::Duration;

use aws_sdk_ec2::types::{
    Filter, Image, ImageState, InstanceStateName, ResourceType, ShutdownBehavior, Tag,
};
use base64::Engine as _;
use hgauto_core::ledger::LedgerRecord;
use hgauto_core::{Error, ImageRecipe, Platform, ResourceKind, Result, WaitFor};

use super::{Ec2Provider, Launch, TAG_PREFIX};
use crate::error::sdk_error;

const TAG_FINGERPRINT: &str = "hgauto:fingerprint";
/// The `hgauto:role` of an image build instance (a sweep never probes one).
pub(crate) const IMAGE_BUILD_ROLE: &str = "image-build";
const TAG_IMAGE_NAME: &str = "hgauto:image-name";
/// EC2 accepts at most 16 KB of user data.
const MAX_USER_DATA: usize = 16 * 1024;
/// How long a bootstrap may run before the build is abandoned.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a new image may take to become available.
const IMAGE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The user-data script that performs `recipe` and powers the machine off.
pub(crate) fn user_data_script(recipe: &ImageRecipe, login_user: &str) -> Result<String> {
    let mut script = String::from("#!/bin/sh\nset -eu\n");
    script.push_str(&format!(
        "home=$(getent passwd {} | cut -d: -f6)\nhome=${{home:-/root}}\ncd \"$home\"\n",
        hgauto_core::backend::render::quote_posix(std::ffi::OsStr::new(login_user), "login user")?
    ));
    for f in &recipe.files {
        let data = std::fs::read(&f.source)
            .map_err(|e| Error::io("read image file", &f.source, "localhost", e))?;
        let dest = hgauto_core::backend::render::quote_posix(
            std::ffi::OsStr::new(&f.dest),
            "image file destination",
        )?;
        script.push_str(&format!(
            "mkdir -p -- \"$(dirname -- {dest})\"\nbase64 -d > {dest} <<'HGAUTO_EOF'\n{}\nHGAUTO_EOF\n",
            base64::engine::general_purpose::STANDARD.encode(data)
        ));
    }
    if let Some(extra) = &recipe.user_data {
        script.push_str(&format!("(\n{extra}\n)\n"));
    }
    for s in &recipe.bootstrap {
        script.push_str(&format!("(\n{s}\n)\n"));
    }
    script.push_str("poweroff\n");
    if script.len() > MAX_USER_DATA {
        return Err(Error::invalid(
            format!("image recipe {}", recipe.name),
            format!("needs {} bytes of user data; EC2 allows {MAX_USER_DATA} (ship large files another way)", script.len()),
        ));
    }
    Ok(script)
}

/// The Windows user data (run by EC2Launch as SYSTEM on first boot) that performs
/// `recipe` in `C:\hgauto` (the SSM machine's home) and shuts the machine down.
pub(crate) fn user_data_powershell(recipe: &ImageRecipe) -> Result<String> {
    use hgauto_core::backend::render::quote_powershell;
    let mut script = String::from(
        "<powershell>\n$ErrorActionPreference = 'Stop'\n\
         New-Item -ItemType Directory -Force -Path 'C:\\hgauto' | Out-Null\n\
         Set-Location -LiteralPath 'C:\\hgauto'\n",
    );
    for f in &recipe.files {
        let data = std::fs::read(&f.source)
            .map_err(|e| Error::io("read image file", &f.source, "localhost", e))?;
        let dest = quote_powershell(std::ffi::OsStr::new(&f.dest), "image file destination")?;
        script.push_str(&format!(
            "$p = [IO.Path]::GetFullPath((Join-Path (Get-Location) {dest}))\n\
             New-Item -ItemType Directory -Force -Path (Split-Path -Parent $p) | Out-Null\n\
             [IO.File]::WriteAllBytes($p, [Convert]::FromBase64String('{}'))\n",
            base64::engine::general_purpose::STANDARD.encode(data)
        ));
    }
    // Each script runs in its own scope; a failing native command stops the build.
    for s in recipe.user_data.iter().chain(&recipe.bootstrap) {
        script.push_str(&format!(
            "& {{\n{s}\n}}\nif ($LASTEXITCODE) {{ exit $LASTEXITCODE }}\n"
        ));
    }
    script.push_str("Stop-Computer -Force\n</powershell>\n");
    if script.len() > MAX_USER_DATA {
        return Err(Error::invalid(
            format!("image recipe {}", recipe.name),
            format!("needs {} bytes of user data; EC2 allows {MAX_USER_DATA} (ship large files another way)", script.len()),
        ));
    }
    Ok(script)
}

impl Ec2Provider {
    /// Our images (owned by this account, with our prefix tag), optionally only those of
    /// one recipe name.
    pub(crate) async fn our_images(&self, name: Option<&str>) -> Result<Vec<Image>> {
        let mut req = self.ec2.describe_images().owners("self").filters(
            Filter::builder()
                .name(format!("tag:{TAG_PREFIX}"))
                .values(&self.cfg.prefix)
                .build(),
        );
        if let Some(n) = name {
            req = req.filters(
                Filter::builder()
                    .name(format!("tag:{TAG_IMAGE_NAME}"))
                    .values(n)
                    .build(),
            );
        }
        let out = req
            .send()
            .await
            .map_err(|e| sdk_error("ec2", "describe images", &self.cfg.prefix, e))?;
        Ok(out.images().to_vec())
    }

    /// Deregisters an image and deletes its snapshots; returns the removed ids.
    pub(crate) async fn delete_image(&self, image: &Image) -> Result<Vec<String>> {
        let id = image.image_id().unwrap_or_default().to_owned();
        let snapshots: Vec<String> = image
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()).map(str::to_owned))
            .collect();
        self.ec2
            .deregister_image()
            .image_id(&id)
            .send()
            .await
            .map_err(|e| sdk_error("ec2", "deregister image", &id, e))?;
        let mut removed = vec![id.clone()];
        for snap in snapshots {
            match self.ec2.delete_snapshot().snapshot_id(&snap).send().await {
                Ok(_) => removed.push(snap),
                Err(e)
                    if e.as_service_error()
                        .and_then(aws_sdk_ec2::error::ProvideErrorMetadata::code)
                        == Some("InvalidSnapshot.NotFound") => {}
                Err(e) => return Err(sdk_error("ec2", "delete snapshot", &snap, e)),
            }
        }
        self.ledger.forget(&id)?;
        tracing::info!(image = %id, "deregistered image");
        Ok(removed)
    }

    pub(crate) async fn build_or_reuse_image(&self, recipe: &ImageRecipe) -> Result<String> {
        let name_ok = !recipe.name.is_empty()
            && recipe.name.len() <= 64
            && recipe
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(Error::invalid(
                format!("image name {:?}", recipe.name),
                "must be 1-64 characters of [A-Za-z0-9._-]",
            ));
        }
        let fingerprint = recipe.fingerprint()?;
        let lock = {
            let mut locks = self.image_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(fingerprint.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;

        let cached = self
            .our_images(Some(&recipe.name))
            .await?
            .into_iter()
            .find(|i| {
                i.tags().iter().any(|t| {
                    t.key() == Some(TAG_FINGERPRINT) && t.value() == Some(fingerprint.as_str())
                }) && i.state() == Some(&ImageState::Available)
            });
        if let Some(image) = cached {
            let id = image.image_id().unwrap_or_default().to_owned();
            tracing::info!(image = %id, recipe = %recipe.name, "image cache hit");
            return Ok(id);
        }

        // Validate before creating anything.
        self.cfg.require_cidr()?;
        let instance_type = recipe
            .instance_type
            .clone()
            .unwrap_or_else(|| self.cfg.instance_type.clone());
        self.preflight_instance_type(&instance_type).await?;
        let base = self.preflight_image(&recipe.base).await?;
        let script = match recipe.platform {
            Platform::Linux => user_data_script(recipe, &self.cfg.ssh_user)?,
            Platform::Windows => user_data_powershell(recipe)?,
        };

        tracing::info!(recipe = %recipe.name, fingerprint = %&fingerprint[..16], "building image");
        let no_labels = std::collections::BTreeMap::new();
        let (ids, guard) = self
            .run_instances(Launch {
                platform: recipe.platform,
                count: 1,
                image: &base,
                instance_type: &instance_type,
                lifetime: BUILD_TIMEOUT + IMAGE_TIMEOUT,
                name: format!("{}image-build-{}", self.cfg.prefix, recipe.name),
                shutdown: ShutdownBehavior::Stop,
                user_data: Some(base64::engine::general_purpose::STANDARD.encode(script)),
                role: Some(IMAGE_BUILD_ROLE),
                instance_profile: None,
                labels: &no_labels,
            })
            .await?;
        let result = self.image_from_build(recipe, &fingerprint, &ids[0]).await;
        // The build instance goes, whatever happened (the guard tries again in the
        // background if this fails, and if this future is dropped before it gets here).
        match self.terminate_instances(&ids).await {
            Ok(()) => guard.disarm(),
            Err(e) => {
                tracing::error!(error = %e, "could not terminate the image build instance; retrying in the background")
            }
        }
        let new_id = result?;
        for stale in self.our_images(Some(&recipe.name)).await? {
            if stale.image_id() != Some(new_id.as_str()) {
                self.delete_image(&stale).await?;
            }
        }
        Ok(new_id)
    }

    async fn terminate_instances(&self, ids: &[String]) -> Result<()> {
        hgauto_core::ResourceProvider::terminate(self, ids).await
    }

    async fn image_from_build(
        &self,
        recipe: &ImageRecipe,
        fingerprint: &str,
        instance: &str,
    ) -> Result<String> {
        self.wait_instance_state(instance, InstanceStateName::Stopped, BUILD_TIMEOUT)
            .await?;
        let image_name = format!("{}{}-{}", self.cfg.prefix, recipe.name, &fingerprint[..16]);
        let mut record = LedgerRecord::new(&image_name, ResourceKind::Image);
        record
            .details
            .insert("fingerprint".into(), fingerprint.to_owned());
        self.ledger.record(&record)?;
        let tags = self.tags(ResourceType::Image, &recipe.name, None, None);
        let mut tag_list = tags.tags().to_vec();
        tag_list.push(
            Tag::builder()
                .key(TAG_FINGERPRINT)
                .value(fingerprint)
                .build(),
        );
        tag_list.push(
            Tag::builder()
                .key(TAG_IMAGE_NAME)
                .value(&recipe.name)
                .build(),
        );
        let created = self
            .ec2
            .create_image()
            .instance_id(instance)
            .name(&image_name)
            .description(format!(
                "hgauto image {} (recipe sha256 {fingerprint})",
                recipe.name
            ))
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(ResourceType::Image)
                    .set_tags(Some(tag_list))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error("ec2", "create image", &image_name, e))?;
        let id = created.image_id().unwrap_or_default().to_owned();
        // Re-key the ledger record by the image id now that it has one.
        let mut by_id = record.clone();
        by_id.id = id.clone();
        self.ledger.record(&by_id)?;
        self.ledger.forget(&image_name)?;
        self.wait_image_available(&id).await?;
        tracing::info!(image = %id, recipe = %recipe.name, "image available");
        Ok(id)
    }

    async fn wait_instance_state(
        &self,
        id: &str,
        want: InstanceStateName,
        limit: Duration,
    ) -> Result<()> {
        WaitFor::new(id, &format!("waiting for state {want}"))
            .within(limit)
            .first_delay(Duration::from_millis(500))
            .until(|| async {
                let out = self
                    .ec2
                    .describe_instances()
                    .instance_ids(id)
                    .send()
                    .await
                    .map_err(|e| sdk_error("ec2", "describe instance", id, e))?;
                let state = out
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .next()
                    .and_then(|i| i.state())
                    .and_then(|s| s.name())
                    .cloned();
                match state {
                    Some(s) if s == want => Ok(Some(())),
                    Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown) => {
                        Err(Error::Provision {
                            provider: "ec2".into(),
                            action: "build image on",
                            resource: id.to_owned(),
                            reason: "the build instance terminated before it stopped".into(),
                            retryable: false,
                        })
                    }
                    _ => Ok(None),
                }
            })
            .await
    }

    async fn wait_image_available(&self, id: &str) -> Result<()> {
        WaitFor::new(id, "waiting for the image")
            .within(IMAGE_TIMEOUT)
            .first_delay(Duration::from_millis(500))
            .until(|| async {
                let out = self
                    .ec2
                    .describe_images()
                    .image_ids(id)
                    .send()
                    .await
                    .map_err(|e| sdk_error("ec2", "describe image", id, e))?;
                match out.images().first().and_then(|i| i.state()) {
                    Some(ImageState::Available) => Ok(Some(())),
                    Some(ImageState::Failed | ImageState::Invalid | ImageState::Error) => {
                        Err(Error::Provision {
                            provider: "ec2".into(),
                            action: "create image",
                            resource: id.to_owned(),
                            reason: "the image failed".into(),
                            retryable: false,
                        })
                    }
                    _ => Ok(None),
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_user_data_writes_files_runs_scripts_and_shuts_down() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tool.ps1");
        std::fs::write(&f, "Write-Output hi").unwrap();
        let r = ImageRecipe::new("win", Platform::Windows, "Windows_Server-2022-*")
            .with_file(&f, "tools\\it's.ps1")
            .with_script("choco install -y git");
        let s = user_data_powershell(&r).unwrap();
        assert!(s.starts_with("<powershell>\n"), "{s}");
        assert!(
            s.contains("Join-Path (Get-Location) 'tools\\it''s.ps1'"),
            "{s}"
        );
        assert!(
            s.contains("FromBase64String('V3JpdGUtT3V0cHV0IGhp')"),
            "{s}"
        );
        assert!(s.contains("& {\nchoco install -y git\n}"), "{s}");
        assert!(
            s.trim_end()
                .ends_with("Stop-Computer -Force\n</powershell>"),
            "{s}"
        );
    }

    #[test]
    fn user_data_writes_files_runs_scripts_and_powers_off() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("req.txt");
        std::fs::write(&f, "six==1.16\n").unwrap();
        let r = ImageRecipe::new("builder", Platform::Linux, "debian-12-*")
            .with_file(&f, "reqs/req.txt")
            .with_script("apt-get install -y make");
        let s = user_data_script(&r, "admin").unwrap();
        assert!(s.starts_with("#!/bin/sh\nset -eu\n"));
        assert!(s.contains("base64 -d > reqs/req.txt"));
        assert!(s.contains("apt-get install -y make"));
        assert!(s.trim_end().ends_with("poweroff"));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 20_000]).unwrap();
        let e = user_data_script(&r.clone().with_file(&big, "big"), "admin").unwrap_err();
        assert!(e.to_string().contains("16384"), "{e}");
    }
}
