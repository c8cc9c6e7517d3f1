//! Editing the configuration file in place for `scimd tenant add` and `scimd token --tenant`
//! / `scimd token remove`: the admin's comments and layout stay as they were (toml_edit), the
//! result is validated before it replaces the file, and the replacement is atomic. Edits
//! run one at a time (a lock on the file), so concurrent ones neither lose nor undo another's.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value, value};

use crate::auth::{digest, generate_token, hex};
use crate::config::{Config, Scope, valid_tenant_name};

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("cannot read {0}: {1}{hint}", hint = as_root(.1))]
    Read(String, std::io::Error),
    #[error("{0} is not valid TOML: {1}")]
    Parse(String, toml_edit::TomlError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot lock {0} against other edits: {1}{hint}", hint = as_root(.1))]
    Lock(String, std::io::Error),
    #[error("cannot write {0}: {1}{hint}", hint = as_root(.1))]
    Write(String, std::io::Error),
    #[error("cannot make a token: {0}")]
    Random(String),
}

/// What to do when an edit may not read or write beside the file: an edit run without sudo
/// is the usual cause (the packaged directory is root's).
fn as_root(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        " (this user may not: run the command as root, with sudo)"
    } else {
        ""
    }
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

/// Lay `tokens = [...]` out one entry per line with a trailing comma, keeping any comments
/// written between the entries.
fn one_per_line(arr: &mut Array) {
    fn comments(raw: Option<&str>) -> String {
        raw.unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with('#'))
            .map(|l| format!("\n  {l}"))
            .collect()
    }
    for v in arr.iter_mut() {
        let decor = v.decor_mut();
        let before = comments(decor.prefix().and_then(|p| p.as_str()));
        decor.set_prefix(format!("{before}\n  "));
        if !decor
            .suffix()
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .contains('#')
        {
            decor.set_suffix("");
        }
    }
    let after = comments(arr.trailing().as_str());
    arr.set_trailing(format!("{after}\n"));
    arr.set_trailing_comma(true);
}

/// The file a possibly symlinked `--config` names: edits go to it, so the link stays.
fn target(path: &Path) -> Result<PathBuf, EditError> {
    std::fs::canonicalize(path).map_err(|e| EditError::Read(path.display().to_string(), e))
}

/// An exclusive lock for edits of `real`, so that they run one at a time: without it, two
/// edits that read the same text each drop the other's change, and a removed token can come
/// back. It is a file of its own beside the config (`.NAME.lock`, owner-only), not the config
/// itself: the service's group may read the config, and a lock it could take would let the
/// service user stall, for as long as it liked, the removal of its own token.
fn lock(real: &Path) -> Result<File, EditError> {
    let mut name = std::ffi::OsString::from(".");
    name.push(real.file_name().unwrap_or_default());
    name.push(".lock");
    let path = real.with_file_name(name);
    let p = path.display().to_string();
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = o.open(&path).map_err(|e| EditError::Lock(p.clone(), e))?;
    // One someone else made, or left open to others, could be held by them.
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let m = file.metadata().map_err(|e| EditError::Lock(p.clone(), e))?;
        let me = std::fs::metadata("/proc/self").map(|s| s.uid()).ok();
        if me.is_some_and(|me| m.uid() != me) || m.permissions().mode() & 0o077 != 0 {
            return Err(EditError::Lock(
                p,
                std::io::Error::other(
                    "it belongs to another user or others may open it; remove it (edits make \
                     their own, owner-only)",
                ),
            ));
        }
    }
    file.lock().map_err(|e| EditError::Lock(p, e))?;
    Ok(file)
}

/// Run `change` on the file `path` names, holding its lock from the read to the rename.
fn edit<T>(
    path: &Path,
    change: impl FnOnce(&mut DocumentMut) -> Result<T, EditError>,
) -> Result<T, EditError> {
    let real = target(path)?;
    let _held = lock(&real)?;
    let p = real.display().to_string();
    let mut file = File::open(&real).map_err(|e| EditError::Read(p.clone(), e))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| EditError::Read(p.clone(), e))?;
    let mut doc = text
        .parse::<DocumentMut>()
        .map_err(|e| EditError::Parse(p, e))?;
    // Problems the file had before are the admin's to fix, and an edit may be how (a token
    // to replace the example's demo one): only what the edit brings refuses it.
    let before: HashSet<String> = Config::load(&real)
        .err()
        .map(|e| e.problems.iter().map(|p| unindexed(p)).collect())
        .unwrap_or_default();
    let out = change(&mut doc)?;
    // toml_edit writes new lines as `\n`: a file edited on Windows keeps its `\r\n`.
    let mut written = doc.to_string();
    if text.contains("\r\n") {
        written = written.replace("\r\n", "\n").replace('\n', "\r\n");
    }
    save(path, &real, &file, &written, &before)?;
    // Dropping `_held` releases the lock, now that the new file is in place.
    Ok(out)
}

