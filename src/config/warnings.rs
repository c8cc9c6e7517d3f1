//! What is allowed but unwise.

use std::collections::HashMap;

use super::Config;
use super::sections::scim_base_in;

/// The longest stop grace that leaves the packaged unit's `TimeoutStopSec=60` 15 s for
/// closing the database.
const MAX_SAFE_GRACE_SECS: u64 = 45;

impl Config {
    /// What is allowed but unwise, for `check-config` and the log at start and reload.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        // A private key every user can read lets anyone on the host impersonate the server.
        // Only a warning: container secrets are mounted 0644 or 0444 in directories only
        // the service can enter.
        #[cfg(unix)]
        if let (Some(k), false) = (&self.tls.key, self.server.plain_http) {
            use std::os::unix::fs::PermissionsExt;
            if std::fs::metadata(k).is_ok_and(|m| m.permissions().mode() & 0o004 != 0) {
                w.push(format!(
                    "tls.key: {} is readable by every user; unless its directory keeps them \
                     out, run `chmod o-r {0}` (mode 0640 with the service's group, `scimd` for \
                     the package, is what it needs)",
                    k.display()
                ));
            }
        }
        // Cloud IdPs (Okta, Entra, OneLogin, JumpCloud) refuse a self-signed certificate: a
        // server others can reach with one works for curl and on-premises agents only.
        let reachable = self
            .server
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| !a.ip().is_loopback());
        if self.tls.self_signed && !self.server.plain_http && reachable {
            w.push(
                "tls.self_signed: cloud IdPs (Okta, Entra, OneLogin, JumpCloud) refuse a \
                 self-signed certificate; give tls.cert and tls.key from a CA they trust \
                 before connecting one (an on-premises agent may be given this one)"
                    .to_string(),
            );
        }
        // The packaged unit gives a stop 60 s (TimeoutStopSec) and closing the database
        // takes up to 10 s after the grace: past 45 s systemd may kill scimd mid-close,
        // and the next start repairs the file.
        if self.server.shutdown_grace_secs > MAX_SAFE_GRACE_SECS {
            w.push(format!(
                "server.shutdown_grace_secs: {} s leaves less than 15 s of the packaged \
                 unit's TimeoutStopSec=60 for closing the database, and systemd kills \
                 scimd when that runs out; keep it at {MAX_SAFE_GRACE_SECS} or less, or \
                 raise TimeoutStopSec as much (`systemctl edit scimd`)",
                self.server.shutdown_grace_secs
            ));
        }
        // idp-notes §9: Okta refuses a Base URL whose host name has an underscore.
        if let Some(host) = self
            .server
            .public_url
            .as_deref()
            .and_then(|u| u.split_once("://"))
            .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or(""))
            && host.contains('_')
        {
            w.push(format!(
                "server.public_url: the host name \"{host}\" has an underscore, which Okta \
                 refuses in a Base URL; use a name with hyphens if Okta will provision"
            ));
        }
        // A Base URL pasted here would be doubled in every Location and in the Base URLs
        // scimd prints (`…/scim/v2/scim/v2`): its SCIM part is left out (`public_base`).
        // Refusing it would stop a running service at its next start over a mistake it
        // can read past.
        if let Some(u) = &self.server.public_url
            && let Some(base) = scim_base_in(u)
        {
            w.push(format!(
                "server.public_url: {u:?} ends in the SCIM path {base}, which scimd adds \
                 itself; it uses {:?}. Give the address only (such as \
                 https://scim.corp.example:8443)",
                self.server.public_base().unwrap_or_default()
            ));
        }
        // scimd serves at the root of its address: a path is right only behind a proxy
        // that takes it off, and IdPs given it directly get 404 for every request.
        if let Some(base) = self.server.public_base()
            && let Some((_, rest)) = base.split_once("://")
            && let Some(at) = rest.find('/')
        {
            w.push(format!(
                "server.public_url: {base:?} has the path {:?}; scimd serves /scim/v2 and \
                 /tenants/NAME/scim/v2 at the root of its own address, so this works only \
                 through a reverse proxy that takes the path off. Without one, give the \
                 address only",
                &rest[at..]
            ));
        }
        for (name, plan) in self
            .tenants
            .iter()
            .filter_map(|(n, t)| t.plan.as_ref().map(|p| (n, p)))
        {
            let mut seen = HashMap::new();
            for (i, m) in plan.existing_members.iter().enumerate() {
                let first = *seen.entry(crate::scim::fold::fold(m.trim())).or_insert(i);
                if first != i {
                    w.push(format!(
                        "tenants.{name}.plan.existing_members[{i}]: \"{m}\" repeats entry \
                         [{first}] (matching ignores case); it counts once"
                    ));
                }
            }
        }
        // Kept from refusal: files with them load today. /Schemas shows them as written.
        for (name, t) in &self.tenants {
            for (e, ext) in t.extensions.iter().enumerate() {
                let mut attrs: Vec<(String, &super::AttributeConfig)> = Vec::new();
                for (i, a) in ext.attributes.iter().enumerate() {
                    let key = format!("tenants.{name}.extensions[{e}].attributes[{i}]");
                    for (j, sub) in a.sub_attributes.iter().enumerate() {
                        attrs.push((format!("{key}.sub_attributes[{j}]"), sub));
                    }
                    attrs.push((key, a));
                }
                for (key, a) in attrs {
                    if a.ty == "reference" && a.reference_types.is_empty() {
                        w.push(format!(
                            "{key}.reference_types: a reference attribute should say what it \
                             refers to (RFC 7643 §7), such as [\"external\"] or [\"uri\"]"
                        ));
                    }
                    if a.ty != "reference" && !a.reference_types.is_empty() {
                        w.push(format!(
                            "{key}.reference_types: only a reference attribute refers to \
                             anything; this one is a {}",
                            a.ty
                        ));
                    }
                }
            }
        }
        for name in self
            .tenants
            .iter()
            .filter(|(_, t)| t.log_bodies)
            .map(|(n, _)| n)
        {
            w.push(format!(
                "tenants.{name}.log_bodies: every request of this tenant is logged with its \
                 body (passwords withheld, but names and email addresses in full); set it \
                 back to false and reload once you have seen what the IdP sends"
            ));
        }
        if self.server.plain_http && (self.tls.cert.is_some() || self.tls.key.is_some()) {
            w.push(
                "tls.cert, tls.key: not used, as server.plain_http serves without TLS".to_string(),
            );
        }
        for (name, _) in self
            .tenants
            .iter()
            .filter(|(_, t)| t.rate_burst.is_some() && t.rate_limit.is_none())
        {
            w.push(format!(
                "tenants.{name}.rate_burst: has no effect without rate_limit (the tenant is \
                 not rate limited)"
            ));
        }
        for name in self.tenants.keys().filter(|n| n.contains('_')) {
            w.push(format!(
                "tenants.{name}: the name has an underscore, which Okta refuses in a Base URL \
                 (…/tenants/{name}/scim/v2); give Okta …/scim/v2, where the token selects \
                 the tenant, or use a name with hyphens"
            ));
        }
        // Where others can reach the server it is a problem (problems.rs); on a loopback
        // listener, anyone on this host who has read the example can still provision.
        for (name, t) in &self.tenants {
            for (i, tok) in t.tokens.iter().enumerate() {
                if tok
                    .sha256
                    .eq_ignore_ascii_case(super::problems::EXAMPLE_TOKEN_SHA256)
                {
                    w.push(format!(
                        "tenants.{name}.tokens[{i}].sha256: the demo token of \
                         config.example.toml, which anyone on this host may know; fine for a \
                         trial, refused once the server is reachable by others"
                    ));
                }
            }
        }
        #[cfg(test)]
        let _env = super::test_env::reading();
        w.extend(ignored_env(
            std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()),
        ));
        w
    }
}

