//! URLs: the API base (https, or http to loopback only) and `Link` header pagination.

use reqwest::header::HeaderMap;
use reqwest::Url;

use hgauto_core::error::{Error, Result};

/// The API base URL, checked: https, or http to a loopback address only (a token must
/// never cross a network in the clear).
pub(crate) fn parse_api_url(text: &str) -> Result<Url> {
    let what = || format!("GitHub API URL {:?}", hgauto_core::redact::redact_url(text));
    let mut url = Url::parse(text).map_err(|e| Error::invalid(what(), e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(
            what(),
            "must not carry credentials: give a token instead",
        ));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        other => {
            return Err(Error::invalid(
                what(),
                format!(
                    "scheme {other} is not allowed: use https (http only to a loopback address)"
                ),
            ))
        }
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// The `rel="next"` target of a `Link` header.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let is_next = pieces.any(|p| {
            let p = p.trim();
            p == "rel=\"next\"" || p == "rel=next"
        });
        (is_next && target.starts_with('<') && target.ends_with('>'))
            .then(|| target[1..target.len() - 1].to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn next_links_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(
                "<https://api.github.com/x?page=2>; rel=\"next\", <https://api.github.com/x?page=5>; rel=\"last\"",
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/x?page=2")
        );
        h.insert(
            "link",
            HeaderValue::from_static("<https://api.github.com/x?page=1>; rel=\"prev\""),
        );
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn api_urls_are_https_or_loopback() {
        assert!(parse_api_url("https://api.github.com").is_ok());
        assert!(parse_api_url("http://127.0.0.1:8080/api/v3").is_ok());
        assert!(parse_api_url("http://localhost:1").is_ok());
        let e = parse_api_url("http://github.example.com").unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
        let e = parse_api_url("https://u:secret@api.github.com").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert_eq!(
            parse_api_url("https://ghe.example.com/api/v3")
                .unwrap()
                .as_str(),
            "https://ghe.example.com/api/v3/"
        );
    }
}
