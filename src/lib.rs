//! scimd: a SCIM 2.0 service provider for Users and Groups, stored in one redb file.

pub mod scim;
pub mod store;
