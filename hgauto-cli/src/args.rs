//! The command line's shape (clap), with an example for every subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::exit::EXIT_CODES;

/// Where machines come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Sandboxes on this machine (the default).
    Local,
    /// Hosts of an SSH inventory (`--inventory` or `inventory` in the config).
    Ssh,
    /// EC2 instances (settings from the config's `[aws]` table and `HGAUTO_AWS_*`).
    Ec2,
}

/// hgauto: provision, drive and clean up build machines; publish releases; run pipelines
/// and builder agents.
#[derive(Debug, Parser)]
#[command(name = "hgauto", version, after_help = EXIT_CODES, arg_required_else_help = true)]
pub struct Cli {
    /// Where machines come from [default: local, or the config file's `provider`].
    #[arg(long, global = true, value_enum, env = "HGAUTO_PROVIDER")]
    pub provider: Option<ProviderKind>,
    /// State directory (ledger, keys, sandboxes) [default: ~/.hgauto].
    #[arg(long, global = true, env = "HGAUTO_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The TOML config file [default: ./hgauto.toml when it exists].
    #[arg(long, global = true, env = "HGAUTO_CONFIG")]
    pub config: Option<PathBuf>,
    /// The SSH hosts inventory (TOML, `[[hosts]]`), for `--provider ssh`.
    #[arg(long, global = true)]
    pub inventory: Option<PathBuf>,
    /// Print one JSON document (`{"hgauto": 1, "command": ..., ...}`) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More logging: -v info, -vv debug.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List what this provider manages (from its ledger and the backend).
    #[command(after_help = "Example:\n  hgauto --provider ec2 list --json")]
    List,
    /// Terminate machines by id, or all of them.
    #[command(
        after_help = "Examples:\n  hgauto terminate local-3f2a9c\n  hgauto --provider ec2 terminate --all"
    )]
    Terminate {
        /// Machine ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every machine the provider manages.
        #[arg(long)]
        all: bool,
    },
    /// Remove everything the provider manages: machines, images, keys, groups.
    #[command(after_help = "Example:\n  hgauto --provider ec2 purge   # after a crash, say")]
    Purge,
    /// Remove machines past their deadline (a crashed run's leftovers).
    #[command(after_help = "Example:\n  hgauto --provider ec2 sweep --grace-secs 600")]
    Sweep {
        /// How long after its deadline an unreachable machine is removed.
        #[arg(long, default_value_t = 600)]
        grace_secs: u64,
    },
    /// Move machines' deadlines, so a sweep leaves them alone.
    #[command(after_help = "Example:\n  hgauto extend i-0abc --hours 8")]
    Extend {
        /// Machine ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Hours from now.
        #[arg(long, default_value_t = 2)]
        hours: u64,
    },
    /// What this state directory knows, across providers.
    #[command(after_help = "Example:\n  hgauto status --json")]
    Status,
    /// Machine images.
    Image {
        /// What to do with images.
        #[command(subcommand)]
        command: ImageCmd,
    },
    /// Provision machines, sync, run a command with output streamed, collect, terminate.
    #[command(
        after_help = "Examples:\n  hgauto run -n 2 -- uname -a\n  hgauto run --sync . --collect 'dist/*.whl' -- make wheel\n\nThe exit code is the command's (the first non-zero one across machines)."
    )]
    Run(RunArgs),
    /// The test workflow: `run` with the test command from the config's `[run_tests]`.
    #[command(
        after_help = "Example:\n  hgauto run-tests -n 2   # with [run_tests] command = [\"make\", \"check\"]"
    )]
    RunTests(RunTestsArgs),
    /// Run a build recipe on several platforms and collect artifacts into `dist/`.
    #[command(after_help = "Example:\n  hgauto build windows-packages.toml --revision 6.5.1")]
    Build(BuildArgs),
    /// Release a directory: check every expected file and destination, then publish.
    #[command(
        after_help = "Examples:\n  hgauto publish dist --expect '*.whl' --pypi https://upload.pypi.org/legacy/ --dir /srv/releases\n  hgauto publish dist --expect '*.tar.gz' --sftp ci@mirror:22/srv/www --skip pypi --sign release.key"
    )]
    Publish(PublishArgs),
    /// Pipelines: run one, export it to Step Functions, or show a result tree.
    Pipeline {
        /// What to do with the pipeline.
        #[command(subcommand)]
        command: PipelineCmd,
    },
    /// Builder agents.
    Agent {
        /// What to do.
        #[command(subcommand)]
        command: AgentCmd,
    },
    /// Self-updating working copies.
    SelfUpdate {
        /// What to do.
        #[command(subcommand)]
        command: SelfUpdateCmd,
    },
    /// Download a file: resumable, checksum-verified, optionally extracted.
    #[command(
        after_help = "Example:\n  hgauto download https://example.org/tool.tar.gz tool.tar.gz --sha256 3b1f... --extract-to tools"
    )]
    Download(DownloadArgs),
    /// Check out a revision of a git or hg repository, reliably.
    #[command(
        after_help = "Example:\n  hgauto checkout https://hg.example.org/repo src --vcs hg --branch default"
    )]
    Checkout(CheckoutArgs),
    /// Create a virtualenv and install requirements.
    #[command(after_help = "Example:\n  hgauto venv .venv -r requirements.txt")]
    Venv(VenvArgs),
    /// Print shell completions.
    #[command(after_help = "Example:\n  hgauto completions bash > /etc/bash_completion.d/hgauto")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(after_help = "Example:\n  hgauto man > hgauto.1 && man ./hgauto.1")]
    Man,
}

