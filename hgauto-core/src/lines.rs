//! [`LineSplitter`]: output bytes into lines for a [`LineSink`](crate::LineSink), the same
//! way on every backend: lines lose their `\n` (a `\r` stays), an empty line is a line, and
//! a last line without `\n` is passed on when the output ends.

/// Splits chunks of one stream's output into lines and keeps everything it saw.
#[derive(Debug, Default, Clone)]
pub struct LineSplitter {
    partial: Vec<u8>,
    captured: Vec<u8>,
}

impl LineSplitter {
    /// A splitter with nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next chunk, passing each line it completes to `line`.
    pub fn push(&mut self, data: &[u8], mut line: impl FnMut(&[u8])) {
        self.captured.extend_from_slice(data);
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

    /// Everything pushed, byte for byte, taking it.
    pub fn into_captured(self) -> Vec<u8> {
        self.captured
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
    use super::LineSplitter;

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
