//! Pipelines written in TOML or JSON ([`PipelineFile`]), for Python and in-tree scripts.
//! The format has a published JSON schema ([`PipelineFile::json_schema`], committed as
//! `schemas/pipeline.schema.json`); unknown fields are refused with a suggestion.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use hgauto_core::error::{Error, Result};
use hgauto_core::local::DirPublisher;
use hgauto_core::retry::{Jitter, RetryPolicy};
use hgauto_core::spec::MachineSpec;

use super::definition::{suggest, Pipeline, WorkerKind};
use super::step::{ShouldRun, Step, StepCommand, StepFn, StepKind};

/// A pipeline as a TOML or JSON document.
///
/// ```toml
/// name = "release"
/// [dimensions]
/// version = ["3.1", "3.2"]
/// distro = ["debian", "ubuntu"]
/// [workers.builder]
/// max_workers = 4
/// [[steps]]
/// name = "build"
/// worker = "builder"
/// over = ["version", "distro"]
/// kind = "heavy"
/// run = ["make", "dist", "VERSION={version}"]
/// collect = ["dist/*.tar.gz"]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// The pipeline's name.
    pub name: String,
    /// Dimensions and their values, in the order task names show them.
    #[serde(default)]
    pub dimensions: Dimensions,
    /// Worker kinds by name.
    #[serde(default)]
    pub workers: BTreeMap<String, WorkerFile>,
    /// Steps, in definition order.
    #[serde(default)]
    pub steps: Vec<StepFile>,
}

/// Dimensions in document order (a TOML table or a JSON object).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dimensions(pub Vec<(String, Vec<String>)>);

impl Serialize for Dimensions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        super::cell::serialize_pairs(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Dimensions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Dimensions;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of dimension names to lists of values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<Dimensions, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, Vec<String>>()? {
                    out.push((k, v));
                }
                Ok(Dimensions(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl schemars::JsonSchema for Dimensions {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Dimensions".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        BTreeMap::<String, Vec<String>>::json_schema(g)
    }
}

/// A worker kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerFile {
    /// `linux` (default) or `windows`.
    #[serde(default)]
    pub platform: Option<String>,
    /// The image (default: the provider's).
    #[serde(default)]
    pub image: Option<String>,
    /// The instance type (default: the provider's).
    #[serde(default)]
    pub instance_type: Option<String>,
    /// At most this many at once (default 4).
    #[serde(default)]
    pub max_workers: Option<usize>,
    /// Seconds a worker may live before a sweep removes it (default 7200).
    #[serde(default)]
    pub lifetime_secs: Option<u64>,
}

/// A retry kind: `"cheap"`, `"heavy"`, or a policy of your own. A policy's table refuses
/// keys it does not know, as every other table of the file does.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(deny_unknown_fields)]
pub enum KindFile {
    /// `cheap` or `heavy`.
    Named(String),
    /// Retries with exponential backoff, no jitter.
    Custom {
        /// Retries after the first attempt.
        max_retries: u32,
        /// Seconds before the first retry.
        base_delay_secs: f64,
        /// Growth per retry (default 2).
        #[serde(default)]
        factor: Option<f64>,
        /// Largest delay in seconds (default: no cap).
        #[serde(default)]
        max_delay_secs: Option<f64>,
    },
}

/// [`KindFile::Custom`]'s table, read strictly: untagged enums cannot refuse unknown keys
/// themselves (and would only say that nothing matched).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomKindTable {
    max_retries: u32,
    base_delay_secs: f64,
    #[serde(default)]
    factor: Option<f64>,
    #[serde(default)]
    max_delay_secs: Option<f64>,
}

impl<'de> Deserialize<'de> for KindFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Named(String),
            Table(serde_json::Map<String, serde_json::Value>),
        }
        let table = match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("a step kind is \"cheap\", \"heavy\" or a table of max_retries, base_delay_secs, factor and max_delay_secs")
        })? {
            Raw::Named(name) => return Ok(KindFile::Named(name)),
            Raw::Table(t) => t,
        };
        let t: CustomKindTable = serde_json::from_value(serde_json::Value::Object(table))
            .map_err(|e| serde::de::Error::custom(format!("step kind: {e}")))?;
        Ok(KindFile::Custom {
            max_retries: t.max_retries,
            base_delay_secs: t.base_delay_secs,
            factor: t.factor,
            max_delay_secs: t.max_delay_secs,
        })
    }
}

/// A "skip when these artifacts are published" check against a directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishedFile {
    /// The directory artifacts are published to.
    pub dir: String,
    /// Their names (templated).
    pub artifacts: Vec<String>,
}