/// Remove the temporary files killed edits left beside `real` (`<name>.<pid>.<n>.tmp`; they
/// hold the token hashes of the file as it was being edited). Only under the file's lock:
/// every edit holds it from its read to its rename, so no live edit has one then.
fn remove_leftovers(real: &Path) {
    let (Some(dir), Some(name)) = (real.parent(), real.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let ours = |file: &str| {
        let Some(rest) = file
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|r| r.strip_suffix(".tmp"))
        else {
            return false;
        };
        let mut parts = rest.split('.');
        let digits = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
    };
    for e in entries.filter_map(Result::ok) {
        if e.file_name().to_str().is_some_and(ours) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A temporary file of our own beside `real`: the process id keeps other editors' apart, and
/// a number skips one that could not be removed.
fn create_temp(real: &Path) -> Result<(PathBuf, File), EditError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    // Readable by nobody else until it has the original's mode.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let pid = std::process::id();
    let mut n = 0;
    loop {
        let mut tmp = real.as_os_str().to_owned();
        tmp.push(format!(".{pid}.{n}.tmp"));
        let tmp = PathBuf::from(tmp);
        match opts.open(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(EditError::Write(tmp.display().to_string(), e)),
            Ok(f) => return Ok((tmp, f)),
        }
    }
}

/// Write `text` next to `real` (the locked `file`), check it loads as a valid
/// configuration, then rename it over `real` (a symlink at `path` keeps pointing at it).
fn save(
    path: &Path,
    real: &Path,
    file: &File,
    text: &str,
    before: &HashSet<String>,
) -> Result<(), EditError> {
    let p = path.display().to_string();
    remove_leftovers(real);
    let (tmp, mut f) = create_temp(real)?;
    let meta = file.metadata().ok();
    // An error writing the copy names the copy: that is the file the disk refused.
    let copy = |e| EditError::Write(tmp.display().to_string(), e);
    let replaced = (|| {
        f.write_all(text.as_bytes()).map_err(copy)?;
        // The replacement keeps the original's mode and owner (root:scimd 0640 when packaged).
        if let Some(m) = meta {
            let _ = f.set_permissions(m.permissions());
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
            }
        }
        f.sync_all().map_err(copy)?;
        // Only problems in the tenants are ours to refuse: a certificate that is not in place
        // yet must not stop an admin from adding the first tenant.
        if let Err(mut e) = Config::load(&tmp) {
            e.problems.retain(|p| {
                (p.starts_with("tenants") || !p.contains(": ")) && !before.contains(&unindexed(p))
            });
            if !e.problems.is_empty() {
                // The admin knows the file by the name they gave, not by our temporary copy.
                e.file = path.to_path_buf();
                return Err(EditError::Invalid(format!(
                    "the edited file would not be valid, nothing was changed:\n{e}"
                )));
            }
        }
        std::fs::rename(&tmp, real).map_err(|e| EditError::Write(p, e))
    })();
    if replaced.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return replaced;
    }
    // The rename is the edit: it is done and reported as such. Syncing the directory only
    // makes it survive a power cut, so a filesystem that refuses it does not undo it.
    if let Some(dir) = real.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// A problem without its array indexes (`tokens[1]` as `tokens[]`): taking out a token
/// renumbers the ones after it without changing their problems.
fn unindexed(problem: &str) -> String {
    let mut out = String::with_capacity(problem.len());
    let mut in_index = false;
    for c in problem.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if in_index && c.is_ascii_digit() => continue,
            _ => {}
        }
        out.push(c);
    }
    out
}

fn new_token() -> Result<(String, String), EditError> {
    let tok = generate_token().map_err(|e| EditError::Random(e.to_string()))?;
    let hash = hex(&digest(&tok));
    Ok((tok, hash))
}

/// The highest position of any table in the file, so a new one can be placed after it.
fn last_position(t: &Table) -> usize {
    let mut last = t.position().unwrap_or(0);
    for (_, item) in t.iter() {
        match item {
            Item::Table(sub) => last = last.max(last_position(sub)),
            Item::ArrayOfTables(a) => {
                for sub in a.iter() {
                    last = last.max(last_position(sub));
                }
            }
            _ => {}
        }
    }
    last
}

/// Add tenant `name` (shown as `display_name`, if given) with one `provision` token named
/// `token_name`; returns the token.
///
/// The table goes at the very end of the file: comments after the last tenant are usually
/// its commented-out options, and must stay with it.
pub fn add_tenant(
    path: &Path,
    name: &str,
    token_name: &str,
    display_name: Option<&str>,
) -> Result<String, EditError> {
    if !valid_tenant_name(name) {
        return Err(EditError::Invalid(format!(
            "\"{name}\" is not a valid tenant name: use a-z, 0-9, '-' and '_' (1 to 64 characters)"
        )));
    }
    check_token_name(token_name)?;
    if let Some(d) = display_name {
        check_display_name(d)?;
    }
    edit(path, |doc| tenant_into(doc, name, token_name, display_name))
}

/// A display name is shown in `scimd status` and the log: one line of text.
fn check_display_name(d: &str) -> Result<(), EditError> {
    let len = d.trim().chars().count();
    if (1..=200).contains(&len) && !d.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(EditError::Invalid(format!(
            "{d:?} is not a valid display name: one line of 1 to 200 characters"
        )))
    }
}

/// A token's name goes into log lines, metrics labels and the change feed as it is: one
/// word, so that it reads and parses the same in all of them. Names already in a file stay
/// valid; only new ones are held to this.
fn check_token_name(name: &str) -> Result<(), EditError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(EditError::Invalid(format!(
            "\"{name}\" is not a valid token name: use letters, digits, '-', '_' and '.' (1 to 64 characters)"
        )))
    }
}

