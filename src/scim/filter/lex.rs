//! Lexing: a filter's text into tokens.

use std::fmt;

use crate::scim::error::{ScimError, ScimResult};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Open,
    Close,
    LBracket,
    RBracket,
    /// A run of characters that are not space, brackets or quotes: attribute paths,
    /// operators, keywords, numbers and bare values.
    Word(String),
    Str(String),
}

pub(super) fn err(pos: usize, msg: impl fmt::Display) -> ScimError {
    ScimError::invalid_filter(format!("invalid filter at position {pos}: {msg}"))
}

/// The four hex digits of a `\u` escape.
fn hex4(it: &mut impl Iterator<Item = (usize, char)>) -> Option<u32> {
    let hex: String = it.take(4).map(|x| x.1).collect();
    // Four hex digits (RFC 8259 §7); `from_str_radix` alone would take a sign.
    if hex.len() != 4 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(&hex, 16).ok()
}

pub(super) fn lex(input: &str) -> ScimResult<Vec<(usize, Tok)>> {
    let mut out = Vec::new();
    // Positions count characters, as a person (or a client's string index) does, not bytes.
    let mut it = input.chars().enumerate().peekable();
    while let Some(&(i, c)) = it.peek() {
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '(' | ')' | '[' | ']' => {
                it.next();
                out.push((
                    i,
                    match c {
                        '(' => Tok::Open,
                        ')' => Tok::Close,
                        '[' => Tok::LBracket,
                        _ => Tok::RBracket,
                    },
                ));
            }
            '"' => {
                it.next();
                let mut s = String::new();
                let mut closed = false;
                while let Some((j, c)) = it.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match it.next() {
                            Some((_, 'n')) => s.push('\n'),
                            Some((_, 't')) => s.push('\t'),
                            Some((_, 'r')) => s.push('\r'),
                            Some((_, 'b')) => s.push('\u{8}'),
                            Some((_, 'f')) => s.push('\u{c}'),
                            // Not four hex digits after it: a backslash before a `u`
                            // (`CORP\ursula`), as before any other letter JSON does not
                            // escape.
                            Some((_, 'u')) if hex4(&mut it.clone()).is_none() => {
                                s.push_str("\\u");
                            }
                            Some((_, 'u')) => {
                                let bad = || err(j, "bad \\u escape in a string");
                                let mut code = hex4(&mut it).ok_or_else(bad)?;
                                // JSON writes a character beyond the BMP as a surrogate pair
                                // (RFC 8259 §7): "\ud83d\ude00".
                                if (0xD800..0xDC00).contains(&code) {
                                    let low = match (it.next(), it.next()) {
                                        (Some((_, '\\')), Some((_, 'u'))) => hex4(&mut it),
                                        _ => None,
                                    }
                                    .filter(|l| (0xDC00..0xE000).contains(l))
                                    .ok_or_else(bad)?;
                                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                                }
                                s.push(char::from_u32(code).ok_or_else(bad)?);
                            }
                            Some((_, c @ ('"' | '\\' | '/'))) => s.push(c),
                            // Not a JSON escape: the backslash is the value's own. An IdP
                            // that escapes only quotes sends `"CORP\jdoe"` for CORP\jdoe,
                            // and dropping the backslash found CORPjdoe, another user.
                            Some((_, other)) => {
                                s.push('\\');
                                s.push(other);
                            }
                            None => return Err(err(j, "unterminated string")),
                        },
                        other => s.push(other),
                    }
                }
                if !closed {
                    return Err(err(i, "unterminated string (a closing \" is missing)"));
                }
                // No stored value holds one (a body's NUL is refused): a lookup for it would
                // find no one, and the IdP would create the user again.
                if s.contains('\0') {
                    return Err(err(i, "a NUL character (\\u0000) in a string"));
                }
                out.push((i, Tok::Str(s)));
            }
            c if c.is_control() => {
                return Err(err(i, format!("control character U+{:04X}", c as u32)));
            }
            _ => {
                let mut w = String::new();
                while let Some(&(_, c)) = it.peek() {
                    if c.is_control() && !c.is_whitespace() {
                        return Err(err(i, format!("control character U+{:04X}", c as u32)));
                    }
                    if c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"') {
                        break;
                    }
                    w.push(c);
                    it.next();
                }
                out.push((i, Tok::Word(w)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::scim::filter::tests::m;
    use crate::scim::filter::{AttrPath, CompValue, CompareOp, Filter, parse};

    #[test]
    fn strings_escapes_numbers_and_bare_words() {
        // `\u` takes four hex digits, no sign: else it is a backslash and a `u`.
        assert!(
            matches!(parse(r#"a eq "\u+041""#).unwrap(), Filter::Compare { value: CompValue::Str(v), .. } if v == r"\u+041")
        );
        // A NUL, raw or escaped, is in no value.
        for nul in ["a eq \"x\0y\"", "a eq \"x\\u0000\""] {
            let e = parse(nul).unwrap_err();
            assert!(e.detail.contains("NUL"), "{}", e.detail);
        }
        let f = parse("a eq \"x and (y) [z] & \\\"q\\\" \\u00e9\"").unwrap();
        assert_eq!(
            f,
            Filter::Compare {
                path: AttrPath {
                    urn: None,
                    name: "a".into(),
                    sub: None
                },
                op: CompareOp::Eq,
                value: CompValue::Str("x and (y) [z] & \"q\" é".into())
            }
        );
        assert!(
            matches!(parse("a gt -1.5e2").unwrap(), Filter::Compare { value: CompValue::Num(n, ref t), .. } if n == -150.0 && t == "-1.5e2")
        );
        // A backslash before what JSON does not escape stays (a domain login unescaped).
        for (text, want) in [
            (r#"a eq "CORP\jdoe""#, r"CORP\jdoe"),
            (r#"a eq "CORP\\jdoe""#, r"CORP\jdoe"),
            (r#"a eq "a\/b\"c""#, "a/b\"c"),
            (r#"a eq "CORP\ursula""#, r"CORP\ursula"),
        ] {
            let f = parse(text).unwrap();
            assert!(
                matches!(&f, Filter::Compare { value: CompValue::Str(v), .. } if v == want),
                "{text}: {f:?}"
            );
        }
        let pair = parse("a eq \"\\ud83d\\ude00!\"").unwrap();
        assert!(
            matches!(&pair, Filter::Compare { value: CompValue::Str(v), .. } if v == "\u{1F600}!"),
            "{pair:?}"
        );
        for lone in [
            "a eq \"\\ud83d\"",
            "a eq \"\\ud83dx\"",
            "a eq \"\\ud83d\\u0041\"",
        ] {
            assert!(parse(lone).is_err(), "{lone}");
        }
        assert!(m("emails.Value co example.com"));
        assert!(m(
            "name.FamilyName eq Jensen and (emails.Value co example.com or emails.Value co example.org)"
        ));
    }
}
