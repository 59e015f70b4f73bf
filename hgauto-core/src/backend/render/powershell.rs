//! PowerShell and Windows command lines: [`render_powershell`], MSVC argv quoting, and
//! `cmd.exe` quoting for batch files.

use std::ffi::OsStr;
use std::fmt::Write as _;

use base64::Engine as _;

use super::check_env_key;
use crate::command::{Command, Program};
use crate::error::{Error, Result};

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
            let mut args = Vec::with_capacity(cmd.get_args().len());
            for (i, arg) in cmd.get_args().iter().enumerate() {
                args.push(utf8_arg(arg, &format!("argument {}", i + 1))?);
            }
            let name = utf8_arg(program, "program")?;
            // CreateProcess runs a batch file under `cmd.exe /c`, which would read `&|<>^%`
            // in MSVC-quoted arguments as commands: start cmd.exe ourselves, quoted for it.
            let (program, line) = if is_batch_file(name) {
                (
                    OsStr::new("cmd.exe"),
                    windows_bat_command_line(name, &args)?,
                )
            } else {
                let quoted: Vec<String> = args.iter().map(|a| windows_argv_quote(a)).collect();
                (program.as_os_str(), quoted.join(" "))
            };
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
                quote_powershell(OsStr::new(&line), "arguments")?,
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

/// True when Windows would run `program` through `cmd.exe`: its name ends in `.bat` or
/// `.cmd`, after the trailing dots and spaces that Windows file names drop.
pub(crate) fn is_batch_file(program: &str) -> bool {
    let name = program.trim_end_matches(['.', ' ']).to_ascii_lowercase();
    name.ends_with(".bat") || name.ends_with(".cmd")
}

/// The arguments for `cmd.exe` that run the batch file `script` with `args`, each arriving
/// as itself in `%1`..`%9` and none of them read as a command: the escaping Rust's standard
/// library uses since the BatBadBut advisory (CVE-2024-24576). Arguments are quoted when
/// they hold anything but `[A-Za-z0-9#$*+-./:?@\_]`, `"` is doubled, and `%` is written
/// `%%cd:~,%` so that no `%VAR%` expands. A carriage return or newline would end the
/// command line, so an argument holding one is refused, as is a script name holding `"`.
pub fn windows_bat_command_line(script: &str, args: &[&str]) -> Result<String> {
    if script.contains('"') || script.ends_with('\\') {
        return Err(Error::invalid(
            format!("batch file name {script:?}"),
            "a Windows file name cannot contain `\"` or end with `\\`",
        ));
    }
    let mut line = format!("/e:ON /v:OFF /d /c \"\"{script}\"");
    for (i, arg) in args.iter().enumerate() {
        if arg.contains(['\r', '\n', '\0']) {
            return Err(Error::invalid(
                format!("argument {} of batch file {script}", i + 1),
                "contains a line break or NUL, which cmd.exe cannot pass to a batch file",
            ));
        }
        line.push(' ');
        append_bat_arg(&mut line, arg);
    }
    line.push('"');
    Ok(line)
}

fn append_bat_arg(line: &mut String, arg: &str) {
    const UNQUOTED: &str = r"#$*+-./:?@\_";
    let quote = arg.is_empty()
        || arg.ends_with('\\')
        || arg.chars().any(|c| {
            (c.is_ascii() && !(c.is_ascii_alphanumeric() || UNQUOTED.contains(c))) || c.is_control()
        });
    if quote {
        line.push('"');
    }
    let mut backslashes = 0usize;
    for c in arg.chars() {
        if c == '\\' {
            backslashes += 1;
        } else {
            if c == '"' {
                line.extend(std::iter::repeat_n('\\', backslashes));
                line.push('"');
            } else if c == '%' {
                line.push_str("%%cd:~,");
            }
            backslashes = 0;
        }
        line.push(c);
    }
    if quote {
        line.extend(std::iter::repeat_n('\\', backslashes));
        line.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn batch_files_are_recognised_whatever_windows_strips() {
        for name in [
            "build.bat",
            "C:\\x\\BUILD.CMD",
            "x.bat.",
            "x.cmd  ",
            "x.Bat. .",
        ] {
            assert!(is_batch_file(name), "{name}");
        }
        for name in ["build.exe", "bat", "x.batch", "cmd"] {
            assert!(!is_batch_file(name), "{name}");
        }
    }

    #[test]
    fn batch_arguments_are_escaped_like_rust_std() {
        let line =
            windows_bat_command_line("b.bat", &["a", "x&calc", "%PATH%", "q\"uote", "", "t\\"])
                .unwrap();
        assert_eq!(
            line,
            r#"/e:ON /v:OFF /d /c ""b.bat" a "x&calc" "%%cd:~,%PATH%%cd:~,%" "q""uote" "" "t\\"""#
        );
        assert!(windows_bat_command_line("b.bat", &["a\nb"]).is_err());
        assert!(windows_bat_command_line("b\".bat", &[]).is_err());
    }

    #[test]
    fn a_batch_program_runs_under_cmd_with_its_arguments_escaped() {
        let s = powershell_script(&Command::new("tools\\build.cmd").arg("a & b")).unwrap();
        assert!(s.contains("$si.FileName = 'cmd.exe'"), "{s}");
        assert!(
            s.contains(r#"$si.Arguments = '/e:ON /v:OFF /d /c ""tools\build.cmd" "a & b""'"#),
            "{s}"
        );
        let e = powershell_script(&Command::new("x.bat").arg("line\nbreak")).unwrap_err();
        assert!(e.to_string().contains("argument 1"), "{e}");
    }
}
