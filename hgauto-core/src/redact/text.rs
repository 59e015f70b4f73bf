//! [`redact_text`]: credentials masked in free text that nobody declared secret.

use super::{redact_url, MASK};

/// Free text (a build's last line of stderr, an error) with the credentials it may hold
/// masked, for text that leaves the machine (a GitHub status, a result file): every URL in
/// it as [`redact_url`] shows it, the value of `token=`, `password=`, `secret=` and
/// `key=` style assignments, and words shaped like well-known tokens (GitHub's `ghp_...`,
/// AWS access key ids). Known secrets are better scrubbed with [`Secrets`] as well; this
/// catches what nobody declared.
///
/// ```
/// use hgauto_core::redact::redact_text;
/// assert_eq!(
///     redact_text("fatal: unable to access 'https://ci:hunter22@example.org/r.git/': 403"),
///     "fatal: unable to access 'https://***@example.org/r.git/': 403"
/// );
/// assert_eq!(redact_text("upload failed: --token=abc123 rejected"), "upload failed: --token=*** rejected");
/// assert_eq!(redact_text("bad credentials ghp_0123456789abcdefghijABCDEFGHIJ012345"), "bad credentials ***");
/// ```
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() {
            out.push_str(&redact_word(word));
            word.clear();
        }
    };
    for c in text.chars() {
        if c.is_whitespace()
            || matches!(
                c,
                '\'' | '"' | '`' | '<' | '>' | '(' | ')' | '[' | ']' | ','
            )
        {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Key names whose value, after `=` or `:`, is taken as a secret.
const SECRET_KEYS: [&str; 9] = [
    "token",
    "password",
    "passwd",
    "secret",
    "key",
    "apikey",
    "api_key",
    "auth",
    "credential",
];

fn redact_word(word: &str) -> String {
    if word.contains("://") {
        let start = word.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(0);
        return format!("{}{}", &word[..start], redact_url(&word[start..]));
    }
    for sep in ['=', ':'] {
        if let Some((k, v)) = word.split_once(sep) {
            let name = k.trim_start_matches('-').to_ascii_lowercase();
            let secret_name = SECRET_KEYS.iter().any(|s| {
                name == *s || name.ends_with(&format!("_{s}")) || name.ends_with(&format!("-{s}"))
            });
            if secret_name && !v.is_empty() {
                return format!("{k}{sep}{MASK}");
            }
        }
    }
    let token_shaped = [
        "ghp_",
        "gho_",
        "ghs_",
        "ghu_",
        "github_pat_",
        "glpat-",
        "xox",
    ]
    .iter()
    .any(|p| word.starts_with(p) && word.len() >= p.len() + 16)
        || (word.len() == 20
            && (word.starts_with("AKIA") || word.starts_with("ASIA"))
            && word
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    if token_shaped {
        MASK.to_owned()
    } else {
        word.to_owned()
    }
}
