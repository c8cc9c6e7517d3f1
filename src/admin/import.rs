//! `scimd import`: lines `scimd export` wrote, checked whole before anything is written.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::commands::no_tenant;
use super::export::PLACED_ON_FREE;
use crate::config::Config;
use crate::scim::json::{Fields, Key};
use crate::scim::schema::Kind;
use crate::store::Store;

/// Load exported lines into `tenant`, keeping ids: resources first, then group members, so
/// members may refer to any imported resource.
///
/// Every line is checked before anything is written: its JSON, its attributes, ids, names
/// and unique custom values repeated in the file or taken in the tenant by another id, and
/// members that point nowhere. What can still stop an import part-way (a full disk, a
/// kill, a seat limit) leaves the resources written so far, and running the same import
/// again finishes it: a line whose id the tenant already holds, as the same kind of
/// resource, is skipped.
///
/// The file is read four times (checked alone, checked against the tenant, resources
/// written, members added), a line at a time and a group's members a thousand at a time:
/// what is held between the passes is each line's id and name digest, about a hundred
/// bytes a line, not the file several times over.
pub async fn import(
    store: &Store,
    cfg: &Config,
    tenant: &str,
    from: &Path,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Imported, String> {
    if !cfg.tenants.contains_key(tenant) {
        return Err(no_tenant(cfg, tenant));
    }
    let rt = crate::http::Runtime::new(cfg.clone());
    // The tenant's own change-feed retention, plan and create-only rules, as a request has.
    // Unlike a POST, an extension's required attributes are not demanded: the records come
    // as another host stored them, as a PUT keeps a resource stored before the requirement.
    let actor = rt.actor(tenant, "import");
    // Pass 1: each line alone, and ids and names repeated within the file (id -> line, and
    // a digest of the folded userName / group displayName -> line).
    let mut ids: HashMap<u128, usize> = HashMap::new();
    let mut names: HashMap<(Kind, [u8; 16]), usize> = HashMap::new();
    // And a digest of each unique custom attribute's (kind, attribute, value) -> line.
    let mut values: HashMap<[u8; 16], usize> = HashMap::new();
    let mut lines = ImportLines::open(from).await?;
    let mut found = Problems::default();
    while let Some((n, line)) = lines.next().await? {
        let line = match parse_line(&rt, tenant, n, &line) {
            Ok(line) => line,
            Err(e) => {
                found.add(e);
                continue;
            }
        };
        let id = line.given.id;
        if let Some(first) = ids.insert(id, n) {
            found.add(format!(
                "line {n}: id {} is also on line {first}",
                crate::store::format_id(id)
            ));
        }
        if let Some(name) = unique_name(line.kind, &line.input.body)
            && let Some(first) = names.insert((line.kind, name_digest(name)), n)
        {
            found.add(format!(
                "line {n}: {} \"{name}\" is also on line {first}",
                name_attr(line.kind)
            ));
        }
        let kind_rt = rt.rt(Some(tenant), line.kind);
        for (attr, v, spellings) in crate::store::unique_values(kind_rt, &line.input.body) {
            // Under each spelling, so that `5` on one line and `5.0` on another meet.
            let mut first = None;
            for sp in spellings {
                let key = format!("{}\0{attr}\0{sp}", line.kind.as_str());
                if let Some(f) = values.insert(name_digest_raw(&key), n) {
                    first.get_or_insert(f);
                }
            }
            if let Some(first) = first {
                found.add(format!(
                    "line {n}: {attr} \"{v}\" is also on line {first}, and it is unique"
                ));
            }
        }
    }
    found.refuse()?;
    drop(names);
    drop(values);
    // Pass 2: against the tenant: which lines are there already, which would clash, and
    // members that are neither in the file nor in the tenant.
    let mut skip: HashSet<u128> = HashSet::new();
    drop(lines); // one open reader at a time
    let mut lines = ImportLines::open(from).await?;
    while let Some((n, line)) = lines.next().await? {
        let ParsedLine {
            kind,
            given,
            input,
            members,
        } = parse_line(&rt, tenant, n, &line)?;
        let id = given.id;
        match held_as(store, tenant, id).await? {
            Some(k) if k == kind => {
                skip.insert(id);
            }
            Some(k) => {
                found.add(format!(
                    "line {n}: id {} is a {} in tenant {tenant}, not a {}",
                    crate::store::format_id(id),
                    k.as_str(),
                    kind.as_str()
                ));
            }
            None => {
                if let Some(name) = unique_name(kind, &input.body)
                    && let Some(other) = holder_of(store, &rt, tenant, kind, name).await?
                {
                    found.add(format!(
                        "line {n}: {} \"{name}\" is taken in tenant {tenant} by {other}",
                        name_attr(kind)
                    ));
                }
                let held = store
                    .unique_holders(tenant, rt.rt(Some(tenant), kind), &input.body)
                    .map_err(|e| e.to_string())?;
                for (attr, v, other) in held {
                    found.add(format!(
                        "line {n}: {attr} \"{v}\" is taken in tenant {tenant} by {}, and it \
                         is unique",
                        crate::store::format_id(other)
                    ));
                }
            }
        }
        for chunk in Members::of(&members) {
            for m in chunk.map_err(|e| format!("line {n}: {e}"))? {
                let Some(mid) = m.get("value").and_then(Value::as_str) else {
                    continue;
                };
                let known = match crate::store::parse_id(mid) {
                    Some(x) => ids.contains_key(&x) || held_as(store, tenant, x).await?.is_some(),
                    None => false,
                };
                if !known {
                    found.add(format!(
                        "line {n}: member {mid} is neither in the file nor in tenant {tenant}"
                    ));
                }
            }
        }
    }
    found.refuse()?;
    // The feed's readers (of the host the file came from, or of this tenant before) hold
    // numbers that do not lead to what the tenant holds after: each gets 410 and reads it
    // all again.
    store
        .restart_feed(tenant.to_string())
        .await
        .map_err(|e| format!("restarting the change feed: {e}"))?;
    // Pass 3: the resources, 256 at a time so the writer commits them in shared batches.
    let total = (ids.len() - skip.len()) as u64;
    drop(ids);
    let skipped = skip.len() as u64;
    let mut n = 0;
    drop(lines); // one open reader at a time
    let mut lines = ImportLines::open(from).await?;
    let mut more = true;
    while more {
        let mut window = Vec::new();
        while window.len() < 256 {
            let Some((at, line)) = lines.next().await? else {
                more = false;
                break;
            };
            let ParsedLine {
                kind, given, input, ..
            } = parse_line(&rt, tenant, at, &line)?;
            if skip.contains(&given.id) {
                continue;
            }
            let (store, actor, rt) = (store.clone(), actor.clone(), rt.rt(Some(tenant), kind));
            window.push((
                at,
                tokio::spawn(async move { store.create_as(actor, rt, input, Some(given)).await }),
            ));
        }
        // Every create of the window is waited for, so the count said below is what was
        // written, the creates after a failed one included.
        let (mut failed, mut refused) = (None, 0);
        for (line, task) in window {
            let why = match task.await {
                Ok(Ok(_)) => {
                    n += 1;
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            refused += 1;
            failed.get_or_insert((line, why));
        }
        if let Some((line, why)) = failed {
            // One line: the console prints control characters escaped.
            let more = match refused {
                1 => String::new(),
                r => format!(" (and {} more lines refused)", r - 1),
            };
            return Err(format!(
                "line {line}: {why}{more}; the import stopped there, after writing {n} \
                 resources (and finding {skipped} there already); once the cause is fixed, the \
                 same import finishes the job: lines already in the tenant are skipped"
            ));
        }
        progress(n, total);
    }
    drop(skip);
    // Pass 4: the groups' members (of skipped lines too), a chunk at a time: a group of a
    // million is a thousand writes that other tenants' writes go between, not one.
    drop(lines); // one open reader at a time
    let mut lines = ImportLines::open(from).await?;
    while let Some((at, line)) = lines.next().await? {
        let ParsedLine { given, members, .. } = parse_line(&rt, tenant, at, &line)?;
        for chunk in Members::of(&members) {
            let chunk = chunk.map_err(|e| format!("line {at}: {e}"))?;
            if chunk.is_empty() {
                continue;
            }
            let op = crate::scim::patch::Operation {
                op: crate::scim::patch::OpKind::Add,
                path: Some("members".into()),
                value: Some(Value::Array(chunk)),
            };
            store
                .patch(
                    actor.clone(),
                    rt.rt(Some(tenant), Kind::Group),
                    crate::store::format_id(given.id),
                    vec![op],
                    crate::store::Conditions::default(),
                )
                .await
                .map_err(|e| {
                    format!(
                        "members of group {}: {}\nthe resources are written; once the cause \
                         is fixed, the same import adds the members",
                        crate::store::format_id(given.id),
                        e
                    )
                })?;
        }
    }
    // Each user is placed as the file says; seats this host's plan has beyond those go to
    // the users waiting, as seats coming free do.
    store
        .fill_seats(actor)
        .await
        .map_err(|e| format!("seating users waiting on the free plan: {e}"))?;
    Ok(Imported {
        written: n,
        skipped,
    })
}

/// What an import's checking passes found wrong: the whole file's problems in one run, as
/// `check-config` gives a file's, not one a run. The first `SHOWN` are said.
#[derive(Default)]
struct Problems {
    shown: Vec<String>,
    more: usize,
}

impl Problems {
    const SHOWN: usize = 20;

    fn add(&mut self, problem: String) {
        match self.shown.len() < Self::SHOWN {
            true => self.shown.push(problem),
            false => self.more += 1,
        }
    }

    /// Nothing written: the problems, if any, refuse the import.
    fn refuse(&mut self) -> Result<(), String> {
        if self.shown.is_empty() {
            return Ok(());
        }
        let mut all = std::mem::take(&mut self.shown).join("\n");
        if self.more > 0 {
            all.push_str(&format!("\n... and {} more", self.more));
        }
        Err(all)
    }
}

/// How many members of a group one write of an import adds.
const IMPORT_MEMBERS_AT_ONCE: usize = 1000;

/// An import's file, a line at a time, with its line numbers (blank lines skipped).
struct ImportLines {
    lines: tokio::io::Lines<BufReader<tokio::fs::File>>,
    n: usize,
    path: PathBuf,
}

impl ImportLines {
    async fn open(path: &Path) -> Result<ImportLines, String> {
        let f = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(ImportLines {
            lines: BufReader::with_capacity(256 << 10, f).lines(),
            n: 0,
            path: path.to_path_buf(),
        })
    }

    async fn next(&mut self) -> Result<Option<(usize, String)>, String> {
        loop {
            self.n += 1;
            match self.lines.next_line().await {
                Ok(Some(l)) if l.trim().is_empty() => {}
                Ok(Some(l)) => return Ok(Some((self.n, l))),
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(format!(
                        "line {}: cannot read {}: {e}",
                        self.n,
                        self.path.display()
                    ));
                }
            }
        }
    }
}

/// One line of an import, checked alone. A group's `members` stay the line's text, read a
/// chunk at a time (`Members`): parsed whole, a group of a million members is a tree of a
/// million objects, a GB or more, where its line is 60 MB.
struct ParsedLine<'a> {
    kind: Kind,
    given: crate::store::Given,
    /// Everything but the members (`input.members` is `None`).
    input: crate::scim::resource::Input,
    members: MemberSource<'a>,
}

/// A group's members as its line gives them.
enum MemberSource<'a> {
    /// Under `members`: the line's text, read a chunk at a time.
    Text(&'a RawValue),
    /// Under their URN-qualified name, read and checked with the rest of the line.
    Read(Vec<Value>),
}

fn parse_line<'a>(
    rt: &crate::http::Runtime,
    tenant: &str,
    n: usize,
    line: &'a str,
) -> Result<ParsedLine<'a>, String> {
    let Split { mut rest, members } = Split::of(line).map_err(|e| match e.is_data() {
        true => format!("line {n}: not a JSON object, one resource a line: {e}"),
        false => format!("line {n}: not JSON: {e}"),
    })?;
    let is_group = rest
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|x| x == crate::scim::schema::GROUP_SCHEMA));
    let kind = if is_group { Kind::Group } else { Kind::User };
    // A user has no members: the key goes back for the check to ignore, as any unknown one.
    let members = match members {
        Some(raw) if kind == Kind::User => {
            let v = serde_json::from_str(raw.get()).map_err(|e| format!("line {n}: {e}"))?;
            rest.insert("members".into(), v);
            None
        }
        m => m,
    };
    let v = Value::Object(rest);
    let id = v["id"]
        .as_str()
        .and_then(crate::store::parse_id)
        .ok_or_else(|| {
            format!(
                "line {n}: no \"id\" as scimd gives them (import reads the files `scimd export` \
                 writes, where every resource has its id)"
            )
        })?;
    let mut input = crate::scim::resource::normalize(rt.rt(Some(tenant), kind), &v)
        .map_err(|e| format!("line {n}: {}", e.detail))?;
    // An extension this host's tenant does not declare (its table left behind when the
    // tenant's was copied) would be dropped as a write drops it: refused instead, as an
    // import is to carry everything over.
    let mut undeclared: Vec<&str> = input.ignored.schemas.iter().map(String::as_str).collect();
    for a in &input.ignored.attributes {
        let urn = a.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
        if urn && !undeclared.iter().any(|u| a.starts_with(u)) {
            undeclared.push(a);
        }
    }
    if !undeclared.is_empty() {
        return Err(format!(
            "line {n}: {} not declared for tenant {tenant} in this configuration, and its values \
             would be lost: declare it as the exporting host did ([[tenants.{tenant}.extensions]]) \
             and import again",
            undeclared.join(", ")
        ));
    }
    // Members under their URN-qualified name were read with the rest.
    let members = match (input.members.take(), members) {
        (Some(read), _) => MemberSource::Read(read),
        (None, Some(raw)) => MemberSource::Text(raw),
        (None, None) => MemberSource::Read(Vec::new()),
    };
    let meta = |k: &str| v["meta"][k].as_str().map(str::to_string);
    let given = crate::store::Given {
        id,
        created: meta("created"),
        modified: meta("lastModified"),
        // `W/"8"`, as scimd writes it, or `W/"8.1f2e3d4c"` for a user in groups (the
        // digest of its groups is not stored: `etag_of`).
        version: meta("version").and_then(|s| {
            let tag = s.trim_start_matches("W/").trim_matches('"');
            tag.split('.').next()?.parse::<u64>().ok()
        }),
        on_free: v["meta"][PLACED_ON_FREE] == Value::Bool(true),
    };
    // Each member checked as a write checks it, before anything is written.
    for chunk in Members::of(&members) {
        chunk.map_err(|e| format!("line {n}: {e}"))?;
    }
    Ok(ParsedLine {
        kind,
        given,
        input,
        members,
    })
}

