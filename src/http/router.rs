//! URL → endpoint. Two forms: `/scim/v2/...` (tenant from the token) and
//! `/tenants/{tenant}/scim/v2/...` (tenant named, the token must belong to it).

use crate::scim::schema::Kind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The base URL itself: a query over every resource type (RFC 7644 §3.4.2; Okta looks a
    /// group up by name at `BASE?filter=displayName eq "…"`).
    Root,
    Collection(Kind),
    Resource(Kind, String),
    Search(Option<Kind>),
    ServiceProviderConfig,
    ResourceTypes,
    ResourceType(String),
    Schemas,
    Schema(String),
    Me,
    Bulk,
    /// `/tenants/{tenant}/events`: the change feed (not SCIM).
    Events,
    /// `/tenants/{tenant}/plan` and `/tenants/{tenant}/plan/members`.
    Plan,
    PlanMembers,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The tenant named in the URL, if the tenant form was used.
    pub tenant: Option<String>,
    /// The path prefix up to and including `/scim/v2`, to build `meta.location`.
    pub prefix: String,
    pub endpoint: Endpoint,
}

/// `None` when the path is not under a SCIM prefix at all.
/// `path`'s non-empty segments, each decoded once, before it is compared: `%55sers` is
/// `Users` (RFC 3986 §6.2.2.2), and a `%2F` inside a segment stays inside it.
pub(super) fn segments(path: &str) -> Vec<std::borrow::Cow<'_, str>> {
    path.split('/')
        .filter(|s| !s.is_empty())
        // Most paths hold no escape: those segments are borrowed as they are, without the
        // decoder's pass and check of each byte.
        .map(|s| match s.contains('%') {
            true => percent_encoding::percent_decode_str(s).decode_utf8_lossy(),
            false => std::borrow::Cow::Borrowed(s),
        })
        .collect()
}

pub fn route(path: &str) -> Option<Route> {
    // Most paths hold no escape and few segments: those are routed from an array on the
    // stack, without the two lists every request otherwise allocated.
    if !path.contains('%') {
        let mut plain = [""; 8];
        let mut parts = path.split('/').filter(|s| !s.is_empty());
        // `zip` asks `plain` first: a ninth segment is left in `parts`, not dropped.
        let n = plain
            .iter_mut()
            .zip(&mut parts)
            .map(|(slot, s)| *slot = s)
            .count();
        if parts.next().is_none() {
            return route_segments(&plain[..n]);
        }
    }
    let decoded = segments(path);
    let segs: Vec<&str> = decoded.iter().map(|s| s.as_ref()).collect();
    route_segments(&segs)
}

fn route_segments(segs: &[&str]) -> Option<Route> {
    let app_endpoint = match segs {
        ["tenants", t, "events"] => Some((t, Endpoint::Events)),
        ["tenants", t, "plan"] => Some((t, Endpoint::Plan)),
        ["tenants", t, "plan", "members"] => Some((t, Endpoint::PlanMembers)),
        _ => None,
    };
    if let Some((t, endpoint)) = app_endpoint {
        let t = tenant_of(t);
        return Some(Route {
            prefix: format!("/tenants/{t}"),
            tenant: Some(t),
            endpoint,
        });
    }
    // The base path in any case (an admin may type `/SCIM/v2` into the IdP); `meta.location`
    // and the other URLs scimd writes keep the documented spelling.
    let is = |s: &str, name: &str| s.eq_ignore_ascii_case(name);
    let (tenant, rest) = match segs {
        [s, v, rest @ ..] if is(s, "scim") && is(v, "v2") => (None, rest),
        [ts, t, s, v, rest @ ..] if is(ts, "tenants") && is(s, "scim") && is(v, "v2") => {
            (Some(tenant_of(t)), rest)
        }
        _ => return None,
    };
    let prefix = match &tenant {
        None => "/scim/v2".to_string(),
        Some(t) => format!("/tenants/{t}/scim/v2"),
    };
    let kind = |s: &str| {
        if s.eq_ignore_ascii_case("Users") {
            Some(Kind::User)
        } else if s.eq_ignore_ascii_case("Groups") {
            Some(Kind::Group)
        } else {
            None
        }
    };
    let endpoint = match rest {
        [] => Endpoint::Root,
        [".search"] => Endpoint::Search(None),
        [c] if kind(c).is_some() => Endpoint::Collection(kind(c).unwrap_or(Kind::User)),
        [c, ".search"] if kind(c).is_some() => Endpoint::Search(kind(c)),
        [c, id] if kind(c).is_some() => {
            Endpoint::Resource(kind(c).unwrap_or(Kind::User), id.to_string())
        }
        [s] if is(s, "ServiceProviderConfig") || is(s, "ServiceProviderConfigs") => {
            Endpoint::ServiceProviderConfig
        }
        [s] if is(s, "ResourceTypes") => Endpoint::ResourceTypes,
        [s, id] if is(s, "ResourceTypes") => Endpoint::ResourceType(id.to_string()),
        [s] if is(s, "Schemas") => Endpoint::Schemas,
        [s, id] if is(s, "Schemas") => Endpoint::Schema(id.to_string()),
        [s, ..] if is(s, "Me") => Endpoint::Me,
        [s] if is(s, "Bulk") => Endpoint::Bulk,
        _ => Endpoint::Unknown,
    };
    Some(Route {
        tenant,
        prefix,
        endpoint,
    })
}

