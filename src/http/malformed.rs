//! Requests no endpoint can answer, whatever they ask: a Host or request target that is
//! not a host and port, two Hosts, two Authorization headers, two Content-Types.

use http::{Request, header};

use crate::scim::error::ScimError;

/// Whether `v` is `host[:port]` (RFC 3986 §3.2.2, §3.2.3): a bracketed IP literal, or a name
/// of unreserved characters, sub-delims and %-escapes; a port of digits that fits in 16 bits
/// (http's `Authority` takes any digits, and `Host: localhost:99999` would be echoed into
/// `Location`).
/// Checked here byte by byte rather than by http's `Authority`, which copies the header to
/// parse it (most of this check's cost, on every request).
fn is_host_port(v: &[u8]) -> bool {
    let (host_ok, port) = match v.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let literal = &rest[..end];
            let ok = !literal.is_empty()
                && literal
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            match &rest[end + 1..] {
                [] => (ok, None),
                [b':', port @ ..] => (ok, Some(port)),
                _ => return false,
            }
        }
        None => {
            let (name, port) = match v.iter().position(|&b| b == b':') {
                Some(i) => (&v[..i], Some(&v[i + 1..])),
                None => (v, None),
            };
            (!name.is_empty() && is_reg_name(name), port)
        }
    };
    host_ok && port.is_none_or(is_port)
}

/// Digits only (`u16::from_str` would take a `+`), none or up to 65535.
fn is_port(p: &[u8]) -> bool {
    p.iter()
        .try_fold(0u32, |n, &b| {
            b.is_ascii_digit()
                .then(|| (n * 10 + u32::from(b - b'0')).min(65_536))
        })
        .is_some_and(|n| n <= 65_535)
}

/// RFC 3986's reg-name: unreserved characters, sub-delims and %-escapes of two hex digits.
fn is_reg_name(name: &[u8]) -> bool {
    // A table, as every request's Host passes here.
    const PLAIN: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            t[b] = c.is_ascii_alphanumeric();
            b += 1;
        }
        let others = b"-._~!$&'()*+,;=";
        let mut i = 0;
        while i < others.len() {
            t[others[i] as usize] = true;
            i += 1;
        }
        t
    };
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'%' {
            if !name
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else if PLAIN[usize::from(name[i])] {
            i += 1;
        } else {
            return false;
        }
    }
    true
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
        if !is_host_port(a.as_str().as_bytes()) {
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
        if !is_host_port(h.as_bytes()) {
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

#[cfg(test)]
mod tests {
    use super::is_host_port;

    #[test]
    fn a_host_is_a_name_or_an_ip_literal_with_a_port_that_fits() {
        for ok in [
            "localhost",
            "localhost:8443",
            "localhost:",
            "scim.corp.example",
            "SCIM.Corp.Example:443",
            "10.0.0.1:65535",
            "localhost:000443",
            "[::1]",
            "[::1]:8443",
            "[2001:db8::7]:1",
            "a%2Db",
            "under_score~tilde",
        ] {
            assert!(is_host_port(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ":8443",
            "localhost:99999",
            "localhost:-1",
            "localhost:8a",
            "localhost:+1",
            "localhost:1:2",
            "user@evil.example",
            "evil.example:443/phish?",
            "evil.example/phish",
            "a b",
            "a\"b",
            "a%2",
            "a%zz",
            "[]",
            "[::1",
            "[::1]x",
            "[::1]:99999",
            "[fe80::1%eth0]",
            "h\u{e9}te",
        ] {
            assert!(!is_host_port(bad.as_bytes()), "{bad}");
        }
    }
}