/// A line's object with its `members` (any letter case) kept as text.
struct Split<'a> {
    rest: serde_json::Map<String, Value>,
    members: Option<&'a RawValue>,
}

impl<'a> Split<'a> {
    fn of(line: &'a str) -> Result<Split<'a>, serde_json::Error> {
        let Fields(fields) = serde_json::from_str(line)?;
        let (mut rest, mut members) = (serde_json::Map::new(), None);
        for (Key(k), raw) in fields {
            if k.eq_ignore_ascii_case("members") {
                members = Some(raw);
            } else {
                rest.insert(k.into_owned(), serde_json::from_str(raw.get())?);
            }
        }
        Ok(Split { rest, members })
    }
}

/// A group's members, `IMPORT_MEMBERS_AT_ONCE` at a time, each chunk of text checked as a
/// write checks members (`normalize_members`).
enum Members<'a> {
    Items(crate::scim::json::ArrayItems<'a>),
    /// Members not written as an array (`null`, one object): read in one go.
    Whole(Option<&'a str>),
    Read(std::slice::Chunks<'a, Value>),
}

impl<'a> Members<'a> {
    fn of(source: &'a MemberSource<'_>) -> Members<'a> {
        match source {
            MemberSource::Text(raw) => match crate::scim::json::ArrayItems::new(raw.get()) {
                Some(items) => Members::Items(items),
                None => Members::Whole(Some(raw.get())),
            },
            MemberSource::Read(list) => Members::Read(list.chunks(IMPORT_MEMBERS_AT_ONCE)),
        }
    }
}

impl Iterator for Members<'_> {
    type Item = Result<Vec<Value>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let raw: Result<Value, serde_json::Error> = match self {
            Members::Read(chunks) => return chunks.next().map(|c| Ok(c.to_vec())),
            Members::Whole(text) => serde_json::from_str(text.take()?),
            Members::Items(items) => items
                .by_ref()
                .take(IMPORT_MEMBERS_AT_ONCE)
                .map(serde_json::from_str)
                .collect::<Result<Vec<Value>, _>>()
                .map(Value::Array),
        };
        match raw {
            Ok(Value::Array(a)) if a.is_empty() => None,
            Ok(v) => {
                Some(crate::scim::resource::normalize_members(&v).map_err(|e| e.detail.to_string()))
            }
            Err(e) => Some(Err(format!("members: not JSON: {e}"))),
        }
    }
}

