//! Integration tests: the real server over TLS on 127.0.0.1:0, driven by a real HTTPS
//! client. One binary for all of them (faster to build on two cores).

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

mod harness;

mod app_side;
mod auth;
mod backups;
mod cli;
mod connections;
mod crash;
mod discovery;
mod errors;
mod etags;
mod events;
mod extensions;
mod faults;
mod filters;
mod groups;
mod hostile;
mod idp_entra;
mod idp_jumpcloud;
mod idp_okta;
mod idp_onelogin;
mod isolation;
mod limits;
mod lists;
mod ops;
mod packaging;
mod patch;
mod plan;
mod process;
mod startup;
mod tls;
mod users;
mod writes;
