//! [`AwsConfig`]: region, endpoint, naming prefix and state directory, from a builder,
//! environment variables or a TOML file. Validated before anything is created.

use std::path::{Path, PathBuf};

use hgauto_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// `HGAUTO_AWS_REGION` (falls back to `AWS_REGION`, then `AWS_DEFAULT_REGION`).
pub const ENV_REGION: &str = "HGAUTO_AWS_REGION";
/// `HGAUTO_AWS_ENDPOINT`: an endpoint URL for every service (tests point it at moto).
pub const ENV_ENDPOINT: &str = "HGAUTO_AWS_ENDPOINT";
/// `HGAUTO_AWS_PREFIX`: the prefix of every resource name (default `hgauto-`).
pub const ENV_PREFIX: &str = "HGAUTO_AWS_PREFIX";
/// `HGAUTO_ALLOWED_CIDR`: who may reach the machines (security group source).
pub const ENV_ALLOWED_CIDR: &str = "HGAUTO_ALLOWED_CIDR";

/// `HGAUTO_SSM_BUCKET`: S3 bucket for SSM machines' output and file transfer.
pub const ENV_SSM_BUCKET: &str = "HGAUTO_SSM_BUCKET";
/// `HGAUTO_AWS_LINUX_ACCESS`: `ssh` (default) or `ssm`.
pub const ENV_LINUX_ACCESS: &str = "HGAUTO_AWS_LINUX_ACCESS";

/// Regions AWS has. A region outside this list is almost always a typo, and a typo on
/// real AWS would otherwise surface as a confusing endpoint error after work was done.
const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// Settings shared by the AWS backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// The AWS region, e.g. `us-west-2`.
    pub region: String,
    /// Endpoint URL for every service (moto in tests, or a VPC endpoint).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Named profile from `~/.aws/config` (otherwise the standard chain: env, profile, IMDS).
    #[serde(default)]
    pub profile: Option<String>,
    /// Prefix of every resource name and the value of the `hgauto:prefix` tag.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// hgauto's state directory (ledger, key pairs).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The CIDR allowed to reach machines (SSH, RDP, WinRM). Required for provisioning;
    /// `0.0.0.0/0` is accepted only when written out explicitly.
    #[serde(default)]
    pub allowed_cidr: Option<String>,
    /// Instance type when a spec names none.
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// Image (id `ami-...` or name pattern) for Linux machines when a spec names none.
    #[serde(default)]
    pub linux_image: Option<String>,
    /// Login user on Linux images.
    #[serde(default = "default_ssh_user")]
    pub ssh_user: String,
    /// The `hgauto:owner` tag value (default `$USER`).
    #[serde(default = "default_owner")]
    pub owner: String,
    /// Accept a region outside the known list (new regions, partitions we do not list).
    #[serde(default)]
    pub allow_unknown_region: bool,
    /// How Linux machines are driven: `ssh` (default) or `ssm`. Windows always uses SSM.
    #[serde(default)]
    pub linux_access: Access,
    /// Image (id or name pattern) for Windows machines when a spec names none.
    #[serde(default)]
    pub windows_image: Option<String>,
    /// S3 bucket for SSM machines' full output and file transfer (see `SsmOptions`).
    #[serde(default)]
    pub ssm_bucket: Option<String>,
    /// Seconds `provision` waits for a new Linux instance to print its SSH host keys on
    /// its console (cloud-init does, late in the first boot), so the first connection is
    /// pinned to them. Without them, the first key presented is trusted and recorded under
    /// the instance id.
    #[serde(default = "default_host_key_wait")]
    pub host_key_wait: u64,
    /// Seconds one AWS API call attempt may take (connect, send, read the answer) before
    /// it is abandoned and retried; a whole call, retries included, gets five times this.
    /// S3 transfers of artifacts are bounded by stalls instead: no byte for this long.
    #[serde(default = "default_api_timeout")]
    pub api_timeout: u64,
}

/// How the provider's machines are reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// SSH with the provider's key pair (port 22 open to the allowed CIDR).
    #[default]
    Ssh,
    /// SSM Run Command (needs the SSM agent and the provider's instance profile).
    Ssm,
}

fn default_prefix() -> String {
    "hgauto-".into()
}
fn default_state_dir() -> PathBuf {
    hgauto_core::env::default_state_dir().unwrap_or_else(|_| PathBuf::from(".hgauto"))
}
fn default_instance_type() -> String {
    "t3.medium".into()
}
fn default_ssh_user() -> String {
    "admin".into()
}
fn default_host_key_wait() -> u64 {
    120
}
fn default_api_timeout() -> u64 {
    60
}
fn default_owner() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

impl AwsConfig {
    /// The S3 key prefix under which SSM machines keep command output and transfers.
    pub fn ssm_key_prefix(&self) -> String {
        format!("{}ssm", self.prefix)
    }

