//! Reading the file and the environment, with every unknown key named in one run.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use super::{Config, ConfigError};

impl Config {
    /// Read `path`, apply `SCIMD_` environment overrides, and validate.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |problems: Vec<String>| ConfigError {
            file: path.to_path_buf(),
            problems,
            parsed: None,
            salvaged: None,
        };
        // figment's file provider quietly yields nothing for a missing file; check first.
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => return Err(fail(vec![format!("cannot read the file: {e}")])),
        };
        // Said as such: its settings' absence (no tenant, no certificate) would mislead.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(fail(vec![
                "the file is empty: was it cut short (a full disk, an interrupted copy)? Put \
                 back a copy of it, or start again from config.example.toml"
                    .into(),
            ]));
        }
        // Whoever can write the file decides who may provision: refuse a file anyone can edit.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(path)
                && m.permissions().mode() & 0o002 != 0
            {
                return Err(fail(vec![format!(
                    "the file is writable by every user, so anyone could add a token; run `chmod o-w {}`",
                    path.display()
                )]));
            }
            // Nor one in a directory where anyone may put another file in its place (the
            // sticky bit, as on /tmp, stops that).
            let dir = std::path::absolute(path)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf));
            if let Some(dir) = dir
                && let Ok(m) = std::fs::metadata(&dir)
                && m.permissions().mode() & 0o1002 == 0o002
            {
                return Err(fail(vec![format!(
                    "the directory {} is writable by every user, so anyone could replace the \
                     file and add a token; run `chmod o-w {}`",
                    dir.display(),
                    dir.display()
                )]));
            }
        }
        #[cfg(test)]
        let _env = super::test_env::reading();
        let with_env = |fig: Figment| {
            fig.merge(
                // Only the sections that may be overridden: tenants stay file-only, and
                // unrelated SCIMD_* variables in the environment are not config keys.
                Env::prefixed("SCIMD_").split("__").filter(|k| {
                    let section = k.as_str().split(['.', '_']).next().unwrap_or("");
                    ENV_SECTIONS.contains(&section.to_ascii_lowercase().as_str())
                }),
            )
        };
        let defaults = || Figment::from(Serialized::defaults(Config::default()));
        // Relative paths in the file are relative to the file, so the same config works
        // whatever directory scimd is started from.
        let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let canonical = std::fs::canonicalize(&file).unwrap_or(file);
        let settle = |mut cfg: Config| {
            cfg.file_path = canonical.clone();
            // An empty one stays so, to be named (`problems`), not read as this directory.
            if !cfg.storage.dir.as_os_str().is_empty() {
                cfg.storage.dir = absolutize(&base, &cfg.storage.dir);
            }
            cfg.tls.cert = cfg.tls.cert.as_deref().map(|p| absolutize(&base, p));
            cfg.tls.key = cfg.tls.key.as_deref().map(|p| absolutize(&base, p));
            cfg
        };
        let mut cfg: Config = match with_env(defaults().merge(Toml::file_exact(path))).extract() {
            Ok(c) => settle(c),
            Err(e) => {
                // Deserializing stops at the first unknown key or value of the wrong type.
                // There may be several: each is taken out of a copy of the file and the
                // copy read again, so that one run names them all.
                let mut problems = figment_problems(e.clone(), false);
                // Paths taken out of the copy, and arrays an entry was taken out of.
                let (mut dropped, mut emptied) = (Vec::new(), Vec::new());
                let (mut doc, blanked_keys) = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(parse_around_errors)
                    .map_or((None, None), |(d, keys)| (Some(d), keys));
                let mut unread = blanked_keys.is_some();
                let blanked_keys = blanked_keys.unwrap_or_default();
                let mut salvaged = None;
                let mut last = e;
                // Lines a syntax error blanked may have held a tenant's tokens: its "no
                // token" would be the blanking's doing, and the syntax error is named.
                let blanked_lines = unread;
                for _ in 0..32 {
                    let Some(d) = doc.as_mut() else {
                        break;
                    };
                    // A copy with a syntax error's lines blanked out is read at least once.
                    let blanked = std::mem::take(&mut unread);
                    let bad = drop_bad_keys(d, &last, &mut dropped);
                    if !bad && !blanked && !drop_holders_of_missing(d, &last, &mut emptied) {
                        break;
                    }
                    match with_env(defaults().merge(Toml::string(&d.to_string())))
                        .extract::<Config>()
                    {
                        Ok(c) => {
                            // What the copy lacks is named above already ("the tenant has
                            // no token" after its one token was taken out for its type), and
                            // so is what a section says of a key taken out of it ("tls: no
                            // certificate" once `self_signed = "yes"` was).
                            let touched = |p: &String| {
                                dropped.iter().chain(&emptied).any(|t: &String| {
                                    let key = p.split(": ").next().unwrap_or("");
                                    key == t
                                        || key.starts_with(&format!("{t}."))
                                        || t.starts_with(&format!("{key}."))
                                })
                            };
                            let c = settle(c);
                            // Past a syntax error, what the copy lacks may be what the
                            // blanked lines held (`oops = [` on the first line takes the
                            // whole file): "no tenant", "no certificate" would mislead.
                            if !blanked_lines {
                                problems.extend(c.problems().into_iter().filter(|p| !touched(p)));
                            }
                            salvaged = Some(Box::new(c));
                            break;
                        }
                        Err(e) => {
                            // A required key taken out for its type is not missing as well.
                            if let Some(shown) = without_missing(e.clone(), &dropped, &blanked_keys)
                            {
                                problems.extend(figment_problems(shown, true));
                            }
                            last = e;
                        }
                    }
                }
                problems.dedup();
                return Err(ConfigError {
                    salvaged,
                    ..fail(problems)
                });
            }
        };
        cfg.file_digest = crate::auth::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let problems = cfg.problems();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError {
                problems,
                parsed: Some(Box::new(cfg)),
                ..fail(Vec::new())
            })
        }
    }
}

