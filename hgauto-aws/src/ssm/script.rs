//! The scripts an [`SsmMachine`](super::SsmMachine) sends: the command wrapper and the
//! helpers for file transfer. Every value is quoted by core's renderers.

use std::ffi::OsStr;

use base64::Engine as _;
use hgauto_core::backend::render::{
    powershell_script, quote_posix, quote_powershell, render_posix,
};
use hgauto_core::{Command, Result};

/// Where a command's stdin comes from.
pub(crate) enum Stdin {
    /// No stdin: the command reads EOF at once.
    None,
    /// Bytes carried inside the script (base64).
    Inline(Vec<u8>),
    /// A presigned URL the machine downloads first.
    Url(String),
}

fn q(s: &str, what: &str) -> Result<String> {
    quote_posix(OsStr::new(s), what)
}

fn pid_file(token: &str) -> String {
    format!("\"${{TMPDIR:-/tmp}}/hgauto-ssm-{token}.pid\"")
}

/// Written by [`kill_script`] before it looks for the pid file: a command that starts
/// after its kill (SSM does not order the two) sees it and does not run.
fn stop_file(token: &str) -> String {
    format!("\"${{TMPDIR:-/tmp}}/hgauto-ssm-{token}.stop\"")
}

/// The POSIX wrapper: enter the home directory, prepare stdin, then run the rendered
/// command as the leader of a new session whose id goes to a pid file (for
/// [`kill_script`]), unless a kill came first (its stop file exists; checked after the pid
/// file is written, so one of the two always sees the other). The exit status is the
/// command's, or 137 when the kill came first.
pub(crate) fn posix(cmd: &Command, home: &str, token: &str, stdin: &Stdin) -> Result<String> {
    let rendered = q(&render_posix(cmd)?, "command")?;
    let home = hgauto_core::backend::render::posix_path(OsStr::new(home), "home directory")?;
    let pid = pid_file(token);
    let stop = stop_file(token);
    let input = match stdin {
        Stdin::None => "hgauto_in=/dev/null".to_owned(),
        Stdin::Inline(data) => format!(
            "hgauto_in=$(mktemp) || exit 1\n\
             printf '%s' '{}' | base64 -d > \"$hgauto_in\" || exit 1",
            base64::engine::general_purpose::STANDARD.encode(data)
        ),
        Stdin::Url(url) => format!(
            "hgauto_in=$(mktemp) || exit 1\n{} || exit 1",
            fetch(&q(url, "stdin URL")?, "\"$hgauto_in\"")
        ),
    };
    Ok(format!(
        "unset CDPATH\nexport HOME={home}\n\
         mkdir -p \"$HOME\" && cd \"$HOME\" || exit 1\n\
         hgauto_pid={pid}\n\
         hgauto_stop={stop}\n\
         {input}\n\
         setsid -w sh -c 'echo $$ > \"$1\"; [ -e \"$3\" ] && exit 137; exec sh -c \"$2\"' \
         hgauto \"$hgauto_pid\" {rendered} \"$hgauto_stop\" < \"$hgauto_in\"\n\
         hgauto_rc=$?\n\
         rm -f -- \"$hgauto_pid\" \"$hgauto_stop\"\n\
         [ \"$hgauto_in\" = /dev/null ] || rm -f -- \"$hgauto_in\"\n\
         exit $hgauto_rc\n"
    ))
}

/// Kills the process group of the command started with `token` if it runs, and keeps it
/// from starting if it has not started yet. (When the command never arrives, its stop file
/// stays behind in the temporary directory: an empty file.)
pub(crate) fn kill_script(token: &str) -> String {
    let pid = pid_file(token);
    let stop = stop_file(token);
    format!(
        "f={pid}\n: > {stop}\n[ -s \"$f\" ] || exit 0\n\
         kill -s KILL -- -\"$(cat \"$f\")\" 2>/dev/null\nrm -f -- \"$f\"\nexit 0\n"
    )
}

/// Downloads `url` (already quoted) to `dest` (already quoted) with curl, else wget.
fn fetch(url: &str, dest: &str) -> String {
    format!(
        "if command -v curl >/dev/null 2>&1; then curl -fsS --retry 3 -o {dest} {url}; \
         else wget -q -O {dest} {url}; fi"
    )
}

/// PowerShell: enter the home directory, then run the command's script.
pub(crate) fn powershell(cmd: &Command, home: &str) -> Result<String> {
    let home = quote_powershell(OsStr::new(home), "home directory")?;
    Ok(format!(
        "New-Item -ItemType Directory -Force -Path {home} | Out-Null\n\
         Set-Location -LiteralPath {home}\n\
         $env:HOME = {home}\n{}",
        powershell_script(cmd)?
    ))
}

/// Exit codes of the transfer helpers: 3 = source missing, 4 = sha256 mismatch.
pub(crate) fn put_posix(remote: &str, url: &str, sha: &str, mode: u32) -> Result<String> {
    let dest = hgauto_core::backend::render::posix_path(OsStr::new(remote), "remote path")?;
    let mode = mode & hgauto_core::backend::fs::MODE_MASK;
    let url = q(url, "download URL")?;
    Ok(format!(
        "umask 077\nd={dest}\n\
         mkdir -p -- \"$(dirname -- \"$d\")\" || exit 1\n\
         t=\"$d.hgauto-put.$$\"\n\
         {} || {{ rm -f -- \"$t\"; exit 1; }}\n\
         got=$(sha256sum < \"$t\" | cut -d' ' -f1)\n\
         [ \"$got\" = {sha} ] || {{ rm -f -- \"$t\"; echo \"$got\" >&2; exit 4; }}\n\
         chmod {mode:o} \"$t\" && mv -f -- \"$t\" \"$d\"\n",
        fetch(&url, "\"$t\"")
    ))
}

