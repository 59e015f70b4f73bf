//! "Did you mean" suggestions for names a user got wrong (steps, dimensions, config keys).

/// The value `s` names among `choices` (name, value), or [`Error::InvalidInput`] naming
/// `what` and `s`, listing the names and suggesting the closest: the one shape of every
/// `FromStr` over a fixed set of names (platforms, VCS, modes, policies).
///
/// [`Error::InvalidInput`]: crate::Error::InvalidInput
pub fn one_of<T: Clone>(what: &str, s: &str, choices: &[(&str, T)]) -> crate::Result<T> {
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == s) {
        return Ok(v.clone());
    }
    let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
    let list = match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(crate::Error::invalid(
        format!("{what} {s:?}"),
        format!(
            "must be {list}{}",
            closest(s, choices.iter().map(|(n, _)| *n))
        ),
    ))
}

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

/// A parse error of a configuration file (TOML's `message()` and `span()`) as one line: the
/// message with a suggestion, and the line `span` starts on in `text`.
pub fn parse_error(text: &str, message: &str, span: Option<std::ops::Range<usize>>) -> String {
    let line = span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    unknown_field(message, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_names_the_choices_and_the_closest() {
        let choices = [("normal", 0), ("fake", 1), ("local", 2)];
        assert_eq!(one_of("mode", "fake", &choices).unwrap(), 1);
        let e = one_of("mode", "locl", &choices).unwrap_err().to_string();
        assert!(
            e.contains(r#"mode "locl""#)
                && e.contains(r#"must be "normal", "fake" or "local""#)
                && e.contains(r#"did you mean "local"?"#),
            "{e}"
        );
        let e = one_of("vcs", "svn", &[("git", 0), ("hg", 1)])
            .unwrap_err()
            .to_string();
        assert!(e.contains(r#"must be "git" or "hg""#), "{e}");
    }
}