/// The tenant a URL names. Tenant names are lower case (`valid_tenant_name`), so one typed
/// in another case into an IdP's Base URL names the same tenant.
pub(super) fn tenant_of(segment: &str) -> String {
    segment.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_url_forms_and_every_endpoint() {
        let r = route("/scim/v2/Users").unwrap();
        assert_eq!(
            (r.tenant, r.endpoint),
            (None, Endpoint::Collection(Kind::User))
        );
        // Percent-encoded names are the names; an id is decoded once, `%2F` and all.
        assert_eq!(
            route("/scim/v2/%55sers").unwrap().endpoint,
            Endpoint::Collection(Kind::User)
        );
        assert_eq!(
            route("/%73cim/v2/Users/a%2Fb").unwrap().endpoint,
            Endpoint::Resource(Kind::User, "a/b".into())
        );
        assert_eq!(
            route("/scim/v2/Groups/%2541").unwrap().endpoint,
            Endpoint::Resource(Kind::Group, "%41".into())
        );
        let r = route("/tenants/acme/scim/v2/Groups/abc/").unwrap();
        assert_eq!(r.tenant.as_deref(), Some("acme"));
        assert_eq!(r.prefix, "/tenants/acme/scim/v2");
        assert_eq!(r.endpoint, Endpoint::Resource(Kind::Group, "abc".into()));
        assert_eq!(
            route("/scim/v2/.search").unwrap().endpoint,
            Endpoint::Search(None)
        );
        assert_eq!(
            route("/scim/v2/users/.search").unwrap().endpoint,
            Endpoint::Search(Some(Kind::User))
        );
        assert_eq!(
            route("/scim/v2/Schemas/urn:x").unwrap().endpoint,
            Endpoint::Schema("urn:x".into())
        );
        assert_eq!(route("/scim/v2/Me").unwrap().endpoint, Endpoint::Me);
        assert_eq!(
            route("/scim/v2/Users/a/b").unwrap().endpoint,
            Endpoint::Unknown
        );
        assert_eq!(
            route("/scim/v2/Users/a%2Fb").unwrap().endpoint,
            Endpoint::Resource(Kind::User, "a/b".into())
        );
        assert!(route("/other").is_none());
        // The base path in any case, written back in the documented one.
        let r = route("/SCIM/V2/Users").unwrap();
        assert_eq!(
            (r.prefix.as_str(), r.endpoint),
            ("/scim/v2", Endpoint::Collection(Kind::User))
        );
        let r = route("/Tenants/ACME/Scim/v2/Groups").unwrap();
        assert_eq!(
            (r.tenant.as_deref(), r.prefix.as_str()),
            (Some("acme"), "/tenants/acme/scim/v2")
        );
        assert!(route("/scim/v3/Users").is_none());
        // As many segments as the stack holds, one more, and many more: routed alike.
        for path in [
            "/tenants/t/scim/v2/Users/a/b/c",
            "/tenants/t/scim/v2/Users/a/b/c/d",
        ] {
            let r = route(path).unwrap();
            assert_eq!(
                (r.tenant.as_deref(), r.endpoint),
                (Some("t"), Endpoint::Unknown)
            );
        }
        assert_eq!(
            route("/tenants/t/scim/v2/Me/a/b/c").unwrap().endpoint,
            Endpoint::Me
        );
        assert_eq!(
            route("/scim/v2/Users/a/b/c/d/e/f/g").unwrap().endpoint,
            Endpoint::Unknown
        );
        assert_eq!(
            route("/scim/v2/Me/a/b/c/d/e/f/g").unwrap().endpoint,
            Endpoint::Me
        );
    }
}
