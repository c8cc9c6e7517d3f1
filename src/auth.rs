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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// Token digests of every tenant, built from the configuration.
#[derive(Debug, Default)]
pub struct Tokens {
    known: Vec<([u8; 32], Principal)>,
}

/// The token of an `Authorization: Bearer <token>` value (scheme in any case), if any.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `token`'s digest is `want`, compared in constant time.
pub fn is_token(token: &str, want: &[u8; 32]) -> bool {
    bool::from(digest(token).ct_eq(want))
}

impl Tokens {
    pub fn from_config(cfg: &Config) -> Tokens {
        let mut known = Vec::new();
        for (tenant, t) in &cfg.tenants {
            for tok in &t.tokens {
                if let Some(d) = unhex(&tok.sha256.to_ascii_lowercase()) {
                    let p = Principal {
                        tenant: tenant.clone(),
                        token_name: tok.name.clone(),
                        scope: tok.scope,
                    };
                    known.push((d, p));
                }
            }
        }
        Tokens { known }
    }

    /// The principal for an `Authorization` header value, if it holds a known Bearer token
    /// (and, with a tenant in the URL, one of that tenant's tokens). The presented token's
    /// digest is compared with every stored one in constant time, so the time taken says
    /// nothing about the stored digests.
    pub fn authenticate(
        &self,
        header: Option<&str>,
        url_tenant: Option<&str>,
    ) -> Option<Principal> {
        let d = digest(bearer(header?)?);
        let mut found = None;
        for (stored, p) in &self.known {
            if bool::from(stored.ct_eq(&d)) {
                found = Some(p);
            }
        }
        let p = found?;
        match url_tenant {
            Some(t) if t != p.tenant => None,
            _ => Some(p.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TenantConfig, TokenConfig};

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
        assert!(t.authenticate(Some("Bearer tok-b"), Some("a")).is_none());
        assert!(t.authenticate(Some("Bearer nope"), None).is_none());
        assert!(t.authenticate(Some("Basic dG9rLWE="), None).is_none());
        assert!(t.authenticate(Some("tok-a"), None).is_none());
        assert!(t.authenticate(None, None).is_none());
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
