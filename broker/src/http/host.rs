//! The `Host` header (RFC 9112 §3.2): a request with a malformed one, more than one, or none
//! at all in HTTP/1.1 is answered 400 before any handler sees it.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Version};
use actix_web::middleware::Next;
use actix_web::HttpResponse;

pub async fn require_valid_host(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mut hosts = req.headers().get_all(header::HOST);
    let acceptable = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.to_str().is_ok_and(is_valid_host),
        (Some(_), Some(_)) => false,
        // HTTP/2 and later carry the authority in a pseudo-header; HTTP/1.0 may omit Host.
        (None, _) => req.version() != Version::HTTP_11,
    };
    if !acceptable {
        let response = HttpResponse::BadRequest()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({
                "error": "invalid_request",
                "error_description": "the Host header is missing or malformed"
            }));
        return Ok(req.into_response(response));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): an IP literal in brackets,
/// or a reg-name of unreserved, percent-encoded and sub-delim characters; a port of digits.
fn is_valid_host(value: &str) -> bool {
    let (host, port) = match value.rfind(']') {
        Some(close) if value.starts_with('[') => value.split_at(close + 1),
        _ => value.split_at(value.rfind(':').unwrap_or(value.len())),
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(literal) => {
            literal.parse::<std::net::Ipv6Addr>().is_ok()
                || (literal.starts_with(['v', 'V'])
                    && literal
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b)))
        }
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b))
        }
    };
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::is_valid_host;

    #[test]
    fn host_values() {
        for good in [
            "broker.example",
            "broker.example:8443",
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::1]",
            "xn--hu-bsa.example",
        ] {
            assert!(is_valid_host(good), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a\tb",
            "a/b",
            "a@b",
            "[::1",
            "[zz]",
            "host:port",
            "host:123456",
            "a:1:2",
            "é.example",
        ] {
            assert!(!is_valid_host(bad), "{bad}");
        }
    }
}