fn tenant_into(
    doc: &mut DocumentMut,
    name: &str,
    token_name: &str,
    display_name: Option<&str>,
) -> Result<String, EditError> {
    let position = last_position(doc.as_table()) + 1;
    // Whatever followed the last table (comments, blank lines) goes above the new one.
    let before = doc
        .trailing()
        .as_str()
        .unwrap_or_default()
        .trim_end()
        .to_string();
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
            "tenant \"{name}\" already exists; to give it another token, run \
             `scimd token --tenant {name} --name NAME`"
        )));
    }
    let (tok, hash) = new_token()?;
    let mut arr = Array::new();
    arr.push(token_entry(token_name, &hash, Scope::Provision));
    one_per_line(&mut arr);
    let mut t = Table::new();
    if let Some(d) = display_name {
        t.insert("display_name", value(d.trim()));
    }
    t.insert("tokens", value(arr));
    t.set_position(position);
    t.decor_mut().set_prefix(if before.is_empty() {
        "\n".to_string()
    } else {
        format!("{before}\n\n")
    });
    tenants.insert(name, Item::Table(t));
    doc.set_trailing("");
    Ok(tok)
}

/// Tenant `tenant`'s table, for editing.
fn tenant_table<'a>(
    doc: &'a mut DocumentMut,
    path: &Path,
    tenant: &str,
) -> Result<&'a mut dyn toml_edit::TableLike, EditError> {
    doc.get_mut("tenants")
        .and_then(|t| t.get_mut(tenant))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| EditError::Invalid(format!("no tenant \"{tenant}\" in {}", path.display())))
}

/// Take tenant `name`'s table, and the tables under it (`plan`, `extensions`), out of the
/// file. Its data stays in the database until `scimd tenant purge`.
pub fn remove_tenant(path: &Path, name: &str) -> Result<(), EditError> {
    edit(path, |doc| {
        let names = |doc: &DocumentMut| -> Vec<String> {
            doc.get("tenants")
                .and_then(Item::as_table_like)
                .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
                .unwrap_or_default()
        };
        let others: Vec<String> = names(doc).into_iter().filter(|n| n != name).collect();
        let tenants = doc.get_mut("tenants").and_then(Item::as_table_like_mut);
        let removed = match tenants.and_then(|t| t.remove(name)) {
            Some(_) if others.is_empty() => {
                return Err(EditError::Invalid(format!(
                    "\"{name}\" is the only tenant in {}, and scimd serves at least one: add \
                     the one to serve instead first (`scimd tenant add NAME`)",
                    path.display()
                )));
            }
            Some(Item::Table(t)) => t,
            Some(_) => return Ok(()),
            None => {
                return Err(EditError::Invalid(format!(
                    "no tenant \"{name}\" in {} (its tenants: {})",
                    path.display(),
                    a_few(&others)
                )));
            }
        };
        keep_comments(doc, &removed);
        Ok(())
    })
}

/// Up to ten of `names`, and how many more: a typo's message among hundreds of tenants
/// stays one readable line.
pub fn a_few(names: &[impl AsRef<str>]) -> String {
    const SHOWN: usize = 10;
    let shown: Vec<&str> = names.iter().take(SHOWN).map(AsRef::as_ref).collect();
    match names.len() {
        0 => "none".to_string(),
        n if n > SHOWN => format!("{}, and {} more", shown.join(", "), n - SHOWN),
        _ => shown.join(", "),
    }
}

/// The comment lines above a removed table and its sub-tables stay where they were, above
/// the table that now follows (or at the end): `tenant add` put the file's closing comments
/// (commented-out options) above the table it appended, and an admin's notes are theirs.
/// (Comments between the removed table's own keys go with it.)
fn keep_comments(doc: &mut DocumentMut, removed: &Table) {
    fn comments(t: &Table, out: &mut String) {
        let prefix = t.decor().prefix().and_then(|p| p.as_str()).unwrap_or("");
        if prefix.lines().any(|l| l.trim_start().starts_with('#')) {
            out.push_str(prefix.trim_matches('\n'));
            out.push('\n');
        }
        for (_, item) in t.iter() {
            match item {
                Item::Table(sub) => comments(sub, out),
                Item::ArrayOfTables(a) => a.iter().for_each(|sub| comments(sub, out)),
                _ => {}
            }
        }
    }
    fn each_table(t: &mut Table, f: &mut dyn FnMut(&mut Table)) {
        f(t);
        for (_, item) in t.iter_mut() {
            match item {
                Item::Table(sub) => each_table(sub, f),
                Item::ArrayOfTables(a) => a.iter_mut().for_each(|sub| each_table(sub, f)),
                _ => {}
            }
        }
    }
    // Where the removed tables began: a tenant written as dotted keys has no header of its
    // own, but its sub-tables (`[tenants.x.plan]`) do.
    fn first(t: &Table) -> Option<usize> {
        let subs = t.iter().filter_map(|(_, item)| match item {
            Item::Table(sub) => first(sub),
            Item::ArrayOfTables(a) => a.iter().filter_map(first).min(),
            _ => None,
        });
        t.position().into_iter().chain(subs).min()
    }
    let Some(at) = first(removed) else {
        return;
    };
    let mut kept = String::new();
    comments(removed, &mut kept);
    if kept.is_empty() {
        return;
    }
    let mut next = None;
    each_table(doc.as_table_mut(), &mut |t| {
        if let Some(p) = t.position().filter(|&p| p > at)
            && next.is_none_or(|n| p < n)
        {
            next = Some(p);
        }
    });
    match next {
        Some(n) => each_table(doc.as_table_mut(), &mut |t| {
            if t.position() == Some(n) {
                let old = t.decor().prefix().and_then(|p| p.as_str()).unwrap_or("");
                // A blank line after them: they were about the table removed, not this one.
                let prefix = format!("\n{kept}\n{}", old.trim_start_matches('\n'));
                t.decor_mut().set_prefix(prefix);
            }
        }),
        None => {
            let old = doc.trailing().as_str().unwrap_or("").to_string();
            doc.set_trailing(format!("{kept}{old}"));
        }
    }
}

