//! A pipeline's definition: dimensions, worker kinds and steps, checked once when built.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hgauto_core::error::{Error, Result};
use hgauto_core::spec::MachineSpec;

use super::step::{Body, Step};

/// A kind of worker: the machine spec its workers get and how many may run at once.
/// Workers of one kind are interchangeable.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerKind {
    /// The machine each worker runs on.
    pub spec: MachineSpec,
    /// At most this many workers of the kind at once (default 4).
    pub max_workers: usize,
}

impl WorkerKind {
    /// Workers on `spec`, at most 4 at once.
    pub fn new(spec: MachineSpec) -> Self {
        WorkerKind {
            spec,
            max_workers: 4,
        }
    }

    /// Sets the most workers of this kind that may run at once (at least 1).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = n.max(1);
        self
    }
}

/// A named set of steps over a matrix of dimensions. Build one with [`Pipeline::builder`]
/// or read one from TOML/JSON with [`PipelineFile`](super::PipelineFile); run it with
/// [`Pipeline::runner`](super::Runner).
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub(crate) name: String,
    pub(crate) dimensions: Vec<(String, Vec<String>)>,
    pub(crate) workers: BTreeMap<String, WorkerKind>,
    pub(crate) steps: Vec<Step>,
    /// Step indexes in an order where every step comes after the steps it needs.
    pub(crate) order: Vec<usize>,
    /// Step index by name.
    pub(crate) index: std::collections::HashMap<String, usize>,
}

