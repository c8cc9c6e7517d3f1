//! `scimd verify`: every index against the resources, membership in both directions, the
//! counters, the position counts, and the event sequence. Reads one snapshot; reports each
//! mismatch. Also redb's own check of a file's pages, for a file not in use.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use redb::{ReadableDatabase, ReadableMultimapTable, ReadableTable, ReadableTableMetadata};

use super::alike;
use super::plan;
use super::ranks;
use super::record::{Keys, decode, keys, stamp_nanos, stamps_indexed, unique_candidates};
use super::tables::*;
use super::{Store, format_id};
use crate::scim::schema::{Kind, Rt};

/// Whether `rt` declares `attr` ("urn:…:name") with `uniqueness = "server"`.
fn declared_unique(rt: Rt, attr: &str) -> bool {
    rt.extensions().iter().any(|ext| {
        attr.strip_prefix(ext.id)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|name| {
                ext.attributes.iter().any(|d| {
                    d.name == name && d.uniqueness == crate::scim::schema::Uniqueness::Server
                })
            })
    })
}

fn kind_of(code: u8) -> Option<Kind> {
    [Kind::User, Kind::Group]
        .into_iter()
        .find(|k| k.code() == code)
}

impl Store {
    /// Mismatches found (empty when consistent). `types` gives each tenant's resource types
    /// (for its unique extension attributes); unknown tenants use the built-in ones.
    /// Every entry is read back first (the scrub), which finds a damaged page that the
    /// checks' point reads could pass by.
    pub async fn verify(&self, types: HashMap<String, (Rt, Rt)>) -> Result<Vec<String>, String> {
        self.scrub().await?;
        let db = self.db().map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || {
            unless_damaged(|| check(&db, &types))?.map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

thread_local! {
    /// Set while this thread reads a file that may be damaged (`unless_damaged`).
    static EXPECTING_DAMAGE: Cell<bool> = const { Cell::new(false) };
}

/// Run `f`, which reads a database file that may be damaged. redb answers some damage (a
/// page that does not parse) with a panic rather than an error; that panic becomes an error
/// naming the damage, and its default report (a backtrace, for developers) is held back.
pub fn unless_damaged<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    // A panic here is almost always damage, but a bug would look the same: say both. The
    // reader's own words (`Utf8Error`, `Invalid page type`) come last, for a bug report.
    caught(f).map_err(|what| {
        format!(
            "the database file is damaged (or scimd hit a bug reading it){NEXT} (the reader \
             said: {what})"
        )
    })
}

/// `unless_damaged`, the error being only what the panic said.
pub(crate) fn caught<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !EXPECTING_DAMAGE.try_with(Cell::get).unwrap_or(false) {
                report(info);
            }
        }));
    });
    let was = EXPECTING_DAMAGE.replace(true);
    let result = catch_unwind(AssertUnwindSafe(f));
    EXPECTING_DAMAGE.set(was);
    result.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unreadable page".into())
    })
}

/// redb's own check of the file at `path`, which nothing may have open: every page's
/// checksum and the tree structure, which scimd's checks (reading values) take on trust.
/// A file left by a crash is repaired as it opens, as the server would; damage found after
/// that is an error, even when redb could repair it (it rolls back to an older commit).
///
/// `Ok(true)`: the file had not been closed cleanly (a crash), and opening it checked every
/// page and rebuilt its free-space map, which the caller says: the daemon's next start has
/// nothing left to repair, and so nothing to tell.
pub fn check_file(path: &Path) -> Result<bool, String> {
    // redb may write as it checks: never through a link planted in the service's directory.
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(format!(
            "{} is a symbolic link; scimd checks only a regular file there",
            path.display()
        ));
    }
    // redb's word for it names no cause; a start says what happened and what to do.
    if super::only_zeros(path) {
        return Err(super::StoreError::Empty {
            path: path.display().to_string(),
        }
        .to_string());
    }
    let repaired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = repaired.clone();
    check_opened(path, move || {
        redb::Database::builder()
            .set_cache_size(16 << 20)
            .set_repair_callback(move |_| flag.store(true, std::sync::atomic::Ordering::Relaxed))
            .open(path)
    })?;
    Ok(repaired.load(std::sync::atomic::Ordering::Relaxed))
}

