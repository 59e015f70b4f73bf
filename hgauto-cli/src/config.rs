//! One TOML config file (`--config`, `HGAUTO_CONFIG`, or `./hgauto.toml`), overridden by
//! the environment and then by flags; unknown keys are refused with a suggestion. The
//! provider is made on first use, so commands that need none never touch AWS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::OnceCell;

use hgauto_core::{Error, LocalProvider, ResourceProvider, Result};

use super::args::{Cli, ProviderKind};

/// The `[run_tests]` table: the seed's test workflow.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunTestsConfig {
    /// The test command (program and arguments).
    pub command: Vec<String>,
    /// The directory pushed first [default: `.`].
    #[serde(default)]
    pub sync: Option<PathBuf>,
    /// How many machines [default 1].
    #[serde(default)]
    pub machines: Option<usize>,
    /// Kill the tests after this many seconds.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// The config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    /// `local`, `ssh` or `ec2`.
    #[serde(default)]
    pub provider: Option<ProviderKind>,
    /// The state directory.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The SSH inventory.
    #[serde(default)]
    pub inventory: Option<PathBuf>,
    /// `AwsConfig`'s fields (region, prefix, allowed_cidr, ...).
    #[serde(default)]
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub aws: Option<toml::Value>,
    /// The test workflow.
    #[serde(default)]
    pub run_tests: Option<RunTestsConfig>,
}

impl FileConfig {
    /// Reads `path`, naming it (and the line) in any error.
    pub(super) fn read(path: &Path) -> Result<FileConfig> {
        let what = format!("config file {}", path.display());
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::invalid(&what, e.to_string()))?;
        toml::from_str(&text).map_err(|e| {
            Error::invalid(
                &what,
                hgauto_core::suggest::parse_error(&text, e.message(), e.span()),
            )
        })
    }
}

/// What every command gets: the settings, and the provider once asked for.
pub(super) struct Context {
    /// The provider kind in effect.
    pub kind: ProviderKind,
    /// The state directory in effect.
    pub state_dir: PathBuf,
    /// `--json`.
    pub json: bool,
    /// `--quiet`.
    pub quiet: bool,
    /// The config file's contents (defaults when there is none).
    pub file: FileConfig,
    #[cfg_attr(not(feature = "ssh"), allow(dead_code))]
    inventory: Option<PathBuf>,
    provider: OnceCell<Arc<dyn ResourceProvider>>,
    #[cfg(feature = "aws")]
    ec2: OnceCell<Arc<hgauto_aws::Ec2Provider>>,
}

/// The error for a flag or provider that needs a feature this `hgauto` was built without.
#[cfg(not(all(feature = "ssh", feature = "aws")))]
pub(super) fn not_built(what: &str, feature: &str) -> Error {
    Error::invalid(
        what,
        format!("this hgauto was built without the `{feature}` feature (rebuild hgauto-cli with `--features {feature}`)"),
    )
}

impl Context {
    /// Settings from the config file, the environment and `cli`'s flags, in rising order.
    pub(super) fn load(cli: &Cli) -> Result<Context> {
        let path = match &cli.config {
            Some(p) if !p.exists() => {
                return Err(Error::invalid(
                    format!("config file {}", p.display()),
                    "does not exist",
                ))
            }
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from("hgauto.toml")).filter(|p| p.exists()),
        };
        let file = match &path {
            Some(p) => FileConfig::read(p)?,
            None => FileConfig::default(),
        };
        let state_dir = match cli.state_dir.clone().or_else(|| file.state_dir.clone()) {
            Some(d) => d,
            None => hgauto_core::env::default_state_dir()?,
        };
        let kind = cli
            .provider
            .or(file.provider)
            .unwrap_or(ProviderKind::Local);
        let inventory = cli.inventory.clone().or_else(|| file.inventory.clone());
        if kind == ProviderKind::Ssh && inventory.is_none() {
            return Err(Error::invalid(
                "--provider ssh",
                "needs --inventory FILE (or `inventory` in the config)",
            ));
        }
        Ok(Context {
            kind,
            state_dir,
            json: cli.json,
            quiet: cli.quiet,
            file,
            inventory,
            provider: OnceCell::new(),
            #[cfg(feature = "aws")]
            ec2: OnceCell::new(),
        })
    }

    /// The AWS settings: the config's `[aws]` table, else `HGAUTO_AWS_*` / `AWS_*`.
    #[cfg(feature = "aws")]
    pub(super) fn aws_config(&self) -> Result<hgauto_aws::AwsConfig> {
        let cfg = match &self.file.aws {
            Some(table) => table.clone().try_into().map_err(|e: toml::de::Error| {
                Error::invalid(
                    "[aws] in the config file",
                    hgauto_core::suggest::unknown_field(e.message(), None),
                )
            })?,
            None => hgauto_aws::AwsConfig::from_env()?,
        };
        let cfg: hgauto_aws::AwsConfig = cfg;
        let cfg = cfg.with_state_dir(&self.state_dir);
        cfg.validate()?;
        Ok(cfg)
    }

    /// The EC2 provider (`--provider ec2`).
    #[cfg(feature = "aws")]
    pub(super) async fn ec2(&self) -> Result<Arc<hgauto_aws::Ec2Provider>> {
        self.ec2
            .get_or_try_init(|| async {
                Ok(Arc::new(
                    hgauto_aws::Ec2Provider::new(self.aws_config()?).await?,
                ))
            })
            .await
            .cloned()
    }

    /// The provider in effect, made on first use.
    pub(super) async fn provider(&self) -> Result<Arc<dyn ResourceProvider>> {
        self.provider
            .get_or_try_init(|| async {
                let p: Arc<dyn ResourceProvider> = match self.kind {
                    ProviderKind::Local => Arc::new(LocalProvider::new(&self.state_dir)?),
                    ProviderKind::Ssh => self.hosts()?,
                    ProviderKind::Ec2 => self.ec2_provider().await?,
                };
                Ok(p)
            })
            .await
            .cloned()
    }

    /// The SSH inventory's provider (`--provider ssh`).
    #[cfg(feature = "ssh")]
    fn hosts(&self) -> Result<Arc<dyn ResourceProvider>> {
        let inv = self.inventory.as_deref().expect("checked in load");
        Ok(Arc::new(hgauto_ssh::HostsProvider::new(
            hgauto_ssh::Inventory::read(inv)?,
            &self.state_dir,
        )?))
    }

    #[cfg(not(feature = "ssh"))]
    fn hosts(&self) -> Result<Arc<dyn ResourceProvider>> {
        Err(not_built("--provider ssh", "ssh"))
    }

    #[cfg(feature = "aws")]
    async fn ec2_provider(&self) -> Result<Arc<dyn ResourceProvider>> {
        Ok(self.ec2().await?)
    }

    #[cfg(not(feature = "aws"))]
    async fn ec2_provider(&self) -> Result<Arc<dyn ResourceProvider>> {
        Err(not_built("--provider ec2", "aws"))
    }
}
