//! Reading an index's simple page for one project: PEP 691 JSON when the index offers it,
//! else PEP 503 HTML. The result is what files the project has and their sha256 (when the
//! index gives one).
//!
//! The HTML is read by a small anchor scanner rather than an HTML parser: PEP 503 pages are
//! one `<a href="...#sha256=...">filename</a>` per file, and a full HTML5 parser would be
//! the largest dependency of the crate for that.

use std::collections::HashMap;

use serde::Deserialize;

/// The `Accept` header that asks for PEP 691 JSON, and takes HTML otherwise.
pub const ACCEPT: &str = "application/vnd.pypi.simple.v1+json, \
     application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

/// One file listed on a simple page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The URL to fetch it from, as written on the page (maybe relative).
    pub url: String,
    /// Its sha256 (lowercase hex), when the page gives one.
    pub sha256: Option<String>,
}

/// The files of one project, by file name.
pub type Listing = HashMap<String, Listed>;

#[derive(Deserialize)]
struct JsonPage {
    files: Vec<JsonFile>,
}

#[derive(Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: HashMap<String, String>,
}

/// Parses a page by its content type: PEP 691 JSON, or PEP 503 HTML.
pub fn parse(content_type: &str, body: &str) -> Result<Listing, String> {
    if content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("application/vnd.pypi.simple.v1+json")
    {
        parse_json(body)
    } else {
        Ok(parse_html(body))
    }
}

fn parse_json(body: &str) -> Result<Listing, String> {
    let page: JsonPage =
        serde_json::from_str(body).map_err(|e| format!("unreadable PEP 691 page: {e}"))?;
    Ok(page
        .files
        .into_iter()
        .map(|f| {
            let sha256 = f.hashes.get("sha256").map(|h| h.to_ascii_lowercase());
            (f.filename, Listed { url: f.url, sha256 })
        })
        .collect())
}

/// Every `<a href=...>text</a>` of the page. The file name is the anchor's text (PEP 503),
/// else the last segment of its URL; the sha256 comes from a `#sha256=` fragment.
fn parse_html(body: &str) -> Listing {
    let mut out = Listing::new();
    let lower = body.to_ascii_lowercase();
    let mut at = 0;
    while let Some(start) = lower[at..].find("<a").map(|i| at + i) {
        let after = lower.as_bytes().get(start + 2).copied();
        if !matches!(after, Some(b' ' | b'\t' | b'\n' | b'\r')) {
            at = start + 2;
            continue;
        }
        let Some(tag_end) = body[start..].find('>').map(|i| start + i) else {
            break;
        };
        let Some(close) = lower[tag_end..].find("</a").map(|i| tag_end + i) else {
            break;
        };
        let tag = &body[start..tag_end];
        let text = unescape(body[tag_end + 1..close].trim());
        at = close;
        let Some(href) = attribute(tag, "href").map(|h| unescape(&h)) else {
            continue;
        };
        let (url, fragment) = match href.split_once('#') {
            Some((u, f)) => (u.to_owned(), Some(f)),
            None => (href.clone(), None),
        };
        let sha256 = fragment
            .and_then(|f| f.strip_prefix("sha256="))
            .map(|h| h.to_ascii_lowercase());
        let name = if text.is_empty() {
            let last = url.rsplit('/').next().unwrap_or_default();
            percent_decode(last)
        } else {
            text
        };
        if !name.is_empty() {
            out.insert(name, Listed { url, sha256 });
        }
    }
    out
}

/// The value of attribute `name` in a start tag (quoted with `"` or `'`, or bare).
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name).map(|i| from + i) {
        from = i + name.len();
        let before_ok = i > 0 && lower.as_bytes()[i - 1].is_ascii_whitespace();
        let rest = lower[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let value_start = tag.len() - rest.len() + 1;
        let value = tag[value_start..].trim_start();
        return Some(match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or_default().into(),
            _ => value
                .split(|c: char| c.is_ascii_whitespace() || c == '>')
                .next()
                .unwrap_or_default()
                .into(),
        });
    }
    None
}

/// Decodes the character references a simple page uses.
fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep_503_html_as_pypiserver_writes_it() {
        let page = r#"<!DOCTYPE html>
<html lang="en"><head><title>Links for demo</title></head><body>
<h1>Links for demo</h1>
<a href="../../packages/demo-1.0-py3-none-any.whl#sha256=ABCDEF01">demo-1.0-py3-none-any.whl</a><br>
<a data-requires-python="&gt;=3.8" href='../../packages/demo-1.0.tar.gz'>demo-1.0.tar.gz</a><br>
<A HREF="/files/demo%2B1-2.0.zip#md5=00">  </A>
</body></html>"#;
        let l = parse("text/html; charset=utf-8", page).unwrap();
        assert_eq!(l.len(), 3, "{l:?}");
        let whl = &l["demo-1.0-py3-none-any.whl"];
        assert_eq!(whl.sha256.as_deref(), Some("abcdef01"));
        assert_eq!(whl.url, "../../packages/demo-1.0-py3-none-any.whl");
        assert_eq!(l["demo-1.0.tar.gz"].sha256, None);
        assert_eq!(l["demo+1-2.0.zip"].url, "/files/demo%2B1-2.0.zip");
    }

    #[test]
    fn pep_691_json() {
        let page = r#"{"meta":{"api-version":"1.1"},"name":"demo","files":[
            {"filename":"demo-1.0.tar.gz","url":"https://files.example/demo-1.0.tar.gz",
             "hashes":{"sha256":"AB12"},"yanked":false},
            {"filename":"demo-1.0-py3-none-any.whl","url":"x.whl","hashes":{}}]}"#;
        let l = parse("application/vnd.pypi.simple.v1+json", page).unwrap();
        assert_eq!(l["demo-1.0.tar.gz"].sha256.as_deref(), Some("ab12"));
        assert_eq!(l["demo-1.0-py3-none-any.whl"].sha256, None);
        assert!(parse("application/vnd.pypi.simple.v1+json", "<html>").is_err());
    }

    #[test]
    fn entities_and_odd_markup_do_not_confuse_the_scanner() {
        assert_eq!(unescape("a&amp;b&#39;c&#x41;&bogus;"), "a&b'cA&bogus;");
        let l = parse(
            "text/html",
            "<abbr>x</abbr><a>no href</a><a href=bare.whl>bare.whl</a>",
        )
        .unwrap();
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(l["bare.whl"].url, "bare.whl");
        assert!(parse("text/html", "<a href=\"x\"").unwrap().is_empty());
    }
}
