//! Property tests for command rendering: arbitrary arguments through a real `sh -c` arrive
//! byte for byte, and never run as code. Run with PROPTEST_CASES=10000 in CI.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use hgauto_core::backend::render::{render_posix, windows_argv_quote, windows_bat_command_line};
use hgauto_core::Command;
use proptest::prelude::*;

/// Segments that try to break out of quoting, each aimed at creating `canary`.
const PAYLOADS: &[&str] = &[
    "$(touch canary)",
    "`touch canary`",
    "'; touch canary; '",
    "'\"$(touch canary)\"'",
    "\\'$(touch canary)",
    "\n touch canary \n",
    "' && touch canary #",
    "${IFS}$(touch${IFS}canary)",
    "\u{2019}; touch canary",
];

fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(PAYLOADS).prop_map(|s| s.as_bytes().to_vec()),
        3 => prop::collection::vec(prop::sample::select(b"'\"`$()\\;|&<>*?~#!{}[] \t\n\r-=%^".to_vec()), 1..6),
        2 => "\\PC{0,6}".prop_map(String::into_bytes),
        2 => prop::collection::vec(1u8..=255u8, 1..8),
    ]
}

fn argument() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(segment(), 0..5).prop_map(|s| s.concat())
}

fn run_sh(script: &str, dir: &Path) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("sh runs")
}

proptest! {
    // Cases come from PROPTEST_CASES (CI: 10,000). No regression files: failures print
    // their minimal input, which is then pinned as a unit test in render.rs.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn posix_arguments_arrive_exactly(args in prop::collection::vec(argument(), 0..6), env_value in argument()) {
        let dir = tempfile::tempdir().unwrap();
        let os_args: Vec<OsString> = args.iter().cloned().map(OsString::from_vec).collect();
        let cmd = Command::new("printf")
            .arg("%s\\0")
            .args(&os_args)
            .env("HGAUTO_PROP", OsString::from_vec(env_value.clone()));
        let script = render_posix(&cmd).unwrap();
        let out = run_sh(&script, dir.path());
        prop_assert!(out.status.success(), "sh failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut want = Vec::new();
        for a in &args {
            want.extend_from_slice(a);
            want.push(0);
        }
        if args.is_empty() {
            want.push(0); // printf runs the format once with no arguments
        }
        prop_assert_eq!(out.stdout, want);

        let env_cmd = Command::new("printenv").arg("HGAUTO_PROP").env("HGAUTO_PROP", OsString::from_vec(env_value.clone()));
        let env_out = run_sh(&render_posix(&env_cmd).unwrap(), dir.path());
        let mut env_want = env_value.clone();
        env_want.push(b'\n');
        prop_assert_eq!(env_out.stdout, env_want);
        prop_assert!(!dir.path().join("canary").exists(), "the canary was created");
    }

    #[test]
    fn posix_working_directory_arrives_exactly(name in argument().prop_filter("a usable file name", |n| {
        !n.is_empty() && !n.contains(&b'/') && n != b"." && n != b".." && n.len() < 200
    })) {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(OsString::from_vec(name.clone()));
        std::fs::create_dir(&target).unwrap();
        let cmd = Command::new("pwd").arg("-P").current_dir(OsString::from_vec(name));
        let out = run_sh(&render_posix(&cmd).unwrap(), dir.path());
        prop_assert!(out.status.success());
        let mut want = std::os::unix::ffi::OsStrExt::as_bytes(target.canonicalize().unwrap().as_os_str()).to_vec();
        want.push(b'\n');
        prop_assert_eq!(out.stdout, want);
        prop_assert!(!dir.path().join("canary").exists());
    }

    #[test]
    fn nul_anywhere_is_rejected(prefix in argument(), suffix in argument()) {
        let mut arg = prefix;
        arg.push(0);
        arg.extend(suffix);
        let cmd = Command::new("printf").arg(OsString::from_vec(arg));
        prop_assert!(render_posix(&cmd).is_err());
    }

    #[test]
    fn batch_file_arguments_are_never_cmd_syntax(args in prop::collection::vec("\\PC{0,12}|[%&|<>^()\"\\ !]{0,6}", 0..6)) {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let line = windows_bat_command_line("C:\\ci\\build.bat", &refs).unwrap();
        let cmdline = format!("cmd.exe {line}");
        cmd_exe_would_run_only_the_batch_file(&cmdline)?;
    }

    #[test]
    fn batch_file_arguments_with_line_breaks_are_refused(a in "\\PC{0,8}", b in "\\PC{0,8}", brk in "[\r\n\0]") {
        let arg = format!("{a}{brk}{b}");
        prop_assert!(windows_bat_command_line("b.bat", &[&arg]).is_err());
    }

    #[test]
    fn windows_argv_quoting_round_trips(args in prop::collection::vec("\\PC{0,12}|[\\\\\" \t]{0,6}", 0..6)) {
        let line: Vec<String> = args.iter().map(|a| windows_argv_quote(a)).collect();
        prop_assert_eq!(parse_windows_args(&line.join(" ")), args);
    }
}

