//! "Did you mean" suggestions for names a user got wrong (steps, dimensions, config keys).

/// `" (did you mean \"x\"?)"` for the candidate closest to `wrong`, or an empty string
/// when none is close (Jaro-Winkler similarity above 0.75).
pub fn closest<'a>(wrong: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let best = candidates
        .map(|c| (strsim::jaro_winkler(wrong, c), c))
        .filter(|(score, _)| *score > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, c)) => format!(" (did you mean {c:?}?)"),
        None => String::new(),
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" with the closest expected name
/// suggested, and the line when known.
pub fn unknown_field(message: &str, line: Option<usize>) -> String {
    let mut out = message.trim().to_owned();
    if let Some(rest) = message.split("unknown field `").nth(1) {
        let wrong = rest.split('`').next().unwrap_or("");
        let expected: Vec<&str> = rest
            .split("expected ")
            .nth(1)
            .unwrap_or("")
            .split('`')
            .skip(1)
            .step_by(2)
            .collect();
        out.push_str(&closest(wrong, expected.into_iter()));
    }
    match line {
        Some(l) => format!("line {l}: {out}"),
        None => out,
    }
}

/// A TOML parse error as one line: the message with a suggestion, and its line.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    unknown_field(e.message(), line)
}