/// `text` as a TOML document, with each line a syntax error points at blanked out (at most
/// 32) so that the rest can still be read, and the keys those lines set (`None`: no line
/// was blanked).
fn parse_around_errors(text: &str) -> Option<(toml_edit::DocumentMut, Option<Vec<String>>)> {
    let mut text = text.to_string();
    let mut keys = Vec::new();
    for i in 0..32 {
        let err = match text.parse::<toml_edit::DocumentMut>() {
            Ok(d) => return Some((d, (i > 0).then_some(keys))),
            Err(e) => e,
        };
        let mut at = err.span()?.start.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let mut start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let mut end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        if text[start..end].trim().is_empty() {
            // An error on an empty line or at the end: an array or string left open ran
            // there, so the last line with anything on it goes (a half-typed entry, then the
            // `tokens = [` it was typed into).
            end = text[..start].trim_end().len();
            if end == 0 {
                return None;
            }
            start = text[..end].rfind('\n').map_or(0, |i| i + 1);
        }
        // A table header refused (a second `[tenants.acme]` or `[server]`) takes its keys
        // with it: left, they would be read as the previous table's and named as unknown
        // there, which is not the mistake.
        if text[start..end].trim_start().starts_with('[') {
            let mut next = end;
            while next < text.len() {
                let line_end = text[next + 1..]
                    .find('\n')
                    .map_or(text.len(), |i| next + 1 + i);
                if text[next + 1..line_end].trim_start().starts_with('[') {
                    break;
                }
                next = line_end;
            }
            end = next;
        }
        // `name = "Pro` sets `name` as far as its author knows: the table is not missing it.
        keys.extend(text[start..end].lines().filter_map(|line| {
            let (key, _) = line.split_once('=')?;
            let last = key.rsplit('.').next()?.trim().trim_matches(['"', '\'']);
            Some(last.to_string())
        }));
        text.replace_range(start..end, "");
    }
    None
}

