//! Bearer tokens: generation, hashing, and the lookup from a presented token to its tenant.
//! Tokens are kept only as SHA-256 digests and compared in constant time; they never reach
//! a log line.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, Scope};

/// A new token: `scimd_` and 32 random bytes, base64url. The prefix lets secret scanners
/// recognise a leaked token.
pub fn generate_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "scimd_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Lower-case hex, two digits a byte (as `{:02x}` writes each).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Bytes into one allocation, not chars pushed one by one: every request id is made here.
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]);
    }
    String::from_utf8(out).unwrap_or_default()
}

pub fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    pub token_name: String,
    pub scope: Scope,
}

/// Token digests of every tenant, built from the configuration, looked up by digest: the
/// cost of a request is the same with one tenant or thousands (comparing the presented
/// digest with each stored one in turn cost every request about 50 ns a token).
#[derive(Debug, Default)]
pub struct Tokens {
    /// Shared: every request takes its principal from here.
    known: std::collections::HashMap<Stored, std::sync::Arc<Principal>>,
}

/// A stored digest, equal to another only by a constant-time comparison. The map's hasher
/// is keyed at random per process, so the bucket a presented digest falls in tells an
/// attacker nothing either: the time a lookup takes says nothing about stored digests.
#[derive(Debug)]
struct Stored([u8; 32]);

impl std::hash::Hash for Stored {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}

impl PartialEq for Stored {
    fn eq(&self, other: &Stored) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for Stored {}

/// The token of an `Authorization: Bearer <token>` value (scheme in any case), if any.
/// Only spaces and tabs are trimmed (RFC 9110's whitespace): a token with any other byte
/// beside it, such as a no-break space, is not the token (docs/hardening.md).
pub fn bearer(header: &str) -> Option<&str> {
    let ows = [' ', '\t'];
    let (scheme, token) = header.trim_matches(ows).split_once(ows)?;
    let token = token.trim_matches(ows);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `token`'s digest is `want`, compared in constant time.
pub fn is_token(token: &str, want: &[u8; 32]) -> bool {
    bool::from(digest(token).ct_eq(want))
}

impl Tokens {
    pub fn from_config(cfg: &Config) -> Tokens {
        let mut known = std::collections::HashMap::new();
        for (tenant, t) in &cfg.tenants {
            for tok in &t.tokens {
                if let Some(d) = unhex(&tok.sha256.to_ascii_lowercase()) {
                    let p = Principal {
                        tenant: tenant.clone(),
                        token_name: tok.name.clone(),
                        scope: tok.scope,
                    };
                    known.insert(Stored(d), std::sync::Arc::new(p));
                }
            }
        }
        Tokens { known }
    }

    /// The principal for an `Authorization` header value, if it holds a known Bearer token
    /// (and, with a tenant in the URL, one of that tenant's tokens).
    pub fn authenticate(
        &self,
        header: Option<&str>,
        url_tenant: Option<&str>,
    ) -> Option<std::sync::Arc<Principal>> {
        let p = self.known.get(&Stored(digest(bearer(header?)?)))?;
        match url_tenant {
            Some(t) if t != p.tenant => None,
            _ => Some(p.clone()),
        }
    }

    /// `path` with each segment that holds a token (one of the configuration's, as sent or
    /// percent-decoded, or anything shaped like one `generate_token` makes) replaced: a token
    /// pasted into a Base URL by mistake must not reach the log line that shows the path.
    /// (A configured token with a `/` in it, split across segments, is not found.)
    pub fn withhold_in_path(&self, path: &str) -> String {
        path.split('/')
            .map(|seg| {
                if self.token_segment(seg).is_some() {
                    WITHHELD_TOKEN
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// `text` (an error's detail, which may quote the request's path or an id taken from
    /// it) with every token `withhold_in_path` finds in `path` replaced, as sent and
    /// percent-decoded.
    pub fn withhold_path_tokens<'a>(&self, text: &'a str, path: &str) -> std::borrow::Cow<'a, str> {
        let mut out = std::borrow::Cow::Borrowed(text);
        for seg in path.split('/') {
            // Only a segment the text quotes needs the digest that tells a token.
            let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
            if seg.is_empty() || !(text.contains(seg) || text.contains(decoded.as_ref())) {
                continue;
            }
            if let Some(decoded) = self.token_segment(seg) {
                for form in [seg, decoded.as_str()] {
                    if out.contains(form) {
                        out = out.replace(form, WITHHELD_TOKEN).into();
                    }
                }
            }
        }
        out
    }

    /// The segment percent-decoded, when it holds a token.
    fn token_segment(&self, seg: &str) -> Option<String> {
        let known = |s: &str| !s.is_empty() && self.known.contains_key(&Stored(digest(s)));
        let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
        let shaped = decoded.contains("scimd_") && decoded.len() >= 20;
        (shaped || known(seg) || known(&decoded)).then(|| decoded.into_owned())
    }
}

/// What stands in the log for a token found where it does not belong.
const WITHHELD_TOKEN: &str = "(a token, withheld)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TenantConfig, TokenConfig};

    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f, 0xf0, 0xff]), "00ab0ff0ff");
        let d = digest("s3cret");
        assert_eq!(
            hex(&d),
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        assert_eq!(unhex(&hex(&d)), Some(d));
    }

