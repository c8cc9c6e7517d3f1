//! The one form in which values that SCIM compares without regard to case are compared,
//! indexed and sorted (userName, emails, displayName: `caseExact: false`, RFC 7643 §2.2).
//!
//! Lowercasing alone leaves a composed and a decomposed `café`, or `ς` and `Σ`, as two
//! names: two accounts for one person, and a lookup that misses the one that exists. The
//! name is decomposed (NFD), each letter mapped to one form of its case pair (Unicode's
//! simple case folding: the lowercase of its uppercase of its lowercase, where each is one
//! letter), and the result composed again (NFC). Mappings that change a name's length are left out
//! on purpose: `Großmann` and `Grossmann`, or `ﬁle` and `file`, are different people's
//! names, and folding them together would link one person's IdP account to another's
//! record. For the same reason the dotless `ı` stays apart from `i` (Unicode joins them
//! only in Turkic folding).

use unicode_normalization::UnicodeNormalization;

/// `s` in its caseless form. ASCII, nearly every name an IdP sends, takes the fast path.
pub fn fold(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(s.len());
    // Decomposed first (Unicode's canonical caseless match): a letter and its marks fold
    // alike whether they came composed or not (`ᾳ`, and `α` with a combining iota).
    for c in s.nfd() {
        match c {
            'ı' => out.push(c),
            // Unicode 16 folds the long-s ligature to the st ligature; no case mapping does.
            'ﬅ' => out.push('ﬆ'),
            _ => out.push(simple(c)),
        }
    }
    out.nfc().collect()
}

/// The lowercase of the uppercase of the lowercase of `c`, each step taken only where it
/// gives one letter (`ß` has no one-letter uppercase and stays).
fn simple(c: char) -> char {
    fn one(mut it: impl Iterator<Item = char>, c: char) -> char {
        match (it.next(), it.next()) {
            (Some(x), None) => x,
            _ => c,
        }
    }
    let l = one(c.to_lowercase(), c);
    let u = one(l.to_uppercase(), l);
    one(u.to_lowercase(), u)
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn ascii_is_lowercased() {
        assert_eq!(fold("Ann.Lee@Example.COM"), "ann.lee@example.com");
    }

    #[test]
    fn case_pairs_are_one_name() {
        for (a, b) in [
            ("straße@x", "STRAẞE@x"),
            ("ǆ@x", "ǅ@x"),
            ("K", "k"), // the Kelvin sign
            ("ſ", "S"), // the long s
            ("ÉLODIE", "élodie"),
            ("İSTANBUL", "i\u{307}stanbul"),
        ] {
            assert_eq!(fold(a), fold(b), "{a} / {b}");
        }
    }

    #[test]
    fn names_a_longer_case_mapping_would_join_stay_apart() {
        // Different people: folding them together would link one's account to the other.
        for (a, b) in [
            ("j.großmann@x", "j.grossmann@x"),
            ("straße", "STRASSE"),
            ("ﬁle@x", "file@x"),
            ("ılker@corp.tr", "ilker@corp.tr"),
            ("ılker@corp.tr", "ILKER@corp.tr"),
        ] {
            assert_ne!(fold(a), fold(b), "{a} / {b}");
        }
    }

    /// Keys before layout 6 were lowercased names (layout 4); folding such a key must give
    /// the name's own key, so that the migration can re-key from the keys alone.
    #[test]
    fn a_lowercased_name_folds_as_the_name_does() {
        let alone = |c: char| std::iter::once(c);
        let cased = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| c.to_lowercase().ne(alone(c)) || c.to_uppercase().ne(alone(c)));
        for c in cased {
            for s in [c.to_string(), format!("{c}x"), format!("x{c}")] {
                assert_eq!(fold(&s.to_lowercase()), fold(&s), "{s:?}");
            }
        }
        assert_eq!(fold(&"ΣΑΣ".to_lowercase()), fold("ΣΑΣ"));
    }

    #[test]
    fn every_sigma_folds_alike_wherever_it_stands() {
        // Lowercasing alone turns a capital sigma before a letter into σ but leaves ς.
        assert_eq!(fold("σαςx"), fold("ΣΑΣx"));
        assert_eq!(fold("σας"), fold("ΣΑΣ"));
        assert_eq!(fold("σας1"), fold("ΣΑΣ1"));
    }

    #[test]
    fn composed_and_decomposed_letters_are_one_name() {
        assert_eq!(fold("Café"), fold("cafe\u{301}"));
        assert_eq!(fold("CAFE\u{301}"), "caf\u{e9}");
        // A mark that has case itself: the iota below folds as the letter iota.
        assert_eq!(fold("\u{1fb3}x"), fold("\u{3b1}\u{345}x"));
        assert_eq!(fold("\u{1fb3}x"), fold("\u{391}\u{399}X"));
        assert_eq!(fold("\u{130}z"), fold("I\u{307}z"));
    }

    #[test]
    fn different_names_stay_different() {
        assert_ne!(fold("ann"), fold("anne"));
        assert_ne!(fold("café"), fold("cafe"));
        assert_ne!(fold("straße"), fold("strase"));
    }

    /// An index key is `fold(name)` and a lookup folds what it is given, which may itself be
    /// a key: folding must be a projection, for every letter that has case, alone and before
    /// a combining mark (which NFC may compose with it).
    #[test]
    fn folding_twice_changes_nothing_for_any_letter_with_case() {
        let alone = |c: char| std::iter::once(c);
        let cased = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| c.to_lowercase().ne(alone(c)) || c.to_uppercase().ne(alone(c)));
        let mut n = 0;
        for c in cased {
            for s in [c.to_string(), format!("{c}\u{301}"), format!("{c}\u{307}")] {
                let once = fold(&s);
                assert_eq!(fold(&once), once, "{s:?}");
            }
            n += 1;
        }
        assert!(n > 2500, "{n} letters with case");
    }

    #[test]
    fn folding_twice_changes_nothing() {
        for s in ["straße", "ΣΑΣx", "cafe\u{301}", "İstanbul", "ǰ", "ﬃ", "ŉ"] {
            assert_eq!(fold(&fold(s)), fold(s), "{s}");
        }
    }
}
