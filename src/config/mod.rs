//! Configuration: a TOML file read through figment, with `SCIMD_`-prefixed environment
//! variables overriding server, TLS, storage and log keys (tenants come from the file only,
//! so there is one place an admin audits). Every problem is reported with its key path.

mod extension;
mod load;
mod problems;
mod sections;
mod tenant;
mod warnings;

pub use extension::{AttributeConfig, ExtensionConfig};
pub use problems::{EXAMPLE_TOKEN_SHA256, valid_tenant_name};
pub use sections::{
    LogConfig, ServerConfig, StorageConfig, TlsConfig, bad_log_level, log_directives,
};
pub use tenant::{PlanConfig, Scope, SeatLimitPolicy, TenantConfig, TokenConfig};

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub tenants: BTreeMap<String, TenantConfig>,
    /// SHA-256 of the file's bytes as read, to tell whether the file on disk still says
    /// what a running daemon loaded (never shown). Not a key of the file.
    #[serde(skip)]
    pub file_digest: String,
    /// The file it was read from, as an absolute path (a link followed), so that a console
    /// given another file can tell it is not the daemon's. Not a key of the file.
    #[serde(skip)]
    pub file_path: std::path::PathBuf,
}

/// Everything wrong with a configuration, one line per problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration {}:\n{}", file.display(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<String>,
    /// The configuration as read, when only the semantic checks failed.
    pub parsed: Option<Box<Config>>,
    /// What could be read with the broken lines and keys left out: enough for a command
    /// that only reads (`status`, `backup`) to find the database, never to serve.
    pub salvaged: Option<Box<Config>>,
}

/// Tests that set `SCIMD_` variables change them for the whole test process: every read of
/// the environment by the configuration waits until such a test is done, so that a test
/// running beside it does not load its settings.
#[cfg(test)]
pub(crate) mod test_env {
    use std::cell::Cell;
    use std::sync::{RwLock, RwLockReadGuard};

    static ENV: RwLock<()> = RwLock::new(());
    thread_local!(static SETTING: Cell<bool> = const { Cell::new(false) });

    /// Held while the configuration reads the environment (not by the test setting it).
    pub(crate) fn reading() -> Option<RwLockReadGuard<'static, ()>> {
        (!SETTING.get()).then(|| ENV.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// `figment::Jail::expect_with`, alone: no configuration is read elsewhere meanwhile.
    /// Taken inside the jail, after figment's own lock, as every other jail takes it; the
    /// jail puts the variables back as it ends, just after (a window of microseconds, where
    /// it was the whole test's).
    #[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
    pub(crate) fn jail(f: impl FnOnce(&mut figment::Jail) -> figment::error::Result<()>) {
        figment::Jail::expect_with(|jail| {
            let _alone = ENV.write().unwrap_or_else(|p| p.into_inner());
            SETTING.set(true);
            let done = f(jail);
            SETTING.set(false);
            done
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::providers::{Format, Serialized, Toml};
    use std::path::Path;

    pub(super) const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
[tls]
self_signed = true
[storage]
dir = "data"
[tenants.acme]
tokens = [{ name = "okta", sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }]
"#;

    pub(super) fn toml_cfg(s: &str) -> Config {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(s))
            .extract()
            .expect("valid")
    }

    #[test]
    fn example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let cfg = Config::load(&path).expect("config.example.toml must load");
        assert!(cfg.tls.self_signed);
        assert!(cfg.tenants.contains_key("demo"));
    }
}
