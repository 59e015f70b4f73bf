//! Environment variables hgauto reads or sets, in one place.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Overrides the state directory (default `~/.hgauto`): ledger, keys, local sandboxes.
pub const STATE_DIR: &str = "HGAUTO_STATE_DIR";

/// Set in the environment of every process a local machine starts, with the machine id as
/// its value. Terminating the machine kills every process that still carries it, even
/// after its creator crashed.
pub const MACHINE_ID: &str = "HGAUTO_MACHINE_ID";

/// `text` as part of an environment variable's name: ASCII letters and digits in upper
/// case, anything else as `_` (`pr-number` becomes `PR_NUMBER`).
pub fn name_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The state directory: `$HGAUTO_STATE_DIR`, else `$HOME/.hgauto`.
pub fn default_state_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(STATE_DIR).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".hgauto")),
        None => Err(Error::invalid(
            "state directory",
            format!("neither {STATE_DIR} nor HOME is set"),
        )),
    }
}
