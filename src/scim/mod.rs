//! The SCIM protocol core: schemas, filters, paths, PATCH, projection and validation.
//! Pure functions over `serde_json::Value`; nothing here does I/O.

pub mod datetime;
pub mod error;
pub mod filter;
pub mod fold;
// Fuzz oracles (they panic when an invariant breaks): for the fuzz targets and tests only.
#[cfg(any(test, fuzzing))]
pub mod invariants;
pub mod json;
pub mod patch;
pub mod path;
pub mod projection;
pub mod redact;
pub mod render;
pub mod resource;
pub mod schema;
pub mod sort;
