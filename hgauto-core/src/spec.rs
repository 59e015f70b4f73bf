//! Descriptions of machines to create: [`MachineSpec`] and [`ImageRecipe`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::Platform;
use crate::error::{Error, Result};

/// What kind of machine to provision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineSpec {
    /// Linux or Windows.
    pub platform: Platform,
    /// The image to start from (an id returned by `ensure_image`, or a provider-specific
    /// image id). `None` means the provider's default.
    pub image: Option<String>,
    /// A provider-specific size, e.g. `c5.xlarge`. `None` means the provider's default.
    pub instance_type: Option<String>,
    /// How long a machine may live before a sweep removes it, even if its creator died.
    pub lifetime: Duration,
    /// Free-form labels, recorded as tags where the provider supports them.
    pub labels: BTreeMap<String, String>,
    /// A script the machine runs at first boot (EC2 user data), for machines that start
    /// their own work, such as a pipeline's on-demand workers. Providers without a boot
    /// script (local, SSH hosts) refuse a spec that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

impl MachineSpec {
    /// A Linux machine with the provider's defaults and a 2-hour lifetime.
    pub fn linux() -> Self {
        Self::for_platform(Platform::Linux)
    }

    /// A Windows machine with the provider's defaults and a 2-hour lifetime.
    pub fn windows() -> Self {
        Self::for_platform(Platform::Windows)
    }

    /// A machine of `platform` with the provider's defaults and a 2-hour lifetime.
    pub fn for_platform(platform: Platform) -> Self {
        MachineSpec {
            platform,
            image: None,
            instance_type: None,
            lifetime: Duration::from_secs(2 * 3600),
            labels: BTreeMap::new(),
            user_data: None,
        }
    }

    /// Sets the image.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Sets the instance type.
    pub fn with_instance_type(mut self, instance_type: impl Into<String>) -> Self {
        self.instance_type = Some(instance_type.into());
        self
    }

    /// Sets the lifetime after which a sweep may remove the machine.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// When a machine of this spec provisioned now is due for a sweep, in seconds since the
    /// Unix epoch. A lifetime over [`MAX_LIFETIME`] is refused: added to the clock it could
    /// wrap around to a deadline in the past, and the machine would be swept at once.
    pub fn deadline(&self) -> crate::Result<u64> {
        deadline_after(self.lifetime)
    }

    /// Sets the first-boot script (EC2 user data).
    pub fn with_user_data(mut self, script: impl Into<String>) -> Self {
        self.user_data = Some(script.into());
        self
    }

    /// Adds a label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// A file copied into an image at build time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    /// Where it comes from on this host.
    pub source: PathBuf,
    /// Where it goes on the image (relative to the machine's home, or absolute).
    pub dest: String,
}

/// How to build a machine image. Its [`fingerprint`](ImageRecipe::fingerprint) names the
/// result, so an unchanged recipe reuses the image it built before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecipe {
    /// The image family name (stale images of the same name are removed on rebuild).
    pub name: String,
    /// The platform of the image.
    pub platform: Platform,
    /// Selects the base image (a provider-specific name pattern or id).
    pub base: String,
    /// Shell scripts run in order on the build machine.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Files copied in before the bootstrap runs.
    #[serde(default)]
    pub files: Vec<ImageFile>,
    /// The instance type used to build it.
    #[serde(default)]
    pub instance_type: Option<String>,
    /// User data passed at boot, for providers that have it.
    #[serde(default)]
    pub user_data: Option<String>,
}

impl ImageRecipe {
    /// A recipe with no scripts or files.
    pub fn new(name: impl Into<String>, platform: Platform, base: impl Into<String>) -> Self {
        ImageRecipe {
            name: name.into(),
            platform,
            base: base.into(),
            bootstrap: Vec::new(),
            files: Vec::new(),
            instance_type: None,
            user_data: None,
        }
    }

    /// Adds a bootstrap script.
    pub fn with_script(mut self, script: impl Into<String>) -> Self {
        self.bootstrap.push(script.into());
        self
    }

    /// Adds a file to copy in.
    pub fn with_file(mut self, source: impl Into<PathBuf>, dest: impl Into<String>) -> Self {
        self.files.push(ImageFile {
            source: source.into(),
            dest: dest.into(),
        });
        self
    }

    /// The sha256 (hex) of a canonical JSON of everything that shapes the image: base
    /// selector, bootstrap scripts, the *contents* of the files (not their local paths),
    /// instance type and user data. The name is not part of it.
    pub fn fingerprint(&self) -> Result<String> {
        let mut files = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let data = std::fs::read(&f.source)
                .map_err(|e| Error::io("read image file", &f.source, "localhost", e))?;
            files.push(serde_json::json!({
                "dest": f.dest,
                "sha256": hex::encode(Sha256::digest(&data)),
            }));
        }
        // serde_json's default map is ordered by key, so this serialisation is canonical.
        let canonical = serde_json::json!({
            "base": self.base,
            "bootstrap": self.bootstrap,
            "files": files,
            "instance_type": self.instance_type,
            "platform": self.platform,
            "user_data": self.user_data,
        });
        Ok(hex::encode(Sha256::digest(
            canonical.to_string().as_bytes(),
        )))
    }
}

/// The longest lifetime (or deadline extension) accepted: one year.
pub const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

/// Now plus `lifetime`, in seconds since the Unix epoch; refused over [`MAX_LIFETIME`].
pub fn deadline_after(lifetime: std::time::Duration) -> crate::Result<u64> {
    if lifetime > MAX_LIFETIME {
        return Err(crate::Error::invalid(
            format!("machine lifetime of {} s", lifetime.as_secs()),
            format!(
                "is longer than the {} days accepted",
                MAX_LIFETIME.as_secs() / 86_400
            ),
        ));
    }
    Ok(crate::clock::unix_now() + lifetime.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_content_not_name_or_path() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "same").unwrap();
        std::fs::write(&b, "same").unwrap();
        let r1 = ImageRecipe::new("one", Platform::Linux, "debian-12").with_file(&a, "f");
        let mut r2 = ImageRecipe::new("two", Platform::Linux, "debian-12").with_file(&b, "f");
        assert_eq!(r1.fingerprint().unwrap(), r2.fingerprint().unwrap());
        r2 = r2.with_script("apt-get install -y make");
        assert_ne!(r1.fingerprint().unwrap(), r2.fingerprint().unwrap());
        std::fs::write(&a, "changed").unwrap();
        assert_ne!(
            r1.fingerprint().unwrap(),
            ImageRecipe::new("one", Platform::Linux, "debian-12")
                .with_file(&b, "f")
                .fingerprint()
                .unwrap()
        );
    }
}