/// A directory copied to the worker first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncFile {
    /// On this host (templated).
    pub local: String,
    /// On the worker (templated).
    pub remote: String,
}

/// One step. Exactly one of `run`, `script` or `function` says what it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    /// The step's name.
    pub name: String,
    /// Its dimensions.
    #[serde(default)]
    pub over: Vec<String>,
    /// Steps it needs.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Its worker kind (command steps).
    #[serde(default)]
    pub worker: Option<String>,
    /// A program and its arguments (templated).
    #[serde(default)]
    pub run: Option<Vec<String>>,
    /// A script in the worker's shell (never templated; values come as variables).
    #[serde(default)]
    pub script: Option<String>,
    /// The name of a function the caller registers.
    #[serde(default)]
    pub function: Option<String>,
    /// Extra environment (values templated).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The working directory on the worker (templated).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Directories to copy to the worker first.
    #[serde(default)]
    pub sync: Vec<SyncFile>,
    /// Files to bring back (templated paths or `*` patterns).
    #[serde(default)]
    pub collect: Vec<String>,
    /// Exit codes that mean "try again" (default `[75]`).
    #[serde(default)]
    pub retry_exit_codes: Option<Vec<i32>>,
    /// The retry kind (default `cheap`).
    #[serde(default)]
    pub kind: Option<KindFile>,
    /// Seconds one attempt may take (default 3600).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// A check command run on this host: exit 0 runs the step, exit 1 skips it.
    #[serde(default)]
    pub should_run: Option<Vec<String>>,
    /// Skip when these artifacts are already in a directory.
    #[serde(default)]
    pub skip_if_published: Option<PublishedFile>,
}

impl PipelineFile {
    /// Reads a `.toml` or `.json` file (by extension; anything else is read as TOML).
    pub fn read(path: &Path) -> Result<PipelineFile> {
        let what = format!("pipeline file {}", path.display());
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::invalid(&what, e.to_string()))?;
        if path.extension().is_some_and(|e| e == "json") {
            Self::from_json(&text).map_err(|e| rename(e, &what))
        } else {
            Self::from_toml(&text).map_err(|e| rename(e, &what))
        }
    }

    /// Parses TOML.
    pub fn from_toml(text: &str) -> Result<PipelineFile> {
        toml::from_str(text).map_err(|e| {
            Error::invalid(
                "pipeline TOML",
                hgauto_core::suggest::parse_error(text, e.message(), e.span()),
            )
        })
    }

    /// Parses JSON.
    pub fn from_json(text: &str) -> Result<PipelineFile> {
        serde_json::from_str(text)
            .map_err(|e| Error::invalid("pipeline JSON", with_suggestion(&e.to_string(), None)))
    }

    /// Parses a JSON value (a dict from Python). The dimensions' order is the object's
    /// order, which a `Value` keeps only with serde_json's `preserve_order` feature
    /// (without it, keys are sorted); [`from_json`](Self::from_json) always keeps it.
    pub fn from_value(value: serde_json::Value) -> Result<PipelineFile> {
        serde_json::from_value(value)
            .map_err(|e| Error::invalid("pipeline", with_suggestion(&e.to_string(), None)))
    }

    /// The JSON schema of the format.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(PipelineFile)).unwrap_or_default()
    }

    /// The pipeline for an export (the ASL definition): function steps are run by the
    /// control activity, not by the exporter, so they need not be registered here. Each
    /// gets a body that fails, saying so, if it is ever run in this process.
    pub fn into_exportable_pipeline(self) -> Result<Pipeline> {
        let mut functions: BTreeMap<String, StepFn> = BTreeMap::new();
        for name in self.steps.iter().filter_map(|s| s.function.clone()) {
            let shown = name.clone();
            functions.insert(
                name,
                std::sync::Arc::new(move |_ctx| {
                    let shown = shown.clone();
                    Box::pin(async move {
                        Err(super::StepFailure::fatal(format!(
                            "function {shown:?} runs in the control activity, not in an exported pipeline"
                        )))
                    })
                }),
            );
        }
        self.into_pipeline(&functions)
    }

    /// The pipeline, with `functions` for the steps that name one.
    pub fn into_pipeline(self, functions: &BTreeMap<String, StepFn>) -> Result<Pipeline> {
        let what = format!("pipeline {:?}", self.name);
        let mut b = Pipeline::builder(&self.name);
        for (dim, values) in self.dimensions.0 {
            b = b.dimension(dim, values);
        }
        for (name, w) in self.workers {
            let here = format!("{what}, worker kind {name:?}");
            let platform: hgauto_core::command::Platform = w
                .platform
                .as_deref()
                .unwrap_or("linux")
                .parse()
                .map_err(|e: Error| Error::invalid(&here, e.to_string()))?;
            let mut spec = match platform {
                hgauto_core::command::Platform::Linux => MachineSpec::linux(),
                hgauto_core::command::Platform::Windows => MachineSpec::windows(),
            };
            if let Some(i) = w.image {
                spec = spec.with_image(i);
            }
            if let Some(t) = w.instance_type {
                spec = spec.with_instance_type(t);
            }
            if let Some(secs) = w.lifetime_secs {
                spec = spec.with_lifetime(Duration::from_secs(secs));
            }
            let mut kind = WorkerKind::new(spec);
            if let Some(n) = w.max_workers {
                kind = kind.max_workers(n);
            }
            b = b.worker(name, kind);
        }
        for s in self.steps {
            b = b.step(step(&what, s, functions)?);
        }
        b.build()
    }
}

