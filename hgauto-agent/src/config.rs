//! The agent's `config/` directory, re-read at the start of every iteration (seed 001):
//! one file per setting, its content the value. A deleted file unsets its setting. A file
//! whose value is invalid is logged by name and its setting keeps its previous value; the
//! pool size and the index are one pair, taken together or not at all, so the agent never
//! runs on half a change.
//!
//! | file | value | default |
//! |---|---|---|
//! | `silent` | non-empty: build, but report nothing to the source | off |
//! | `debug` | non-empty: the build's `debug` flag | off |
//! | `workers-pool-size` | agents sharing the work by shard (≥ 1) | 1 |
//! | `worker-index` | this agent's shard, below the pool size | 0 |
//! | `timeout` | seconds one build may take | 6 hours ([`DEFAULT_BUILD_TIMEOUT`], or the agent's own default) |
//! | `min-loop-seconds` | the shortest an idle iteration lasts | 600 |

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

/// The longest a build may take when nothing else says: six hours, GitHub Actions' default
/// job timeout. A build that never ends would otherwise hold its job (and its lease
/// renewals) forever.
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// The settings in force for one iteration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentConfig {
    /// Build, but report nothing (no `started`, no `report`); outcomes stay local.
    pub silent: bool,
    /// Passed to builds as `AgentContext::debug`.
    pub debug: bool,
    /// How many agents share the work by shard.
    pub pool_size: u32,
    /// This agent's shard, below `pool_size`.
    pub index: u32,
    /// The longest one build may take.
    #[serde(with = "opt_secs")]
    pub timeout: Option<Duration>,
    /// The shortest an iteration that found nothing to do lasts.
    #[serde(with = "secs")]
    pub min_loop: Duration,
}

mod secs {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

mod opt_secs {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            silent: false,
            debug: false,
            pool_size: 1,
            index: 0,
            timeout: Some(DEFAULT_BUILD_TIMEOUT),
            min_loop: Duration::from_secs(600),
        }
    }
}

/// A config file whose value was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file's name in `config/`.
    pub file: &'static str,
    /// What was wrong with its content.
    pub reason: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config/{}: {}", self.file, self.reason)
    }
}

/// A file's trimmed content: `None` when the file does not exist.
fn read(dir: &Path, file: &'static str, problems: &mut Vec<ConfigProblem>) -> Option<String> {
    match std::fs::read(dir.join(file)) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Some(s.trim().to_owned()),
            Err(_) => {
                problems.push(ConfigProblem {
                    file,
                    reason: "is not UTF-8 text".into(),
                });
                Some(String::new())
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            problems.push(ConfigProblem {
                file,
                reason: format!("cannot be read: {e}"),
            });
            Some(String::new())
        }
    }
}

/// A number in a file, or the problem with it. `Ok(None)`: the file is absent.
fn number<T: std::str::FromStr>(
    dir: &Path,
    file: &'static str,
    problems: &mut Vec<ConfigProblem>,
    check: impl Fn(&T) -> Option<String>,
) -> Result<Option<T>, ()> {
    let before = problems.len();
    let Some(text) = read(dir, file, problems) else {
        return Ok(None);
    };
    if problems.len() > before {
        return Err(());
    }
    match text.parse::<T>() {
        Ok(v) => match check(&v) {
            None => Ok(Some(v)),
            Some(reason) => {
                problems.push(ConfigProblem { file, reason });
                Err(())
            }
        },
        Err(_) => {
            problems.push(ConfigProblem {
                file,
                reason: format!("{text:?} is not a number"),
            });
            Err(())
        }
    }
}

fn seconds(v: &f64) -> Option<String> {
    (!(v.is_finite() && *v >= 0.0)).then(|| format!("{v} is not a number of seconds >= 0"))
}

impl AgentConfig {
    /// Reads `dir` over `previous`: each valid file sets its value, each absent one its
    /// default, and each invalid one leaves the previous value (see the module docs).
    pub fn read(dir: &Path, previous: &AgentConfig) -> (AgentConfig, Vec<ConfigProblem>) {
        Self::read_over(dir, previous, &AgentConfig::default())
    }

