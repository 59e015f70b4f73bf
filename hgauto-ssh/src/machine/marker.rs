//! The marker a POSIX command prints first, and what it tells: the pid to kill, whether
//! our script ran at all, and the login shell's family ([`LoginShell`]), which decides how
//! the next commands are wrapped (see `exec`'s module docs).

use std::sync::atomic::{AtomicU8, Ordering};

use hgauto_core::backend::render::{login_shell_command, posix_login_command};

/// What a host's login shell is, as far as we know: how POSIX scripts must be wrapped.
#[derive(Debug, Default)]
pub(crate) struct LoginShell(AtomicU8);

// 0 (the default): not known yet, so the encoded wrapper.
const SHELL_IS_SH: u8 = 1;
const SHELL_POSIX: u8 = 2;
const SHELL_OTHER: u8 = 3;

impl LoginShell {
    fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn learn(&self, family: &str) {
        let v = match family {
            "sh" => SHELL_IS_SH,
            "posix" => SHELL_POSIX,
            _ => SHELL_OTHER,
        };
        self.0.store(v, Ordering::Relaxed);
    }

    /// `script`, marked with `nonce`, as the command line for this login shell.
    pub(crate) fn command(&self, script: &str, nonce: &str) -> hgauto_core::Result<String> {
        // The family is worked out on every run (a few builtins), so a host whose login
        // shell changes is noticed.
        let marked = format!(
            "case ${{SHELL##*/}} in sh) if [ \"$SHELL\" -ef /bin/sh ]; then f=sh; else f=posix; fi;; \
             dash|bash|zsh|ksh|mksh|ksh93|ash|yash|lksh) f=posix;; *) f=other;; esac\n\
             printf 'hgauto-pid-%s %s %s\\n' {nonce} \"$$\" \"$f\" >&2\n{script}"
        );
        match self.get() {
            SHELL_IS_SH => Ok(format!("unset CDPATH\n{marked}")),
            SHELL_POSIX => posix_login_command(&marked),
            _ => login_shell_command(&marked),
        }
    }
}

/// Finds this run's pid marker in stderr (wherever the login shell's own output ends),
/// holds back what came before it, and passes everything after it through.
pub(crate) struct StderrFilter {
    /// `hgauto-pid-<nonce> `, while not yet seen.
    marker: Option<String>,
    pending: Vec<u8>,
    pub(crate) pid: Option<i32>,
    /// The login shell's family the marker reported.
    pub(crate) family: Option<String>,
    /// What came before the marker (kept short), for the error when it never comes.
    pub(crate) before: Vec<u8>,
}

impl StderrFilter {
    pub(crate) fn new(marker: Option<String>) -> Self {
        StderrFilter {
            marker,
            pending: Vec::new(),
            pid: None,
            family: None,
            before: Vec::new(),
        }
    }

    pub(crate) fn seen(&self) -> bool {
        self.marker.is_none()
    }

    pub(crate) fn feed(&mut self, data: &[u8], out: &mut (dyn FnMut(&[u8]) + Send)) {
        let Some(marker) = self.marker.as_deref() else {
            out(data);
            return;
        };
        self.pending.extend_from_slice(data);
        let m = marker.as_bytes();
        if let Some(at) = find(&self.pending, m) {
            let Some(nl) = self.pending[at..].iter().position(|&b| b == b'\n') else {
                return; // the pid is still on its way
            };
            let all = std::mem::take(&mut self.pending);
            let mut words = std::str::from_utf8(&all[at + m.len()..at + nl])
                .unwrap_or("")
                .split_whitespace();
            self.pid = words.next().and_then(|p| p.parse().ok());
            self.family = words.next().map(str::to_owned);
            self.marker = None;
            self.note_before(&all[..at]);
            if !self.before.is_empty() {
                tracing::debug!(
                    said = %String::from_utf8_lossy(&self.before),
                    "the login shell printed this before the command started"
                );
            }
            if all.len() > at + nl + 1 {
                out(&all[at + nl + 1..]);
            }
            return;
        }
        // Keep only a tail that could be the start of the marker.
        let keep = m.len().min(self.pending.len());
        let cut = self.pending.len() - keep;
        if cut > 0 {
            let head: Vec<u8> = self.pending.drain(..cut).collect();
            self.note_before(&head);
        }
    }

    fn note_before(&mut self, bytes: &[u8]) {
        let room = 2048usize.saturating_sub(self.before.len());
        self.before
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    pub(crate) fn finish(&mut self, out: &mut (dyn FnMut(&[u8]) + Send)) {
        let rest = std::mem::take(&mut self.pending);
        if self.seen() {
            out(&rest);
        } else {
            self.note_before(&rest);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_all(chunks: &[&[u8]]) -> (StderrFilter, Vec<u8>) {
        let mut f = StderrFilter::new(Some("hgauto-pid-abc ".into()));
        let mut got = Vec::new();
        let mut out = |d: &[u8]| got.extend_from_slice(d);
        for c in chunks {
            f.feed(c, &mut out);
        }
        f.finish(&mut out);
        (f, got)
    }

    #[test]
    fn marker_is_stripped_even_when_split_across_reads() {
        let (f, got) = filter_all(&[b"hgauto-p", b"id-abc 42", b"42 posix\nreal error\n"]);
        assert_eq!(f.pid, Some(4242));
        assert_eq!(f.family.as_deref(), Some("posix"));
        assert!(f.seen());
        assert_eq!(got, b"real error\n");
    }

    #[test]
    fn profile_noise_before_the_marker_is_held_back_and_the_pid_still_found() {
        let noise = "x".repeat(5000);
        let (f, got) = filter_all(&[
            noise.as_bytes(),
            b"\nwelcome from .bashrc\nno newline:",
            b"hgauto-pid-abc 7\nerr\n",
        ]);
        assert_eq!(f.pid, Some(7));
        assert_eq!(got, b"err\n");
    }

    #[test]
    fn a_marker_with_another_nonce_does_not_count() {
        let (f, got) = filter_all(&[b"hgauto-pid-zzz 1\nboom"]);
        assert!(!f.seen());
        assert_eq!(f.pid, None);
        assert!(got.is_empty());
        assert!(String::from_utf8_lossy(&f.before).contains("boom"));
    }
}