/// Add a token to an existing tenant (rotation: add, switch the IdP, then remove the old).
pub fn add_token(
    path: &Path,
    tenant: &str,
    token_name: &str,
    scope: Scope,
) -> Result<String, EditError> {
    check_token_name(token_name)?;
    edit(path, |doc| token_into(doc, path, tenant, token_name, scope))
}

fn token_into(
    doc: &mut DocumentMut,
    path: &Path,
    tenant: &str,
    token_name: &str,
    scope: Scope,
) -> Result<String, EditError> {
    let t = tenant_table(doc, path, tenant)?;
    // Said as what it is, before the edited file's check would call it a name used twice.
    if t.get("tokens")
        .and_then(listed_tokens)
        .is_some_and(|list| list.iter().any(|(n, _)| n == token_name))
    {
        return Err(EditError::Invalid(format!(
            "tenant \"{tenant}\" already has a token named \"{token_name}\"; choose another \
             name (`--name`), or replace that token: add the new one under another name, \
             reload, then `scimd token remove --tenant {tenant} --name {token_name}`"
        )));
    }
    let (tok, hash) = new_token()?;
    let entry = token_entry(token_name, &hash, scope);
    match t.get_mut("tokens") {
        Some(item) => {
            if let Some(arr) = item.as_array_mut() {
                arr.push(entry);
                one_per_line(arr);
            } else if let Some(aot) = item.as_array_of_tables_mut() {
                aot.push(entry.into_table());
            } else {
                return Err(not_a_list(tenant));
            }
        }
        None => {
            let mut arr = Array::new();
            arr.push(entry);
            one_per_line(&mut arr);
            t.insert("tokens", value(arr));
        }
    }
    Ok(tok)
}

/// Each token's name in a tenant's `tokens`, and whether it may provision (the default
/// scope); `None` when `tokens` is not a list.
fn listed_tokens(item: &Item) -> Option<Vec<(String, bool)>> {
    let provisions = |scope: Option<&str>| scope.is_none_or(|s| s == "provision");
    if let Some(arr) = item.as_array() {
        Some(
            arr.iter()
                .map(|v| {
                    let e = v.as_inline_table();
                    let field = |k: &str| e.and_then(|e| e.get(k)).and_then(Value::as_str);
                    (
                        field("name").unwrap_or_default().to_string(),
                        provisions(field("scope")),
                    )
                })
                .collect(),
        )
    } else {
        item.as_array_of_tables().map(|aot| {
            aot.iter()
                .map(|e| {
                    let field = |k: &str| e.get(k).and_then(Item::as_str);
                    (
                        field("name").unwrap_or_default().to_string(),
                        provisions(field("scope")),
                    )
                })
                .collect()
        })
    }
}

fn not_a_list(tenant: &str) -> EditError {
    EditError::Invalid(format!("tenants.{tenant}.tokens is not a list"))
}

/// Remove token `token_name` from `tenant`. A tenant's last token is not removed: a tenant
/// without tokens is an invalid configuration, and removing the tenant is the admin's call.
/// Nor is its last token that may provision, while read-only ones remain: the IdP would be
/// refused every change, with nothing said where the admin looks.
pub fn remove_token(path: &Path, tenant: &str, token_name: &str) -> Result<(), EditError> {
    edit(path, |doc| token_out(doc, path, tenant, token_name))
}

