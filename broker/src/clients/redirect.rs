//! Redirect URI rules: registration (https, loopback http, private-use schemes for native apps)
//! and matching (exact, except the port of a native app's loopback IP redirect, RFC 8252 §7.3).

use url::{Host, Url};

use super::{ApplicationType, ClientMetadata};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedirectUriError {
    #[error("redirect_uri is not an absolute URI")]
    NotAbsolute,
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
    if uri.len() > 2000 {
        return Err(RedirectUriError::NotAbsolute);
    }
    let url = Url::parse(uri).map_err(|_| RedirectUriError::NotAbsolute)?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err(RedirectUriError::Fragment);
    }
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

fn is_loopback_ip(url: &Url) -> bool {
    matches!(url.host(), Some(Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(Host::Ipv6(ip)) if ip.is_loopback())
}

/// Whether `requested` may be used as this client's redirect URI.
pub fn is_registered(client: &ClientMetadata, requested: &str) -> bool {
    if client.redirect_uris.iter().any(|r| r == requested) {
        return true;
    }
    if client.application_type != ApplicationType::Native {
        return false;
    }
    let Ok(req) = Url::parse(requested) else {
        return false;
    };
    if req.scheme() != "http" || !is_loopback_ip(&req) {
        return false;
    }
    client.redirect_uris.iter().any(|registered| {
        let Ok(mut reg) = Url::parse(registered) else {
            return false;
        };
        if reg.scheme() != "http" || !is_loopback_ip(&reg) {
            return false;
        }
        let mut req = req.clone();
        let _ = reg.set_port(None);
        let _ = req.set_port(None);
        reg == req
    })
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
}
