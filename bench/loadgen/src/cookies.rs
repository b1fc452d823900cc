//! A throw-away cookie store for one login, so that every login behaves like a fresh browser while all
//! logins share one connection pool. Cookies are scoped by host only (browsers ignore the port);
//! Path, Domain, Secure and SameSite are not modelled: everything goes to loopback anyway.

use std::collections::BTreeMap;

use reqwest::header::{HeaderMap, HeaderValue, SET_COOKIE};
use url::Url;

#[derive(Debug, Default)]
pub struct CookieJar {
    by_host: BTreeMap<String, BTreeMap<String, String>>,
}

impl CookieJar {
    /// Takes every `Set-Cookie` of a response to `url`.
    pub fn store(&mut self, url: &Url, headers: &HeaderMap) {
        let Some(host) = url.host_str() else { return };
        let jar = self.by_host.entry(host.to_ascii_lowercase()).or_default();
        for value in headers.get_all(SET_COOKIE) {
            if let Ok(line) = value.to_str() {
                merge_set_cookie(jar, line);
            }
        }
    }

    /// The `Cookie` header a browser would send to `url`, if it has any cookie for that host.
    pub fn header_for(&self, url: &Url) -> Option<HeaderValue> {
        let jar = self.by_host.get(&url.host_str()?.to_ascii_lowercase())?;
        if jar.is_empty() {
            return None;
        }
        let line = jar
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        HeaderValue::from_str(&line).ok()
    }
}

/// Applies one `Set-Cookie` line: sets or replaces the cookie, or deletes it when the server expires it.
pub fn merge_set_cookie(jar: &mut BTreeMap<String, String>, line: &str) {
    let mut parts = line.split(';');
    let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
        return;
    };
    let name = name.trim();
    if name.is_empty() {
        return;
    }
    let value = value.trim().trim_matches('"');
    // Max-Age wins in browsers; an Expires in 1970 is the other common way to delete a cookie, and
    // without a date parser it is the only Expires this store can judge.
    let expired = parts.any(|attr| {
        let (key, val) = attr.split_once('=').unwrap_or((attr, ""));
        let key = key.trim();
        let val = val.trim();
        (key.eq_ignore_ascii_case("max-age") && val.parse::<i64>().is_ok_and(|s| s <= 0))
            || (key.eq_ignore_ascii_case("expires") && val.contains("1970"))
    });
    if expired {
        jar.remove(name);
    } else {
        jar.insert(name.to_owned(), value.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replace_and_delete() {
        let mut jar = BTreeMap::new();
        merge_set_cookie(&mut jar, "sid=abc; Path=/; HttpOnly; SameSite=Lax");
        merge_set_cookie(&mut jar, "pending=p1=x; Max-Age=600");
        assert_eq!(jar.get("sid").map(String::as_str), Some("abc"));
        // Only the first '=' separates name from value.
        assert_eq!(jar.get("pending").map(String::as_str), Some("p1=x"));
        merge_set_cookie(&mut jar, "sid=def; Path=/");
        assert_eq!(jar.get("sid").map(String::as_str), Some("def"));
        merge_set_cookie(&mut jar, "pending=; Max-Age=0; Path=/");
        merge_set_cookie(&mut jar, "gone=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
        assert!(!jar.contains_key("pending"));
        assert!(!jar.contains_key("gone"));
        merge_set_cookie(&mut jar, "garbage");
        assert_eq!(jar.len(), 1);
    }

    #[test]
    fn scoped_by_host_not_port() {
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, HeaderValue::from_static("a=1; HttpOnly"));
        headers.append(SET_COOKIE, HeaderValue::from_static("b=2"));
        let broker = Url::parse("http://127.0.0.1:8080/authorize").unwrap();
        let mut jar = CookieJar::default();
        jar.store(&broker, &headers);
        let same_host = Url::parse("http://127.0.0.1:9000/callback/vneid").unwrap();
        assert_eq!(jar.header_for(&same_host).unwrap(), "a=1; b=2");
        assert!(jar
            .header_for(&Url::parse("http://localhost:8080/").unwrap())
            .is_none());
    }
}
