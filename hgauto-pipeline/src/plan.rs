//! From a definition to tasks: matrix cells, the selection, dependencies between cells, and
//! `{placeholder}` filling.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use hgauto_core::error::{Error, Result};

use super::cell::Cell;
use super::definition::{suggest, Pipeline};

/// Which part of a pipeline to run: any subset of steps and of each dimension's values.
/// Empty means everything. A selected step whose needed step (or cell) is not selected
/// treats it as done, as HHVM's manual runs did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Steps to run (all when empty).
    #[serde(default)]
    pub steps: Vec<String>,
    /// Per dimension, the values to run (all when a dimension is absent).
    #[serde(default)]
    pub values: BTreeMap<String, Vec<String>>,
}

impl Selection {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only these steps.
    pub fn steps<I, S>(mut self, steps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.steps = steps.into_iter().map(Into::into).collect();
        self
    }

    /// Only these values of `dimension`.
    pub fn only<I, S>(mut self, dimension: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.values.insert(
            dimension.into(),
            values.into_iter().map(Into::into).collect(),
        );
        self
    }
}

/// One step in one cell: what the engine schedules.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub step: usize,
    pub cell: Cell,
    pub name: String,
    pub deps: Vec<usize>,
    pub dependants: Vec<usize>,
}

/// Expands the selected part of `p` into tasks, in dependency order. Fails on an unknown
/// step, dimension or value in the selection, naming it.
pub(crate) fn expand(p: &Pipeline, sel: &Selection) -> Result<Vec<Task>> {
    let what = format!("selection for pipeline {:?}", p.name);
    for s in &sel.steps {
        if p.step(s).is_none() {
            return Err(Error::invalid(
                &what,
                format!(
                    "unknown step {s:?}{}",
                    suggest(s, p.steps.iter().map(|s| s.name.as_str()))
                ),
            ));
        }
    }
    for (dim, values) in &sel.values {
        let Some((_, known)) = p.dimensions.iter().find(|(d, _)| d == dim) else {
            return Err(Error::invalid(
                &what,
                format!(
                    "unknown dimension {dim:?}{}",
                    suggest(dim, p.dimensions.iter().map(|(d, _)| d.as_str()))
                ),
            ));
        };
        for v in values {
            if !known.contains(v) {
                return Err(Error::invalid(
                    &what,
                    format!(
                        "dimension {dim:?} has no value {v:?}{}",
                        suggest(v, known.iter().map(String::as_str))
                    ),
                ));
            }
        }
    }
    let selected_steps: BTreeSet<&str> = sel.steps.iter().map(String::as_str).collect();
    let mut tasks: Vec<Task> = Vec::new();
    let mut by_step: Vec<Vec<usize>> = vec![Vec::new(); p.steps.len()];
    for &si in &p.order {
        let step = &p.steps[si];
        if !selected_steps.is_empty() && !selected_steps.contains(step.name.as_str()) {
            continue;
        }
        for cell in cells(p, &step.matrix, sel) {
            let mut deps = Vec::new();
            for need in &step.needs {
                let ni = p.step_index(need).expect("checked when built");
                deps.extend(
                    by_step[ni]
                        .iter()
                        .copied()
                        .filter(|&t| tasks[t].cell.agrees_with(&cell)),
                );
            }
            let name = task_name(&step.name, &cell);
            let index = tasks.len();
            for &d in &deps {
                tasks[d].dependants.push(index);
            }
            by_step[si].push(index);
            tasks.push(Task {
                step: si,
                cell,
                name,
                deps,
                dependants: Vec::new(),
            });
        }
    }
    refuse_clashing_names(&p.name, &tasks)?;
    Ok(tasks)
}

/// The longest task name. Names become directories (`artifacts/<task>`), log names and
/// Step Functions state names, which may not pass 80 characters: the longest state the
/// export derives from a task adds 12 (`<task> wait worker`, `<task> free worker`).
pub(crate) const MAX_TASK_NAME: usize = 64;

