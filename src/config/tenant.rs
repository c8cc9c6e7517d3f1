//! A `[tenants.NAME]` section: its tokens and its plan.

use serde::{Deserialize, Serialize};

use super::ExtensionConfig;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Requests per second this tenant may make; over it, 429 with Retry-After. Off when unset.
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Requests allowed in a burst above the rate (default: one second's worth, at least 1).
    #[serde(default)]
    pub rate_burst: Option<u32>,
    /// Where `/tenants/NAME/sso/login_redirect` sends people (the application's login page).
    #[serde(default)]
    pub login_redirect_url: Option<String>,
    /// Schema extensions this tenant's Users or Groups carry (`[[tenants.NAME.extensions]]`).
    #[serde(default)]
    pub extensions: Vec<ExtensionConfig>,
    /// Paid-plan settings; without them the plan endpoints answer 404.
    #[serde(default)]
    pub plan: Option<PlanConfig>,
    /// Attribute paths the IdP sets at creation only; its later changes to them are ignored
    /// (the application owns them afterwards), and the change feed says so.
    #[serde(default)]
    pub create_only: Vec<String>,
    /// Change-feed events kept for this tenant (oldest trimmed first). Default 100000.
    #[serde(default)]
    pub events_max_count: Option<u64>,
    /// Change-feed events older than this many days are trimmed. Default: no age limit.
    #[serde(default)]
    pub events_max_age_days: Option<u64>,
    /// Log each request of this tenant with its body, secrets withheld: to see what a new
    /// IdP sends (idp-notes §4.4). Off by default, as bodies carry people's details.
    #[serde(default)]
    pub log_bodies: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Shown in logs instead of the token.
    pub name: String,
    /// Lower-case hex SHA-256 of the token (`scimd token` prints it).
    pub sha256: String,
    /// `provision` (default): full SCIM access. `read`: GET, `.search`; every write is 403.
    #[serde(default)]
    pub scope: Scope,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Provision,
    Read,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// The plan's name, shown in answers and errors.
    pub name: String,
    /// Up to this many active provisioned users the tenant is in testing mode.
    #[serde(default = "default_threshold")]
    pub test_threshold: u64,
    /// Paid seats; unset means unlimited.
    #[serde(default)]
    pub seats: Option<u64>,
    /// What a create or reactivation beyond `seats` does: `reject` (403) or `free`.
    #[serde(default)]
    pub on_seat_limit: SeatLimitPolicy,
    /// userNames or emails of people on the paid plan before provisioning was switched on.
    #[serde(default)]
    pub existing_members: Vec<String>,
}

fn default_threshold() -> u64 {
    10
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SeatLimitPolicy {
    #[default]
    Reject,
    Free,
}