fn token_out(
    doc: &mut DocumentMut,
    path: &Path,
    tenant: &str,
    token_name: &str,
) -> Result<(), EditError> {
    let t = tenant_table(doc, path, tenant)?;
    let item = t.get_mut("tokens").ok_or_else(|| not_a_list(tenant))?;
    let tokens = listed_tokens(item).ok_or_else(|| not_a_list(tenant))?;
    let Some(i) = tokens.iter().position(|(n, _)| n == token_name) else {
        let names: Vec<&str> = tokens.iter().map(|(n, _)| n.as_str()).collect();
        return Err(EditError::Invalid(format!(
            "tenant \"{tenant}\" has no token \"{token_name}\" in {} (its tokens: {})",
            path.display(),
            names.join(", ")
        )));
    };
    if tokens.len() == 1 {
        return Err(EditError::Invalid(format!(
            "\"{token_name}\" is the last token of tenant \"{tenant}\", so it stays: add its \
             replacement first (`scimd token --tenant {tenant} --name NEW`), or take the \
             tenant out of {} (`scimd tenant remove {tenant}`) to stop serving it",
            path.display()
        )));
    }
    if tokens[i].1 && tokens.iter().filter(|(_, p)| *p).count() == 1 {
        return Err(EditError::Invalid(format!(
            "\"{token_name}\" is the last token of tenant \"{tenant}\" that may provision (the \
             others only read), so it stays: without it the IdP's every change would be \
             refused. Add its replacement first (`scimd token --tenant {tenant} --name NEW`)"
        )));
    }
    if let Some(arr) = item.as_array_mut() {
        arr.remove(i);
        one_per_line(arr);
    } else if let Some(aot) = item.as_array_of_tables_mut() {
        aot.remove(i);
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_of_names_is_cut_to_ten_and_a_count() {
        assert_eq!(a_few(&[] as &[&str]), "none");
        assert_eq!(a_few(&["a", "b"]), "a, b");
        let many: Vec<String> = (0..500).map(|i| format!("t{i:03}")).collect();
        let ten: Vec<&str> = many[..10].iter().map(String::as_str).collect();
        assert_eq!(a_few(&many), format!("{}, and 490 more", ten.join(", ")));
        assert_eq!(a_few(&many[..10]), ten.join(", "));
    }

    /// A copy of a shipped config in a temporary directory, its absolute paths moved into
    /// that directory: on a machine where the package is installed, a test must neither
    /// find the installed certificate nor open the installed database.
    fn copy_of(example: &str) -> (tempfile::TempDir, PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scimd.toml");
        let here = dir.path().display();
        let original = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(example))
            .unwrap()
            .replace("\"/etc/scimd/", &format!("\"{here}/"))
            .replace("\"/var/lib/scimd\"", &format!("\"{here}/state\""));
        assert!(
            original
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .all(|l| !l.contains("\"/etc/") && !l.contains("\"/var/")),
            "{example} names another absolute path"
        );
        std::fs::write(&path, &original).unwrap();
        (dir, path, original)
    }

    fn line(name: &str, tok: &str, extra: &str) -> String {
        format!(
            "  {{ name = \"{name}\", sha256 = \"{}\"{extra} }},\n",
            hex(&digest(tok))
        )
    }

    #[test]
    fn adds_a_tenant_and_a_token_keeping_comments() {
        let (_dir, path, original) = copy_of("config.example.toml");
        let tok = add_tenant(&path, "acme", "okta", None).unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.tenants["acme"].tokens[0].sha256, hex(&digest(&tok)));
        let tok2 = add_token(&path, "acme", "app", Scope::Read).unwrap();
        let cfg = Config::load(&path).unwrap();
        let t = &cfg.tenants["acme"].tokens[1];
        assert_eq!(
            (t.name.as_str(), t.scope, t.sha256.clone()),
            ("app", Scope::Read, hex(&digest(&tok2)))
        );
        // Everything before the new table is as it was; its list has one entry per line.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!(
                "{}\n\n[tenants.acme]\ntokens = [\n{}{}]\n",
                original.trim_end(),
                line("okta", &tok, ""),
                line("app", &tok2, ", scope = \"read\"")
            )
        );
        assert!(
            add_tenant(&path, "acme", "x", None)
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
        assert!(add_tenant(&path, "Bad Name", "x", None).is_err());
        assert!(add_token(&path, "nosuch", "x", Scope::Provision).is_err());
        // A duplicate token name would make the file invalid: refused, file unchanged, and
        // the message names the admin's file rather than the temporary copy.
        let before = std::fs::read_to_string(&path).unwrap();
        let err = add_token(&path, "acme", "app", Scope::Read)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tenant \"acme\" already has a token named \"app\""),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    /// A file written with `\r\n` line ends (on Windows) keeps them through an edit.
    #[test]
    fn an_edit_keeps_windows_line_ends() {
        let (_dir, path, original) = copy_of("config.example.toml");
        std::fs::write(&path, original.replace('\n', "\r\n")).unwrap();
        add_tenant(&path, "acme", "okta", None).unwrap();
        remove_tenant(&path, "acme").unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert_eq!(after.matches('\n').count(), after.matches("\r\n").count());
        assert_eq!(after.replace("\r\n", "\n").trim_end(), original.trim_end());
        assert!(Config::load(&path).is_ok());
    }

    #[test]
    fn removes_a_tenant_with_its_tables_but_never_the_last() {
        let (_dir, path, original) = copy_of("config.example.toml");
        add_tenant(&path, "acme", "okta", None).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("\n[tenants.acme.plan]\nname = \"Business\"\n");
        std::fs::write(&path, &text).unwrap();
        let cfg = Config::load(&path).unwrap();
        let others: Vec<&String> = cfg.tenants.keys().filter(|n| *n != "acme").collect();
        assert!(!others.is_empty(), "the example has a tenant of its own");
        remove_tenant(&path, "acme").unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(!after.contains("acme"), "{after}");
        assert_eq!(after.trim_end(), original.trim_end());
        let err = remove_tenant(&path, "acme").unwrap_err().to_string();
        assert!(
            err.contains("no tenant \"acme\"") && err.contains(others[0].as_str()),
            "{err}"
        );
        // A tenant between two others: its comments stay above the one that follows.
        add_tenant(&path, "acme", "okta", None).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text = text.replace("[tenants.acme]", "# acme: billed yearly\n[tenants.acme]");
        std::fs::write(&path, &text).unwrap();
        add_tenant(&path, "beta", "okta", None).unwrap();
        remove_tenant(&path, "acme").unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.contains("# acme: billed yearly\n"), "{after}");
        assert!(!after.contains("[tenants.acme]"), "{after}");
        let (notes, beta) = (
            after.find("# acme: billed yearly").unwrap(),
            after.find("[tenants.beta]").unwrap(),
        );
        assert!(notes < beta, "{after}");
        remove_tenant(&path, "beta").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path)
                .unwrap()
                .replace("# acme: billed yearly\n", "")
                .trim_end(),
            original.trim_end()
        );
        // The last tenant stays: a file without one is refused by every start.
        for name in &others[..others.len() - 1] {
            remove_tenant(&path, name).unwrap();
        }
        let last = others[others.len() - 1];
        let before = std::fs::read_to_string(&path).unwrap();
        let err = remove_tenant(&path, last).unwrap_err().to_string();
        assert!(err.contains("is the only tenant"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    #[test]
    fn a_tenant_in_dotted_keys_leaves_the_comments_above_its_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scimd.toml");
        let tok = |n: &str| format!("[{{ name = \"{n}\", sha256 = \"{}\" }}]", hex(&digest(n)));
        std::fs::write(
            &path,
            format!(
                "[tls]\nself_signed = true\n\n[tenants]\nbeta.tokens = {}\n\n# beta's plan, \
                 agreed in May\n[tenants.beta.plan]\nname = \"Team\"\n\n[tenants.gamma]\ntokens = {}\n",
                tok("b"),
                tok("g")
            ),
        )
        .unwrap();
        assert!(Config::load(&path).unwrap().tenants.contains_key("beta"));
        remove_tenant(&path, "beta").unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        let cfg = Config::load(&path).unwrap();
        assert!(!cfg.tenants.contains_key("beta") && cfg.tenants.contains_key("gamma"));
        let (note, gamma) = (
            after
                .find("# beta's plan, agreed in May")
                .expect("the comment stays"),
            after.find("[tenants.gamma]").unwrap(),
        );
        assert!(
            note < gamma && after.find("[tls]").unwrap() < note,
            "{after}"
        );
    }

    #[test]
    fn a_tenant_added_with_a_display_name_is_shown_by_it() {
        let (_dir, path, _) = copy_of("config.example.toml");
        add_tenant(&path, "acme", "okta", Some(" Acme Corp ")).unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(
            cfg.tenants["acme"].display_name.as_deref(),
            Some("Acme Corp")
        );
        let before = std::fs::read_to_string(&path).unwrap();
        for bad in ["", "  ", "two\nlines"] {
            let err = add_tenant(&path, "beta", "okta", Some(bad)).unwrap_err();
            assert!(
                err.to_string().contains("not a valid display name"),
                "{err}"
            );
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    #[test]
    fn a_new_tenant_goes_below_every_comment_of_the_one_before() {
        for example in ["config.example.toml", "packaging/scimd.toml"] {
            let (_dir, path, original) = copy_of(example);
            let tok = add_tenant(&path, "acme", "okta", None).unwrap();
            let after = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                after,
                format!(
                    "{}\n\n[tenants.acme]\ntokens = [\n{}]\n",
                    original.trim_end(),
                    line("okta", &tok, "")
                ),
                "{example}"
            );
            // A second one goes after the first, not between it and its options.
            let tok2 = add_tenant(&path, "beta", "okta", None).unwrap();
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                format!(
                    "{after}\n[tenants.beta]\ntokens = [\n{}]\n",
                    line("okta", &tok2, "")
                ),
                "{example}"
            );
        }
    }

    #[test]
    fn a_new_tenant_goes_after_tables_that_follow_the_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scimd.toml");
        let hash = hex(&digest("t"));
        let text = format!(
            "[tenants.a]\ntokens = [{{ name = \"x\", sha256 = \"{hash}\" }}]\n[log]\nlevel = \"info\"\n# last words"
        );
        std::fs::write(&path, &text).unwrap();
        add_tenant(&path, "b", "y", None).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(
            after.starts_with(&format!("{text}\n\n[tenants.b]\n")),
            "{after}"
        );
    }

    #[test]
    fn adding_a_token_lays_the_list_out_one_per_line_keeping_its_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scimd.toml");
        let (h1, h2) = (hex(&digest("one")), hex(&digest("two")));
        std::fs::write(
            &path,
            format!(
                "# top\n[tenants.a]\n# the IdP\ntokens = [{{ name = \"x\", sha256 = \"{h1}\" }}, # old one\n  {{ name = \"y\", sha256 = \"{h2}\" }}] # after\n"
            ),
        )
        .unwrap();
        let tok = add_token(&path, "a", "z", Scope::Provision).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!(
                "# top\n[tenants.a]\n# the IdP\ntokens = [\n{}  # old one\n{}{}] # after\n",
                line("x", "one", ""),
                line("y", "two", ""),
                line("z", &tok, "")
            )
        );
    }

    #[test]
    fn removes_a_token_but_not_the_last_or_a_missing_one() {
        let (_dir, path, original) = copy_of("config.example.toml");
        let tok = add_tenant(&path, "acme", "okta", None).unwrap();
        add_token(&path, "acme", "old", Scope::Read).unwrap();
        // The only token that may provision stays while a read-only one is left.
        let err = remove_token(&path, "acme", "okta").unwrap_err().to_string();
        assert!(
            err.contains("the last token of tenant \"acme\" that may provision"),
            "{err}"
        );
        remove_token(&path, "acme", "old").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!(
                "{}\n\n[tenants.acme]\ntokens = [\n{}]\n",
                original.trim_end(),
                line("okta", &tok, "")
            )
        );
        let before = std::fs::read_to_string(&path).unwrap();
        for bad in ["bad name", "", "tab\tname", "ünïcode"] {
            let err = add_token(&path, "acme", bad, Scope::Read).unwrap_err();
            assert!(err.to_string().contains("not a valid token name"), "{err}");
            let err = add_tenant(&path, "other", bad, None).unwrap_err();
            assert!(err.to_string().contains("not a valid token name"), "{err}");
        }
        for (tenant, name, want) in [
            ("acme", "old", "tenant \"acme\" has no token \"old\""),
            ("nosuch", "okta", "no tenant \"nosuch\""),
            (
                "acme",
                "okta",
                "(`scimd tenant remove acme`) to stop serving it",
            ),
        ] {
            let err = remove_token(&path, tenant, name).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    #[cfg(unix)]
    #[test]
    fn edits_through_a_symlink_change_the_target_and_keep_the_link_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, real, _) = copy_of("config.example.toml");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        // Giving the file away takes root; elsewhere the owner is ours either way.
        let owner = match std::os::unix::fs::chown(&real, Some(4242), Some(4343)) {
            Ok(()) => (4242, 4343),
            Err(_) => {
                use std::os::unix::fs::MetadataExt;
                let m = std::fs::metadata(&real).unwrap();
                (m.uid(), m.gid())
            }
        };
        let links = tempfile::tempdir().unwrap();
        let link = links.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let tok = add_tenant(&link, "acme", "okta", None).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), real);
        let cfg = Config::load(&real).unwrap();
        assert_eq!(cfg.tenants["acme"].tokens[0].sha256, hex(&digest(&tok)));
        let mode = std::fs::metadata(&real).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&real).unwrap();
        assert_eq!((m.uid(), m.gid()), owner);
        // The temporary copy was made beside the target and is gone.
        for d in [dir.path(), links.path()] {
            assert_eq!(left_in(d).len(), 1, "{:?}", left_in(d));
        }
    }

    #[test]
    fn racing_edits_each_land_exactly_when_they_report_success() {
        let (dir, path, _) = copy_of("config.example.toml");
        add_tenant(&path, "acme", "keep", None).unwrap();
        for i in 0..4 {
            add_token(&path, "acme", &format!("old{i}"), Scope::Provision).unwrap();
        }
        // Every old token is removed twice (one must fail), every flip token is added and
        // removed at once (in either order), dup is added twice (one must fail). Which edit
        // wins is up to the scheduler, so the file is checked against what each one said.
        let mut jobs = Vec::new();
        for i in 0..4 {
            jobs.push(("remove", format!("old{i}")));
            jobs.push(("remove", format!("old{i}")));
            jobs.push(("add", format!("flip{i}")));
            jobs.push(("remove", format!("flip{i}")));
            jobs.push(("tenant", format!("t{i}")));
        }
        for i in 0..12 {
            jobs.push(("add", format!("new{i}")));
        }
        jobs.push(("add", "dup".into()));
        jobs.push(("add", "dup".into()));
        // What each edit said: the token it made, if any, or its error.
        type Said = Result<Option<String>, String>;
        let start = std::sync::Barrier::new(jobs.len());
        let done: Vec<(&str, String, Said)> = std::thread::scope(|s| {
            let running: Vec<_> = jobs
                .into_iter()
                .map(|(kind, name)| {
                    let (path, start) = (&path, &start);
                    s.spawn(move || {
                        start.wait();
                        let r = match kind {
                            "add" => add_token(path, "acme", &name, Scope::Read).map(Some),
                            "remove" => remove_token(path, "acme", &name).map(|()| None),
                            _ => add_tenant(path, &name, "okta", None).map(Some),
                        };
                        (kind, name, r.map_err(|e| e.to_string()))
                    })
                })
                .collect();
            running.into_iter().map(|t| t.join().unwrap()).collect()
        });

        let cfg = Config::load(&path).unwrap();
        let acme: std::collections::BTreeMap<&str, &str> = cfg.tenants["acme"]
            .tokens
            .iter()
            .map(|t| (t.name.as_str(), t.sha256.as_str()))
            .collect();
        let of = |name: &str| -> Vec<_> {
            done.iter()
                .filter(|(_, n, _)| n == name)
                .map(|(kind, _, r)| (*kind, r.clone()))
                .collect()
        };
        let hash = |r: &Said| hex(&digest(r.as_ref().unwrap().as_deref().unwrap()));
        let mut want = vec!["keep".to_string(), "dup".to_string()];
        for i in 0..4 {
            let name = format!("old{i}");
            let errs: Vec<_> = of(&name).into_iter().filter_map(|(_, r)| r.err()).collect();
            assert_eq!(errs.len(), 1, "{name}: {errs:?}");
            assert!(
                errs[0].contains(&format!("has no token \"{name}\"")),
                "{errs:?}"
            );

            let name = format!("flip{i}");
            let [("add", added), ("remove", removed)] = &of(&name)[..] else {
                panic!("{name}: {:?}", of(&name));
            };
            match removed {
                // Removed after it was added: gone.
                Ok(_) => assert!(added.is_ok(), "{name}: {added:?}"),
                // Removed before it was added: there.
                Err(e) => {
                    assert!(e.contains("has no token"), "{e}");
                    assert_eq!(acme.get(name.as_str()).copied(), Some(hash(added).as_str()));
                    want.push(name);
                }
            }

            let name = format!("t{i}");
            let [("tenant", added)] = &of(&name)[..] else {
                panic!("{name}");
            };
            assert_eq!(cfg.tenants[&name].tokens[0].sha256, hash(added), "{name}");
        }
        for i in 0..12 {
            let name = format!("new{i}");
            let [("add", added)] = &of(&name)[..] else {
                panic!("{name}");
            };
            assert_eq!(acme.get(name.as_str()).copied(), Some(hash(added).as_str()));
            want.push(name);
        }
        let dups = of("dup");
        let ok: Vec<_> = dups.iter().filter(|(_, r)| r.is_ok()).collect();
        assert_eq!(ok.len(), 1, "{dups:?}");
        assert_eq!(acme.get("dup").copied(), Some(hash(&ok[0].1).as_str()));
        assert!(
            dups.iter().any(|(_, r)| r
                .as_ref()
                .is_err_and(|e| e.contains("already has a token named"))),
            "{dups:?}"
        );
        // Nothing else: no failed add, no removed token.
        want.sort();
        assert_eq!(
            acme.keys().collect::<Vec<_>>(),
            want.iter().collect::<Vec<_>>()
        );
        // No temporary file was left behind, whatever failed.
        assert_eq!(left_in(dir.path()), ["scimd.toml"]);
    }

    /// The files in `dir` but the edit lock, which stays (empty) beside the config.
    fn left_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !(n.starts_with('.') && n.ends_with(".lock")))
            .collect();
        names.sort();
        names
    }

    #[cfg(unix)]
    #[test]
    fn a_lock_file_others_may_open_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, path, _) = copy_of("config.example.toml");
        let lock = dir.path().join(".scimd.toml.lock");
        std::fs::write(&lock, b"").unwrap();
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = add_tenant(&path, "acme", "okta", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("others may open it"), "{e}");
        std::fs::remove_file(&lock).unwrap();
        add_tenant(&path, "acme", "okta", None).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_lock_held_on_the_config_itself_does_not_stall_an_edit() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, path, _) = copy_of("config.example.toml");
        // What the service's group, which may read the config, could hold.
        let reader = File::open(&path).unwrap();
        reader.lock_shared().unwrap();
        add_tenant(&path, "acme", "okta", None).unwrap();
        let lock = dir.path().join(".scimd.toml.lock");
        let mode = std::fs::metadata(&lock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_temporary_file_left_by_a_killed_edit_is_removed_by_the_next() {
        let (dir, path, _) = copy_of("config.example.toml");
        // What an edit killed before its rename leaves, under a process id now ours.
        let stale = dir
            .path()
            .join(format!("scimd.toml.{}.0.tmp", std::process::id()));
        std::fs::write(&stale, "half").unwrap();
        let other = dir.path().join("scimd.toml.99999999.3.tmp");
        std::fs::write(&other, "half").unwrap();
        // Not one of ours: another file's, or not a number where the process id goes.
        let kept = [
            "scimd.tomlx.1.0.tmp",
            "scimd.toml.a.0.tmp",
            "other.toml.1.0.tmp",
        ];
        for k in kept {
            std::fs::write(dir.path().join(k), "x").unwrap();
        }
        let tok = add_tenant(&path, "acme", "okta", None).unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.tenants["acme"].tokens[0].sha256, hex(&digest(&tok)));
        assert!(!stale.exists() && !other.exists());
        for k in kept {
            assert!(dir.path().join(k).exists(), "{k}");
        }
    }

    /// The example's demo token is a problem once the server is reachable; the edits that
    /// replace it must not be refused for it.
    #[test]
    fn a_problem_the_file_had_before_does_not_refuse_the_edit_that_fixes_it() {
        let (_dir, path, original) = copy_of("config.example.toml");
        let exposed = original.replacen(
            "listen = \"127.0.0.1:8443\"",
            "listen = \"0.0.0.0:8443\"",
            1,
        );
        assert_ne!(exposed, original);
        std::fs::write(&path, &exposed).unwrap();
        let demo = |p: &String| p.contains("this is the demo token");
        assert!(Config::load(&path).unwrap_err().problems.iter().any(demo));
        let tok = add_token(&path, "demo", "okta", Scope::Provision).unwrap();
        // Still there, named at the same place after the edit.
        let err = Config::load(&path).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{:?}", err.problems);
        assert!(err.problems[0].starts_with("tenants.demo.tokens[0].sha256"));
        remove_token(&path, "demo", "demo").unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.tenants["demo"].tokens[0].sha256, hex(&digest(&tok)));
    }

    #[test]
    fn the_packaged_config_takes_a_first_tenant_before_certificates_exist() {
        let (_dir, path, _) = copy_of("packaging/scimd.toml");
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("tls.cert: cannot read") && err.contains("no tenant configured"),
            "{err}"
        );
        add_tenant(&path, "acme", "okta", None).unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(
            err.problems.iter().all(|p| p.starts_with("tls.")),
            "{:?}",
            err.problems
        );
    }
}
