//! The parts of an X.509 certificate that rustls does not expose and an admin needs: its
//! validity period, and whether it names itself as its issuer, read from the DER (RFC 5280
//! §4.1) by walking the first fields of the `TBSCertificate`. Pure; no I/O.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// How long before the end of its validity a certificate is worth a warning: an ACME client
/// renews at 30 days, so at 14 its renewal has failed.
pub const WARN_DAYS: i64 = 14;

/// The fields of a `TBSCertificate` read here, as DER contents.
struct Tbs<'a> {
    issuer: &'a [u8],
    validity: &'a [u8],
    subject: &'a [u8],
}

fn tbs(der: &[u8]) -> Option<Tbs<'_>> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT, absent in v1 certificates.
    if let Some((0xA0, _, after)) = tlv(rest) {
        rest = after;
    }
    let (_serial, rest) = expect(rest, INTEGER)?;
    let (_algorithm, rest) = expect(rest, SEQUENCE)?;
    let (issuer, rest) = expect(rest, SEQUENCE)?;
    let (validity, rest) = expect(rest, SEQUENCE)?;
    let (subject, _) = expect(rest, SEQUENCE)?;
    Some(Tbs {
        issuer,
        validity,
        subject,
    })
}

/// `notBefore` and `notAfter` of a DER certificate, or `None` if it cannot be read.
pub fn validity(der: &[u8]) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let (t, not_before, rest) = tlv(tbs(der)?.validity)?;
    let not_before = time_value(t, not_before)?;
    let (t, not_after, _) = tlv(rest)?;
    Some((not_before, time_value(t, not_after)?))
}

/// Whether a DER certificate names itself as its issuer (self-signed, or a root), so that
/// no intermediate can belong with it; `None` if it cannot be read.
pub fn self_issued(der: &[u8]) -> Option<bool> {
    let t = tbs(der)?;
    Some(t.issuer == t.subject)
}

/// What an admin must hear about a served chain of `len` certificates whose first is `leaf`:
/// a CA's certificate served alone, without the intermediates between it and the CA's root,
/// is what IdPs refuse most often (`UnknownCA`), while browsers, which fetch missing
/// intermediates themselves, show the site as fine. (Whether its issuer is an intermediate
/// or a private root cannot be told from the leaf: the warning says both.)
pub fn chain_warning(leaf: &[u8], len: usize) -> Option<String> {
    (len == 1 && self_issued(leaf) == Some(false)).then(|| {
        "the certificate file holds the server's certificate alone: if an intermediate CA \
         issued it (every public CA issues from one), Okta, Entra ID and other IdPs refuse it \
         (UnknownCA) though a browser may not; use the full chain (certbot's fullchain.pem, \
         or the certificate followed by the CA bundle). A certificate issued straight from \
         your own root, which the IdP trusts, needs nothing more"
            .to_string()
    })
}

/// What an admin must hear about a certificate of their own (`tls.cert`) that names itself as
/// its issuer: cloud IdPs trust only public CAs, so they refuse it, while curl given it with
/// `--cacert` connects and makes the setup look right. (The generated one of `tls.self_signed`
/// is not warned of: the admin asked for it.)
pub fn self_signed_warning(leaf: &[u8]) -> Option<String> {
    (self_issued(leaf) == Some(true)).then(|| {
        "the certificate is self-signed (it names itself as its issuer): only clients told to \
         trust this very certificate connect (curl --cacert, the host of an on-premises \
         provisioning agent); Okta, Entra ID's cloud service, OneLogin and JumpCloud refuse it. \
         Use a certificate from a public CA for them"
            .to_string()
    })
}