impl Pipeline {
    /// Starts a pipeline called `name`.
    pub fn builder(name: impl Into<String>) -> PipelineBuilder {
        PipelineBuilder {
            name: name.into(),
            dimensions: Vec::new(),
            workers: BTreeMap::new(),
            steps: Vec::new(),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its dimensions and their values, in definition order.
    pub fn dimensions(&self) -> &[(String, Vec<String>)] {
        &self.dimensions
    }

    /// Its worker kinds.
    pub fn workers(&self) -> &BTreeMap<String, WorkerKind> {
        &self.workers
    }

    /// Its steps, in definition order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The step called `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.step_index(name).map(|i| &self.steps[i])
    }

    pub(crate) fn step_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// Builds a [`Pipeline`]; [`build`](Self::build) checks it.
#[derive(Debug)]
pub struct PipelineBuilder {
    name: String,
    dimensions: Vec<(String, Vec<String>)>,
    workers: BTreeMap<String, WorkerKind>,
    steps: Vec<Step>,
}

impl PipelineBuilder {
    /// Adds a dimension with its values (e.g. `version` = `["3.1", "3.2"]`).
    pub fn dimension<I, S>(mut self, name: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.dimensions
            .push((name.into(), values.into_iter().map(Into::into).collect()));
        self
    }

    /// Adds a worker kind.
    pub fn worker(mut self, name: impl Into<String>, kind: WorkerKind) -> Self {
        self.workers.insert(name.into(), kind);
        self
    }

    /// Adds a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Checks the definition and returns the pipeline. Fails with `InvalidInput` naming the
    /// problem: a bad or repeated name, an unknown dimension, worker kind or needed step, a
    /// dependency cycle, a command step with no worker kind or a zero timeout.
    pub fn build(self) -> Result<Pipeline> {
        let what = format!("pipeline {:?}", self.name);
        check_name(&what, "pipeline name", &self.name)?;
        let mut dims = BTreeSet::new();
        for (dim, values) in &self.dimensions {
            check_name(&what, "dimension", dim)?;
            if !dims.insert(dim.as_str()) {
                return Err(Error::invalid(
                    &what,
                    format!("dimension {dim:?} is defined twice"),
                ));
            }
            if values.is_empty() {
                return Err(Error::invalid(
                    &what,
                    format!("dimension {dim:?} has no values"),
                ));
            }
            let mut seen = BTreeSet::new();
            for v in values {
                check_value(&what, dim, v)?;
                if !seen.insert(v) {
                    return Err(Error::invalid(
                        &what,
                        format!("dimension {dim:?} lists {v:?} twice"),
                    ));
                }
            }
        }
        for name in self.workers.keys() {
            check_name(&what, "worker kind", name)?;
        }
        let mut names = BTreeSet::new();
        for step in &self.steps {
            check_name(&what, "step name", &step.name)?;
            if !names.insert(step.name.as_str()) {
                return Err(Error::invalid(
                    &what,
                    format!("step {:?} is defined twice", step.name),
                ));
            }
        }
        for step in &self.steps {
            let here = format!("{what}, step {:?}", step.name);
            let mut seen = BTreeSet::new();
            for dim in &step.matrix {
                if !dims.contains(dim.as_str()) {
                    return Err(Error::invalid(
                        &here,
                        format!(
                            "unknown dimension {dim:?}{}",
                            suggest(dim, dims.iter().copied())
                        ),
                    ));
                }
                if !seen.insert(dim) {
                    return Err(Error::invalid(
                        &here,
                        format!("dimension {dim:?} is listed twice"),
                    ));
                }
            }
            for need in &step.needs {
                if !names.contains(need.as_str()) {
                    return Err(Error::invalid(
                        &here,
                        format!(
                            "needs unknown step {need:?}{}",
                            suggest(need, names.iter().copied())
                        ),
                    ));
                }
            }
            match (&step.body, &step.worker) {
                (Body::Command { .. }, None) => {
                    return Err(Error::invalid(
                        &here,
                        "runs a command but names no worker kind",
                    ))
                }
                (_, Some(w)) if !self.workers.contains_key(w) => {
                    return Err(Error::invalid(
                        &here,
                        format!(
                            "unknown worker kind {w:?}{}",
                            suggest(w, self.workers.keys().map(String::as_str))
                        ),
                    ))
                }
                _ => {}
            }
            if step.timeout == Duration::ZERO {
                return Err(Error::invalid(&here, "has a timeout of zero"));
            }
        }
        // Order the dimensions of each step as the pipeline does, so cells print alike.
        let mut steps = self.steps;
        for step in &mut steps {
            step.matrix
                .sort_by_key(|d| self.dimensions.iter().position(|(n, _)| n == d));
        }
        let order = topological_order(&what, &steps)?;
        let index = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Ok(Pipeline {
            index,
            name: self.name,
            dimensions: self.dimensions,
            workers: self.workers,
            steps,
            order,
        })
    }
}

/// Kahn's algorithm over the `needs` edges; a cycle is named step by step.
fn topological_order(what: &str, steps: &[Step]) -> Result<Vec<usize>> {
    let index: BTreeMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut missing: Vec<usize> = steps.iter().map(|s| s.needs.len()).collect();
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (i, s) in steps.iter().enumerate() {
        for need in &s.needs {
            dependants[index[need.as_str()]].push(i);
        }
    }
    // The ready step defined first goes next, so the order is stable and readable.
    let mut ready: BTreeSet<usize> = (0..steps.len()).filter(|&i| missing[i] == 0).collect();
    let mut order = Vec::with_capacity(steps.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependants[i] {
            missing[d] -= 1;
            if missing[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() == steps.len() {
        return Ok(order);
    }
    // Walk `needs` from any step left over until a step repeats: that is the cycle.
    let left: BTreeSet<usize> = (0..steps.len()).filter(|i| !order.contains(i)).collect();
    let mut path = vec![*left.iter().next().unwrap_or(&0)];
    loop {
        let last = path[path.len() - 1];
        let next = steps[last]
            .needs
            .iter()
            .map(|n| index[n.as_str()])
            .find(|n| left.contains(n))
            .unwrap_or(last);
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let cycle: Vec<&str> = path[pos..]
                .iter()
                .chain(std::iter::once(&next))
                .map(|&i| steps[i].name.as_str())
                .collect();
            return Err(Error::invalid(
                what,
                format!("dependency cycle: {}", cycle.join(" -> ")),
            ));
        }
        path.push(next);
    }
}

/// Names of steps, dimensions and worker kinds: letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit, so they are safe in task names, tags and file names.
pub(crate) fn check_name(what: &str, role: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            what,
            format!("{role} {name:?} must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"),
        ))
    }
}

/// Dimension values end up in task names, log lines and file names: the same characters.
fn check_value(what: &str, dim: &str, value: &str) -> Result<()> {
    check_name(what, &format!("value of dimension {dim:?}:"), value)
}

pub(crate) use hgauto_core::suggest::closest as suggest;
