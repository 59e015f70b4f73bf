//! [`create_virtualenv`]: Python virtual environments made the way uv makes them: no
//! `python -m venv` subprocess, just `pyvenv.cfg`, interpreter links, `site-packages` and
//! the activation scripts (the interpreter's own templates, so tools that expect a
//! `python -m venv` environment work with it). The interpreter is asked about itself once;
//! the answer is cached by its path and modification time.
//!
//! Requirements are installed with `uv pip` when `uv` is on `PATH` (or given), otherwise
//! with pip (bootstrapped by `ensurepip` when the venv has none), under a timeout and the
//! network retry policy; the log says which installer ran. A venv whose recorded
//! interpreter and requirements hash match is reused as it is.

mod install;
mod interpreter;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::progress::{step, StepProgress};
use hgauto_core::error::{Error, Result};
use hgauto_core::retry::RetryPolicy;
use install::install_requirements;
use interpreter::{interpreter, Interpreter};

/// Which tool installs requirements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Installer {
    /// `uv` when it is on `PATH`, else pip.
    #[default]
    Auto,
    /// This `uv` binary.
    Uv(PathBuf),
    /// pip inside the venv.
    Pip,
}

impl std::str::FromStr for Installer {
    type Err = hgauto_core::Error;

    /// `"auto"`, `"pip"`, `"uv"` (the one on `PATH`), or the path of a uv binary (a value
    /// with a `/` in it, or whose file name starts with `uv`).
    fn from_str(s: &str) -> hgauto_core::Result<Self> {
        match s {
            "auto" => Ok(Installer::Auto),
            "pip" => Ok(Installer::Pip),
            "uv" => Ok(Installer::Uv(PathBuf::from("uv"))),
            "" => Err(hgauto_core::Error::invalid("installer", "is empty")),
            path if path.contains('/')
                || std::path::Path::new(path)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("uv")) =>
            {
                Ok(Installer::Uv(PathBuf::from(path)))
            }
            other => Err(hgauto_core::Error::invalid(
                format!("installer {other:?}"),
                format!(
                    "is not \"auto\", \"pip\", \"uv\" or the path of a uv binary{}",
                    hgauto_core::suggest::closest(other, ["auto", "pip", "uv"].into_iter())
                ),
            )),
        }
    }
}

/// How to create a virtualenv.
#[derive(Debug, Clone)]
pub struct VenvOptions {
    /// The base interpreter (default `python3` from `PATH`).
    pub python: Option<PathBuf>,
    /// Requirement files (`-r`).
    pub requirements: Vec<PathBuf>,
    /// Constraint files (`-c`).
    pub constraints: Vec<PathBuf>,
    /// `--find-links` locations.
    pub find_links: Vec<String>,
    /// `--index-url`.
    pub index_url: Option<String>,
    /// `--no-index`.
    pub no_index: bool,
    /// Which installer.
    pub installer: Installer,
    /// Limit for one install run.
    pub timeout: Duration,
    /// Retries of a failed install (network errors).
    pub retry: RetryPolicy,
    /// Told of each step (reusing, creating, installing) as it starts.
    pub progress: Option<StepProgress>,
}

impl Default for VenvOptions {
    fn default() -> Self {
        VenvOptions {
            python: None,
            requirements: Vec::new(),
            constraints: Vec::new(),
            find_links: Vec::new(),
            index_url: None,
            no_index: false,
            installer: Installer::Auto,
            timeout: Duration::from_secs(900),
            retry: RetryPolicy::network(),
            progress: None,
        }
    }
}

/// What [`create_virtualenv`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VenvReport {
    /// The venv.
    pub path: PathBuf,
    /// The venv's interpreter.
    pub python: PathBuf,
    /// `major.minor.micro` of the interpreter.
    pub python_version: String,
    /// The existing venv matched and was kept.
    pub reused: bool,
    /// `uv` or `pip`, when requirements were installed.
    pub installer: Option<String>,
}

/// Recorded in the venv: what it was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    executable: PathBuf,
    version: String,
    requirements_sha256: String,
}

const STAMP: &str = ".hgauto-venv.json";

/// The hash of everything that decides what gets installed.
fn requirements_hash(opts: &VenvOptions) -> Result<String> {
    let mut h = Sha256::new();
    for (tag, files) in [("r", &opts.requirements), ("c", &opts.constraints)] {
        for f in files {
            let data = std::fs::read(f).map_err(|e| Error::io("read", f, "localhost", e))?;
            h.update(format!("{tag}:{}:{}\n", f.display(), data.len()));
            h.update(&data);
        }
    }
    for l in &opts.find_links {
        h.update(format!("f:{l}\n"));
    }
    h.update(format!("i:{:?}\nn:{}\n", opts.index_url, opts.no_index));
    Ok(hex::encode(h.finalize()))
}

/// Creates (or reuses) a virtualenv at `path` and installs the requirements.
pub async fn create_virtualenv(path: &Path, opts: &VenvOptions) -> Result<VenvReport> {
    let (path, opts) = (path.to_owned(), opts.clone());
    let ((report, stamp), install) =
        hgauto_core::backend::task::run_blocking("virtualenv", move || {
            prepare(&path, &opts).map(|r| (r, opts))
        })
        .await?;
    if report.reused {
        return Ok(report);
    }
    let installer = install_requirements(&report, &install).await?;
    // Written last: a venv without it (an interrupted install) is rebuilt next time.
    hgauto_core::backend::fs::write_atomic(
        &report.path.join(STAMP),
        &serde_json::to_vec_pretty(&stamp).unwrap_or_default(),
    )?;
    Ok(VenvReport {
        installer,
        ..report
    })
}

