//! Redirect URI rules: registration (https, loopback http, private-use schemes for native apps)
//! and matching (exact string comparison, except the port of a native app's loopback IP redirect,
//! RFC 8252 §7.3). Matching never normalises a URL: `HTTP://`, dot segments, `127.1` or
//! full-width digits are other strings, so they do not match (RFC 9700 §4.1.3).

use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use super::uri::{check_uri, UriError};
use super::{ApplicationType, ClientMetadata};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedirectUriError {
    #[error("redirect_uri is not an absolute URI")]
    NotAbsolute,
    #[error("redirect_uri is not a valid URI: {0}")]
    Invalid(UriError),
    #[error("redirect_uri must not contain a fragment")]
    Fragment,
    #[error("redirect_uri must use https (http only on a loopback address)")]
    Insecure,
    #[error(
        "a private-use URI scheme is only allowed for native applications and must contain a dot"
    )]
    PrivateScheme,
}

/// Checks a URI offered at registration.
pub fn validate_for_registration(uri: &str, app: ApplicationType) -> Result<(), RedirectUriError> {
    if uri.contains('#') {
        return Err(RedirectUriError::Fragment);
    }
    check_uri(uri).map_err(RedirectUriError::Invalid)?;
    let url = Url::parse(uri).map_err(|_| RedirectUriError::NotAbsolute)?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        "http" => Err(RedirectUriError::Insecure),
        scheme if app == ApplicationType::Native && scheme.contains('.') => Ok(()),
        _ => Err(RedirectUriError::PrivateScheme),
    }
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Whether `requested` may be used as this client's redirect URI.
pub fn is_registered(client: &ClientMetadata, requested: &str) -> bool {
    if client.redirect_uris.iter().any(|r| r == requested) {
        return true;
    }
    if client.application_type != ApplicationType::Native {
        return false;
    }
    let Some(requested) = loopback_without_port(requested) else {
        return false;
    };
    client
        .redirect_uris
        .iter()
        .filter_map(|registered| loopback_without_port(registered))
        .any(|registered| registered == requested)
}

/// For `http://{loopback IP literal}[:{port}]{rest}`, the same string without `:{port}`;
/// `None` for anything else. The IP literal must be written as the standard library writes
/// it (`127.0.0.1`, `[::1]`): other spellings of the address are not accepted.
fn loopback_without_port(uri: &str) -> Option<String> {
    let after_scheme = uri.strip_prefix("http://")?;
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let (authority, rest) = after_scheme.split_at(authority_end);
    let (host, port) = match authority.find(']') {
        Some(close) if authority.starts_with('[') => authority.split_at(close + 1),
        _ => authority.split_at(authority.find(':').unwrap_or(authority.len())),
    };
    let canonical_loopback = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6
            .parse::<Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback() && host == format!("[{ip}]")),
        None => host
            .parse::<Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback() && host == ip.to_string()),
    };
    if !canonical_loopback {
        return None;
    }
    if !port.is_empty() {
        let digits = port.strip_prefix(':')?;
        let valid = (1..=5).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.parse::<u16>().is_ok();
        if !valid {
            return None;
        }
    }
    Some(format!("http://{host}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::{AuthMethod, GrantType};

    fn client(app: ApplicationType, uris: &[&str]) -> ClientMetadata {
        ClientMetadata {
            client_name: "t".into(),
            redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode],
            token_endpoint_auth_method: AuthMethod::None,
            application_type: app,
            scope: "openid".into(),
            audience: None,
            resources: vec![],
            introspection_audiences: vec![],
            id_token_signed_response_alg: crate::tokens::keys::Alg::RS256,
            jwks: None,
            id_token_on_refresh: false,
            disabled: false,
            legacy_source: None,
            require_pushed_authorization_requests: false,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            event_delivery_uri: None,
            event_types: vec![],
            device_class: Default::default(),
            device_slot: None,
            dpop_bound_access_tokens: false,
            roles: vec![],
        }
    }

    #[test]
    fn registration_rules() {
        use ApplicationType::*;
        assert!(validate_for_registration("https://app.example/cb", Web).is_ok());
        assert!(validate_for_registration("http://127.0.0.1:3000/cb", Web).is_ok());
        assert_eq!(
            validate_for_registration("http://app.example/cb", Web),
            Err(RedirectUriError::Insecure)
        );
        assert_eq!(
            validate_for_registration("https://a.example/cb#x", Web),
            Err(RedirectUriError::Fragment)
        );
        assert!(validate_for_registration("vn.hue.s:/oauth", Native).is_ok());
        assert!(validate_for_registration("vn.hue.s:/oauth", Web).is_err());
        assert!(validate_for_registration("javascript:alert(1)", Native).is_err());
        assert!(validate_for_registration("/relative", Web).is_err());
    }

    #[test]
    fn matching_is_exact_except_native_loopback_port() {
        let web = client(
            ApplicationType::Web,
            &["https://app.example/cb", "http://127.0.0.1:3000/cb"],
        );
        assert!(is_registered(&web, "https://app.example/cb"));
        assert!(!is_registered(&web, "https://app.example/cb/"));
        assert!(!is_registered(&web, "https://app.example/cb?x=1"));
        assert!(!is_registered(&web, "http://127.0.0.1:3001/cb"));
        let native = client(
            ApplicationType::Native,
            &["http://127.0.0.1/cb", "vn.hue.s:/oauth"],
        );
        assert!(is_registered(&native, "http://127.0.0.1:51234/cb"));
        assert!(!is_registered(&native, "http://127.0.0.1:51234/other"));
        assert!(!is_registered(&native, "http://localhost:51234/cb"));
        assert!(is_registered(&native, "vn.hue.s:/oauth"));
    }

    #[test]
    fn loopback_port_is_the_only_difference_allowed() {
        let native = client(
            ApplicationType::Native,
            &["http://127.0.0.1:9000/cb", "http://[::1]/cb"],
        );
        for ok in [
            "http://127.0.0.1:9000/cb",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:1/cb",
            "http://[::1]:65535/cb",
        ] {
            assert!(is_registered(&native, ok), "{ok}");
        }
        for bad in [
            "HTTP://127.0.0.1:9000/cb",
            "http://127.0.0.1:9000/cb/../cb",
            "http://127.1:9000/cb",
            "http://127.0.0.01:9000/cb",
            "http://\u{ff11}27.0.0.1:9000/cb",
            "http://127.0.0.1:9\u{ff10}00/cb",
            "http://127.0.0.1:/cb",
            "http://127.0.0.1:65536/cb",
            "http://127.0.0.1:9000/cb/x",
            "http://127.0.0.1:9000@x.example/cb",
            "http://[0::1]:9000/cb",
            "http://[::1]:9000/cb/",
        ] {
            assert!(!is_registered(&native, bad), "{bad}");
        }
    }
}