/// Uploads `remote` to the presigned PUT `url`; prints its mode and sha256.
pub(crate) fn get_posix(remote: &str, url: &str) -> Result<String> {
    let src = hgauto_core::backend::render::posix_path(OsStr::new(remote), "remote path")?;
    let url = q(url, "upload URL")?;
    Ok(format!(
        "s={src}\n\
         [ -f \"$s\" ] || {{ echo \"no such file: $s\" >&2; exit 3; }}\n\
         stat -c %a -- \"$s\" || exit 1\n\
         if command -v curl >/dev/null 2>&1; then curl -fsS --retry 3 -T \"$s\" {url}; \
         else wget -q -O /dev/null --method=PUT --body-file=\"$s\" {url}; fi || exit 1\n\
         sha256sum < \"$s\" | cut -d' ' -f1\n"
    ))
}

/// PowerShell version of [`put_posix`] (no modes on Windows).
pub(crate) fn put_powershell(remote: &str, url: &str, sha: &str) -> Result<String> {
    let dest = quote_powershell(OsStr::new(remote), "remote path")?;
    let url = quote_powershell(OsStr::new(url), "download URL")?;
    Ok(format!(
        "$d = {dest}\n\
         $p = Split-Path -Parent $d\n\
         if ($p) {{ New-Item -ItemType Directory -Force -Path $p | Out-Null }}\n\
         $t = \"$d.hgauto-put\"\n\
         Invoke-WebRequest -UseBasicParsing -Uri {url} -OutFile $t\n\
         $got = (Get-FileHash -Algorithm SHA256 -LiteralPath $t).Hash.ToLower()\n\
         if ($got -ne '{sha}') {{ Remove-Item -LiteralPath $t; [Console]::Error.WriteLine($got); exit 4 }}\n\
         Move-Item -Force -LiteralPath $t -Destination $d\n\
         exit 0\n"
    ))
}

/// PowerShell version of [`get_posix`] (reports mode 644).
pub(crate) fn get_powershell(remote: &str, url: &str) -> Result<String> {
    let src = quote_powershell(OsStr::new(remote), "remote path")?;
    let url = quote_powershell(OsStr::new(url), "upload URL")?;
    Ok(format!(
        "$s = {src}\n\
         if (-not (Test-Path -LiteralPath $s -PathType Leaf)) {{ exit 3 }}\n\
         Invoke-WebRequest -UseBasicParsing -Uri {url} -Method Put -InFile $s | Out-Null\n\
         Write-Output '644'\n\
         Write-Output (Get-FileHash -Algorithm SHA256 -LiteralPath $s).Hash.ToLower()\n\
         exit 0\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    }

    #[test]
    fn posix_wrapper_keeps_exit_code_args_env_and_inline_stdin() {
        let home = tempfile::tempdir().unwrap();
        let cmd = Command::script("cat; printf '%s|' \"$@\"; echo \"$V\"; exit 7")
            .args(["a b", "it's", "$(x)"])
            .env("V", "v'\"");
        let s = posix(
            &cmd,
            home.path().to_str().unwrap(),
            "t1",
            &Stdin::Inline(b"in\0put\n".to_vec()),
        )
        .unwrap();
        let out = sh(&s);
        assert_eq!(out.status.code(), Some(7));
        assert_eq!(out.stdout, b"in\0put\na b|it's|$(x)|v'\"\n");
    }

    #[test]
    fn posix_wrapper_starts_in_home_and_leaves_no_pid_file() {
        let home = tempfile::tempdir().unwrap();
        let token = format!("{:016x}", rand::random::<u64>());
        let s = posix(
            &Command::new("pwd"),
            home.path().to_str().unwrap(),
            &token,
            &Stdin::None,
        )
        .unwrap();
        let out = sh(&s);
        assert!(out.status.success());
        let pwd = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            std::fs::canonicalize(pwd.trim()).unwrap(),
            std::fs::canonicalize(home.path()).unwrap()
        );
        let tmp = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into());
        assert!(!std::path::Path::new(&format!("{tmp}/hgauto-ssm-{token}.pid")).exists());
    }

    #[test]
    fn a_command_whose_kill_came_first_does_not_run() {
        let home = tempfile::tempdir().unwrap();
        let token = format!("{:016x}", rand::random::<u64>());
        let marker = home.path().join("ran");
        let cmd = Command::new("touch").arg(marker.to_str().unwrap());
        let s = posix(&cmd, home.path().to_str().unwrap(), &token, &Stdin::None).unwrap();
        assert!(sh(&kill_script(&token)).status.success());
        let out = sh(&s);
        assert_eq!(out.status.code(), Some(137));
        assert!(!marker.exists(), "the command ran after its kill");
        // The wrapper consumed the stop file: the next command with a new token is unaffected.
        let tmp = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into());
        assert!(!std::path::Path::new(&format!("{tmp}/hgauto-ssm-{token}.stop")).exists());
    }

    #[test]
    fn powershell_wrapper_enters_home() {
        let s = powershell(&Command::new("whoami"), "C:\\it's").unwrap();
        assert!(s.contains("Set-Location -LiteralPath 'C:\\it''s'"), "{s}");
    }
}
