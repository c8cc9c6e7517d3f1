//! What a reload replaces: the configuration, tokens, plans and each tenant's resource types,
//! read by every request as one snapshot.

use std::sync::Arc;

use crate::auth::Tokens;
use crate::config::Config;
use crate::scim::schema::{Kind, Rt};
use crate::store::plan::{PlanRules, SeatPolicy};

/// What a reload may replace: tenants, tokens and limits.
pub struct Runtime {
    pub config: Config,
    pub tokens: Tokens,
    pub plans: std::collections::HashMap<String, Arc<PlanRules>>,
    /// Each tenant's User and Group types with its schema extensions.
    pub types: std::collections::HashMap<String, (Rt, Rt)>,
    pub create_only: std::collections::HashMap<String, Arc<Vec<String>>>,
}

impl Runtime {
    pub fn new(config: Config) -> Runtime {
        let plans = config
            .tenants
            .iter()
            .filter_map(|(name, t)| {
                t.plan
                    .as_ref()
                    .map(|p| (name.clone(), Arc::new(plan_rules(p))))
            })
            .collect();
        let create_only = config
            .tenants
            .iter()
            .map(|(name, t)| (name.clone(), Arc::new(t.create_only.clone())))
            .collect();
        let types = config
            .tenants
            .iter()
            .map(|(name, t)| {
                let user = crate::extensions::resource_type(Kind::User, t);
                let group = crate::extensions::resource_type(Kind::Group, t);
                (name.clone(), (user, group))
            })
            .collect();
        Runtime {
            types,
            tokens: Tokens::from_config(&config),
            config,
            plans,
            create_only,
        }
    }

    /// A writer in `tenant` under these settings, named `token` in the change feed.
    pub fn actor(&self, tenant: &str, token: &str) -> crate::store::Actor {
        crate::store::Actor {
            tenant: tenant.to_string(),
            token: token.to_string(),
            retention: self.retention(tenant),
            plan: self.plans.get(tenant).cloned(),
            create_only: self.create_only.get(tenant).cloned().unwrap_or_default(),
        }
    }

    /// How many events, and how old, `tenant`'s change feed keeps.
    pub fn retention(&self, tenant: &str) -> crate::store::Retention {
        let t = self.config.tenants.get(tenant);
        let mut retention = crate::store::Retention::default();
        if let Some(n) = t.and_then(|t| t.events_max_count) {
            retention.max_count = n;
        }
        retention.max_age_secs = t.and_then(|t| t.events_max_age_days).map(|d| d * 86_400);
        retention
    }
}

impl Runtime {
    /// `kind` as `tenant` sees it (its schema extensions included).
    pub fn rt(&self, tenant: Option<&str>, kind: Kind) -> Rt {
        match tenant.and_then(|t| self.types.get(t)) {
            Some((u, _)) if kind == Kind::User => *u,
            Some((_, g)) => *g,
            None => kind.into(),
        }
    }
}

pub fn plan_rules(p: &crate::config::PlanConfig) -> PlanRules {
    // Matching ignores case, so entries differing only in case are one person (one seat;
    // check-config warns about them), shown as the file first spells it. Sorted: the plan
    // list walks them in order.
    let mut shown = std::collections::BTreeMap::new();
    for m in &p.existing_members {
        let folded = crate::scim::fold::fold(m.trim());
        if !folded.is_empty() {
            shown.entry(folded).or_insert_with(|| m.trim().to_string());
        }
    }
    PlanRules {
        name: p.name.clone(),
        test_threshold: p.test_threshold,
        seats: p.seats,
        on_seat_limit: match p.on_seat_limit {
            crate::config::SeatLimitPolicy::Reject => SeatPolicy::Reject,
            crate::config::SeatLimitPolicy::Free => SeatPolicy::Free,
        },
        existing_members: shown.keys().cloned().collect(),
        existing_shown: shown.into_iter().collect(),
    }
}