    fn cfg(tokens: &[(&str, &str, &str)]) -> Config {
        let mut c = Config::default();
        for (tenant, name, tok) in tokens {
            c.tenants
                .entry(tenant.to_string())
                .or_insert_with(TenantConfig::default)
                .tokens
                .push(TokenConfig {
                    name: name.to_string(),
                    sha256: hex(&digest(tok)),
                    scope: Scope::Provision,
                });
        }
        c
    }

    #[test]
    fn bearer_token_maps_to_its_tenant_only() {
        let t = Tokens::from_config(&cfg(&[("a", "okta", "tok-a"), ("b", "entra", "tok-b")]));
        let p = t.authenticate(Some("Bearer tok-a"), None).unwrap();
        assert_eq!((p.tenant.as_str(), p.token_name.as_str()), ("a", "okta"));
        assert!(t.authenticate(Some("bearer tok-b"), Some("b")).is_some());
        // RFC 9110's whitespace between scheme and token: a tab too.
        assert!(t.authenticate(Some("Bearer\ttok-a"), None).is_some());
        assert!(t.authenticate(Some("Bearer \t tok-a\t"), None).is_some());
        assert!(t.authenticate(Some("Bearertok-a"), None).is_none());
        assert!(t.authenticate(Some("Bearer tok-b"), Some("a")).is_none());
        assert!(t.authenticate(Some("Bearer nope"), None).is_none());
        assert!(t.authenticate(Some("Basic dG9rLWE="), None).is_none());
        assert!(t.authenticate(Some("tok-a"), None).is_none());
        assert!(t.authenticate(None, None).is_none());
        // Hundreds of tenants: each token still finds its own, a hash in capitals too.
        let names: Vec<(String, String)> = (0..500)
            .map(|i| (format!("t{i}"), format!("tok-{i}")))
            .collect();
        let mut c = cfg(&[]);
        for (i, (tenant, tok)) in names.iter().enumerate() {
            let hash = hex(&digest(tok));
            c.tenants
                .entry(tenant.clone())
                .or_default()
                .tokens
                .push(TokenConfig {
                    name: "idp".into(),
                    sha256: if i % 2 == 0 {
                        hash
                    } else {
                        hash.to_ascii_uppercase()
                    },
                    scope: Scope::Provision,
                });
        }
        let t = Tokens::from_config(&c);
        for (tenant, tok) in &names {
            let p = t.authenticate(Some(&format!("Bearer {tok}")), Some(tenant));
            assert_eq!(p.map(|p| p.tenant.clone()), Some(tenant.clone()));
        }
        assert!(t.authenticate(Some("Bearer tok-500"), None).is_none());
    }

    #[test]
    fn tokens_in_a_path_are_withheld() {
        let t = Tokens::from_config(&cfg(&[("acme", "okta", "my-own-secret")]));
        let made = generate_token().unwrap();
        assert_eq!(
            t.withhold_in_path(&format!("/scim/v2/{made}/Users")),
            "/scim/v2/(a token, withheld)/Users"
        );
        assert_eq!(
            t.withhold_in_path("/tenants/acme/my-own-secret/scim/v2/Users"),
            "/tenants/acme/(a token, withheld)/scim/v2/Users"
        );
        // Percent-encoded, or with a prefix run into it.
        let t2 = Tokens::from_config(&cfg(&[("acme", "okta", "a+b=")]));
        assert_eq!(
            t2.withhold_in_path("/x/a%2Bb%3D/y"),
            "/x/(a token, withheld)/y"
        );
        assert_eq!(
            t.withhold_in_path(&format!("/scim/v2/Bearer%20{made}/Users")),
            "/scim/v2/(a token, withheld)/Users"
        );
        // In text that quotes the path (an error's detail), as sent and decoded.
        assert_eq!(
            t2.withhold_path_tokens("no such endpoint: /x/a%2Bb%3D/y or a+b=", "/x/a%2Bb%3D/y"),
            "no such endpoint: /x/(a token, withheld)/y or (a token, withheld)"
        );
        assert_eq!(
            t.withhold_path_tokens("no user x", "/scim/v2/Users/x"),
            "no user x"
        );
        // Anything else stays as sent: the admin needs it to find a wrong Base URL.
        assert_eq!(
            t.withhold_in_path("/tenants/acme/scim/v2/Userz/x"),
            "/tenants/acme/scim/v2/Userz/x"
        );
    }

    #[test]
    fn generated_tokens_are_long_and_distinct() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert!(a.starts_with("scimd_") && a.len() >= 48, "{a}");
        assert_ne!(a, b);
        assert_eq!(
            hex(&digest("test")),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }
}
