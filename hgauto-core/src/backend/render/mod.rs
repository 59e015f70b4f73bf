//! Rendering a [`Command`] as text for a remote shell.
//!
//! Remote transports (SSH `exec`, SSM `RunShellScript`) take one string, which the remote
//! shell parses. These functions turn a structured [`Command`] into that string so that
//! every argument arrives as exactly the bytes given, whatever they contain.
//!
//! - [`render_posix`]: POSIX `sh`. Arguments are single-quoted (`'` becomes `'\''`). Bytes
//!   that are not UTF-8 cannot travel in the (UTF-8) command string, so each such byte is
//!   produced remotely by `"$(printf '\ooo')"`. Paths go through [`posix_path`], so a
//!   relative path can never mean `$OLDPWD` or a `$CDPATH` entry.
//! - [`render_powershell`]: a `powershell -EncodedCommand` line whose script (UTF-16LE,
//!   base64) starts the program through .NET `ProcessStartInfo` with a command line escaped
//!   by the MSVC `CommandLineToArgvW` rules. This avoids PowerShell's own native-argument
//!   passing, which drops empty arguments and mangles embedded quotes in Windows PowerShell 5.1.
//!   Batch files (`.bat`, `.cmd`) run under `cmd.exe`, whose own metacharacters are escaped
//!   as Rust's standard library does (see [`windows_bat_command_line`]).
//! - [`login_shell_command`]: a POSIX script wrapped so that any common login shell (sh,
//!   bash, zsh, ksh, fish, csh, tcsh) hands it to `/bin/sh` unchanged.
//!
//! A NUL byte can be in no argument, environment value or path on any platform, so it is an
//! [`Error::InvalidInput`] rather than silently truncated.

mod login_shell;
mod powershell;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::Path;

use crate::command::{Command, Platform, Program};
use crate::error::{Error, Result};

pub use login_shell::{login_shell_command, posix_login_command, MAX_COMMAND_LINE};
pub use powershell::{
    encode_powershell, powershell_script, quote_powershell, render_powershell, windows_argv_quote,
    windows_bat_command_line,
};

/// Renders `cmd` for the shell of `platform`.
pub fn render(cmd: &Command, platform: Platform) -> Result<String> {
    match platform {
        Platform::Linux => render_posix(cmd),
        Platform::Windows => render_powershell(cmd),
    }
}

/// Renders `cmd` as a POSIX `sh` command string (for `sh -c` or an SSH exec request).
///
/// The program is started with `exec`, so the remote exit status and signal are the
/// program's own. Environment variables are exported, and the working directory is
/// entered first (the command fails with status 1 if it does not exist).
pub fn render_posix(cmd: &Command) -> Result<String> {
    let mut out = String::new();
    if let Some(cwd) = cmd.get_cwd() {
        let q = posix_path(cwd.as_os_str(), "working directory")?;
        let _ = writeln!(out, "cd {q} || exit 1");
    }
    for (key, value) in cmd.get_env() {
        check_env_key(key)?;
        let q = quote_posix(value, &format!("environment variable {key}"))?;
        let _ = writeln!(out, "export {key}={q}");
    }
    match cmd.get_program() {
        Program::Exec(program) => {
            if program.is_empty() {
                return Err(Error::invalid("program", "the program name is empty"));
            }
            out.push_str("exec ");
            out.push_str(&quote_posix(program, "program")?);
            for (i, arg) in cmd.get_args().iter().enumerate() {
                out.push(' ');
                out.push_str(&quote_posix(arg, &format!("argument {}", i + 1))?);
            }
        }
        Program::Script(script) => {
            if script.contains('\0') {
                return Err(Error::invalid("script", "contains a NUL byte"));
            }
            if !cmd.get_args().is_empty() {
                // Positional parameters for the script: `set -- args`.
                out.push_str("set --");
                for (i, arg) in cmd.get_args().iter().enumerate() {
                    out.push(' ');
                    out.push_str(&quote_posix(arg, &format!("argument {}", i + 1))?);
                }
                out.push('\n');
            }
            out.push_str(script);
        }
    }
    Ok(out)
}

/// Quotes a path for POSIX `sh`, so that it names exactly that file whatever command it is
/// given to: a relative path gets a `./` prefix, which keeps `cd` from reading `-` as
/// `$OLDPWD` or searching `$CDPATH`, and keeps any command from reading a leading `-` as an
/// option. Every generated script passes its paths through here.
pub fn posix_path(path: &OsStr, what: &str) -> Result<String> {
    let p = Path::new(path);
    if path.is_empty() {
        return Err(Error::invalid(what, "is empty"));
    }
    if p.is_absolute() || p.starts_with(".") || p.starts_with("..") {
        quote_posix(path, what)
    } else {
        quote_posix(Path::new(".").join(p).as_os_str(), what)
    }
}

