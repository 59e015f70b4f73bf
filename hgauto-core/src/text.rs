//! Text helpers shared by every crate.

/// The longest prefix of `s` that is at most `max_bytes` long and ends on a character
/// boundary: for cutting text (a message, a line) to a byte budget without splitting a
/// character.
pub fn clip(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