/// `check_file` for a file already open (read and write): the check reads that file, not
/// whatever its name points to by then. `name` is for messages.
pub(crate) fn check_open_file(name: &Path, file: std::fs::File) -> Result<(), String> {
    let backend = super::backend::Backend::from_file(file, Default::default())
        .map_err(|e| format!("cannot open {}: {e}", name.display()))?;
    check_opened(name, || {
        redb::Database::builder()
            .set_cache_size(16 << 20)
            .create_with_backend(backend)
    })
}

/// What an admin does about a damaged file.
pub(super) const NEXT: &str = "; restore the most recent good backup over a damaged database (`scimd \
                    restore --from FILE`, with scimd stopped), and keep the damaged file for a \
                    bug report";

fn check_opened(
    path: &Path,
    open: impl FnOnce() -> Result<redb::Database, redb::DatabaseError>,
) -> Result<(), String> {
    let damaged = |e: &dyn std::fmt::Display| format!("the database file is damaged: {e}{NEXT}");
    unless_damaged(|| {
        let mut db = open().map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => damaged(&e),
            redb::DatabaseError::DatabaseAlreadyOpen => super::StoreError::InUse {
                path: path.display().to_string(),
            }
            .to_string(),
            // redb's word for a header not its own (its first page overwritten), as a
            // start says it.
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() == std::io::ErrorKind::InvalidData =>
            {
                damaged(&io)
            }
            e => format!("cannot open {}: {e}", path.display()),
        })?;
        match db.check_integrity() {
            Ok(true) => Ok(()),
            Ok(false) => Err(damaged(
                &"redb's integrity check failed (checksums or free-space map) and it repaired \
                  the file",
            )),
            Err(e) => Err(damaged(&e)),
        }
    })?
}