fn absolutize(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Take every key `err` reports as unknown, or as holding a value of the wrong type, out of
/// `doc`, noting each one's path in `dropped`; whether any was.
fn drop_bad_keys(
    doc: &mut toml_edit::DocumentMut,
    err: &figment::Error,
    dropped: &mut Vec<String>,
) -> bool {
    use figment::error::Kind;
    let mut any = false;
    for e in err.clone() {
        // The path ends in the key itself; what comes before leads to its table.
        let path: Vec<&String> = e.path.iter().filter(|s| s.as_str() != "default").collect();
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let key = match &e.kind {
            Kind::UnknownField(found, _) => found.as_str(),
            Kind::InvalidType(..)
            | Kind::InvalidValue(..)
            | Kind::InvalidLength(..)
            | Kind::UnknownVariant(..) => last.as_str(),
            _ => continue,
        };
        if table_at(doc.as_item_mut(), parents).is_some_and(|t| t.remove(key).is_some()) {
            any = true;
            dropped.push(join_path(parents.iter().copied().chain([&key.to_string()])));
        }
    }
    any
}

/// A key's path as the rest of scimd's messages write it: `tenants.acme.tokens[0].sha256`.
fn join_path<'a>(parts: impl IntoIterator<Item = &'a String>) -> String {
    let mut out = String::new();
    for p in parts.into_iter().filter(|s| s.as_str() != "default") {
        if p.parse::<usize>().is_ok() {
            out.push_str(&format!("[{p}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(p);
        }
    }
    out
}

/// A required key missing from the file, or taken out of the copy for its type, leaves its
/// table unreadable, and reading stops there: take out the table (a tenant's token entry, a
/// plan without its name) so the rest can be read. Whether any was.
fn drop_holders_of_missing(
    doc: &mut toml_edit::DocumentMut,
    err: &figment::Error,
    emptied: &mut Vec<String>,
) -> bool {
    let mut any = false;
    for e in err.clone() {
        let figment::error::Kind::MissingField(_) = &e.kind else {
            continue;
        };
        let holder: Vec<&String> = e.path.iter().filter(|s| s.as_str() != "default").collect();
        let Some((last, parents)) = holder.split_last() else {
            continue;
        };
        let Some(outer) = item_at(doc.as_item_mut(), parents) else {
            continue;
        };
        let removed = match (last.parse::<usize>(), outer) {
            (Ok(i), toml_edit::Item::Value(toml_edit::Value::Array(a))) if i < a.len() => {
                a.remove(i);
                true
            }
            (Ok(i), toml_edit::Item::ArrayOfTables(a)) if i < a.len() => {
                a.remove(i);
                true
            }
            (_, item) => item
                .as_table_like_mut()
                .is_some_and(|t| t.remove(last).is_some()),
        };
        if removed {
            emptied.push(join_path(parents.iter().copied()));
        }
        any |= removed;
    }
    any
}

/// `err` less the "missing field" errors for keys in `dropped` (by path) or set on a line a
/// syntax error blanked (`blanked`, by name), if any are left.
fn without_missing(
    err: figment::Error,
    dropped: &[String],
    blanked: &[String],
) -> Option<figment::Error> {
    let kept: Vec<figment::Error> = err
        .into_iter()
        .filter(|e| match &e.kind {
            figment::error::Kind::MissingField(f) => {
                let mut at = e.path.clone();
                at.push(f.to_string());
                !dropped.contains(&join_path(&at)) && !blanked.iter().any(|k| k == f)
            }
            _ => true,
        })
        .collect();
    let mut kept = kept.into_iter();
    let first = kept.next()?;
    Some(kept.fold(first, |all, e| all.chain(e)))
}

/// The table (or inline table) at `path`: keys, and indexes into arrays.
fn table_at<'a>(
    item: &'a mut toml_edit::Item,
    path: &[&String],
) -> Option<&'a mut dyn toml_edit::TableLike> {
    item_at(item, path)?.as_table_like_mut()
}

fn item_at<'a>(item: &'a mut toml_edit::Item, path: &[&String]) -> Option<&'a mut toml_edit::Item> {
    match path.split_first() {
        None => Some(item),
        Some((p, rest)) => {
            let next = match p.parse::<usize>() {
                Ok(i) if item.is_array() || item.is_array_of_tables() => item.get_mut(i),
                _ => item.get_mut(p.as_str()),
            }?;
            item_at(next, rest)
        }
    }
}

/// The tables of the file that take `key`: `[server]`, `[tls]`, `[storage]`, `[log]`,
/// `[tenants.NAME]`.
fn tables_with_key(key: &str) -> Vec<String> {
    let has = |v: serde_json::Result<serde_json::Value>| v.is_ok_and(|v| v.get(key).is_some());
    let config = serde_json::to_value(Config::default()).unwrap_or_default();
    let mut homes: Vec<String> = ENV_SECTIONS
        .iter()
        .filter(|s| config.get(**s).is_some_and(|t| t.get(key).is_some()))
        .map(|s| format!("[{s}]"))
        .collect();
    if has(serde_json::to_value(super::TenantConfig::default())) {
        homes.push("[tenants.NAME]".into());
    }
    homes
}

/// The sections `SCIMD_` environment variables may set (tenants come from the file only).
pub(super) const ENV_SECTIONS: [&str; 4] = ["server", "tls", "storage", "log"];

