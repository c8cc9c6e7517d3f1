//! The commands of the `scimd` binary, apart from parsing its arguments (`main.rs`). Not part
//! of the library: they print for a person at a console, or run the daemon.

pub mod access;
pub mod console;
pub mod daemon;