    /// A config for `region` with every other setting at its default.
    pub fn new(region: impl Into<String>) -> Self {
        AwsConfig {
            region: region.into(),
            endpoint_url: None,
            profile: None,
            prefix: default_prefix(),
            state_dir: default_state_dir(),
            allowed_cidr: None,
            instance_type: default_instance_type(),
            linux_image: None,
            ssh_user: default_ssh_user(),
            owner: default_owner(),
            allow_unknown_region: false,
            linux_access: Access::Ssh,
            windows_image: None,
            ssm_bucket: None,
            host_key_wait: default_host_key_wait(),
            api_timeout: default_api_timeout(),
        }
    }

    /// Reads `HGAUTO_AWS_REGION` (or `AWS_REGION` / `AWS_DEFAULT_REGION`),
    /// `HGAUTO_AWS_ENDPOINT`, `HGAUTO_AWS_PREFIX`, `HGAUTO_ALLOWED_CIDR`, `HGAUTO_SSM_BUCKET`,
    /// `HGAUTO_AWS_LINUX_ACCESS`, `HGAUTO_STATE_DIR` and `AWS_PROFILE`.
    pub fn from_env() -> Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let region = var(ENV_REGION)
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                Error::invalid("AWS region", format!("set {ENV_REGION} or AWS_REGION"))
            })?;
        let mut cfg = AwsConfig::new(region);
        cfg.endpoint_url = var(ENV_ENDPOINT);
        cfg.profile = var("AWS_PROFILE");
        if let Some(p) = var(ENV_PREFIX) {
            cfg.prefix = p;
        }
        cfg.allowed_cidr = var(ENV_ALLOWED_CIDR);
        cfg.ssm_bucket = var(ENV_SSM_BUCKET);
        cfg.linux_access = match var(ENV_LINUX_ACCESS).as_deref() {
            None | Some("ssh") => Access::Ssh,
            Some("ssm") => Access::Ssm,
            Some(other) => {
                return Err(Error::invalid(
                    format!("{ENV_LINUX_ACCESS}={other:?}"),
                    "must be ssh or ssm",
                ))
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// A config from explicit `settings` (this struct's fields by name, as JSON values),
    /// checked like a TOML file. Without a `region` among them, they apply on top of
    /// [`from_env`](Self::from_env): the environment supplies the rest, and an explicit
    /// setting wins. With one, the environment is not read at all, so a fully described
    /// config means the same on every machine.
    pub fn from_settings(settings: serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let mut base = if settings.contains_key("region") {
            serde_json::Map::new()
        } else {
            match serde_json::to_value(AwsConfig::from_env()?) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            }
        };
        base.extend(settings);
        let cfg: AwsConfig = serde_json::from_value(serde_json::Value::Object(base))
            .map_err(|e| Error::invalid("AWS settings", e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a TOML file whose keys are this struct's fields.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io("read", path, "localhost", e))?;
        let cfg: AwsConfig = toml::from_str(&text)
            .map_err(|e| Error::invalid(format!("AWS config {}", path.display()), e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Sets the endpoint URL.
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Sets the resource name prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the state directory.
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = dir.into();
        self
    }

    /// Sets the CIDR allowed to reach machines.
    pub fn with_allowed_cidr(mut self, cidr: impl Into<String>) -> Self {
        self.allowed_cidr = Some(cidr.into());
        self
    }

    /// Drives Linux machines over SSM instead of SSH.
    pub fn with_linux_access(mut self, access: Access) -> Self {
        self.linux_access = access;
        self
    }

    /// Sets the default Windows image.
    pub fn with_windows_image(mut self, image: impl Into<String>) -> Self {
        self.windows_image = Some(image.into());
        self
    }

    /// Sets the S3 bucket SSM machines use for full output and file transfer.
    pub fn with_ssm_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.ssm_bucket = Some(bucket.into());
        self
    }

    /// Sets how long `provision` waits for host keys on a new instance's console.
    pub fn with_host_key_wait(mut self, wait: std::time::Duration) -> Self {
        self.host_key_wait = wait.as_secs();
        self
    }

    /// Sets the limit of one AWS API call attempt (see [`api_timeout`](Self::api_timeout)).
    pub fn with_api_timeout(mut self, limit: std::time::Duration) -> Self {
        self.api_timeout = limit.as_secs().max(1);
        self
    }

    /// Sets the default Linux image.
    pub fn with_linux_image(mut self, image: impl Into<String>) -> Self {
        self.linux_image = Some(image.into());
        self
    }

    /// Checks every setting, naming the first bad value.
    pub fn validate(&self) -> Result<()> {
        if !self.allow_unknown_region && !KNOWN_REGIONS.contains(&self.region.as_str()) {
            let hint = KNOWN_REGIONS
                .iter()
                .min_by_key(|r| edit_distance(r, &self.region))
                .map(|r| format!(" (did you mean {r}?)"))
                .unwrap_or_default();
            return Err(Error::invalid(
                format!("AWS region {:?}", self.region),
                format!("is not a known region{hint}; set allow_unknown_region to use it anyway"),
            ));
        }
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 32
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !prefix_ok {
            return Err(Error::invalid(
                format!("resource prefix {:?}", self.prefix),
                "must be 1-32 characters of [A-Za-z0-9-]",
            ));
        }
        if let Some(cidr) = &self.allowed_cidr {
            check_cidr(cidr)?;
        }
        Ok(())
    }

    /// The allowed CIDR, or an error saying it is required.
    pub fn require_cidr(&self) -> Result<&str> {
        self.allowed_cidr.as_deref().ok_or_else(|| {
            Error::invalid(
                "allowed CIDR",
                format!("is required to open ports (set {ENV_ALLOWED_CIDR}, e.g. 203.0.113.4/32; 0.0.0.0/0 only if you mean it)"),
            )
        })
    }

    /// The AWS SDK configuration: region, endpoint, profile, generous retries for
    /// throttling (the SDK backs off between them), and timeouts (see
    /// [`api_timeout`](Self::api_timeout)), so no call can hang.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let attempt = std::time::Duration::from_secs(self.api_timeout.max(1));
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(attempt.min(std::time::Duration::from_secs(10)))
            .read_timeout(attempt)
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt * 5)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()))
            .timeout_config(timeouts)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(10))
            .http_client(crate::http_client());
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(p) = &self.profile {
            loader = loader.profile_name(p);
        }
        loader.load().await
    }

    /// Fails with a clear error when the credential chain finds no credentials.
    pub async fn check_credentials(sdk: &aws_config::SdkConfig) -> Result<()> {
        use aws_credential_types::provider::ProvideCredentials;
        let provider = sdk.credentials_provider().ok_or_else(|| {
            Error::invalid("AWS credentials", "no credential provider is configured")
        })?;
        provider
            .provide_credentials()
            .await
            .map(drop)
            .map_err(|e| Error::Auth {
                machine: "AWS".into(),
                user: "(credential chain)".into(),
                reason: format!("no usable AWS credentials (env, AWS_PROFILE, ~/.aws, IMDS): {e}"),
            })
    }
}

