//! Rendering a [`Command`] as text for a remote shell.
//!
//! Remote transports (SSH `exec`, SSM `RunShellScript`) take one string, which the remote
//! shell parses. These functions turn a structured [`Command`] into that string so that
//! every argument arrives as exactly the bytes given, whatever they contain.
//!
//! - [`render_posix`]: POSIX `sh`. Arguments are single-quoted (`'` becomes `'\''`). Bytes
//!   that are not UTF-8 cannot travel in the (UTF-8) command string, so each such byte is
//!   produced remotely by `"$(printf '\ooo')"`.
//! - [`render_powershell`]: a `powershell -EncodedCommand` line whose script (UTF-16LE,
//!   base64) starts the program through .NET `ProcessStartInfo` with a command line escaped
//!   by the MSVC `CommandLineToArgvW` rules. This avoids PowerShell's own native-argument
//!   passing, which drops empty arguments and mangles embedded quotes in Windows PowerShell 5.1.
//!
//! A NUL byte can be in no argument, environment value or path on any platform, so it is an
//! [`Error::InvalidInput`] rather than silently truncated.

use std::ffi::OsStr;
use std::fmt::Write as _;

use base64::Engine as _;

use crate::command::{Command, Platform, Program};
use crate::error::{Error, Result};

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
        // `cd -` means $OLDPWD and a bare relative path is searched in $CDPATH; `./` avoids both.
        let cwd = if cwd.is_absolute() || cwd.starts_with(".") {
            cwd.to_path_buf()
        } else {
            std::path::Path::new(".").join(cwd)
        };
        let q = quote_posix(cwd.as_os_str(), "working directory")?;
        let _ = writeln!(out, "cd -- {q} || exit 1");
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

fn check_env_key(key: &str) -> Result<()> {
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

/// The PowerShell script (before encoding) that [`render_powershell`] encodes.
pub fn powershell_script(cmd: &Command) -> Result<String> {
    let mut out = String::from("$ErrorActionPreference = 'Stop'\n");
    if let Some(cwd) = cmd.get_cwd() {
        let q = quote_powershell(cwd.as_os_str(), "working directory")?;
        let _ = writeln!(out, "Set-Location -LiteralPath {q}");
    }
    for (key, value) in cmd.get_env() {
        check_env_key(key)?;
        let q = quote_powershell(value, &format!("environment variable {key}"))?;
        let _ = writeln!(out, "$env:{key} = {q}");
    }
    match cmd.get_program() {
        Program::Exec(program) => {
            if program.is_empty() {
                return Err(Error::invalid("program", "the program name is empty"));
            }
            let mut line = Vec::with_capacity(cmd.get_args().len());
            for (i, arg) in cmd.get_args().iter().enumerate() {
                let what = format!("argument {}", i + 1);
                line.push(windows_argv_quote(utf8_arg(arg, &what)?));
            }
            let _ = writeln!(
                out,
                "$si = New-Object System.Diagnostics.ProcessStartInfo\n\
                 $si.FileName = {}\n\
                 $si.Arguments = {}\n\
                 $si.UseShellExecute = $false\n\
                 $si.WorkingDirectory = (Get-Location).ProviderPath\n\
                 $p = [System.Diagnostics.Process]::Start($si)\n\
                 $p.WaitForExit()\n\
                 exit $p.ExitCode",
                quote_powershell(program, "program")?,
                quote_powershell(OsStr::new(&line.join(" ")), "arguments")?,
            );
        }
        Program::Script(script) => {
            if script.contains('\0') {
                return Err(Error::invalid("script", "contains a NUL byte"));
            }
            if !cmd.get_args().is_empty() {
                out.push_str("$args = @(");
                for (i, arg) in cmd.get_args().iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&quote_powershell(arg, &format!("argument {}", i + 1))?);
                }
                out.push_str(")\n");
            }
            out.push_str(script);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Renders `cmd` as `powershell.exe -NoProfile -NonInteractive -EncodedCommand <base64>`.
pub fn render_powershell(cmd: &Command) -> Result<String> {
    let script = powershell_script(cmd)?;
    Ok(format!(
        "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand {}",
        encode_powershell(&script)
    ))
}

/// Base64 of the UTF-16LE bytes of `script`, as `-EncodedCommand` expects.
pub fn encode_powershell(script: &str) -> String {
    let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(utf16)
}

fn utf8_arg<'a>(s: &'a OsStr, what: &str) -> Result<&'a str> {
    let text = s.to_str().ok_or_else(|| {
        Error::invalid(
            what,
            "is not valid Unicode, which a Windows command line cannot carry",
        )
    })?;
    if text.contains('\0') {
        return Err(Error::invalid(
            what,
            "contains a NUL byte, which no program argument can carry",
        ));
    }
    Ok(text)
}

/// Quotes one word as a PowerShell single-quoted string literal.
///
/// PowerShell treats the typographic quotes U+2018..U+201B like `'`, so they are doubled too.
pub fn quote_powershell(word: &OsStr, what: &str) -> Result<String> {
    let text = utf8_arg(word, what)?;
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    Ok(out)
}

/// Quotes one argument so that `CommandLineToArgvW` (and the MSVC C runtime) parse it back
/// to exactly `arg`.
pub fn windows_argv_quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '\n', '\x0b', '"']) {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    let mut backslashes = 0usize;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            _ => {
                out.extend(std::iter::repeat_n('\\', backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.extend(std::iter::repeat_n('\\', backslashes * 2));
    out.push('"');
    out
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
        assert_eq!(render_posix(&c).unwrap(), "cd -- ./- || exit 1\nexec pwd");
        let c = Command::new("pwd").current_dir("/abs/dir");
        assert!(render_posix(&c).unwrap().starts_with("cd -- /abs/dir "));
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

    #[test]
    fn powershell_doubles_all_quote_forms() {
        let q = quote_powershell(OsStr::new("a'b\u{2019}c"), "x").unwrap();
        assert_eq!(q, "'a''b\u{2019}\u{2019}c'");
    }

    #[test]
    fn powershell_encoding_is_utf16le_base64() {
        assert_eq!(encode_powershell("hi"), "aABpAA==");
        let line = render_powershell(&Command::new("cmd.exe")).unwrap();
        assert!(line.starts_with("powershell.exe -NoProfile"));
    }

    #[test]
    fn windows_argv_quoting_known_cases() {
        assert_eq!(windows_argv_quote("abc"), "abc");
        assert_eq!(windows_argv_quote(""), "\"\"");
        assert_eq!(windows_argv_quote("a b"), "\"a b\"");
        assert_eq!(windows_argv_quote(r#"a"b"#), r#""a\"b""#);
        assert_eq!(windows_argv_quote(r"a\ b\"), r#""a\ b\\""#);
    }
}
