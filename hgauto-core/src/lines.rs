//! [`LineSplitter`]: output bytes into lines for a [`LineSink`](crate::LineSink), the same
//! way on every backend: lines lose their `\n` (a `\r` stays), an empty line is a line, and
//! a last line without `\n` is passed on when the output ends.

/// The longest line passed on whole: a longer one (a program printing megabytes without a
/// newline) is passed on in pieces of this size, so a splitter's memory stays bounded.
pub const MAX_LINE: usize = 1 << 20;

/// Splits chunks of one stream's output into lines and keeps what it saw: everything, or
/// with a capture limit only the last `limit` bytes (and says it dropped some).
#[derive(Debug, Default, Clone)]
pub struct LineSplitter {
    partial: Vec<u8>,
    captured: Vec<u8>,
    limit: Option<usize>,
    dropped: bool,
}

impl LineSplitter {
    /// A splitter with nothing seen yet, keeping everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// A splitter keeping only the last `limit` bytes when `limit` is given (as
    /// [`Command::capture_limit`](crate::Command::capture_limit) asks).
    pub fn with_capture_limit(limit: Option<usize>) -> Self {
        LineSplitter {
            limit,
            ..Self::default()
        }
    }

    /// Did the capture limit drop earlier bytes?
    pub fn dropped(&self) -> bool {
        self.dropped
    }

    fn capture(&mut self, data: &[u8]) {
        self.captured.extend_from_slice(data);
        if let Some(limit) = self.limit {
            // Trimmed in batches (at twice the limit), so each byte moves at most once.
            if self.captured.len() > limit.saturating_mul(2).max(4096) {
                let cut = self.captured.len() - limit;
                self.captured.drain(..cut);
                self.dropped = true;
            }
        }
    }

    /// Takes the next chunk, passing each line it completes to `line`.
    pub fn push(&mut self, data: &[u8], mut line: impl FnMut(&[u8])) {
        self.capture(data);
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                line(&rest[..nl]);
            } else {
                self.partial.extend_from_slice(&rest[..nl]);
                line(&self.partial);
                self.partial.clear();
            }
            rest = &rest[nl + 1..];
        }
        self.partial.extend_from_slice(rest);
        while self.partial.len() >= MAX_LINE {
            line(&self.partial[..MAX_LINE]);
            self.partial.drain(..MAX_LINE);
        }
    }

    /// The output ended: passes on a last line that had no `\n`.
    pub fn finish(&mut self, mut line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            line(&self.partial);
            self.partial.clear();
        }
    }

    /// Everything pushed so far, byte for byte.
    pub fn captured(&self) -> &[u8] {
        &self.captured
    }

    /// Everything pushed, byte for byte (the last `limit` bytes with a limit), taking it.
    pub fn into_captured(self) -> Vec<u8> {
        self.into_parts().0
    }

    /// What [`into_captured`](Self::into_captured) gives, and whether the limit dropped
    /// earlier bytes.
    pub fn into_parts(mut self) -> (Vec<u8>, bool) {
        if let Some(limit) = self.limit {
            if self.captured.len() > limit {
                let cut = self.captured.len() - limit;
                self.captured.drain(..cut);
                self.dropped = true;
            }
        }
        (self.captured, self.dropped)
    }

    /// All of `data` at once, as lines (for backends whose output arrives whole).
    pub fn split_all(data: &[u8], mut line: impl FnMut(&[u8])) {
        let mut s = LineSplitter::new();
        s.push(data, &mut line);
        s.finish(&mut line);
    }
}

#[cfg(test)]
mod tests {
    use super::{LineSplitter, MAX_LINE};

    #[test]
    fn a_capture_limit_keeps_the_tail_and_bounds_memory() {
        let mut s = LineSplitter::with_capture_limit(Some(10_000));
        let chunk = [b'x'; 65_536];
        let mut lines = 0usize;
        for _ in 0..200 {
            s.push(&chunk, |_| lines += 1);
            s.push(b"\n", |_| lines += 1);
            assert!(s.captured().len() <= 20_000 + 65_537 + 4096);
            assert!(s.partial.len() < MAX_LINE);
        }
        assert!(s.dropped());
        let (kept, dropped) = s.into_parts();
        assert!(dropped);
        assert_eq!(kept.len(), 10_000);
        assert_eq!(kept.last(), Some(&b'\n'));
        assert_eq!(lines, 200);
        // One line without a newline, longer than MAX_LINE, comes out in pieces.
        let mut s = LineSplitter::with_capture_limit(Some(16));
        let mut pieces = Vec::new();
        for _ in 0..40 {
            s.push(&chunk, |l| pieces.push(l.len()));
        }
        s.finish(|l| pieces.push(l.len()));
        assert_eq!(pieces.iter().sum::<usize>(), 40 * 65_536);
        assert!(pieces.iter().all(|&n| n <= MAX_LINE));
    }

    fn lines(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = LineSplitter::new();
        for c in chunks {
            s.push(c, |l| out.push(l.to_vec()));
        }
        s.finish(|l| out.push(l.to_vec()));
        assert_eq!(s.captured(), chunks.concat().as_slice());
        out
    }

    #[test]
    fn lines_are_the_same_however_the_output_is_chunked() {
        let want: Vec<Vec<u8>> = vec![b"a".to_vec(), b"".to_vec(), b"bc\r".to_vec(), b"d".to_vec()];
        assert_eq!(lines(&[b"a\n\nbc\r\nd"]), want);
        assert_eq!(lines(&[b"a", b"\n", b"\nb", b"c\r\n", b"d"]), want);
        assert_eq!(lines(&[b"c\n"]), vec![b"c".to_vec()]);
        assert!(lines(&[b""]).is_empty());
        let mut all = Vec::new();
        LineSplitter::split_all(b"x\ny", |l| all.push(l.to_vec()));
        assert_eq!(all, vec![b"x".to_vec(), b"y".to_vec()]);
    }
}