/// `build-3.1-debian`: the step name, then the cell's [`key`](Cell::key). A longer name
/// than [`MAX_TASK_NAME`] keeps its start and ends in a hash of the whole name.
fn task_name(step: &str, cell: &Cell) -> String {
    use sha2::{Digest, Sha256};
    let full = if cell.0.is_empty() {
        step.to_owned()
    } else {
        format!("{step}-{}", cell.key())
    };
    if full.len() <= MAX_TASK_NAME {
        return full;
    }
    let hash = hex::encode(Sha256::digest(full.as_bytes()));
    // Names are ASCII (checked with the definition), so any byte index is a boundary.
    format!("{}-{}", &full[..MAX_TASK_NAME - 9], &hash[..8])
}

/// Two tasks may not share a name, compared without case: they would share a directory on
/// a case-insensitive file system and a state name in the export. (Only a step named like
/// another step's cell can clash, such as step `a-b` beside step `a` with value `b`.)
fn refuse_clashing_names(pipeline: &str, tasks: &[Task]) -> Result<()> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for t in tasks {
        if let Some(first) = seen.insert(t.name.to_ascii_lowercase(), &t.name) {
            return Err(Error::invalid(
                format!("pipeline {pipeline:?}"),
                format!(
                    "tasks {first:?} and {:?} (cell {}) have the same name, compared \
                     without case; rename a step or a value",
                    t.name, t.cell
                ),
            ));
        }
    }
    Ok(())
}

/// Every selected combination of the values of `dims`, in definition order.
fn cells(p: &Pipeline, dims: &[String], sel: &Selection) -> Vec<Cell> {
    let mut out = vec![Cell::default()];
    for dim in dims {
        let (_, all) = p
            .dimensions
            .iter()
            .find(|(d, _)| d == dim)
            .expect("checked");
        let chosen: Vec<&String> = match sel.values.get(dim) {
            Some(only) => all.iter().filter(|v| only.contains(v)).collect(),
            None => all.iter().collect(),
        };
        out = out
            .into_iter()
            .flat_map(|c| {
                chosen.iter().map(move |v| {
                    let mut next = c.0.clone();
                    next.push((dim.clone(), (*v).clone()));
                    Cell(next)
                })
            })
            .collect();
    }
    out
}

/// Fills `{name}` placeholders in `template` from `values`; `{{` and `}}` are literal
/// braces. An unknown or unclosed placeholder is `InvalidInput` naming it.
pub(crate) fn fill(
    template: &str,
    values: &BTreeMap<String, String>,
    what: &str,
) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(Error::invalid(
                what,
                format!("unmatched '}}' in {template:?}"),
            ));
        }
        let Some(end) = tail.find('}') else {
            return Err(Error::invalid(
                what,
                format!("unclosed '{{' in {template:?}"),
            ));
        };
        let key = &tail[1..end];
        match values.get(key) {
            Some(v) => out.push_str(v),
            None => {
                return Err(Error::invalid(
                    what,
                    format!(
                        "unknown placeholder {{{key}}} in {template:?}{}",
                        suggest(key, values.keys().map(String::as_str))
                    ),
                ))
            }
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_escapes_and_names_unknown_placeholders() {
        let v: BTreeMap<String, String> = [("version".to_owned(), "3.1".to_owned())].into();
        assert_eq!(
            fill("greet-{version}.tgz", &v, "t").unwrap(),
            "greet-3.1.tgz"
        );
        assert_eq!(
            fill("{{literal}} {version}", &v, "t").unwrap(),
            "{literal} 3.1"
        );
        let e = fill("x-{versoin}", &v, "t").unwrap_err().to_string();
        assert!(
            e.contains("{versoin}") && e.contains("did you mean \"version\""),
            "{e}"
        );
        assert!(fill("x-{version", &v, "t").is_err());
        assert!(fill("x}", &v, "t").is_err());
    }
}
