//! Requests no endpoint can answer, whatever they ask: a Host or request target that is
//! not a host and port, two Hosts, two Authorization headers, two Content-Types.

use http::{Request, header};

use crate::scim::error::ScimError;

/// Whether an authority's port, if it names one, is a port (http's `Authority` takes any
/// digits, and `Host: localhost:99999` would be echoed into `Location`).
fn port_fits(authority: &str) -> bool {
    match authority.rsplit_once(':') {
        Some((_, port)) if !authority.ends_with(']') => {
            port.is_empty() || port.parse::<u16>().is_ok()
        }
        _ => true,
    }
}

/// Whether a Host header names the authority given: the same host in any case, and the same
/// port once the scheme's default is filled in (`example.com` is `example.com:443` over
/// https, RFC 9110 §4.2.2).
fn same_authority(a: &http::uri::Authority, host: &[u8], scheme: Option<&str>) -> bool {
    let Ok(h) = http::uri::Authority::try_from(host) else {
        return false;
    };
    let default = match scheme {
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        _ => None,
    };
    a.host().eq_ignore_ascii_case(h.host()) && a.port_u16().or(default) == h.port_u16().or(default)
}

/// Why a request is unanswerable whatever it asks, if it is (RFC 9112 §3.2, RFC 6750
/// §3.1): a Host header that is not a host and port (it becomes `meta.location` and
/// `Location` when `public_url` is unset, so `evil.example/phish?` would be echoed to
/// clients), an HTTP/1.1 request without one, or several Authorization headers (which one
/// is meant?).
pub(super) fn why<B>(req: &Request<B>) -> Option<ScimError> {
    // An absolute-form target's authority is used before Host (RFC 9112 §3.2.2), so it is
    // held to what a Host is held to below.
    if let Some(a) = req.uri().authority() {
        if a.as_str().contains('@') {
            return Some(ScimError::new(400, None, "the request target names a user"));
        }
        if a.host().is_empty() || !port_fits(a.as_str()) {
            return Some(ScimError::new(
                400,
                None,
                "the request target's authority is not a host[:port]",
            ));
        }
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Some(ScimError::new(
            400,
            None,
            "the request carries more than one Host header",
        ));
    }
    // HTTP/2: a Host beside :authority must name the same (RFC 9113 §8.3.1).
    if let (Some(a), Some(h)) = (req.uri().authority(), host)
        && req.version() == http::Version::HTTP_2
        && !same_authority(a, h.as_bytes(), req.uri().scheme_str())
    {
        return Some(ScimError::new(
            400,
            None,
            "the Host header and :authority name different hosts",
        ));
    }
    if let Some(h) = host {
        let ok = h
            .to_str()
            .ok()
            .and_then(|h| h.parse::<http::uri::Authority>().ok())
            .is_some_and(|a| {
                !a.as_str().contains('@') && !a.host().is_empty() && port_fits(a.as_str())
            });
        if !ok {
            return Some(ScimError::new(
                400,
                None,
                "the Host header is not a host[:port]",
            ));
        }
    } else if req.version() == http::Version::HTTP_11 {
        return Some(ScimError::new(
            400,
            None,
            "an HTTP/1.1 request must carry a Host header",
        ));
    }
    if req
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Some(ScimError::new(
            400,
            None,
            "the request carries more than one Authorization header; send one",
        ));
    }
    // Which one would the body be read as? A proxy in front may have picked the other.
    let mut types = req.headers().get_all(header::CONTENT_TYPE).iter();
    if let Some(first) = types.next()
        && types.any(|t| t != first)
    {
        return Some(ScimError::new(
            400,
            None,
            "the request carries two different Content-Type headers; send one",
        ));
    }
    None
}