/// `image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Build (or find) the image a recipe describes; prints its id.
    #[command(after_help = "Example:\n  hgauto --provider ec2 image build linux-dev.toml")]
    Build {
        /// The recipe (TOML: name, platform, base, bootstrap, files, instance_type, user_data).
        recipe: PathBuf,
    },
}

/// `run`'s arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// How many machines.
    #[arg(short = 'n', long, default_value_t = 1)]
    pub machines: usize,
    /// A local directory pushed to `src` on every machine first (the command runs there).
    #[arg(long)]
    pub sync: Option<PathBuf>,
    /// Bring back files matching this pattern (relative to the command's directory) into
    /// `--out` (repeatable).
    #[arg(long)]
    pub collect: Vec<String>,
    /// Where collected files go.
    #[arg(long, default_value = "dist")]
    pub out: PathBuf,
    /// Keep machines whose command failed, for a look (their ids are printed).
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Kill the command after this many seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// `windows` machines instead of `linux`.
    #[arg(long, default_value = "linux")]
    pub platform: String,
    /// The program and its arguments (never through a shell).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub argv: Vec<String>,
}

/// `run-tests`' arguments.
#[derive(Debug, Args)]
pub struct RunTestsArgs {
    /// How many machines [default: the config's, else 1].
    #[arg(short = 'n', long)]
    pub machines: Option<usize>,
    /// Keep machines whose tests failed.
    #[arg(long)]
    pub keep_on_failure: bool,
}

/// `build`'s arguments.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build recipe (TOML: a pipeline file whose steps collect the artifacts).
    pub recipe: PathBuf,
    /// The revision to build (the `{revision}` input).
    #[arg(long)]
    pub revision: Option<String>,
    /// Where artifacts go.
    #[arg(long, default_value = "dist")]
    pub dist: PathBuf,
    /// Where logs, the result tree and the report go.
    #[arg(long, default_value = "build-out")]
    pub out: PathBuf,
}

/// `publish`'s arguments.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The directory holding the release's files.
    pub dir: PathBuf,
    /// A file or `*` pattern that must be there (repeatable; `PATTERN=N` for exactly N).
    #[arg(long, required = true)]
    pub expect: Vec<String>,
    /// A PyPI upload URL (credentials from TWINE_* or ~/.pypirc).
    #[arg(long)]
    pub pypi: Option<String>,
    /// An SFTP destination: `user@host:port/path` (key from --ssh-key or the agent).
    #[arg(long)]
    pub sftp: Option<String>,
    /// The SSH key for --sftp.
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
    /// An S3 destination: `bucket/prefix`.
    #[arg(long)]
    pub s3: Option<String>,
    /// A directory destination.
    #[arg(long = "to-dir")]
    pub to_dir: Option<PathBuf>,
    /// Skip destinations of these kinds (pypi, sftp, s3, dir), repeatable.
    #[arg(long, value_parser = ["pypi", "sftp", "s3", "dir"])]
    pub skip: Vec<String>,
    /// Sign SHA256SUMS and every file with this minisign secret key.
    #[arg(long)]
    pub sign: Option<PathBuf>,
}