    /// [`read`](Self::read), with `defaults` for the absent files (an agent built with its
    /// own build timeout, say).
    pub fn read_over(
        dir: &Path,
        previous: &AgentConfig,
        defaults: &AgentConfig,
    ) -> (AgentConfig, Vec<ConfigProblem>) {
        let mut problems = Vec::new();
        let mut next = previous.clone();
        let flag = |file, problems: &mut Vec<ConfigProblem>| {
            read(dir, file, problems).is_some_and(|v| !v.is_empty())
        };
        next.silent = flag("silent", &mut problems);
        next.debug = flag("debug", &mut problems);
        match number::<f64>(dir, "timeout", &mut problems, |v| {
            seconds(v).or_else(|| (*v == 0.0).then(|| "0 is not a timeout".to_owned()))
        }) {
            Ok(v) => next.timeout = v.map(Duration::from_secs_f64).or(defaults.timeout),
            Err(()) => next.timeout = previous.timeout,
        }
        match number::<f64>(dir, "min-loop-seconds", &mut problems, seconds) {
            Ok(v) => next.min_loop = v.map_or(defaults.min_loop, Duration::from_secs_f64),
            Err(()) => next.min_loop = previous.min_loop,
        }
        let size = number::<u32>(dir, "workers-pool-size", &mut problems, |v| {
            (*v == 0).then(|| "a pool has at least 1 worker".to_owned())
        });
        let index = number::<u32>(dir, "worker-index", &mut problems, |_| None);
        if let (Ok(size), Ok(index)) = (size, index) {
            let (size, index) = (size.unwrap_or(1), index.unwrap_or(0));
            if index < size {
                next.pool_size = size;
                next.index = index;
            } else {
                problems.push(ConfigProblem {
                    file: "worker-index",
                    reason: format!("{index} is not below workers-pool-size {size}"),
                });
            }
        }
        (next, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_set_values_and_deleting_one_unsets_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (c, p) = AgentConfig::read(d, &AgentConfig::default());
        assert_eq!((c.clone(), p.len()), (AgentConfig::default(), 0));
        std::fs::write(d.join("silent"), "1\n").unwrap();
        std::fs::write(d.join("workers-pool-size"), "4").unwrap();
        std::fs::write(d.join("worker-index"), " 3 \n").unwrap();
        std::fs::write(d.join("timeout"), "90").unwrap();
        std::fs::write(d.join("min-loop-seconds"), "0.5").unwrap();
        let (c, p) = AgentConfig::read(d, &c);
        assert!(p.is_empty(), "{p:?}");
        assert!(c.silent && !c.debug);
        assert_eq!((c.pool_size, c.index), (4, 3));
        assert_eq!(c.timeout, Some(Duration::from_secs(90)));
        assert_eq!(c.min_loop, Duration::from_millis(500));
        std::fs::remove_file(d.join("silent")).unwrap();
        std::fs::remove_file(d.join("timeout")).unwrap();
        std::fs::write(d.join("silent-typo"), "1").unwrap();
        let (c, _) = AgentConfig::read(d, &c);
        assert!(!c.silent);
        assert_eq!(c.timeout, Some(DEFAULT_BUILD_TIMEOUT));
        // An empty flag file is off.
        std::fs::write(d.join("debug"), "").unwrap();
        assert!(!AgentConfig::read(d, &c).0.debug);
    }

    #[test]
    fn invalid_values_keep_the_previous_ones_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("workers-pool-size"), "2").unwrap();
        std::fs::write(d.join("worker-index"), "1").unwrap();
        std::fs::write(d.join("min-loop-seconds"), "5").unwrap();
        let (good, p) = AgentConfig::read(d, &AgentConfig::default());
        assert!(p.is_empty());
        // An index not below the pool: neither half of the pair is taken.
        std::fs::write(d.join("workers-pool-size"), "3").unwrap();
        std::fs::write(d.join("worker-index"), "3").unwrap();
        let (c, p) = AgentConfig::read(d, &good);
        assert_eq!((c.pool_size, c.index), (2, 1));
        assert_eq!(p[0].file, "worker-index");
        assert!(p[0].to_string().contains("config/worker-index"), "{}", p[0]);
        // Text where a number belongs.
        std::fs::write(d.join("worker-index"), "1").unwrap();
        std::fs::write(d.join("min-loop-seconds"), "ten").unwrap();
        std::fs::write(d.join("timeout"), "-3").unwrap();
        let (c, p) = AgentConfig::read(d, &good);
        assert_eq!(c.min_loop, Duration::from_secs(5));
        assert_eq!(c.timeout, Some(DEFAULT_BUILD_TIMEOUT));
        assert_eq!((c.pool_size, c.index), (3, 1), "the valid pair is taken");
        let files: Vec<&str> = p.iter().map(|p| p.file).collect();
        assert_eq!(files, ["timeout", "min-loop-seconds"]);
        std::fs::write(d.join("workers-pool-size"), "0").unwrap();
        let (c, p) = AgentConfig::read(d, &good);
        assert_eq!((c.pool_size, c.index), (2, 1));
        assert!(p.iter().any(|p| p.file == "workers-pool-size"));
    }
}