pub fn day(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// Why a certificate cannot be served at `now`, if it cannot: `expired on …`, or `is not
/// valid before …` with true (it will be).
pub fn outside_dates(der: &[u8], now: OffsetDateTime) -> Option<(String, bool)> {
    let (not_before, not_after) = validity(der)?;
    if now >= not_after {
        return Some((format!("expired on {}", day(not_after)), false));
    }
    (now < not_before).then(|| {
        (
            format!(
                "is not valid before {} (is the clock right?)",
                day(not_before)
            ),
            true,
        )
    })
}

const EXPIRED: &str = "the certificate expired on";
const NOT_YET: &str = "the certificate is not valid before";

/// Whether a `warning` says no IdP can connect now (an outage, an error in the log), rather
/// than that one soon will not.
pub fn stops_clients(warning: &str) -> bool {
    warning.starts_with(EXPIRED) || warning.starts_with(NOT_YET)
}

/// What an admin must hear about a certificate's dates at `now`, if anything.
pub fn warning(der: &[u8], now: OffsetDateTime) -> Option<String> {
    let (not_before, not_after) = validity(der)?;
    if now >= not_after {
        return Some(format!(
            "{EXPIRED} {}: IdPs refuse to connect until it is renewed",
            day(not_after)
        ));
    }
    if now < not_before {
        return Some(format!(
            "{NOT_YET} {}: IdPs refuse it until then (is the clock right?)",
            day(not_before)
        ));
    }
    let left = (not_after - now).whole_days();
    // Whole days left, as a person counts them ("in 9 days" with 9 days and 23 hours to
    // go); under one day, said so rather than "in 0 days".
    let when = match left {
        0 => "within a day".to_string(),
        1 => "in 1 day".to_string(),
        n => format!("in {n} days"),
    };
    (left < WARN_DAYS).then(|| {
        format!(
            "the certificate expires on {}, {when}: renew it, or IdPs will refuse to connect",
            day(not_after)
        )
    })
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// One tag-length-value: (tag, content, what follows). Single-byte tags only, which is all
/// these fields use; definite lengths only, as DER requires.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = tlv(input)?;
    (t == tag).then_some((content, rest))
}

/// `UTCTime` (YYMMDDHHMMSSZ, years 1950–2049) or `GeneralizedTime` (YYYYMMDDHHMMSSZ), the
/// two forms RFC 5280 §4.1.2.5 allows.
fn time_value(tag: u8, v: &[u8]) -> Option<OffsetDateTime> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, s) = match (tag, s.len()) {
        (UTC_TIME, 12) => {
            let yy: i32 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        (GENERALIZED_TIME, 14) => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let n = |i: usize| s[i..i + 2].parse::<u8>().ok();
    let date = Date::from_calendar_date(year, Month::try_from(n(0)?).ok()?, n(2)?).ok()?;
    let time = Time::from_hms(n(4)?, n(6)?, n(8)?).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u8, d: u8, h: u8, mi: u8, sec: u8) -> OffsetDateTime {
        let date = Date::from_calendar_date(y, Month::try_from(m).unwrap(), d).unwrap();
        PrimitiveDateTime::new(date, Time::from_hms(h, mi, sec).unwrap()).assume_utc()
    }

    fn cert(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        p.not_before = not_before;
        p.not_after = not_after;
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn both_time_forms_are_read() {
        // Before 2050 a date is a UTCTime, from 2050 a GeneralizedTime.
        let (a, b) = (at(2020, 1, 1, 0, 0, 0), at(2061, 2, 3, 4, 5, 6));
        assert_eq!(validity(&cert(a, b)), Some((a, b)));
        let (a, b) = (at(1999, 12, 31, 23, 59, 59), at(2049, 6, 30, 12, 0, 0));
        assert_eq!(validity(&cert(a, b)), Some((a, b)));
    }

    #[test]
    fn warnings_name_the_date_and_what_follows() {
        let der = cert(at(2020, 1, 1, 0, 0, 0), at(2020, 2, 1, 0, 0, 0));
        let w = warning(&der, at(2026, 12, 2, 0, 0, 0)).unwrap();
        assert!(w.contains("expired on 2020-02-01 00:00 UTC"), "{w}");
        let w = warning(&der, at(2019, 12, 30, 0, 0, 0)).unwrap();
        assert!(w.contains("not valid before 2020-01-01"), "{w}");
        let w = warning(&der, at(2020, 1, 31, 0, 0, 0)).unwrap();
        assert!(
            w.contains("expires on 2020-02-01 00:00 UTC, in 1 day:"),
            "{w}"
        );
        let w = warning(&der, at(2020, 1, 20, 0, 0, 0)).unwrap();
        assert!(w.contains("in 12 days"), "{w}");
        let w = warning(&der, at(2020, 1, 31, 12, 0, 0)).unwrap();
        assert!(w.contains("00:00 UTC, within a day:"), "{w}");
        assert_eq!(warning(&der, at(2020, 1, 10, 0, 0, 0)), None);
    }

    #[test]
    fn a_ca_signed_certificate_alone_and_a_self_signed_one_are_each_warned_of_for_what_they_lack() {
        let (a, b) = (at(2020, 1, 1, 0, 0, 0), at(2030, 1, 1, 0, 0, 0));
        let own = cert(a, b);
        assert_eq!(self_issued(&own), Some(true));
        assert_eq!(chain_warning(&own, 1), None);
        let w = self_signed_warning(&own).unwrap_or_default();
        assert!(
            w.contains("is self-signed") && w.contains("public CA"),
            "{w}"
        );
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Corp Issuing CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["scim.corp.example".into()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap()
            .der()
            .to_vec();
        assert_eq!(self_issued(&leaf), Some(false));
        let w = chain_warning(&leaf, 1).unwrap_or_default();
        assert!(w.contains("if an intermediate CA issued it"), "{w}");
        // With its intermediate after it, nothing to say.
        assert_eq!(chain_warning(&leaf, 2), None);
        assert_eq!(self_signed_warning(&leaf), None);
        assert_eq!(self_signed_warning(b""), None);
        assert_eq!(chain_warning(b"", 1), None);
    }

    #[test]
    fn what_is_no_certificate_has_no_dates() {
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x82, 0xFF]), None);
        let mut der = cert(at(2020, 1, 1, 0, 0, 0), at(2030, 1, 1, 0, 0, 0));
        der.truncate(40);
        assert_eq!(validity(&der), None);
        assert_eq!(warning(&der, OffsetDateTime::now_utc()), None);
    }
}