fn step(what: &str, s: StepFile, functions: &BTreeMap<String, StepFn>) -> Result<Step> {
    let here = format!("{what}, step {:?}", s.name);
    let bodies = [s.run.is_some(), s.script.is_some(), s.function.is_some()];
    if bodies.iter().filter(|b| **b).count() != 1 {
        return Err(Error::invalid(
            here,
            "needs exactly one of run, script or function",
        ));
    }
    let mut step = if let Some(name) = &s.function {
        let f = functions.get(name).ok_or_else(|| {
            Error::invalid(
                &here,
                format!(
                    "function {name:?} is not registered{}",
                    suggest(name, functions.keys().map(String::as_str))
                ),
            )
        })?;
        let f = f.clone();
        Step::function(&s.name, move |ctx| f(ctx))
    } else {
        let mut command = match (s.run, s.script) {
            (Some(argv), _) if argv.is_empty() => {
                return Err(Error::invalid(here, "has an empty run list"))
            }
            (Some(argv), _) => StepCommand::argv(argv),
            (None, Some(script)) => StepCommand::script(script),
            (None, None) => unreachable!("one body checked above"),
        };
        command.env = s.env;
        command.cwd = s.cwd;
        if let Some(codes) = s.retry_exit_codes {
            command.retry_exit_codes = codes;
        }
        let worker = s
            .worker
            .clone()
            .ok_or_else(|| Error::invalid(&here, "runs a command but names no worker"))?;
        let mut st = Step::command(&s.name, worker, command);
        for sync in s.sync {
            st = st.sync(sync.local, sync.remote);
        }
        for c in s.collect {
            st = st.collect(c);
        }
        st
    };
    step = step.over(s.over).needs(s.needs);
    if let Some(kind) = s.kind {
        step = step.kind(match kind {
            KindFile::Named(n) if n == "cheap" => StepKind::Cheap,
            KindFile::Named(n) if n == "heavy" => StepKind::Heavy,
            KindFile::Named(n) => {
                return Err(Error::invalid(
                    here,
                    format!(
                        "kind {n:?} is not \"cheap\", \"heavy\" or a policy{}",
                        suggest(&n, ["cheap", "heavy"].into_iter())
                    ),
                ))
            }
            KindFile::Custom {
                max_retries,
                base_delay_secs,
                factor,
                max_delay_secs,
            } => {
                let secs = |x: f64| {
                    Duration::try_from_secs_f64(x).map_err(|_| {
                        Error::invalid(&here, format!("{x} is not a number of seconds"))
                    })
                };
                let policy = RetryPolicy {
                    max_retries,
                    base_delay: secs(base_delay_secs)?,
                    factor: factor.unwrap_or(2.0),
                    max_delay: secs(max_delay_secs.unwrap_or(86_400.0))?,
                    jitter: Jitter::None,
                };
                policy.validate(&here)?;
                StepKind::Custom(policy)
            }
        });
    }
    if let Some(t) = s.timeout_secs {
        step = step.timeout(Duration::from_secs(t));
    }
    match (s.should_run, s.skip_if_published) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                here,
                "has both should_run and skip_if_published",
            ))
        }
        (Some(argv), None) => step = step.should_run(ShouldRun::Command(argv)),
        (None, Some(p)) => {
            step = step.should_run(ShouldRun::Published {
                publisher: Arc::new(DirPublisher::new(&p.dir)),
                artifacts: p.artifacts,
            })
        }
        (None, None) => {}
    }
    Ok(step)
}

fn rename(e: Error, what: &str) -> Error {
    match e {
        Error::InvalidInput { reason, .. } => Error::invalid(what, reason),
        other => other,
    }
}

use hgauto_core::suggest::unknown_field as with_suggestion;