/// Quotes one word for POSIX `sh`. `what` names it in the error for a NUL byte.
pub fn quote_posix(word: &OsStr, what: &str) -> Result<String> {
    let bytes = os_bytes(word);
    if bytes.contains(&0) {
        return Err(Error::invalid(
            what,
            "contains a NUL byte, which no program argument can carry",
        ));
    }
    if bytes.is_empty() {
        return Ok("''".to_owned());
    }
    if bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"_@%+:,./-".contains(b))
    {
        // Plain words stay readable in logs. None of these bytes is special to sh.
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    let mut out = String::with_capacity(bytes.len() + 2);
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        if !valid.is_empty() {
            out.push('\'');
            out.push_str(&valid.replace('\'', r"'\''"));
            out.push('\'');
        }
        for b in chunk.invalid() {
            let _ = write!(out, r#""$(printf '\{b:03o}')""#);
        }
    }
    Ok(out)
}

/// Refuses an environment variable name a shell cannot set (`MY-VAR`, `1X`, empty).
pub fn check_env_key(key: &str) -> Result<()> {
    let mut chars = key.chars();
    let ok = matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("environment variable name {key:?}"),
            "must match [A-Za-z_][A-Za-z0-9_]*",
        ))
    }
}

#[cfg(unix)]
fn os_bytes(s: &OsStr) -> std::borrow::Cow<'_, [u8]> {
    use std::os::unix::ffi::OsStrExt;
    std::borrow::Cow::Borrowed(s.as_bytes())
}

#[cfg(not(unix))]
fn os_bytes(s: &OsStr) -> std::borrow::Cow<'_, [u8]> {
    std::borrow::Cow::Owned(s.to_string_lossy().into_owned().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn plain_words_stay_unquoted() {
        let c = Command::new("make").arg("-j2").arg("dist/x.tar.gz");
        assert_eq!(render_posix(&c).unwrap(), "exec make -j2 dist/x.tar.gz");
    }

    #[test]
    fn quotes_and_substitutions_are_single_quoted() {
        let c = Command::new("echo").arg("it's $(rm -rf ~)").arg("");
        assert_eq!(
            render_posix(&c).unwrap(),
            r#"exec echo 'it'\''s $(rm -rf ~)' ''"#
        );
    }

    #[test]
    fn relative_cwd_cannot_mean_oldpwd_or_cdpath() {
        let c = Command::new("pwd").current_dir("-");
        assert_eq!(render_posix(&c).unwrap(), "cd ./- || exit 1\nexec pwd");
        let c = Command::new("pwd").current_dir("/abs/dir");
        assert!(render_posix(&c).unwrap().starts_with("cd /abs/dir "));
    }

    #[test]
    fn paths_never_read_as_options_oldpwd_or_cdpath_entries() {
        let p = |s: &str| posix_path(OsStr::new(s), "p").unwrap();
        assert_eq!(p("-"), "./-");
        assert_eq!(p("-rf"), "./-rf");
        assert_eq!(p("src"), "./src");
        assert_eq!(p("./src"), "./src");
        assert_eq!(p("../up"), "../up");
        assert_eq!(p(".hidden"), "./.hidden");
        assert_eq!(p("/abs"), "/abs");
        assert_eq!(p("it's"), r"'./it'\''s'");
        assert!(posix_path(OsStr::new(""), "p").is_err());
    }

    #[test]
    fn nul_is_rejected_with_its_position() {
        let c = Command::new("echo").arg("ok").arg("a\0b");
        let e = render_posix(&c).unwrap_err();
        assert!(e.to_string().contains("argument 2"), "{e}");
        assert!(render_powershell(&c).is_err());
    }

    #[test]
    fn bad_env_names_are_rejected() {
        for k in ["", "1A", "A-B", "A B", "A=B"] {
            let c = Command::new("true").env(k, "v");
            assert!(render_posix(&c).is_err(), "{k:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_bytes_use_printf() {
        use std::os::unix::ffi::OsStringExt;
        let c = Command::new("x").arg(OsString::from_vec(vec![b'a', 0xe9, b'b']));
        assert_eq!(
            render_posix(&c).unwrap(),
            r#"exec x 'a'"$(printf '\351')"'b'"#
        );
        assert!(render_powershell(&c).is_err());
    }
}
