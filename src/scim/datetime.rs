//! SCIM's dateTime (RFC 7643 §2.3.5): an xsd:dateTime, which must hold a date and a time.
//! RFC 3339 is that with a zone; xsd:dateTime may leave the zone out, and such a time is
//! read as UTC here (XML Schema leaves it to the reader). One reading for every place that
//! takes a time (a value written, a filter, a sort, the lastModified index), so that what
//! is stored, compared and indexed agree.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `s` as a point in time, if it is an xsd:dateTime.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .or_else(|| without_zone(s))
}

/// A time without a zone, as UTC: only when naming UTC makes it RFC 3339, so a zone
/// given and malformed stays refused; with its `T`, as xsd:dateTime has it (RFC 3339 lets
/// a space stand for it, xsd does not).
fn without_zone(s: &str) -> Option<OffsetDateTime> {
    if s.ends_with(['Z', 'z']) || !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_with_or_without_a_zone_is_read_and_anything_else_is_not() {
        let utc = parse("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(parse("2024-05-01T12:00:00"), Some(utc));
        assert_eq!(parse("2024-05-01T14:00:00+02:00"), Some(utc));
        assert_eq!(parse("2024-05-01t12:00:00z"), Some(utc));
        assert_eq!(
            parse("2024-05-01T12:00:00.5").map(|t| t.nanosecond()),
            Some(500_000_000)
        );
        for bad in [
            "2024-05-01",
            "2024-05-01T12:00",
            "2024-05-01T12:00:00+2",
            "2024-05-01T12:00:00+02:00Z",
            "2024-05-01T12:00:00ZZ",
            "2024-13-01T12:00:00",
            "04-12-2018 00:00:00",
            "2024-05-01 12:00:00",
            " 2024-05-01T12:00:00Z",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