/// `pipeline` subcommands.
#[derive(Debug, Subcommand)]
pub enum PipelineCmd {
    /// Run a pipeline file on the provider; exits 1 when a task failed.
    #[command(
        after_help = "Example:\n  hgauto pipeline run release.pipeline.toml --input version=3.1 --only distro=debian"
    )]
    Run {
        /// The pipeline (TOML or JSON).
        file: PathBuf,
        /// Where the result tree, report and logs go.
        #[arg(long, default_value = "pipeline-out")]
        out: PathBuf,
        /// `NAME=VALUE` inputs (repeatable).
        #[arg(long = "input", value_parser = parse_pair)]
        inputs: Vec<(String, String)>,
        /// Only these steps (repeatable).
        #[arg(long = "step")]
        steps: Vec<String>,
        /// `DIM=VALUE` to run only that value of a dimension (repeatable).
        #[arg(long = "only", value_parser = parse_pair)]
        only: Vec<(String, String)>,
        /// normal, fake (dummy bodies on real workers) or local (no provisioning).
        #[arg(long, default_value = "normal", value_parser = ["normal", "fake", "local"])]
        mode: String,
    },
    /// Print the Step Functions (Amazon States Language) definition.
    #[command(
        after_help = "Example:\n  hgauto pipeline export release.pipeline.toml --arn-prefix arn:aws:states:eu-west-1:123456789012:activity:"
    )]
    Export {
        /// The pipeline.
        file: PathBuf,
        /// Activity ARNs are `<prefix><pipeline>-<worker kind>` and `<prefix><pipeline>-control`.
        #[arg(long)]
        arn_prefix: String,
        /// Seconds between health checks.
        #[arg(long, default_value_t = 300)]
        health_check_secs: u64,
    },
    /// Show a result tree (`result.json`) and its failure summary; exits 1 when it failed.
    #[command(after_help = "Example:\n  hgauto pipeline status pipeline-out/result.json")]
    Status {
        /// The result tree.
        file: PathBuf,
    },
}

/// `agent` subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Run a builder agent over a directory queue, building each job with a command.
    #[command(
        after_help = "Example:\n  hgauto agent run /var/lib/ci/agent --queue /var/lib/ci/queue --rounds 1 -- ./build.sh\n\nThe agent reads CONFIG_DIR/config/* every round and writes CONFIG_DIR/state/."
    )]
    Run {
        /// The agent's directory (`config/`, `state/`).
        dir: PathBuf,
        /// The directory queue to take jobs from.
        #[arg(long)]
        queue: PathBuf,
        /// Stop after this many rounds (default: until SIGTERM).
        #[arg(long)]
        rounds: Option<u64>,
        /// The longest one build may take, in seconds, when `config/timeout` does not say
        /// (default: 21600, six hours).
        #[arg(long, value_name = "SECS")]
        build_timeout: Option<u64>,
        /// The build command (job fields arrive as HGAUTO_JOB_* variables).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        argv: Vec<String>,
    },
}

/// `self-update` subcommands.
#[derive(Debug, Subcommand)]
pub enum SelfUpdateCmd {
    /// One update round: apply an update if it is due.
    #[command(after_help = "Example:
  hgauto self-update once /etc/hgauto/self-update.toml")]
    Once {
        /// The self-update config (TOML: state_dir, repositories, quiet_window_secs...).
        #[arg(value_name = "CONFIG")]
        file: PathBuf,
    },
    /// An update round every `--every` seconds, forever.
    #[command(
        after_help = "Example:\n  hgauto self-update watch /etc/hgauto/self-update.toml --every 60"
    )]
    Watch {
        /// The self-update config.
        #[arg(value_name = "CONFIG")]
        file: PathBuf,
        /// Seconds between rounds.
        #[arg(long, default_value_t = 60)]
        every: u64,
    },
}

/// `download`'s arguments.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The URL (http or https).
    pub url: String,
    /// Where the file lands.
    pub dest: PathBuf,
    /// The expected sha256 (hex).
    #[arg(long)]
    pub sha256: Option<String>,
    /// Extract the archive into this directory.
    #[arg(long)]
    pub extract_to: Option<PathBuf>,
    /// The expected size in bytes; a longer body is cut off and refused.
    #[arg(long)]
    pub size: Option<u64>,
    /// Refuse an archive that unpacks to more than this many bytes.
    #[arg(long, default_value_t = hgauto_ci::download::ExtractLimits::DEFAULT_MAX_BYTES)]
    pub max_unpacked_bytes: u64,
    /// Refuse an archive with more than this many entries.
    #[arg(long, default_value_t = hgauto_ci::download::ExtractLimits::DEFAULT_MAX_ENTRIES)]
    pub max_entries: u64,
}

/// `checkout`'s arguments.
#[derive(Debug, Args)]
pub struct CheckoutArgs {
    /// The repository URL.
    pub url: String,
    /// The working copy.
    pub dest: PathBuf,
    /// git or hg.
    #[arg(long, default_value = "git", value_parser = ["git", "hg"])]
    pub vcs: String,
    /// A branch.
    #[arg(long, conflicts_with = "revision")]
    pub branch: Option<String>,
    /// A revision.
    #[arg(long)]
    pub revision: Option<String>,
}

/// `venv`'s arguments.
#[derive(Debug, Args)]
pub struct VenvArgs {
    /// The virtualenv's directory.
    pub dir: PathBuf,
    /// Requirements files (repeatable).
    #[arg(short = 'r', long = "requirements")]
    pub requirements: Vec<PathBuf>,
}

/// `KEY=VALUE`.
fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