/// Checks a `cmd.exe /c` line the way cmd.exe reads it, assuming the worst: every
/// `%NAME%` (any non-empty name) is a defined variable. Phase 1 (percent expansion) may only
/// meet the `%cd:~,%` no-op; phase 2 (after the outer quotes of `/c "..."` are stripped)
/// may meet `& | < > ^ ( )` only inside quotes, and must end outside them.
fn cmd_exe_would_run_only_the_batch_file(cmdline: &str) -> Result<(), TestCaseError> {
    let chars: Vec<char> = cmdline.chars().collect();
    let mut expanded = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            expanded.push(chars[i]);
            i += 1;
            continue;
        }
        let Some(len) = chars[i + 1..].iter().position(|&c| c == '%') else {
            expanded.push('%');
            i += 1;
            continue;
        };
        let name: String = chars[i + 1..i + 1 + len].iter().collect();
        if name.is_empty() {
            expanded.push('%');
            i += 1;
        } else {
            prop_assert_eq!(
                name.as_str(),
                "cd:~,",
                "a variable would expand in {}",
                cmdline
            );
            i += len + 2;
        }
    }
    let rest = expanded
        .split_once(" /c ")
        .map(|(_, r)| r)
        .ok_or_else(|| TestCaseError::fail("no /c"))?;
    let inner = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(|| TestCaseError::fail("the /c string is not quoted"))?;
    let mut quoted = false;
    for c in inner.chars() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted {
            prop_assert!(
                !"&|<>^()".contains(c),
                "{:?} outside quotes in {}",
                c,
                cmdline
            );
        }
    }
    prop_assert!(!quoted, "unbalanced quotes in {}", cmdline);
    Ok(())
}

/// The argument-splitting rules of `CommandLineToArgvW` / the MSVC runtime (for every
/// argument but the program name).
fn parse_windows_args(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        if i >= chars.len() {
            return args;
        }
        let mut arg = String::new();
        let mut quoted = false;
        while i < chars.len() {
            let mut backslashes = 0;
            while i < chars.len() && chars[i] == '\\' {
                backslashes += 1;
                i += 1;
            }
            if i < chars.len() && chars[i] == '"' {
                arg.extend(std::iter::repeat_n('\\', backslashes / 2));
                if backslashes % 2 == 1 {
                    arg.push('"');
                } else if quoted && i + 1 < chars.len() && chars[i + 1] == '"' {
                    arg.push('"');
                    i += 1;
                } else {
                    quoted = !quoted;
                }
                i += 1;
                continue;
            }
            arg.extend(std::iter::repeat_n('\\', backslashes));
            if i >= chars.len() || (!quoted && (chars[i] == ' ' || chars[i] == '\t')) {
                break;
            }
            arg.push(chars[i]);
            i += 1;
        }
        args.push(arg);
    }
}

#[test]
fn powershell_script_decodes_and_quotes_arguments() {
    use base64::Engine as _;
    let cmd = Command::new("C:\\Program Files\\x.exe")
        .arg("it's \"quoted\"")
        .arg("")
        .env("K", "v'1")
        .current_dir("C:\\work dir");
    let line = hgauto_core::backend::render::render_powershell(&cmd).unwrap();
    let b64 = line.rsplit(' ').next().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let utf16: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let script = String::from_utf16(&utf16).unwrap();
    assert!(
        script.contains("Set-Location -LiteralPath 'C:\\work dir'"),
        "{script}"
    );
    assert!(script.contains("$env:K = 'v''1'"), "{script}");
    assert!(
        script.contains("$si.FileName = 'C:\\Program Files\\x.exe'"),
        "{script}"
    );
    assert!(
        script.contains(r#"$si.Arguments = '"it''s \"quoted\"" ""'"#),
        "{script}"
    );
    assert!(script.contains("exit $p.ExitCode"), "{script}");
}

#[test]
fn a_batch_program_is_started_through_cmd_exe_with_escaped_arguments() {
    // BatBadBut: MSVC quoting alone lets cmd.exe read `&` and `%VAR%` in a batch file's
    // arguments as syntax.
    let cmd = Command::new("C:\\ci\\build.bat")
        .arg("x\" & calc.exe & \"")
        .arg("%PATH%");
    let script = hgauto_core::backend::render::powershell_script(&cmd).unwrap();
    assert!(script.contains("$si.FileName = 'cmd.exe'"), "{script}");
    let args = script
        .lines()
        .find_map(|l| l.strip_prefix("$si.Arguments = '"))
        .and_then(|l| l.strip_suffix('\''))
        .expect("arguments line")
        .replace("''", "'");
    cmd_exe_would_run_only_the_batch_file(&format!("cmd.exe {args}")).unwrap();
    for bad in ["a\nb", "a\rb"] {
        let e = hgauto_core::backend::render::powershell_script(&Command::new("b.cmd").arg(bad))
            .unwrap_err();
        assert!(matches!(e, hgauto_core::Error::InvalidInput { .. }), "{e}");
    }
}
