//! The one form in which values that SCIM compares without regard to case are compared,
//! indexed and sorted (userName, emails, displayName: `caseExact: false`, RFC 7643 §2.2).
//!
//! Lowercasing alone leaves `straße` and `STRASSE`, or a composed and a decomposed `café`,
//! as two names: two accounts for one person, and a lookup that misses the one that exists.
//! Lowercase, uppercase and lowercase again maps every letter whose case forms differ in
//! length (`ß`, `ẞ`, `ﬁ`) and every sigma to one form; NFC then makes composed and
//! decomposed letters one.

use unicode_normalization::UnicodeNormalization;

/// `s` in its caseless form. ASCII, nearly every name an IdP sends, takes the fast path.
pub fn fold(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.to_lowercase()
        .to_uppercase()
        .to_lowercase()
        .nfc()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn ascii_is_lowercased() {
        assert_eq!(fold("Ann.Lee@Example.COM"), "ann.lee@example.com");
    }

    #[test]
    fn case_forms_of_different_length_are_one_name() {
        for (a, b) in [
            ("straße@x", "STRASSE@X"),
            ("straße@x", "STRAẞE@x"),
            ("ﬁle@x", "FILE@x"),
            ("ǆ@x", "ǅ@x"),
            ("K", "k"), // the Kelvin sign
        ] {
            assert_eq!(fold(a), fold(b), "{a} / {b}");
        }
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
