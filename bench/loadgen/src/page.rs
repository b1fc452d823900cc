//! Reading what the broker and the mock VNeID answer during a login: redirect targets, the login page's
//! VNeID link, and the final redirect back to the relying party.

use url::Url;

/// The id of the anchor on the broker's login page that starts the VNeID login.
const LOGIN_LINK_ID: &str = "vneid-login";

/// Resolves a `Location` header against the URL that answered with it (it may be relative).
pub fn redirect_target(base: &Url, location: &str) -> Result<Url, url::ParseError> {
    base.join(location.trim())
}

/// The unescaped `href` of `<a id="vneid-login" href="…">`, attributes in any order and either quote.
pub fn find_login_href(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(rel) = lower[from..].find("<a") {
        let start = from + rel;
        let end = start + lower[start..].find('>')?;
        let tag = &html[start..end];
        from = end;
        if attribute(tag, "id").as_deref() == Some(LOGIN_LINK_ID) {
            return attribute(tag, "href");
        }
    }
    None
}

/// The value of attribute `name` inside one start tag, HTML-unescaped.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut from = 0;
    while let Some(rel) = lower[from..].find(name) {
        let at = from + rel;
        from = at + name.len();
        // Must be a whole attribute name: preceded by whitespace, followed by optional spaces and '='.
        if at == 0 || !bytes[at - 1].is_ascii_whitespace() {
            continue;
        }
        let rest = lower[from..].trim_start();
        let Some(after_eq) = rest.strip_prefix('=') else {
            continue;
        };
        let value_at = tag.len() - after_eq.trim_start().len();
        let value = &tag[value_at..];
        let raw = match value.chars().next()? {
            q @ ('"' | '\'') => value[1..].split(q).next()?,
            _ => value.split(|c: char| c.is_ascii_whitespace()).next()?,
        };
        return Some(unescape_html(raw));
    }
    None
}

/// Undoes the entity escaping a template engine applies to an attribute value.
pub fn unescape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').and_then(|semi| {
            let entity = &rest[1..semi];
            let ch = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                    .and_then(char::from_u32),
            };
            ch.map(|c| (c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
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

/// Whether a redirect target is the relying party's redirect URI (so the login is over).
pub fn is_redirect_uri(target: &Url, redirect_uri: &Url) -> bool {
    target.scheme() == redirect_uri.scheme()
        && target.host_str() == redirect_uri.host_str()
        && target.port_or_known_default() == redirect_uri.port_or_known_default()
        && target.path() == redirect_uri.path()
}

/// Reads the authorization code from the final redirect, checking `state` and, when present, `iss`.
pub fn parse_callback(target: &Url, state: &str, issuer: &str) -> Result<String, &'static str> {
    let (mut code, mut got_state, mut iss, mut error) = (None, None, None, None);
    for (k, v) in target.query_pairs() {
        match k.as_ref() {
            "code" => code = Some(v.into_owned()),
            "state" => got_state = Some(v.into_owned()),
            "iss" => iss = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            _ => {}
        }
    }
    if error.is_some() {
        return Err("error redirect to the client");
    }
    if got_state.as_deref() != Some(state) {
        return Err("state mismatch on return");
    }
    if iss.is_some_and(|iss| iss.trim_end_matches('/') != issuer.trim_end_matches('/')) {
        return Err("iss mismatch on return");
    }
    code.filter(|c| !c.is_empty()).ok_or("no code on return")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_href_with_escaped_ampersands() {
        let html = r#"<html><body>
            <a href="/help">Trợ giúp</a>
            <A class="btn" ID="vneid-login"
               href="http://127.0.0.1:8081/authorize?client_id=b&amp;state=x%2By&amp;login_hint=C01&#38;a=&#x3D;">
               Đăng nhập bằng VNeID</A>"#;
        assert_eq!(
            find_login_href(html).as_deref(),
            Some("http://127.0.0.1:8081/authorize?client_id=b&state=x%2By&login_hint=C01&a==")
        );
        let single = "<a href='/start?x=1&amp;y=2' id='vneid-login'>go</a>";
        assert_eq!(find_login_href(single).as_deref(), Some("/start?x=1&y=2"));
        let unquoted = "<a id=vneid-login href=/start?x=1&amp;y=2>go</a>";
        assert_eq!(find_login_href(unquoted).as_deref(), Some("/start?x=1&y=2"));
        assert_eq!(
            find_login_href(r#"<a data-id="vneid-login" href="/no">"#),
            None
        );
        assert_eq!(find_login_href("<p>no link</p>"), None);
    }

    #[test]
    fn unescape_leaves_unknown_entities() {
        assert_eq!(unescape_html("a&amp;b&unknown;c&"), "a&b&unknown;c&");
        assert_eq!(unescape_html("&lt;&quot;&#39;&gt;"), "<\"'>");
    }

    #[test]
    fn relative_and_absolute_locations() {
        let base = Url::parse("http://127.0.0.1:8080/authorize?x=1").unwrap();
        assert_eq!(
            redirect_target(&base, "/login?a=b").unwrap().as_str(),
            "http://127.0.0.1:8080/login?a=b"
        );
        // The upstream code may hold a raw '+': it must reach the broker unchanged.
        let cb = "http://127.0.0.1:8080/callback/vneid?code=ab+c/d%3D&state=s";
        assert_eq!(redirect_target(&base, cb).unwrap().as_str(), cb);
    }

    #[test]
    fn callback_code_state_and_iss() {
        let redirect = Url::parse("http://127.0.0.1:9/cb").unwrap();
        let issuer = "http://127.0.0.1:8080";
        let ok = Url::parse(
            "http://127.0.0.1:9/cb?code=c0de&state=st&iss=http%3A%2F%2F127.0.0.1%3A8080",
        )
        .unwrap();
        assert!(is_redirect_uri(&ok, &redirect));
        assert!(!is_redirect_uri(
            &Url::parse("http://127.0.0.1:8080/cb").unwrap(),
            &redirect
        ));
        assert_eq!(parse_callback(&ok, "st", issuer), Ok("c0de".to_owned()));
        assert_eq!(
            parse_callback(&ok, "other", issuer),
            Err("state mismatch on return")
        );
        assert_eq!(
            parse_callback(&ok, "st", "http://127.0.0.1:8081"),
            Err("iss mismatch on return")
        );
        let no_iss = Url::parse("http://127.0.0.1:9/cb?state=st&code=x").unwrap();
        assert_eq!(parse_callback(&no_iss, "st", issuer), Ok("x".to_owned()));
        let err = Url::parse("http://127.0.0.1:9/cb?error=access_denied&state=st").unwrap();
        assert!(parse_callback(&err, "st", issuer).is_err());
    }
}