/// Whether the multimap holds `id` under `key`.
fn holds<'a, K: redb::Key + 'static>(
    m: &redb::ReadOnlyMultimapTable<K, u128>,
    key: impl std::borrow::Borrow<K::SelfType<'a>>,
    id: u128,
) -> Result<bool, redb::Error> {
    for v in m.get(key)? {
        if v?.value() == id {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Which index an entry belongs to, for counting and for naming what is wrong.
#[derive(Clone, Copy)]
enum Index {
    UserName,
    ExternalId,
    Email,
    DisplayName,
    Unique,
    Modified,
}

impl Index {
    const ALL: [Index; 6] = [
        Index::UserName,
        Index::ExternalId,
        Index::Email,
        Index::DisplayName,
        Index::Unique,
        Index::Modified,
    ];

    fn name(self) -> &'static str {
        match self {
            Index::UserName => "userName index",
            Index::ExternalId => "externalId index",
            Index::Email => "email index",
            Index::DisplayName => "displayName index",
            Index::Unique => "unique-attribute index",
            Index::Modified => "lastModified index",
        }
    }
}

/// Checks in passes over the tables with point reads, holding per-tenant counters and never
/// a table's contents: verifying a million users costs the daemon no more memory than
/// serving them. Each index entry the resources call for is looked up; an index that then
/// holds more entries than that (or missed one) is walked again to name its stale entries.
pub(super) fn check(
    db: &redb::Database,
    types: &HashMap<String, (Rt, Rt)>,
) -> Result<Vec<String>, redb::Error> {
    let r = db.begin_read()?;
    let res = r.open_table(RESOURCES)?;
    let counts = r.open_table(COUNTS)?;
    let usernames = r.open_table(USERNAME_USERID)?;
    let ext_ids = r.open_multimap_table(EXTERNALID_ID)?;
    let emails = r.open_multimap_table(EMAIL_USERID)?;
    let names = r.open_multimap_table(DISPLAYNAME_ID)?;
    let members = r.open_table(GROUPID_MEMBERID)?;
    let member_of = r.open_table(MEMBERID_GROUPID)?;
    let displays = r.open_table(MEMBER_DISPLAY)?;
    let events = r.open_table(EVENTS)?;
    let seqs = r.open_table(EVENT_SEQ)?;
    let overflow = r.open_table(OVERFLOW_USERID)?;
    let unique = r.open_table(UNIQUE_ID)?;
    let position = r.open_table(RANKS)?;
    let modified = r.open_table(MODIFIED_ID)?;
    let mut bad = Vec::new();
    let rt_of = |t: &str, kind: Kind| -> Rt {
        types
            .get(t)
            .map(|(u, g)| if kind == Kind::User { *u } else { *g })
            .unwrap_or(kind.into())
    };
    // The index keys of the resource (t, code, id), if it exists and decodes.
    let keys_of = |t: &str, code: u8, id: u128| -> Result<Option<Keys>, redb::Error> {
        let Some(kind) = kind_of(code) else {
            return Ok(None);
        };
        Ok(res
            .get((t, code, id))?
            .and_then(|g| decode(g.value()))
            .map(|rec| keys(rt_of(t, kind), &rec.body)))
    };
    // A resource named as its `attr` reads (quoted, control characters escaped), for the
    // pairs of names an upgrade joined: the admin renames one by what it is called.
    let named = |t: &str, code: u8, id: u128, attr: &str| -> Result<String, redb::Error> {
        let rec = res.get((t, code, id))?.and_then(|g| decode(g.value()));
        let name = rec.and_then(|r| r.body.get(attr)?.as_str().map(str::to_string));
        Ok(format!(
            "{} ({:?})",
            format_id(id),
            name.unwrap_or_default()
        ))
    };
    // Pass 1: every resource, its index entries, counters and position counts.
    let mut want = [0u64; 6];
    let mut missed = [false; 6];
    let mut n: BTreeMap<(String, u8), u64> = BTreeMap::new();
    let mut active: BTreeMap<String, u64> = BTreeMap::new();
    let mut rank_entries = 0u64;
    let mut rank_wrong: Vec<String> = Vec::new();
    let mut rank_err = None;
    let mut runs = ranks::Runs::new(|k: (&str, u8, u8, u64), c| match position.get(k) {
        Ok(have) => {
            rank_entries += 1;
            let have = have.map(|g| g.value());
            if have != Some(c) {
                let key = (k.0.to_string(), k.1, k.2, k.3);
                rank_wrong.push(format!("position counts: {key:?} holds {have:?}, not {c}"));
            }
        }
        Err(e) => {
            rank_err.get_or_insert(e);
        }
    });
    // Names an upgrade's fold joined: not damage, but an admin must rename one of each pair.
    let mut clashes = Vec::new();
    for e in res.iter()? {
        let (k, v) = e?;
        let (t, code, id) = k.value();
        runs.push(t, code, id);
        let Some(kind) = kind_of(code) else {
            bad.push(format!(
                "{t}: resource {} has unknown kind code {code}",
                format_id(id)
            ));
            continue;
        };
        let Some(rec) = decode(v.value()) else {
            bad.push(format!("{t}: resource {} does not decode", format_id(id)));
            continue;
        };
        *n.entry((t.to_string(), code)).or_default() += 1;
        if kind == Kind::User && plan::is_active(&rec.body) {
            *active.entry(t.to_string()).or_default() += 1;
        }
        let ks = keys(rt_of(t, kind), &rec.body);
        let stamp = stamp_nanos(&rec.modified).filter(|_| stamps_indexed(kind));
        let mut expect = |i: Index, present: bool, what: String| {
            want[i as usize] += 1;
            if !present {
                missed[i as usize] = true;
                bad.push(format!("{}: missing {what}", i.name()));
            }
        };
        if let Some(u) = ks.username {
            let mut what = format!("{:?}", (t, &u, id));
            let present = alike::indexed(&usernames, t, &u, id)?;
            // Two names that an older layout told apart and the fold now joins: no repair
            // can choose, an admin renames one. Named once for each user a lookup misses.
            let found = alike::holder(&usernames, t, &u)?;
            if let Some(other) = found.filter(|&f| f != id) {
                let user = Kind::User.code();
                let clash = format!(
                    "the userNames of users {} and {} differ only in case or Unicode form, \
                     and a lookup by that name finds {} only: rename one",
                    named(t, user, other, "userName")?,
                    named(t, user, id, "userName")?,
                    format_id(other)
                );
                match present {
                    true => clashes.push(format!("{t}: {clash}")),
                    false => what += &format!(", held by user {}: {clash}", format_id(other)),
                }
            }
            expect(Index::UserName, present, what);
        }
        if let Some(x) = ks.external_id {
            let present = holds(&ext_ids, (t, code, x.as_str()), id)?;
            expect(
                Index::ExternalId,
                present,
                format!("{:?}", (t, code, x, id)),
            );
        }
        for m in ks.emails {
            let present = holds(&emails, (t, m.as_str()), id)?;
            expect(Index::Email, present, format!("{:?}", (t, m, id)));
        }
        if let Some(d) = ks.display {
            if kind == Kind::Group {
                for other in names.get((t, code, d.as_str()))? {
                    let other = other?.value();
                    // Each pair once, from its older group.
                    if other > id {
                        clashes.push(format!(
                            "{t}: the displayNames of groups {} and {} differ only in case or \
                             Unicode form, and a lookup by that name finds both: rename one",
                            named(t, code, id, "displayName")?,
                            named(t, code, other, "displayName")?
                        ));
                    }
                }
            }
            let present = holds(&names, (t, code, d.as_str()), id)?;
            expect(
                Index::DisplayName,
                present,
                format!("{:?}", (t, code, d, id)),
            );
        }
        for (a, val) in ks.unique {
            let present = unique
                .get((t, code, a.as_str(), val.as_str()))?
                .map(|g| g.value())
                == Some(id);
            expect(
                Index::Unique,
                present,
                format!("{:?}", (t, code, a, val, id)),
            );
        }
        if let Some(s) = stamp {
            let present = modified.get((t, code, s, id))?.is_some();
            expect(Index::Modified, present, format!("{:?}", (t, code, s, id)));
        }
    }
    runs.finish();
    bad.append(&mut clashes);
    if let Some(e) = rank_err {
        return Err(e.into());
    }
    bad.append(&mut rank_wrong);
    // Stale position counts: more entries than the resources call for.
    if position.len()? != rank_entries {
        for e in position.iter()? {
            let (k, v) = e?;
            let (t, code, level, prefix) = k.value();
            let (lo, hi) = ranks::id_range(level, prefix);
            let mut c = 0u64;
            for x in res.range((t, code, lo)..=(t, code, hi))? {
                x?;
                c += 1;
            }
            if c == 0 {
                let key = (t.to_string(), code, level, prefix);
                bad.push(format!("position counts: stale {key:?} ({})", v.value()));
            }
        }
    }
    // Pass 2, only for an index that holds entries no resource calls for (or missed one):
    // name its stale entries.
    let have = [
        usernames.len()?,
        ext_ids.len()?,
        emails.len()?,
        names.len()?,
        unique.len()?,
        modified.len()?,
    ];
    for i in Index::ALL {
        if have[i as usize] == want[i as usize] && !missed[i as usize] {
            continue;
        }
        let mut stale = |what: String| bad.push(format!("{}: stale {what}", i.name()));
        match i {
            Index::UserName => {
                for e in usernames.iter()? {
                    let (k, v) = e?;
                    let ((t, u), id) = (k.value(), v.value());
                    let code = Kind::User.code();
                    let name = keys_of(t, code, id)?.and_then(|k| k.username);
                    let beside = name.as_deref().map(|n| alike::key(n, id));
                    if name.as_deref() != Some(u) && beside.as_deref() != Some(u) {
                        stale(format!("{:?}", (t, u, id)));
                    }
                }
            }
            Index::ExternalId | Index::DisplayName => {
                let table = if matches!(i, Index::ExternalId) {
                    &ext_ids
                } else {
                    &names
                };
                for e in table.iter()? {
                    let (k, vals) = e?;
                    let (t, code, x) = k.value();
                    for v in vals {
                        let id = v?.value();
                        let ks = keys_of(t, code, id)?;
                        let ok = ks.is_some_and(|k| match i {
                            Index::ExternalId => k.external_id.as_deref() == Some(x),
                            _ => k.display.as_deref() == Some(x),
                        });
                        if !ok {
                            stale(format!("{:?}", (t, code, x, id)));
                        }
                    }
                }
            }
            Index::Email => {
                for e in emails.iter()? {
                    let (k, vals) = e?;
                    let (t, m) = k.value();
                    for v in vals {
                        let id = v?.value();
                        let code = Kind::User.code();
                        if !keys_of(t, code, id)?.is_some_and(|k| k.emails.contains(m)) {
                            stale(format!("{:?}", (t, m, id)));
                        }
                    }
                }
            }
            Index::Unique => {
                for e in unique.iter()? {
                    let (k, v) = e?;
                    let ((t, code, a, val), id) = (k.value(), v.value());
                    let pair = (a.to_string(), val.to_string());
                    let ok = match (kind_of(code), keys_of(t, code, id)?) {
                        (_, Some(k)) if k.unique.contains(&pair) => true,
                        // Kept for an attribute not declared unique now (its extension
                        // taken out of the configuration, or its uniqueness), for when it
                        // is again: no mismatch while the resource still holds the value.
                        (Some(kind), Some(_)) if !declared_unique(rt_of(t, kind), a) => res
                            .get((t, code, id))?
                            .and_then(|g| decode(g.value()))
                            .is_some_and(|r| unique_candidates(kind, &r.body).contains(&pair)),
                        _ => false,
                    };
                    if !ok {
                        stale(format!("{:?}", (t, code, a, val, id)));
                    }
                }
            }
            Index::Modified => {
                for e in modified.iter()? {
                    let (k, _) = e?;
                    let (t, code, s, id) = k.value();
                    let stored = res
                        .get((t, code, id))?
                        .filter(|_| kind_of(code).is_some_and(stamps_indexed))
                        .and_then(|g| decode(g.value()));
                    if stored.and_then(|r| stamp_nanos(&r.modified)) != Some(s) {
                        stale(format!("{:?}", (t, code, s, id)));
                    }
                }
            }
        }
    }
    // Membership: mirrors of each other, between existing resources.
    let what = "membership (group → member vs member → group)";
    let mut down = 0u64;
    let mut mirror_missed = false;
    for e in members.iter()? {
        let (k, v) = e?;
        let (t, g, m) = k.value();
        down += 1;
        if res.get((t, Kind::Group.code(), g))?.is_none() {
            bad.push(format!("{t}: membership of missing group {}", format_id(g)));
        }
        if res.get((t, v.value(), m))?.is_none() {
            bad.push(format!(
                "{t}: group {} lists missing member {}",
                format_id(g),
                format_id(m)
            ));
        }
        if member_of.get((t, m, g))?.is_none() {
            mirror_missed = true;
            bad.push(format!("{what}: missing {:?}", (t, g, m)));
        }
    }
    if member_of.len()? != down || mirror_missed {
        for e in member_of.iter()? {
            let (k, _) = e?;
            let (t, m, g) = k.value();
            if members.get((t, g, m))?.is_none() {
                bad.push(format!("{what}: stale {:?}", (t, g, m)));
            }
        }
    }
    // A member's display goes with its membership.
    for e in displays.iter()? {
        let (k, _) = e?;
        let (t, g, m) = k.value();
        if members.get((t, g, m))?.is_none() {
            bad.push(format!(
                "{t}: a display kept for {} in group {}, which it is not a member of",
                format_id(m),
                format_id(g)
            ));
        }
    }
    // Counters.
    for e in counts.iter()? {
        let (k, v) = e?;
        let (t, code) = k.value();
        let want = match code {
            c if kind_of(c).is_some() => n.get(&(t.to_string(), c)).copied().unwrap_or(0),
            plan::ACTIVE => active.get(t).copied().unwrap_or(0),
            plan::OVERFLOW => {
                let mut c = 0;
                for o in overflow.range((t, 0u128)..=(t, u128::MAX))? {
                    o?;
                    c += 1;
                }
                c
            }
            _ => continue,
        };
        if v.value() != want {
            bad.push(format!(
                "{t}: counter {code} is {} but there are {want}",
                v.value()
            ));
        }
    }
    for ((t, code), c) in &n {
        if counts.get((t.as_str(), *code))?.is_none() {
            bad.push(format!("{t}: no counter for kind {code} ({c} resources)"));
        }
    }
    // Events: the sequence counter is at least every stored event's number.
    for e in events.iter()? {
        let (k, _) = e?;
        let (t, seq) = k.value();
        let last = seqs.get(t)?.map(|g| g.value()).unwrap_or(0);
        if seq > last {
            bad.push(format!(
                "{t}: event {seq} is past the sequence counter {last}"
            ));
        }
    }
    Ok(bad)
}