/// `err`'s problems, one line each. `reread`: the file was read again from a copy with
/// unknown keys taken out, so what is not from the environment is from the file.
fn figment_problems(err: figment::Error, reread: bool) -> Vec<String> {
    err.into_iter()
        .map(|e| {
            let key = join_path(&e.path);
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(figment::Source::File(_)) => " (in the file)".to_string(),
                    _ if m.name.contains("environment") => {
                        " (from an SCIMD_ environment variable)".to_string()
                    }
                    _ if reread => " (in the file)".to_string(),
                    _ => String::new(),
                })
                .unwrap_or_default();
            // These messages also go to the journal on a reload, and a token pasted where its
            // hash belongs must not. A value of the wrong type is named by its type only...
            let from_env = e
                .metadata
                .as_ref()
                .is_some_and(|m| m.name.contains("environment"));
            let kind = match &e.kind {
                figment::error::Kind::InvalidType(actual, expected) => {
                    format!(
                        "invalid type: found {}, expected {}",
                        found_as_said(actual),
                        expected_as_said(expected)
                    )
                }
                // A number out of its key's range (`-1` where a count belongs).
                figment::error::Kind::InvalidValue(actual, expected) => {
                    format!(
                        "invalid value: found {}, expected {}",
                        found_as_said(actual),
                        expected_as_said(expected)
                    )
                }
                // figment's own text nests backticks (`one of `a`, `b``).
                figment::error::Kind::UnknownField(found, expected) => {
                    // SCIMD_LOG_LEVEL for SCIMD_LOG__LEVEL: the one underscore is the level,
                    // and the unknown key is a section's name run into its key. Inside a
                    // section (`server.max_result`) the underscore is the key's own.
                    let homes = tables_with_key(found);
                    let here = match e.path.as_slice() {
                        [t, _] if t == "tenants" => "[tenants.NAME]".to_string(),
                        [section] => format!("[{section}]"),
                        _ => String::new(),
                    };
                    let hint = if from_env
                        && e.path.len() == 1
                        && found.contains('_')
                        && !found.contains("__")
                    {
                        format!(
                            "; nested keys take a double underscore, as in SCIMD_{}",
                            found.to_ascii_uppercase().replacen('_', "__", 1)
                        )
                    } else if !from_env && !homes.is_empty() && !homes.contains(&here) {
                        // An option uncommented where the example's notes sit lands in the
                        // table above them.
                        format!(
                            "; \"{found}\" is a key of {}: move it there",
                            homes.join(" or ")
                        )
                    } else {
                        String::new()
                    };
                    format!(
                        "unknown key \"{found}\"; expected one of {}{hint}",
                        expected.join(", ")
                    )
                }
                figment::error::Kind::UnknownVariant(found, expected) => format!(
                    "unknown value \"{found}\"; expected one of {}",
                    expected.join(", ")
                ),
                k => k.to_string(),
            };
            // ...and a TOML syntax error keeps its position and reason, not the quoted line.
            let kind = kind
                .lines()
                .filter(|l| {
                    !l.trim_start()
                        .trim_start_matches(|c: char| c.is_ascii_digit())
                        .trim_start()
                        .starts_with('|')
                })
                .collect::<Vec<_>>();
            // The position, then the reason: "… line 2, column 26: invalid basic string".
            let why = kind.get(1..).unwrap_or_default().join(" ");
            let kind = match kind.first() {
                Some(at)
                    if at.starts_with("TOML parse error at line") && !why.trim().is_empty() =>
                {
                    format!("{}: {}", at.trim_end(), why.trim())
                }
                _ => kind.join(" "),
            };
            // toml gives some errors (a stray carriage return) no reason at all.
            let kind = match kind.trim().split_once(", column ") {
                Some((at, col))
                    if at.starts_with("TOML parse error at line")
                        && col.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    format!(
                        "{}: the parser gives no reason; look there for a stray character, such \
                         as a carriage return from a copy-paste",
                        kind.trim()
                    )
                }
                _ => kind,
            };
            let kind = match super::problems::least_of(&key) {
                Some(n) => kind.replace(
                    "a whole number, 0 or more",
                    &format!("a whole number, {n} or more"),
                ),
                None => kind,
            };
            if key.is_empty() {
                format!("{kind}{source}")
            } else {
                format!("{key}: {kind}{source}")
            }
        })
        .collect()
}

