//! What the CLI tests share: the `hgauto` binary in a scratch directory with a state
//! directory of its own, and its output read as text or JSON.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_hgauto");

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn state(&self) -> PathBuf {
        self.path("state")
    }
    /// `hgauto ARGS` in the scratch directory, with its own state directory and no config.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env("HGAUTO_STATE_DIR", self.state())
            .env_remove("HGAUTO_CONFIG")
            .env_remove("HGAUTO_PROVIDER")
            .env("RUST_LOG", "warn");
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    /// Machines the local ledger still has.
    pub fn local_machines(&self) -> Vec<Value> {
        let out = self.run(&["list", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        json(&out)["resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
pub fn json(out: &Output) -> Value {
    let s = text(&out.stdout);
    let last = s.lines().last().unwrap_or("");
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {s}\nstderr: {}", text(&out.stderr)))
}
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}