/// Checks an IPv4 CIDR such as `203.0.113.0/24`.
pub fn check_cidr(cidr: &str) -> Result<()> {
    let bad = || Error::invalid(format!("CIDR {cidr:?}"), "must look like 203.0.113.0/24");
    let (ip, bits) = cidr.split_once('/').ok_or_else(bad)?;
    ip.parse::<std::net::Ipv4Addr>().map_err(|_| bad())?;
    let bits: u8 = bits.parse().map_err(|_| bad())?;
    if bits > 32 {
        return Err(bad());
    }
    Ok(())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_typo_is_named_with_a_suggestion() {
        let e = AwsConfig::new("us-est-1")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("us-est-1") && e.contains("did you mean us-east-1"),
            "{e}"
        );
        assert!(AwsConfig::new("eu-west-1").validate().is_ok());
        let mut c = AwsConfig::new("xx-new-1");
        c.allow_unknown_region = true;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn cidr_and_prefix_are_checked() {
        assert!(check_cidr("203.0.113.4/32").is_ok());
        assert!(check_cidr("0.0.0.0/0").is_ok());
        for bad in ["203.0.113.4", "1.2.3/8", "1.2.3.4/33", "any"] {
            assert!(check_cidr(bad).unwrap_err().to_string().contains(bad));
        }
        assert!(AwsConfig::new("us-east-1")
            .with_prefix("bad_prefix")
            .validate()
            .is_err());
        let e = AwsConfig::new("us-east-1")
            .require_cidr()
            .unwrap_err()
            .to_string();
        assert!(e.contains("HGAUTO_ALLOWED_CIDR"), "{e}");
    }

    #[test]
    fn toml_file_with_defaults_and_unknown_keys_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("aws.toml");
        std::fs::write(
            &p,
            "region = \"us-west-2\"\nallowed_cidr = \"10.0.0.0/8\"\n",
        )
        .unwrap();
        let c = AwsConfig::from_toml_file(&p).unwrap();
        assert_eq!(
            (c.region.as_str(), c.prefix.as_str()),
            ("us-west-2", "hgauto-")
        );
        std::fs::write(
            &p,
            "region = \"us-west-2\"\nlinux_access = \"ssm\"\nssm_bucket = \"out\"\n",
        )
        .unwrap();
        let c = AwsConfig::from_toml_file(&p).unwrap();
        assert_eq!(c.linux_access, Access::Ssm);
        assert_eq!(c.ssm_bucket.as_deref(), Some("out"));
        std::fs::write(&p, "region = \"us-west-2\"\nlinux_access = \"telnet\"\n").unwrap();
        let e = AwsConfig::from_toml_file(&p).unwrap_err().to_string();
        assert!(e.contains("telnet"), "{e}");
        std::fs::write(&p, "region = \"us-west-2\"\nregoin = \"x\"\n").unwrap();
        let e = AwsConfig::from_toml_file(&p).unwrap_err().to_string();
        assert!(e.contains("regoin"), "{e}");
    }
}