/// Tenants come from the file only (`load` leaves them out of the environment), and a
/// variable that names no section (`SCIMD_LISTEN`) is no setting: either would otherwise do
/// nothing, unsaid. Given the variables' names only, never their values.
fn ignored_env(names: impl Iterator<Item = String>) -> Vec<String> {
    names
        .filter_map(|k| {
            let lower = k.to_ascii_lowercase();
            let rest = lower.strip_prefix("scimd_")?;
            let section = rest.split('_').next().unwrap_or("");
            if section == "tenants" {
                return Some(format!(
                    "{k}: tenants and their tokens come from the config file only; this \
                     environment variable is ignored"
                ));
            }
            // SCIMD_COMMIT is the build's, which cargo also sets when it runs scimd.
            let sets = super::load::ENV_SECTIONS.contains(&section) || section == "commit";
            (!sets).then(|| {
                format!(
                    "{k}: names no section, so it sets nothing; a setting from the \
                     environment is SCIMD_ with its section and key joined by a double \
                     underscore, as in SCIMD_SERVER__LISTEN"
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenantConfig;
    use crate::config::tests::{GOOD, toml_cfg};

    /// Tested on names given, not on the process's environment: setting a variable here
    /// would reach every other test's `warnings()` running at the same time.
    #[test]
    fn an_environment_variable_for_a_tenant_is_said_to_be_ignored() {
        let names = [
            "SCIMD_SERVER__LISTEN",
            "scimd_tenants__acme__display_name",
            "PATH",
            "SCIMD_LISTEN",
            "SCIMD_LOG__LEVEL",
            "SCIMD_COMMIT",
        ];
        let w = ignored_env(names.iter().map(|s| s.to_string()));
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(
            w[0],
            "scimd_tenants__acme__display_name: tenants and their tokens come from the config \
              file only; this environment variable is ignored"
        );
        assert!(
            w[1].starts_with("SCIMD_LISTEN: names no section")
                && w[1].contains("SCIMD_SERVER__LISTEN"),
            "{w:?}"
        );
    }

    #[test]
    fn the_demo_token_is_a_warning_on_loopback() {
        let mut c = toml_cfg(GOOD);
        assert!(!c.warnings().iter().any(|w| w.contains("demo token")));
        c.tenants.get_mut("acme").unwrap().tokens[0].sha256 =
            crate::config::problems::EXAMPLE_TOKEN_SHA256.to_uppercase();
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.starts_with("tenants.acme.tokens[0].sha256: the demo token"))
        );
    }

    #[test]
    fn an_underscore_in_the_public_host_is_a_warning() {
        let mut c = Config::default();
        c.server.public_url = Some("https://scim_corp.example:8443/".into());
        assert!(c.warnings().iter().any(|w| w.contains("underscore")));
        c.server.public_url = Some("https://scim-corp.example:8443/x_y".into());
        assert!(!c.warnings().iter().any(|w| w.contains("underscore")));
        // A tenant's own Base URL carries its name.
        c.tenants
            .insert("acme_corp".into(), TenantConfig::default());
        c.tenants
            .insert("beta-corp".into(), TenantConfig::default());
        // (The path `/x_y` is warned of for itself.)
        let w: Vec<String> = c
            .warnings()
            .into_iter()
            .filter(|w| !w.contains("works only through a reverse proxy"))
            .collect();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("tenants.acme_corp:"), "{w:?}");
    }

    #[test]
    fn reference_types_out_of_place_or_missing_are_warned_of() {
        let mut c = Config::default();
        let ext: crate::config::ExtensionConfig = serde_json::from_value(serde_json::json!({
            "urn": "urn:ietf:params:scim:schemas:extension:acme:2.0:User", "name": "A",
            "attributes": [
                {"name": "site", "type": "reference"},
                {"name": "code", "type": "string", "reference_types": ["User"]},
                {"name": "home", "type": "reference", "reference_types": ["external"]}]}))
        .unwrap();
        let mut t = TenantConfig::default();
        t.extensions.push(ext);
        c.tenants.insert("acme".into(), t);
        let w: Vec<String> = c
            .warnings()
            .into_iter()
            .filter(|w| w.contains("reference_types"))
            .collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("tenants.acme.extensions[0].attributes[0].reference_types: a reference attribute should say"));
        assert!(w[1].starts_with(
            "tenants.acme.extensions[0].attributes[1].reference_types: only a reference attribute"
        ));
    }

    #[test]
    fn a_stop_grace_systemd_would_cut_short_is_a_warning() {
        let mut c = Config::default();
        c.server.shutdown_grace_secs = 45;
        assert!(c.warnings().is_empty());
        c.server.shutdown_grace_secs = 46;
        let w = c.warnings();
        assert!(
            w.len() == 1 && w[0].starts_with("server.shutdown_grace_secs: 46 s leaves"),
            "{w:?}"
        );
    }

    #[test]
    fn a_burst_without_a_rate_is_a_warning() {
        let mut c = Config::default();
        let t = TenantConfig {
            rate_burst: Some(100),
            ..TenantConfig::default()
        };
        c.tenants.insert("acme".into(), t);
        let w = c.warnings();
        assert!(
            w.len() == 1 && w[0].starts_with("tenants.acme.rate_burst: has no effect"),
            "{w:?}"
        );
        c.tenants.get_mut("acme").unwrap().rate_limit = Some(50.0);
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn a_self_signed_certificate_others_can_reach_is_a_warning() {
        let mut c = Config::default();
        c.tls.self_signed = true;
        c.server.listen = "127.0.0.1:8443".into();
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        c.server.listen = "0.0.0.0:8443".into();
        let w = c.warnings();
        assert!(
            w.len() == 1 && w[0].starts_with("tls.self_signed: cloud IdPs"),
            "{w:?}"
        );
    }

    #[test]
    fn certificate_files_with_plain_http_are_a_warning() {
        let mut c = Config::default();
        c.tls.cert = Some("/etc/scimd/tls/fullchain.pem".into());
        assert!(c.warnings().is_empty());
        c.server.plain_http = true;
        let w = c.warnings();
        assert!(w.len() == 1 && w[0].contains("not used"), "{w:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_private_key_every_user_can_read_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, "c").unwrap();
        std::fs::write(&key, "k").unwrap();
        let mut c: Config = toml_cfg(GOOD);
        c.tls.self_signed = false;
        c.tls.cert = Some(cert);
        c.tls.key = Some(key.clone());
        let warned = |mode: u32| {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(c.problems().is_empty(), "{:?}", c.problems());
            c.warnings()
                .iter()
                .any(|w| w.starts_with("tls.key") && w.contains("chmod o-r"))
        };
        assert!(warned(0o644));
        assert!(!warned(0o640));
    }
}
