//! [`login_shell_command`]: a POSIX script as a command line that any common login shell
//! passes to `/bin/sh` unchanged.
//!
//! sshd runs every command through the user's login shell (`$SHELL -c "<command>"`). That
//! shell may be fish or tcsh, which parse POSIX quoting differently (fish treats `\'`
//! inside single quotes as an escape and rejects `$$`; csh expands `!` inside single quotes
//! and cannot hold a newline in them). So the script travels as a single-quoted word made
//! of bytes that mean the same thing in every shell: printable ASCII except `'`, `\` and
//! `!`; every other byte becomes `\0ooo`, which `/bin/sh`'s `printf %b` turns back into the
//! byte. The command line is:
//!
//! ```text
//! exec /bin/sh -c 'eval "$(printf %b "$1")"' hgauto '<encoded script>'
//! ```
//!
//! The decoded script starts with `set --` (the encoded copy in `$1` is not the script's
//! business) and `unset CDPATH`.
//!
//! That costs a fork per command. When the login shell is known to be of the POSIX family
//! (sh, dash, bash, zsh, ksh...), whose single quotes all mean the same,
//! [`posix_login_command`] is exact and cheaper: `exec /bin/sh -c '<script>'`.

use std::fmt::Write as _;

use crate::error::{Error, Result};

/// The longest command line one SSH exec request can start: Linux limits each argument of
/// `execve` to 32 pages (`MAX_ARG_STRLEN`), and the login shell receives the whole line as
/// one argument.
pub const MAX_COMMAND_LINE: usize = 128 * 1024;

const PREFIX: &str = "exec /bin/sh -c 'eval \"$(printf %b \"$1\")\"' hgauto '";
const PREAMBLE: &str = "set --\nunset CDPATH\n";

/// Wraps the POSIX `script` so that any common login shell (sh, dash, bash, zsh, ksh,
/// fish, csh, tcsh) hands it to `/bin/sh` byte for byte. A script that would make the
/// command line longer than [`MAX_COMMAND_LINE`] is an [`Error::InvalidInput`] saying so,
/// rather than an obscure failure on the host.
pub fn login_shell_command(script: &str) -> Result<String> {
    if script.contains('\0') {
        return Err(Error::invalid("script", "contains a NUL byte"));
    }
    let mut out = String::with_capacity(PREFIX.len() + PREAMBLE.len() + script.len() + 64);
    out.push_str(PREFIX);
    for b in PREAMBLE.bytes().chain(script.bytes()) {
        if (0x20..0x7f).contains(&b) && !matches!(b, b'\'' | b'\\' | b'!') {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\0{b:03o}");
        }
    }
    out.push('\'');
    if out.len() > MAX_COMMAND_LINE {
        return Err(Error::invalid(
            "command",
            format!(
                "is {} bytes once encoded for the remote shell, and one command line holds \
                 at most {MAX_COMMAND_LINE}; pass large data as stdin or with put",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// For a login shell of the POSIX family: `exec /bin/sh -c '<script>'`, single-quoted as
/// every such shell reads it, so the script still runs under `/bin/sh`. Same limits as
/// [`login_shell_command`].
pub fn posix_login_command(script: &str) -> Result<String> {
    if script.contains('\0') {
        return Err(Error::invalid("script", "contains a NUL byte"));
    }
    let mut out = String::with_capacity(script.len() + 40);
    out.push_str("exec /bin/sh -c '");
    out.push_str(&"unset CDPATH\n".replace('\'', r"'\''"));
    out.push_str(&script.replace('\'', r"'\''"));
    out.push('\'');
    if out.len() > MAX_COMMAND_LINE {
        return Err(Error::invalid(
            "command",
            format!(
                "is {} bytes on the command line, and one command line holds at most \
                 {MAX_COMMAND_LINE}; pass large data as stdin or with put",
                out.len()
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inert_bytes_travel_unescaped() {
        let line = login_shell_command("echo 'it''s' \\ !! \n é").unwrap();
        let body = line
            .strip_prefix(PREFIX)
            .and_then(|b| b.strip_suffix('\''))
            .unwrap();
        assert!(!body.contains(['\'', '!', '\n']), "{body}");
        // Every backslash starts an octal escape.
        for (i, _) in body.match_indices('\\') {
            let esc = &body[i + 1..i + 5];
            assert!(
                esc.starts_with('0') && esc.bytes().all(|b| (b'0'..=b'7').contains(&b)),
                "{esc}"
            );
        }
        assert!(body.contains("\\0047"), "a quote is escaped: {body}");
        assert!(
            body.contains("\\0303\\0251"),
            "é is two escaped bytes: {body}"
        );
    }

    #[test]
    fn sh_runs_the_script_exactly() {
        let script = "printf '[%s]' \"$#\" 'a b' \"it's\" '$(x)' '!!' 'back\\slash' '%s%d'\nexit 3";
        let line = login_shell_command(script).unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", &line])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "[0][a b][it's][$(x)][!!][back\\slash][%s%d]"
        );
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn posix_shells_run_the_single_quoted_form_exactly() {
        let script = "printf '[%s]' \"$#\" \"it's\" '$(x)' '!!'\nexit 4";
        let line = posix_login_command(script).unwrap();
        for shell in ["sh", "bash"] {
            let out = std::process::Command::new(shell)
                .args(["-c", &line])
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "[0][it's][$(x)][!!]",
                "{shell}"
            );
            assert_eq!(out.status.code(), Some(4), "{shell}");
        }
    }

    #[test]
    fn too_long_and_nul_are_refused() {
        let e = login_shell_command(&"'".repeat(40_000)).unwrap_err();
        assert!(e.to_string().contains("131072"), "{e}");
        assert!(login_shell_command("a\0b").is_err());
    }
}