/// Reuses a matching venv, or lays a new one out. Blocking.
fn prepare(path: &Path, opts: &VenvOptions) -> Result<(VenvReport, Stamp)> {
    let info = interpreter(opts.python.as_deref().unwrap_or(Path::new("python3")))?;
    let want = Stamp {
        executable: info.executable.clone(),
        version: info.version.clone(),
        requirements_sha256: requirements_hash(opts)?,
    };
    let python = path.join("bin/python");
    let found: Option<Stamp> = std::fs::read(path.join(STAMP))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let report = |reused| VenvReport {
        path: path.to_owned(),
        python: python.clone(),
        python_version: info.version.clone(),
        reused,
        installer: None,
    };
    if found.as_ref() == Some(&want) && python.exists() {
        step(
            &opts.progress,
            &format!("reusing the virtualenv {}", path.display()),
        );
        return Ok((report(true), want));
    }
    if path.exists() {
        let is_venv = path.join("pyvenv.cfg").exists();
        let empty = std::fs::read_dir(path)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !is_venv && !empty {
            return Err(Error::invalid(
                format!("virtualenv path {}", path.display()),
                "exists and is not a virtualenv (refusing to delete it)",
            ));
        }
        std::fs::remove_dir_all(path).map_err(|e| Error::io("remove", path, "localhost", e))?;
    }
    step(
        &opts.progress,
        &format!(
            "creating the virtualenv {} (Python {})",
            path.display(),
            info.version
        ),
    );
    layout(path, &info)?;
    Ok((report(false), want))
}

/// Writes the venv's files: what `python -m venv --without-pip` writes.
fn layout(path: &Path, info: &Interpreter) -> Result<()> {
    use std::os::unix::fs::symlink;
    let io = |op: &'static str, p: &Path, e| Error::io(op, p, "localhost", e);
    let bin = path.join("bin");
    let site = path
        .join("lib")
        .join(format!("python{}", info.major_minor))
        .join("site-packages");
    for d in [&bin, &site, &path.join("include")] {
        std::fs::create_dir_all(d).map_err(|e| io("create", d, e))?;
    }
    if cfg!(target_pointer_width = "64") {
        let _ = symlink("lib", path.join("lib64"));
    }
    let home = info.executable.parent().unwrap_or(Path::new("/"));
    let abs = std::path::absolute(path).map_err(|e| io("resolve", path, e))?;
    let cfg = format!(
        "home = {}\ninclude-system-site-packages = false\nversion = {}\nexecutable = {}\ncommand = {} -m venv {}\n",
        home.display(),
        info.version,
        info.executable.display(),
        info.executable.display(),
        abs.display()
    );
    hgauto_core::backend::fs::write_atomic(&path.join("pyvenv.cfg"), cfg.as_bytes())?;
    let python = bin.join("python");
    symlink(&info.executable, &python).map_err(|e| io("symlink", &python, e))?;
    for alias in ["python3".to_owned(), format!("python{}", info.major_minor)] {
        let p = bin.join(alias);
        symlink("python", &p).map_err(|e| io("symlink", &p, e))?;
    }
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let scripts = info.stdlib.join("venv/scripts");
    for (template, out) in [
        ("common/activate", "activate"),
        ("posix/activate.csh", "activate.csh"),
        ("posix/activate.fish", "activate.fish"),
        ("common/Activate.ps1", "Activate.ps1"),
    ] {
        let text = std::fs::read_to_string(scripts.join(template))
            .unwrap_or_else(|_| fallback_activate(out).to_owned());
        let text = text
            .replace("__VENV_DIR__", &abs.to_string_lossy())
            .replace("__VENV_NAME__", &name)
            .replace("__VENV_PROMPT__", &format!("({name}) "))
            .replace("__VENV_BIN_NAME__", "bin")
            .replace("__VENV_PYTHON__", &python.to_string_lossy());
        if !text.is_empty() {
            hgauto_core::backend::fs::write_atomic(&bin.join(out), text.as_bytes())?;
        }
    }
    Ok(())
}

/// A minimal `activate` for interpreters installed without the venv templates.
fn fallback_activate(name: &str) -> &'static str {
    match name {
        "activate" => {
            "deactivate () {\n    [ -n \"${_OLD_VIRTUAL_PATH:-}\" ] && PATH=\"$_OLD_VIRTUAL_PATH\" && export PATH\n    unset _OLD_VIRTUAL_PATH VIRTUAL_ENV\n    [ \"${1:-}\" = nondestructive ] || unset -f deactivate\n}\ndeactivate nondestructive\nVIRTUAL_ENV=\"__VENV_DIR__\"\nexport VIRTUAL_ENV\n_OLD_VIRTUAL_PATH=\"$PATH\"\nPATH=\"$VIRTUAL_ENV/__VENV_BIN_NAME__:$PATH\"\nexport PATH\n"
        }
        _ => "",
    }
}
