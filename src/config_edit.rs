//! Editing the configuration file in place for `scimd tenant add` and `scimd token --tenant`:
//! the admin's comments and layout stay as they were (toml_edit), the result is validated
//! before it replaces the file, and the replacement is atomic.

use std::path::Path;

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, value};

use crate::auth::{digest, generate_token, hex};
use crate::config::{Config, Scope, valid_tenant_name};

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is not valid TOML: {1}")]
    Parse(String, toml_edit::TomlError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write {0}: {1}")]
    Write(String, std::io::Error),
    #[error("cannot make a token: {0}")]
    Random(String),
}

fn token_entry(name: &str, hash: &str, scope: Scope) -> InlineTable {
    let mut t = InlineTable::new();
    t.insert("name", name.into());
    t.insert("sha256", hash.into());
    if scope == Scope::Read {
        t.insert("scope", "read".into());
    }
    t
}

fn load(path: &Path) -> Result<DocumentMut, EditError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| EditError::Read(p.clone(), e))?;
    text.parse::<DocumentMut>()
        .map_err(|e| EditError::Parse(p, e))
}

/// Write `doc` next to `path`, check it loads as a valid configuration, then rename it over.
fn save(path: &Path, doc: &DocumentMut) -> Result<(), EditError> {
    let p = path.display().to_string();
    let tmp = path.with_extension("toml.new");
    let meta = std::fs::metadata(path).ok();
    std::fs::write(&tmp, doc.to_string()).map_err(|e| EditError::Write(p.clone(), e))?;
    // The replacement keeps the original's mode and owner (root:scimd 0640 when packaged).
    if let Some(m) = meta {
        let _ = std::fs::set_permissions(&tmp, m.permissions());
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let _ = std::os::unix::fs::chown(&tmp, Some(m.uid()), Some(m.gid()));
        }
    }
    // Only problems in the tenants are ours to refuse: a certificate that is not in place
    // yet must not stop an admin from adding the first tenant.
    if let Err(mut e) = Config::load(&tmp) {
        e.problems
            .retain(|p| p.starts_with("tenants") || !p.contains(": "));
        if !e.problems.is_empty() {
            let _ = std::fs::remove_file(&tmp);
            return Err(EditError::Invalid(format!(
                "the edited file would not be valid, nothing was changed:\n{e}"
            )));
        }
    }
    std::fs::rename(&tmp, path).map_err(|e| EditError::Write(p, e))
}

fn new_token() -> Result<(String, String), EditError> {
    let tok = generate_token().map_err(|e| EditError::Random(e.to_string()))?;
    let hash = hex(&digest(&tok));
    Ok((tok, hash))
}

/// Add tenant `name` with one `provision` token named `token_name`; returns the token.
pub fn add_tenant(path: &Path, name: &str, token_name: &str) -> Result<String, EditError> {
    if !valid_tenant_name(name) {
        return Err(EditError::Invalid(format!(
            "\"{name}\" is not a valid tenant name: use a-z, 0-9, '-' and '_' (1 to 64 characters)"
        )));
    }
    let mut doc = load(path)?;
    let tenants = doc
        .entry("tenants")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| EditError::Invalid("\"tenants\" in the file is not a table".into()))?;
    if tenants.contains_key(name) {
        return Err(EditError::Invalid(format!(
            "tenant \"{name}\" already exists"
        )));
    }
    let (tok, hash) = new_token()?;
    let mut t = Table::new();
    let mut arr = Array::new();
    arr.push(token_entry(token_name, &hash, Scope::Provision));
    t.insert("tokens", value(arr));
    tenants.insert(name, Item::Table(t));
    save(path, &doc)?;
    Ok(tok)
}

/// Add a token to an existing tenant (rotation: add, switch the IdP, then remove the old).
pub fn add_token(
    path: &Path,
    tenant: &str,
    token_name: &str,
    scope: Scope,
) -> Result<String, EditError> {
    let mut doc = load(path)?;
    let t = doc
        .get_mut("tenants")
        .and_then(|t| t.get_mut(tenant))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| {
            EditError::Invalid(format!("no tenant \"{tenant}\" in {}", path.display()))
        })?;
    let (tok, hash) = new_token()?;
    let entry = token_entry(token_name, &hash, scope);
    match t.get_mut("tokens") {
        Some(item) => {
            if let Some(arr) = item.as_array_mut() {
                arr.push(entry);
            } else if let Some(aot) = item.as_array_of_tables_mut() {
                aot.push(entry.into_table());
            } else {
                return Err(EditError::Invalid(format!(
                    "tenants.{tenant}.tokens is not a list"
                )));
            }
        }
        None => {
            let mut arr = Array::new();
            arr.push(entry);
            t.insert("tokens", value(arr));
        }
    }
    save(path, &doc)?;
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_a_tenant_and_a_token_keeping_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scimd.toml");
        let original =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
                .unwrap();
        std::fs::write(&path, &original).unwrap();
        let tok = add_tenant(&path, "acme", "okta").unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(
            after.starts_with(&original[..200]),
            "comments and layout kept"
        );
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.tenants["acme"].tokens[0].sha256, hex(&digest(&tok)));
        let tok2 = add_token(&path, "acme", "app", Scope::Read).unwrap();
        let cfg = Config::load(&path).unwrap();
        let t = &cfg.tenants["acme"].tokens[1];
        assert_eq!(
            (t.name.as_str(), t.scope, t.sha256.clone()),
            ("app", Scope::Read, hex(&digest(&tok2)))
        );
        assert!(
            add_tenant(&path, "acme", "x")
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
        assert!(add_tenant(&path, "Bad Name", "x").is_err());
        assert!(add_token(&path, "nosuch", "x", Scope::Provision).is_err());
        // A duplicate token name would make the file invalid: refused, file unchanged.
        let before = std::fs::read_to_string(&path).unwrap();
        assert!(
            add_token(&path, "acme", "app", Scope::Read)
                .unwrap_err()
                .to_string()
                .contains("used twice")
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    #[test]
    fn the_packaged_config_takes_a_first_tenant_before_certificates_exist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scimd.toml");
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/scimd.toml"),
            &path,
        )
        .unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("tls.cert: cannot read") && err.contains("no tenant configured"),
            "{err}"
        );
        add_tenant(&path, "acme", "okta").unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(
            err.problems.iter().all(|p| p.starts_with("tls.")),
            "{:?}",
            err.problems
        );
    }
}
