//! The local admin channel: a Unix socket in the state directory, readable only by the
//! service's user (and root), so console commands work while the daemon holds the database.
//! One JSON request per line, one JSON answer per line.

mod client;
mod commands;
mod export;
mod import;
mod socket;
mod spool;

use std::path::PathBuf;

use crate::config::Config;

pub use client::{Asked, ask, ask_within, converse};
pub use commands::answer;
pub use export::{ExportFailed, export};
pub use import::{Imported, import};
pub use socket::listen;
pub use spool::Spool;

/// The most lines `users list` and `groups list` ask for.
pub const LIST_MAX: u64 = 10_000;

pub fn socket_path(cfg: &Config) -> PathBuf {
    cfg.storage.dir.join("admin.sock")
}

/// Marks the end of an import stream.
pub(crate) const END: &str = "{\"end\":true}";
