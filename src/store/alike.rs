//! Users whose userNames an upgrade found to fold alike (`refold`).
//!
//! The userName index is unique, and a write refuses a name that folds as another user's
//! does; but a layout that changed the fold can find two existing users under one key. The
//! holder keeps the plain key, which `userName eq` and the uniqueness check read. Each other
//! one is indexed under the key, a NUL and its id, so that walks of the index in name order
//! (`sortBy=userName`, `sw`, `gt`, ...) still list it beside the holder and count it as
//! `totalResults` does. No entry moves while scimd serves: a cursor's place in such a walk
//! stays where it was (a conversion at start may move one, `refold::claim`). When the
//! holder goes (renamed or deleted), a lookup of the name finds the oldest of the others,
//! and a new user still cannot take the name.

use redb::{ReadableTable, Table};

type Names<'t> = Table<'t, (&'static str, &'static str), u128>;

/// Hex digits of an id in a key: fixed width, so keys sort as ids do (oldest first).
const ID_HEX: usize = 32;

/// The index key of user `id`, whose userName folds to `name`, a key another user holds.
pub(super) fn key(name: &str, id: u128) -> String {
    format!("{name}\0{id:0width$x}", width = ID_HEX)
}

/// The folded userName an index key stands for.
pub(super) fn name_of(key: &str) -> &str {
    let b = key.as_bytes();
    match b.len().checked_sub(ID_HEX + 1) {
        Some(at) if b[at] == 0 && b[at + 1..].iter().all(u8::is_ascii_hexdigit) => &key[..at],
        _ => key,
    }
}

/// Index user `id` under `name`, which another user holds.
pub(super) fn share(names: &mut Names, t: &str, name: &str, id: u128) -> Result<(), redb::Error> {
    names.insert((t, key(name, id).as_str()), id)?;
    Ok(())
}

/// User `id` no longer has the userName that folds to `name`: take out its entry,
/// whichever kind it has.
pub(super) fn release(names: &mut Names, t: &str, name: &str, id: u128) -> Result<(), redb::Error> {
    if names.get((t, name))?.map(|g| g.value()) == Some(id) {
        names.remove((t, name))?;
    } else {
        names.remove((t, key(name, id).as_str()))?;
    }
    Ok(())
}

/// Whether user `id`, whose userName folds to `name`, has its entry: the plain key, or one
/// beside the holder.
pub(super) fn indexed(
    names: &impl ReadableTable<(&'static str, &'static str), u128>,
    t: &str,
    name: &str,
    id: u128,
) -> Result<bool, redb::Error> {
    let has = |k: &str| -> Result<bool, redb::Error> {
        Ok(names.get((t, k))?.map(|g| g.value()) == Some(id))
    };
    Ok(has(name)? || has(&key(name, id))?)
}

/// The user a lookup of `name` finds: the plain key's holder, else the oldest user indexed
/// beside a holder that has gone.
pub(super) fn holder(
    names: &impl ReadableTable<(&'static str, &'static str), u128>,
    t: &str,
    name: &str,
) -> Result<Option<u128>, redb::Error> {
    if let Some(g) = names.get((t, name))? {
        return Ok(Some(g.value()));
    }
    let (lo, hi) = (format!("{name}\0"), format!("{name}\u{1}"));
    for e in names.range((t, lo.as_str())..(t, hi.as_str()))? {
        let (k, v) = e?;
        if name_of(k.value().1) == name {
            return Ok(Some(v.value()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_user_name_and_sorts_after_it() {
        let id = 0x0190_0000_0000_7000_8000_0000_0000_0001u128;
        let k = key("οδυσσεασ@x", id);
        assert_eq!(name_of(&k), "οδυσσεασ@x");
        assert!(k.as_str() > "οδυσσεασ@x" && k.as_str() < "οδυσσεασ@x\u{1}");
        assert!(key("a", 2) < key("a", 10), "ids in order");
        // Plain names, even with a NUL, are their own.
        for plain in ["alice", "", "a\0b", "x\0abc"] {
            assert_eq!(name_of(plain), plain);
        }
    }
}