/// A value of the wrong type as an admin would say it; a string is never quoted (a token
/// pasted where its hash belongs must not reach the journal).
fn found_as_said(actual: &figment::error::Actual) -> String {
    use figment::error::Actual;
    match actual {
        Actual::Str(_) => "a string".into(),
        Actual::Bool(b) => b.to_string(),
        Actual::Unsigned(n) => format!("the number {n}"),
        Actual::Signed(n) => format!("the number {n}"),
        Actual::Float(n) => format!("the number {n}"),
        Actual::Seq => "a list".into(),
        Actual::Map => "a table".into(),
        other => other.to_string(),
    }
}

/// What serde calls the wanted type (`usize`, `f64`), in words.
fn expected_as_said(expected: &str) -> String {
    match expected {
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u64" | "u128" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number (such as 50 or 2.5)".into(),
        "a boolean" | "bool" => "true or false".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use crate::config::tests::GOOD;
    use figment::Jail;

    #[test]
    fn loads_and_env_overrides_server_keys() {
        crate::config::test_env::jail(|jail| {
            jail.create_file("scimd.toml", GOOD)?;
            jail.set_env("SCIMD_SERVER__MAX_RESULTS", "50");
            jail.set_env("SCIMD_UNRELATED", "x");
            jail.set_env("SCIMD_TENANTS__EVIL__TOKENS", "[]");
            let cfg = Config::load(Path::new("scimd.toml")).map_err(|e| e.to_string())?;
            assert_eq!(cfg.server.max_results, 50);
            assert!(cfg.storage.dir.ends_with("data"));
            assert_eq!(cfg.tenants["acme"].tokens[0].name, "okta");
            assert_eq!(cfg.tenants.len(), 1, "tenants come from the file only");
            Ok(())
        });
    }

    #[test]
    fn an_empty_file_is_called_empty() {
        Jail::expect_with(|jail| {
            for text in ["", " \n\t\n"] {
                jail.create_file("scimd.toml", text)?;
                let e = Config::load(Path::new("scimd.toml")).unwrap_err();
                assert_eq!(e.problems.len(), 1, "{e}");
                assert!(e.problems[0].starts_with("the file is empty"), "{e}");
            }
            Ok(())
        });
    }

    /// Keys typed wrong are all named in one run, with what else is wrong beside them.
    #[test]
    fn every_unknown_key_and_the_problems_past_them_are_named_at_once() {
        Jail::expect_with(|jail| {
            let text = GOOD
                .replace("[tls]", "[tls]\nself_sgned = 1\nlisten = \"0.0.0.0:8443\"")
                .replace("[storage]", "[log]\nrate_limit = 2\n[storage]")
                .replace(
                    "listen = \"127.0.0.1:0\"",
                    "listen = \"127.0.0.1:0\"\nlistn = 1",
                )
                .replace(
                    "tokens = [{ name = \"okta\",",
                    "displayname = \"A\"\ntokens = [{ nme = \"x\", name = \"okta\",",
                )
                .replace("9f86", "sha256:9f86")
                + "[tenants.beta]\ntoken = []\n";
            jail.create_file("bad.toml", &text)?;
            let err = Config::load(Path::new("bad.toml")).expect_err("seven problems");
            let all = err.problems.join("\n");
            for needle in [
                "tls.self_sgned: unknown key",
                "server.listn: unknown key",
                "tenants.acme.displayname: unknown key",
                "tenants.acme.tokens[0].nme: unknown key",
                "tenants.beta.token: unknown key",
                "(drop the \"sha256:\" in front)",
                "log.rate_limit: unknown key \"rate_limit\"; expected one of level, format; \"rate_limit\" is a key of [tenants.NAME]: move it there",
                "tls.listen: unknown key \"listen\"; expected one of",
                "\"listen\" is a key of [server]: move it there",
            ] {
                assert!(all.contains(needle), "{needle} not in:\n{all}");
            }
            assert!(
                err.problems
                    .iter()
                    .all(|p| !p.contains("unknown key") || p.ends_with("(in the file)")),
                "{all}"
            );
            // Read again, relative paths still mean next to the file, not where scimd runs.
            jail.create_dir("sub")?;
            jail.create_file("sub/c.pem", "x")?;
            jail.create_file("sub/k.pem", "x")?;
            let text = GOOD.replace(
                "self_signed = true",
                "cert = \"c.pem\"\nkey = \"k.pem\"\ncolour = 1",
            );
            jail.create_file("sub/typo.toml", &text)?;
            let err = Config::load(Path::new("sub/typo.toml")).expect_err("a typo");
            assert_eq!(err.problems.len(), 1, "{:?}", err.problems);
            // A required key missing from a table hides nothing after it.
            let text = GOOD.replace("[tls]", "[tls]\nzz = 1") + "[tenants.acme.plan]\nseats = 5\n";
            jail.create_file("missing.toml", &text)?;
            let err = Config::load(Path::new("missing.toml")).expect_err("two problems");
            let all = err.problems.join("\n");
            for needle in [
                "tenants.acme.plan: missing field `name`",
                "tls.zz: unknown key",
            ] {
                assert!(all.contains(needle), "{needle} not in:\n{all}");
            }
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        Jail::expect_with(|jail| {
            let cases = [
                (
                    GOOD.replace("self_signed = true", "self_signed = true\ncolour = 1"),
                    "colour",
                ),
                (
                    GOOD.replace("listen = \"127.0.0.1:0\"", "listen = 5"),
                    "server.listen",
                ),
                (
                    GOOD.replace("tokens = [", "tokens = [] #"),
                    "tenants.acme.tokens",
                ),
                (GOOD.replace("9f86", "zz"), "tenants.acme.tokens[0].sha256"),
                (
                    GOOD.replace(
                        "self_signed = true",
                        "cert = \"nope.pem\"\nkey = \"nope.key\"",
                    ),
                    "tls.cert: cannot read",
                ),
                (GOOD.replace("[tls]", "[server2]"), "server2"),
                (
                    GOOD.replace("[tls]", "[log]\nlevel = \"verbose\"\n[tls]"),
                    "log.level: \"verbose\" is not a level",
                ),
                (
                    GOOD.replace("[tls]", "[log]\nlevel = \"info,scimd=loud\"\n[tls]"),
                    "log.level: \"scimd=loud\"",
                ),
                (GOOD.replace("tenants.acme", "tenants.Acme"), "tenants.Acme"),
            ];
            for (text, needle) in cases {
                jail.create_file("bad.toml", &text)?;
                let err = Config::load(Path::new("bad.toml"))
                    .expect_err(needle)
                    .to_string();
                assert!(err.contains(needle), "{needle} not in: {err}");
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                jail.create_file("open.toml", GOOD)?;
                std::fs::set_permissions("open.toml", std::fs::Permissions::from_mode(0o666))
                    .map_err(|e| e.to_string())?;
                let err = Config::load(Path::new("open.toml"))
                    .expect_err("world-writable")
                    .to_string();
                assert!(
                    err.contains("writable by every user") && err.contains("chmod o-w"),
                    "{err}"
                );
                // In a directory anyone may write to, only with the sticky bit (as /tmp).
                jail.create_dir("open")?;
                jail.create_file("open/c.toml", GOOD)?;
                for (mode, refused) in [(0o777, true), (0o1777, false), (0o755, false)] {
                    std::fs::set_permissions("open", std::fs::Permissions::from_mode(mode))
                        .map_err(|e| e.to_string())?;
                    let got = Config::load(Path::new("open/c.toml"));
                    let said = got
                        .as_ref()
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    assert_eq!(said.contains("the directory"), refused, "{mode:o}: {said}");
                }
            }
            let err = Config::load(Path::new("missing.toml"))
                .expect_err("missing")
                .to_string();
            assert!(err.contains("cannot read the file"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_syntax_error_names_its_place_but_not_the_text() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bad.toml",
                "[tenants.acme]\ntokens = [{ name = \"okta\", sha256 = scimd_SECRET123 }]\n",
            )?;
            let err = Config::load(Path::new("bad.toml")).unwrap_err().to_string();
            assert!(err.contains("line 2"), "{err}");
            assert!(!err.contains("SECRET"), "{err}");
            jail.create_file(
                "typed.toml",
                "[tenants.acme]\ntokens = [\"scimd_SECRET456\"]\n",
            )?;
            let err = Config::load(Path::new("typed.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("found a string") && !err.contains("SECRET"),
                "{err}"
            );
            // A token where its hash belongs: said so, and not echoed.
            jail.create_file(
                "pasted.toml",
                "[tenants.acme]\ntokens = [{ name = \"okta\", sha256 = \"scimd_SECRET789\" }]\n",
            )?;
            let err = Config::load(Path::new("pasted.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("looks like a token") && !err.contains("SECRET"),
                "{err}"
            );
            Ok(())
        });
    }

    /// A value with its closing quote missing is the one mistake: the key on that line is
    /// not also named as missing from its table.
    #[test]
    fn a_string_left_open_is_not_also_a_missing_key() {
        Jail::expect_with(|jail| {
            let text = format!("{GOOD}\n[tenants.acme.plan]\nname = \"Pro\ntest_threshold = 3\n");
            jail.create_file("open.toml", &text)?;
            let err = Config::load(Path::new("open.toml"))
                .expect_err("a syntax error")
                .to_string();
            assert!(err.contains("TOML parse error at line"), "{err}");
            // Its position, then its reason.
            assert!(
                err.contains("TOML parse error at line 12, column 12: invalid basic string"),
                "{err}"
            );
            assert!(!err.contains("missing field"), "{err}");
            // A key really missing is still named.
            let text = format!("{GOOD}\n[tenants.acme.plan]\ntest_threshold = 3\n");
            jail.create_file("none.toml", &text)?;
            let err = Config::load(Path::new("none.toml"))
                .expect_err("no name")
                .to_string();
            assert!(
                err.contains("tenants.acme.plan: missing field `name`"),
                "{err}"
            );
            Ok(())
        });
    }

    /// A syntax error is named alone: what the lines it took with them held is not also
    /// said to be missing.
    #[test]
    fn a_syntax_error_is_not_followed_by_what_its_lines_held() {
        Jail::expect_with(|jail| {
            jail.create_file("top.toml", &format!("oops = [\n{GOOD}"))?;
            let said = Config::load(Path::new("top.toml"))
                .expect_err("a syntax error")
                .to_string();
            assert!(said.contains("TOML parse error at line"), "{said}");
            for not in ["no tenant", "no certificate", "no token", "missing field"] {
                assert!(!said.contains(not), "{not}: {said}");
            }
            Ok(())
        });
    }

    /// A line left half-typed at the end of the file (an array and a string left open) still
    /// lets the file be read around it, so the read-only commands find the database.
    #[test]
    fn a_half_typed_last_line_is_read_around() {
        Jail::expect_with(|jail| {
            let text =
                format!("{GOOD}\n[tenants.newone]\ntokens = [\n  {{ name = \"x\", sha256 = \"abc");
            jail.create_file("half.toml", &text)?;
            let err = Config::load(Path::new("half.toml")).expect_err("a syntax error");
            assert!(err.to_string().contains("line "), "{err}");
            let got = err.salvaged.expect("read around the half-typed lines");
            assert!(got.storage.dir.ends_with("data"), "{:?}", got.storage.dir);
            assert_eq!(got.tenants["acme"].tokens[0].name, "okta");
            Ok(())
        });
    }

    /// A table given twice is the one mistake named: its keys are not read as the previous
    /// table's and named as unknown there.
    #[test]
    fn a_table_given_twice_is_named_alone() {
        Jail::expect_with(|jail| {
            for (second, kept) in [
                (
                    "[tenants.acme]\ntokens = []\ndisplay_name = \"Again\"\n",
                    "okta",
                ),
                ("[server]\nlisten = \"127.0.0.1:1\"\n", "okta"),
            ] {
                let text = format!("{GOOD}[tenants.acme.plan]\nname = \"B\"\n{second}");
                jail.create_file("twice.toml", &text)?;
                let err = Config::load(Path::new("twice.toml")).expect_err("a duplicate");
                let said = err.to_string();
                assert!(said.contains("duplicate key"), "{said}");
                assert!(!said.contains("unknown key"), "{said}");
                let got = err.salvaged.expect("read around the second table");
                assert_eq!(got.tenants["acme"].tokens[0].name, kept);
                assert_eq!(got.server.listen, "127.0.0.1:0");
            }
            Ok(())
        });
    }

    /// Values of the wrong type are all named in one run too, and a required key named for
    /// its type is not named again as missing.
    #[test]
    fn every_value_of_the_wrong_type_is_named_at_once() {
        Jail::expect_with(|jail| {
            let text =
                GOOD.replace(
                    "listen = \"127.0.0.1:0\"",
                    "listen = \"127.0.0.1:0\"\nmax_results = \"lots\"\nmax_filter_depth = true",
                )
                .replace("self_signed = true", "self_signed = true\nwatch_secs = -3")
                .replace(
                    "name = \"okta\", sha256 = \"9f86",
                    "name = \"okta\", sha256 = 7, x = \"",
                ) + "[tenants.beta]\ntokens = 5\nevents_max_count = -5\n";
            jail.create_file("bad.toml", &text)?;
            let err = Config::load(Path::new("bad.toml")).expect_err("five problems");
            let all = err.problems.join("\n");
            for needle in [
                "server.max_results: invalid type: found a string, expected a whole number, 1 or more",
                "tenants.beta.events_max_count: invalid value: found the number -5, expected a whole number, 1 or more",
                "server.max_filter_depth: invalid type",
                "tls.watch_secs: invalid value: found the number -3, expected a whole number, 0 or more",
                "tenants.acme.tokens[0].sha256: invalid type",
                "tenants.beta.tokens: invalid type",
            ] {
                assert!(all.contains(needle), "{needle} not in:\n{all}");
            }
            assert!(!all.contains("missing"), "{all}");
            // Nor as the tenant having no token, which only the reading made so.
            assert!(!all.contains("no token"), "{all}");
            Ok(())
        });
    }

    /// An empty `storage.dir` is named, not read as the config file's own directory; a
    /// relative one is read from there.
    #[test]
    fn an_empty_storage_dir_is_named_and_a_relative_one_placed() {
        Jail::expect_with(|jail| {
            jail.create_file("empty.toml", &GOOD.replace("dir = \"data\"", "dir = \"\""))?;
            let err = Config::load(Path::new("empty.toml")).expect_err("refused");
            assert!(
                err.problems
                    .iter()
                    .any(|p| p.starts_with("storage.dir: empty")),
                "{:?}",
                err.problems
            );
            jail.create_file("good.toml", GOOD)?;
            let c = Config::load(Path::new("good.toml")).expect("good");
            assert!(c.storage.dir.is_absolute() && c.storage.dir.ends_with("data"));
            Ok(())
        });
    }

    /// A section's problem that a key taken out of it for its type made is not named:
    /// `self_signed = "yes"` is one mistake, not also "no certificate configured".
    #[test]
    fn a_key_of_the_wrong_type_is_not_also_missing_from_its_section() {
        Jail::expect_with(|jail| {
            let text = GOOD.replace("self_signed = true", "self_signed = \"yes\"");
            assert_ne!(text, GOOD);
            jail.create_file("yes.toml", &text)?;
            let err = Config::load(Path::new("yes.toml")).expect_err("refused");
            assert_eq!(err.problems.len(), 1, "{:?}", err.problems);
            assert!(
                err.problems[0].starts_with("tls.self_signed: invalid type: found a string"),
                "{:?}",
                err.problems
            );
            Ok(())
        });
    }

    /// Wrong types in words an admin uses, and a syntax error toml gives no reason for (a
    /// stray carriage return) named as such, without a "no token" the blanking made.
    #[test]
    fn types_are_said_in_words_and_a_reasonless_syntax_error_gets_one() {
        Jail::expect_with(|jail| {
            let text = GOOD
                .replace(
                    "listen = \"127.0.0.1:0\"",
                    "listen = \"127.0.0.1:0\"\nmax_results = 5.5",
                )
                .replace("tokens = [", "display_name = 5\ntokens = [\r\r\n");
            jail.create_file("cr.toml", &text)?;
            let err = Config::load(Path::new("cr.toml")).expect_err("refused");
            let all = err.problems.join("\n");
            for needle in [
                "the parser gives no reason; look there for a stray character",
                "server.max_results: invalid type: found the number 5.5, expected a whole number, 1 or more",
                "tenants.acme.display_name: invalid type: found the number 5, expected a string",
            ] {
                assert!(all.contains(needle), "{needle} not in:\n{all}");
            }
            assert!(!all.contains("no token"), "{all}");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_lists_the_known_ones_and_the_env_spelling() {
        crate::config::test_env::jail(|jail| {
            jail.create_file("c.toml", GOOD)?;
            jail.set_env("SCIMD_SERVER_LISTEN", "1");
            let err = Config::load(Path::new("c.toml")).unwrap_err().to_string();
            assert!(
                err.contains("unknown key \"server_listen\"; expected one of server, tls")
                    && err.contains("SCIMD_SERVER__LISTEN"),
                "{err}"
            );
            // Within a section the underscore is the key's own: no such hint.
            jail.set_env("SCIMD_SERVER_LISTEN", "");
            jail.set_env("SCIMD_SERVER__MAX_RESULT", "5");
            let err = Config::load(Path::new("c.toml")).unwrap_err().to_string();
            assert!(
                err.contains("server.max_result: unknown key")
                    && !err.contains("double underscore"),
                "{err}"
            );
            Ok(())
        });
    }
}
