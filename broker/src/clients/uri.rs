//! The URI strings of a registration, checked as strings (RFC 3986), not only as what a URL
//! parser makes of them: a parser forgives a trailing NUL, a CR LF inside or `https:///cb`
//! (which it reads as `https://cb/`), and the broker would then store and echo the raw string.

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum UriError {
    #[error("too long")]
    TooLong,
    #[error(
        "a character outside RFC 3986 (spaces, controls and non-ASCII must be percent-encoded)"
    )]
    Character,
    #[error("a malformed percent-encoding")]
    Percent,
    #[error("no scheme")]
    Scheme,
    #[error("http and https URIs need a host")]
    Host,
}

const MAX_URI_LEN: usize = 2000;

/// RFC 3986 §2: unreserved, gen-delims and sub-delims; `%` is checked separately.
fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b)
}

/// Checks that `uri` is an absolute URI made of RFC 3986 characters, and that an http(s) URI
/// has a non-empty host in its authority.
pub fn check_uri(uri: &str) -> Result<(), UriError> {
    if uri.len() > MAX_URI_LEN {
        return Err(UriError::TooLong);
    }
    let bytes = uri.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Err(UriError::Percent);
            }
        } else if !is_uri_char(b) {
            return Err(UriError::Character);
        }
    }
    // RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ":".
    let (scheme, rest) = uri.split_once(':').ok_or(UriError::Scheme)?;
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok {
        return Err(UriError::Scheme);
    }
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
        let authority = rest.strip_prefix("//").ok_or(UriError::Host)?;
        let authority = &authority[..authority.find(['/', '?', '#']).unwrap_or(authority.len())];
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = match host_port.find(']') {
            Some(close) if host_port.starts_with('[') => &host_port[..=close],
            _ => host_port.split(':').next().unwrap_or_default(),
        };
        if host.is_empty() {
            return Err(UriError::Host);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_strings() {
        for good in [
            "https://app.example/cb",
            "https://app.example:8443/cb?x=1&y=%C3%A9",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb",
            "vn.hue.s:/oauth",
            "urn:example:api",
        ] {
            assert_eq!(check_uri(good), Ok(()), "{good}");
        }
        assert_eq!(
            check_uri("https://app.example/cb\0"),
            Err(UriError::Character)
        );
        assert_eq!(
            check_uri("https://app.example/c\r\nb"),
            Err(UriError::Character)
        );
        assert_eq!(
            check_uri("https://app.example/a b"),
            Err(UriError::Character)
        );
        assert_eq!(check_uri("https://app.example/é"), Err(UriError::Character));
        assert_eq!(check_uri("https://app.example/%zz"), Err(UriError::Percent));
        assert_eq!(check_uri("https://app.example/%4"), Err(UriError::Percent));
        assert_eq!(check_uri("https:///cb"), Err(UriError::Host));
        assert_eq!(check_uri("https:cb"), Err(UriError::Host));
        assert_eq!(check_uri("https://:443/cb"), Err(UriError::Host));
        assert_eq!(check_uri("https://user@/cb"), Err(UriError::Host));
        assert_eq!(check_uri("/relative"), Err(UriError::Scheme));
        assert_eq!(check_uri("1http://x"), Err(UriError::Scheme));
        assert_eq!(
            check_uri(&format!("https://a.example/{}", "x".repeat(2000))),
            Err(UriError::TooLong)
        );
    }
}