/// A digest of a unique name as the tenant compares it (folded): what the first pass keeps
/// of each, instead of the name.
fn name_digest(name: &str) -> [u8; 16] {
    name_digest_raw(&crate::scim::fold::fold(name))
}

/// The first 16 bytes of `text`'s SHA-256.
fn name_digest_raw(text: &str) -> [u8; 16] {
    let d = crate::auth::digest(text);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// What an import did: resources written, and lines skipped as already in the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub written: u64,
    pub skipped: u64,
}

/// The attribute unique per tenant for `kind`, as an import checks it.
fn name_attr(kind: Kind) -> &'static str {
    match kind {
        Kind::User => "userName",
        Kind::Group => "displayName",
    }
}

fn unique_name(kind: Kind, body: &crate::scim::resource::Body) -> Option<&str> {
    body.get(name_attr(kind)).and_then(Value::as_str)
}

/// The kind of resource `id` is in `tenant`, if it is there.
async fn held_as(store: &Store, tenant: &str, id: u128) -> Result<Option<Kind>, String> {
    for kind in [Kind::User, Kind::Group] {
        match store
            .get(tenant.to_string(), kind, crate::store::format_id(id), false)
            .await
        {
            Ok(_) => return Ok(Some(kind)),
            Err(crate::store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(None)
}

/// The id of the resource of `kind` whose unique name is `name` (case-insensitively).
async fn holder_of(
    store: &Store,
    rt: &crate::http::Runtime,
    tenant: &str,
    kind: Kind,
    name: &str,
) -> Result<Option<String>, String> {
    let text = format!("{} eq {}", name_attr(kind), Value::String(name.to_string()));
    let filter =
        crate::scim::filter::parse_for(rt.rt(Some(tenant), kind), &text).map_err(|e| e.detail)?;
    let q = crate::store::ListQuery {
        filter: Some(filter),
        count: 1,
        ..Default::default()
    };
    let page = list(store, rt, tenant, kind, q).await?;
    Ok(page.items.first().map(|r| r.id.clone()))
}

/// One page of `tenant`'s resources of `kind`, from the first (`start_index` 1).
async fn list(
    store: &Store,
    rt: &crate::http::Runtime,
    tenant: &str,
    kind: Kind,
    q: crate::store::ListQuery,
) -> Result<crate::store::ListPage, String> {
    let q = crate::store::ListQuery {
        start_index: 1,
        ..q
    };
    store
        .list(tenant.to_string(), rt.rt(Some(tenant), kind), q)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::config::{Config, TenantConfig};
    use crate::store::Store;

    const U: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
    const G: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

    fn id(i: u32) -> String {
        format!("01900000-0000-7000-8000-{i:012x}")
    }

    fn user(i: u32, extra: Value) -> String {
        let mut v = json!({"schemas": [U], "id": id(i), "userName": format!("u{i}@x")});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v.to_string()
    }

    /// The import's result, and the group's member ids as exported after it.
    async fn import(lines: &[String]) -> (Result<u64, String>, Vec<String>) {
        import_to(TenantConfig::default(), lines).await
    }

    async fn import_to(
        tenant: TenantConfig,
        lines: &[String],
    ) -> (Result<u64, String>, Vec<String>) {
        let (r, exported) = import_after(tenant, &[], lines).await;
        let members = exported
            .iter()
            .filter(|v| v["schemas"][0] == G)
            .flat_map(|g| g["members"].as_array().cloned().unwrap_or_default())
            .map(|m| m["value"].as_str().unwrap().to_string())
            .collect();
        (r, members)
    }

    /// `lines` imported into a tenant where `before` were imported first: the result, and
    /// the tenant's lines as exported after it.
    async fn import_after(
        tenant: TenantConfig,
        before: &[String],
        lines: &[String],
    ) -> (Result<u64, String>, Vec<Value>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), 1 << 20).unwrap();
        let mut cfg = Config::default();
        cfg.tenants.insert("t".into(), tenant);
        let mut r = Ok(0);
        for (i, lines) in [before, lines].into_iter().enumerate() {
            if lines.is_empty() {
                continue;
            }
            let path = dir.path().join(format!("in{i}.jsonl"));
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
            r = super::import(&store, &cfg, "t", &path, &mut |_, _| {})
                .await
                .map(|i| i.written);
        }
        let mut out = Vec::new();
        crate::admin::export(&store, &cfg, "t", &mut out)
            .await
            .ok()
            .unwrap();
        let exported = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect();
        (r, exported)
    }

    /// Values of an extension this tenant does not declare are not dropped: the import is
    /// refused, naming the line and the URN, and writes nothing.
    #[tokio::test]
    async fn an_undeclared_extension_refuses_the_import() {
        const EXT: &str = "urn:ietf:params:scim:schemas:extension:acme:2.0:User";
        let lines = [
            user(1, json!({})),
            user(2, json!({"schemas": [U, EXT], EXT: {"costCenter": "42"}})),
        ];
        let (r, exported) = import_after(TenantConfig::default(), &[], &lines).await;
        let e = r.expect_err("refused");
        assert!(
            e.starts_with(&format!("line 2: {EXT} not declared for tenant t")),
            "{e}"
        );
        assert!(exported.is_empty(), "{exported:?}");
        // Named as a key alone, without `schemas`, it is refused all the same.
        let bare = [user(3, json!({EXT: {"costCenter": "42"}}))];
        let (r, _) = import_after(TenantConfig::default(), &[], &bare).await;
        assert!(r.expect_err("refused").starts_with("line 1: urn:"));
    }

    /// A tenant moved to another host keeps who is paid and who waits on free (as seats came
    /// free there, not as creation order would seat them), and its feed's readers are sent
    /// to read it all again rather than on through numbers the new host gave other changes.
    #[tokio::test]
    async fn a_host_move_keeps_the_plan_and_restarts_the_feed() {
        use crate::config::{PlanConfig, SeatLimitPolicy};
        use crate::scim::patch::{OpKind, Operation};
        use crate::store::plan::Status;
        let tenant = TenantConfig {
            plan: Some(PlanConfig {
                name: "P".into(),
                test_threshold: 1,
                seats: Some(2),
                on_seat_limit: SeatLimitPolicy::Free,
                existing_members: Vec::new(),
            }),
            ..TenantConfig::default()
        };
        let mut cfg = Config::default();
        cfg.tenants.insert("t".into(), tenant);
        let rt = crate::http::Runtime::new(cfg.clone());
        let (urt, actor) = (
            rt.rt(Some("t"), crate::scim::schema::Kind::User),
            rt.actor("t", "idp"),
        );
        let dir = tempfile::tempdir().unwrap();
        let old = Store::open(&dir.path().join("old.redb"), 1 << 20).unwrap();
        let mut ids = Vec::new();
        for name in ["a", "b", "c"] {
            let input = crate::scim::resource::normalize(urt, &json!({"userName": name})).unwrap();
            ids.push(old.create(actor.clone(), urt, input).await.unwrap().id);
        }
        // c waits; b leaves and c takes its seat; b comes back and waits.
        for active in [false, true] {
            let op = Operation {
                op: OpKind::Replace,
                path: Some("active".into()),
                value: Some(Value::Bool(active)),
            };
            let cond = crate::store::Conditions::default();
            old.patch(actor.clone(), urt, ids[1].clone(), vec![op], cond)
                .await
                .unwrap();
        }
        let rules = actor.plan.clone().unwrap();
        let on = |store: &Store, status| {
            let (store, rules) = (store.clone(), rules.clone());
            async move {
                let from = crate::store::PlanFrom::Index(1);
                let page = store.plan_members("t".into(), rules, Some(status), from, 10);
                let names = page.await.unwrap().entries.into_iter().map(|e| e.user_name);
                names.collect::<Vec<_>>()
            }
        };
        assert_eq!(
            (on(&old, Status::Paid).await, on(&old, Status::Free).await),
            (vec!["a".to_string(), "c".into()], vec!["b".to_string()])
        );
        let retention = actor.retention;
        let read_up_to = old
            .events("t".into(), 0, 1000, retention)
            .await
            .unwrap()
            .last;

        let mut file = Vec::new();
        crate::admin::export(&old, &cfg, "t", &mut file)
            .await
            .ok()
            .unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, file).unwrap();
        let new = Store::open(&dir.path().join("new.redb"), 1 << 20).unwrap();
        let done = super::import(&new, &cfg, "t", &path, &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(done.written, 3);
        assert_eq!(on(&new, Status::Paid).await, ["a", "c"]);
        assert_eq!(on(&new, Status::Free).await, ["b"]);
        // The old host's reader is past every event the new feed keeps: 410, not a feed
        // that goes on from its number with other changes.
        let feed = new
            .events("t".into(), read_up_to, 1000, retention)
            .await
            .unwrap();
        assert!(read_up_to + 1 < feed.oldest, "{read_up_to} {}", feed.oldest);
    }

    /// However a line gives a group's members, the group gets them, its line coming before
    /// theirs; a user's line naming members is a user (the key is ignored, as before).
    #[tokio::test]
    async fn members_in_every_form_a_line_gives_them() {
        let group = |members: Value| {
            json!({"schemas": [G], "id": id(100), "displayName": "G"})
                .as_object()
                .unwrap()
                .clone()
                .into_iter()
                .chain(members.as_object().unwrap().clone())
                .collect::<serde_json::Map<String, Value>>()
        };
        let one = vec![id(1)];
        let cases = [
            (json!({"members": [{"value": id(1)}]}), one.clone()),
            (json!({"Members": [{"value": id(1)}]}), one.clone()),
            (
                json!({(format!("{G}:members")): [{"value": id(1)}]}),
                one.clone(),
            ),
            (json!({G: {"members": [{"value": id(1)}]}}), one.clone()),
            (json!({"members": {"value": id(1)}}), one.clone()),
            (json!({"members": null}), vec![]),
            (json!({"members": []}), vec![]),
            (
                json!({"members": [{"value": id(1), "display": "é,]\"}"}, {"value": id(2)}]}),
                vec![id(1), id(2)],
            ),
        ];
        for (members, want) in cases {
            let g = Value::Object(group(members.clone())).to_string();
            let (r, got) = import(&[g, user(1, json!({})), user(2, json!({}))]).await;
            assert_eq!(r, Ok(3), "{members}");
            assert_eq!(got, want, "{members}");
        }
        for members in [json!([{"value": id(1)}]), json!("junk")] {
            let (r, got) =
                import(&[user(1, json!({})), user(3, json!({"members": members}))]).await;
            assert_eq!(r, Ok(2), "{members}");
            assert!(got.is_empty());
        }
        // A line that is JSON but no object is named so.
        let (r, _) = import(&[user(1, json!({})), "[1]".to_string()]).await;
        assert!(r.unwrap_err().starts_with("line 2: not a JSON object"));
        // A member that is no member is named with its line, and nothing is written.
        let g = Value::Object(group(
            json!({"members": [{"value": id(1), "type": "Robot"}]}),
        ));
        let (r, _) = import(&[user(1, json!({})), g.to_string()]).await;
        assert!(r.unwrap_err().starts_with("line 2: member type must be"));
    }

    const EXT: &str = "urn:ietf:params:scim:schemas:extension:t:2.0:User";

    /// A tenant whose users have a unique custom attribute `code`.
    fn with_unique_code() -> TenantConfig {
        TenantConfig {
            extensions: vec![
                serde_json::from_value(json!({"urn": EXT, "name": "T",
                    "attributes": [{"name": "code", "uniqueness": "server"}]}))
                .unwrap(),
            ],
            ..Default::default()
        }
    }

    fn code(v: &str) -> Value {
        json!({"schemas": [U, EXT], EXT: {"code": v}})
    }

    /// A unique custom attribute's value twice in the file (letter case aside, as it is
    /// compared) refuses the file before anything is written, naming both lines.
    #[tokio::test]
    async fn a_unique_value_twice_in_the_file_refuses_it() {
        let tenant = with_unique_code();
        let lines = [user(1, code("V")), user(2, json!({})), user(3, code("v"))];
        let (r, _) = import_to(tenant.clone(), &lines).await;
        let e = r.unwrap_err();
        assert!(
            e.starts_with(&format!("line 3: {EXT}:code \"v\" is also on line 1")),
            "{e}"
        );
        let lines = [user(1, code("V")), user(3, code("W"))];
        assert_eq!(import_to(tenant, &lines).await.0, Ok(2));
    }

    /// A unique custom value that a resource already in the tenant holds refuses the file
    /// before anything is written, as a taken userName does; a line skipped as already
    /// there keeps its own value without being refused for it.
    #[tokio::test]
    async fn a_unique_value_held_in_the_tenant_refuses_the_file() {
        let before = [user(1, code("V"))];
        let lines = [user(2, json!({})), user(3, code("v"))];
        let (r, exported) = import_after(with_unique_code(), &before, &lines).await;
        let e = r.unwrap_err();
        assert!(
            e.starts_with(&format!(
                "line 2: {EXT}:code \"v\" is taken in tenant t by {}, and it is unique",
                id(1)
            )),
            "{e}"
        );
        assert_eq!(exported.len(), 1, "nothing written: {exported:?}");
        let lines = [user(1, code("V")), user(2, json!({})), user(3, code("W"))];
        let (r, exported) = import_after(with_unique_code(), &before, &lines).await;
        assert_eq!((r, exported.len()), (Ok(2), 3));
    }

    /// A unique number is one value however it is written, in the file and against the
    /// tenant, as a write compares it: found before anything is written, not by a 409
    /// halfway through.
    #[tokio::test]
    async fn a_unique_number_is_found_twice_under_either_spelling() {
        let tenant = || TenantConfig {
            extensions: vec![
                serde_json::from_value(json!({"urn": EXT, "name": "T",
                    "attributes": [{"name": "n", "type": "decimal", "uniqueness": "server"}]}))
                .unwrap(),
            ],
            ..Default::default()
        };
        let n = |v: Value| json!({"schemas": [U, EXT], EXT: {"n": v}});
        for (a, b) in [(json!(5), json!(5.0)), (json!(0), json!(-0.0))] {
            let lines = [user(1, n(a.clone())), user(2, n(b.clone()))];
            let (r, _) = import_to(tenant(), &lines).await;
            let e = r.unwrap_err();
            assert!(
                e.starts_with("line 2: ") && e.contains("is also on line 1"),
                "{e}"
            );
            let (r, exported) = import_after(tenant(), &[user(1, n(a))], &[user(2, n(b))]).await;
            let e = r.unwrap_err();
            assert!(
                e.contains(&format!("is taken in tenant t by {}", id(1))),
                "{e}"
            );
            assert_eq!(exported.len(), 1, "nothing written: {exported:?}");
        }
    }
}
