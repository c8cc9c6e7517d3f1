//! scimd: a SCIM 2.0 service provider for Users and Groups, stored in one redb file.

pub mod admin;
pub mod auth;
pub mod config;
pub mod config_edit;
pub mod extensions;
pub mod http;
pub mod metrics;
pub mod scim;
pub mod server;
pub mod store;
pub mod tls;
pub mod x509;

/// `n` and `noun`, plural unless `n` is 1 ("1 user", "2 groups"), for messages to admins.
pub fn counted(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}
