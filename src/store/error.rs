//! Why the store did not do what a request asked, named after what happened in the store.
//! The protocol core knows nothing of the store, so the store turns these into its
//! `ScimError` (one `From`), and the HTTP layer renders that once.
//!
//! Each message is the `detail` the client is answered with, so that console commands that
//! print a store error say what an IdP is told.

use super::format_id;
use crate::scim::error::{ScimError, ScimType};
use crate::scim::schema::Kind;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Another user holds this userName. The holder is named so that an IdP retrying a
    /// timed-out create can link to it.
    #[error(
        "userName is already taken (case-insensitively) by the user with id {}",
        format_id(*.holder)
    )]
    UserNameTaken { holder: u128 },
    /// Another group holds this displayName.
    #[error(
        "displayName is already taken (case-insensitively) by the group with id {}",
        format_id(*.holder)
    )]
    GroupNameTaken { holder: u128 },
    /// Another resource of `kind` holds this value of an attribute declared unique.
    #[error(
        "{attribute} is already taken by the {} with id {}",
        .kind.as_str(),
        format_id(*.holder)
    )]
    ValueTaken {
        attribute: String,
        kind: Kind,
        holder: u128,
    },
    /// An import gave an id that a resource already has.
    #[error("id {} already exists", format_id(*.id))]
    IdTaken { id: u128 },
    #[error("no {} with id \"{id}\" in this tenant", .kind.as_str())]
    NotFound { kind: Kind, id: String },
    /// `If-Match` does not name the current ETag.
    #[error("the resource has changed: its current version is {etag}")]
    IfMatchFailed { etag: String },
    /// `If-None-Match` names the current ETag.
    #[error("If-None-Match: the resource exists, at version {etag}")]
    IfNoneMatchFailed { etag: String },
    /// A member to add is not a user or group of the tenant (`value` as the client sent it).
    #[error("member \"{value}\" is not a User or Group of this tenant; provision it first")]
    NoSuchMember { value: String },
    #[error("a group cannot be a member of itself")]
    OwnMember,
    /// A member to add is of `kind`, but the client said it was a `said`.
    #[error("member {value} is a {}, not a {said}", .kind.as_str())]
    MemberKind {
        value: String,
        kind: Kind,
        said: String,
    },
    /// A PUT body's id is not the URL's: ids never change.
    #[error("the body's id \"{given}\" differs from the id in the URL")]
    IdChanged { given: String },
    /// A filter or sort no index serves was reading the type's records one by one when the
    /// request's time was up (`server.request_timeout_secs`).
    #[error(
        "this filter or sort reads every {} one by one, and that took longer than a request \
         may take; filter with `eq` on an indexed attribute (id, userName, externalId, \
         emails.value, displayName, groups.value, members.value), `sw` with a prefix few \
         share on userName, emails.value or externalId, a comparison of meta.lastModified, or \
         `and` beside one of these",
        .kind.as_str()
    )]
    ScanCut { kind: Kind },
    /// A read waited for one of its tenant's read turns as long as a request may take
    /// (`server.request_timeout_secs`): they were all held by earlier slow reads.
    #[error(
        "this tenant's earlier requests hold every read thread it may use (filters or sorts \
         no index serves, each for up to the request time limit), and this request waited \
         its whole time for one; retry later, or filter with `eq` on an indexed attribute"
    )]
    Busy,
    /// Internal to the store: a list read without a scan turn found it must scan (an index
    /// range too broad to plan); `Store::list_in` takes it again with one. Never answered.
    #[error("the database is unavailable; the request was not applied, retry later")]
    ScanTurnNeeded,
    /// Every seat of the plan is taken and its policy is to refuse another active user.
    #[error(
        "plan \"{plan}\" has {} taken; deactivate a user or raise the tenant's plan.seats",
        if *seats == 1 { "its one seat".to_string() } else { format!("all {seats} seats") }
    )]
    SeatsTaken { plan: String, seats: u64 },
    /// Storage failed, the database is being reopened, or the writer dropped the batch:
    /// nothing of the request was committed, so it may be retried.
    #[error("the database is unavailable; the request was not applied, retry later")]
    Unavailable,
    /// A write failed for want of disk space, and not enough has been freed since: writes
    /// are refused before they reach the database, which stays open for reads.
    #[error(
        "the disk holding the database is full ({:.1} MiB free): nothing of the request was \
         written; writes resume once {:.1} MiB are free on it",
        super::disk_full_mib(*.free, *.needed).0,
        super::disk_full_mib(*.free, *.needed).1
    )]
    DiskFull { free: u64, needed: u64 },
    /// The scrub found the database file damaged: writes are refused until an admin restores
    /// a backup, since redb would refuse the file at its next repair and take them with it.
    #[error(
        "the database file is damaged: writes are refused until an administrator restores a \
         backup (the server log says what was found); nothing of the request was written"
    )]
    Damaged,
    /// The database's name no longer leads to the file scimd has open (removed, moved or
    /// replaced while it ran): a write committed now would be lost at the next start. (One
    /// whose commit the removal overtook is in the open file only: kept if the same file is
    /// put back, as a write answered 503 for a failed fsync may be.)
    #[error(
        "the database file was removed or replaced while scimd ran: writes are refused until \
         an administrator puts it back (the server log says how); retry the request then"
    )]
    FileGone,
    /// `FileGone`, found by the look after this request's commit: the change went into the
    /// file scimd holds open, which may come back.
    #[error(
        "the database file was removed or replaced as this request was committed: the change \
         is in the file scimd holds open, and there again if that same file is put back; \
         writes are refused until an administrator puts it back (the server log says how)"
    )]
    FileGoneAtCommit,
    /// Something that should not happen did (a panic); logged under `error_id`, and only
    /// that id is answered, in the protocol core's words (one text for every 500).
    #[error("{}", ScimError::internal(.error_id).detail)]
    Internal { error_id: String },
    /// A refusal of the protocol core (PATCH, schema checks) while the store applied a
    /// change against the stored resource; answered as it is.
    #[error("{}", .0.detail)]
    Protocol(ScimError),
}

impl From<Error> for ScimError {
    fn from(e: Error) -> ScimError {
        let (status, scim_type) = match e {
            Error::Protocol(e) => return e,
            Error::Internal { error_id } => return ScimError::internal(&error_id),
            Error::UserNameTaken { .. }
            | Error::GroupNameTaken { .. }
            | Error::ValueTaken { .. }
            | Error::IdTaken { .. } => (409, Some(ScimType::Uniqueness)),
            Error::NotFound { .. } => (404, None),
            Error::IfMatchFailed { .. } | Error::IfNoneMatchFailed { .. } => (412, None),
            Error::NoSuchMember { .. } | Error::OwnMember | Error::MemberKind { .. } => {
                (400, Some(ScimType::InvalidValue))
            }
            Error::IdChanged { .. } => (400, Some(ScimType::Mutability)),
            // RFC 7644 §3.12: "more results than the service provider is willing to
            // calculate or process".
            Error::ScanCut { .. } => (400, Some(ScimType::TooMany)),
            Error::SeatsTaken { .. } => (403, None),
            Error::Unavailable
            | Error::DiskFull { .. }
            | Error::Damaged
            | Error::FileGone
            | Error::FileGoneAtCommit
            | Error::Busy
            | Error::ScanTurnNeeded => (503, None),
        };
        ScimError::new(status, scim_type, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_becomes_the_scim_error_answered_before_the_store_had_its_own() {
        let id = "0190b7a4-7c4e-7000-8000-00000000002a";
        let holder = super::super::parse_id(id).unwrap();
        let patch = ScimError::no_target("no value matches the path's filter");
        let cases = [
            (
                Error::UserNameTaken { holder },
                409,
                Some(ScimType::Uniqueness),
                format!("userName is already taken (case-insensitively) by the user with id {id}"),
            ),
            (
                Error::GroupNameTaken { holder },
                409,
                Some(ScimType::Uniqueness),
                format!(
                    "displayName is already taken (case-insensitively) by the group with id {id}"
                ),
            ),
            (
                Error::ValueTaken {
                    attribute: "urn:x:badge".into(),
                    kind: Kind::User,
                    holder,
                },
                409,
                Some(ScimType::Uniqueness),
                format!("urn:x:badge is already taken by the User with id {id}"),
            ),
            (
                Error::IdTaken { id: holder },
                409,
                Some(ScimType::Uniqueness),
                format!("id {id} already exists"),
            ),
            (
                Error::NotFound {
                    kind: Kind::Group,
                    id: "g1".into(),
                },
                404,
                None,
                "no Group with id \"g1\" in this tenant".into(),
            ),
            (
                Error::IfMatchFailed {
                    etag: "W/\"3\"".into(),
                },
                412,
                None,
                "the resource has changed: its current version is W/\"3\"".into(),
            ),
            (
                Error::IfNoneMatchFailed {
                    etag: "W/\"3\"".into(),
                },
                412,
                None,
                "If-None-Match: the resource exists, at version W/\"3\"".into(),
            ),
            (
                Error::NoSuchMember { value: "m1".into() },
                400,
                Some(ScimType::InvalidValue),
                "member \"m1\" is not a User or Group of this tenant; provision it first".into(),
            ),
            (
                Error::OwnMember,
                400,
                Some(ScimType::InvalidValue),
                "a group cannot be a member of itself".into(),
            ),
            (
                Error::MemberKind {
                    value: id.into(),
                    kind: Kind::User,
                    said: "Group".into(),
                },
                400,
                Some(ScimType::InvalidValue),
                format!("member {id} is a User, not a Group"),
            ),
            (
                Error::IdChanged { given: "x".into() },
                400,
                Some(ScimType::Mutability),
                "the body's id \"x\" differs from the id in the URL".into(),
            ),
            (
                Error::SeatsTaken {
                    plan: "Business".into(),
                    seats: 5,
                },
                403,
                None,
                "plan \"Business\" has all 5 seats taken; deactivate a user or raise the \
                 tenant's plan.seats"
                    .into(),
            ),
            (
                Error::SeatsTaken {
                    plan: "Lab".into(),
                    seats: 1,
                },
                403,
                None,
                "plan \"Lab\" has its one seat taken; deactivate a user or raise the tenant's \
                 plan.seats"
                    .into(),
            ),
            (
                Error::Unavailable,
                503,
                None,
                "the database is unavailable; the request was not applied, retry later".into(),
            ),
            (
                Error::DiskFull {
                    free: 3 << 20,
                    needed: 7 << 20,
                },
                503,
                None,
                "the disk holding the database is full (3.0 MiB free): nothing of the request \
                 was written; writes resume once 7.0 MiB are free on it"
                    .into(),
            ),
            (
                Error::Damaged,
                503,
                None,
                "the database file is damaged: writes are refused until an administrator \
                 restores a backup (the server log says what was found); nothing of the request \
                 was written"
                    .into(),
            ),
            (
                Error::FileGone,
                503,
                None,
                "the database file was removed or replaced while scimd ran: writes are refused \
                 until an administrator puts it back (the server log says how); retry the \
                 request then"
                    .into(),
            ),
            (
                Error::FileGoneAtCommit,
                503,
                None,
                "the database file was removed or replaced as this request was committed: the \
                 change is in the file scimd holds open, and there again if that same file is \
                 put back; writes are refused until an administrator puts it back (the server \
                 log says how)"
                    .into(),
            ),
            (
                Error::Internal {
                    error_id: "abc123".into(),
                },
                500,
                None,
                "internal error (id abc123 in the server log)".into(),
            ),
            (
                Error::Protocol(patch.clone()),
                patch.status,
                patch.scim_type,
                patch.detail.clone(),
            ),
        ];
        for (e, status, scim_type, detail) in cases {
            let said = e.to_string();
            let s = ScimError::from(e);
            assert_eq!(s, ScimError::new(status, scim_type, detail));
            assert_eq!(said, s.detail, "the message is the detail answered");
        }
    }

    #[test]
    fn a_full_disk_never_reads_as_having_the_room_it_waits_for() {
        // 40 KiB short of the mark: rounded alike, both would read 7.0.
        let e = Error::DiskFull {
            free: (7 << 20) - (40 << 10),
            needed: 7 << 20,
        };
        assert!(e.to_string().contains("(6.9 MiB free)"), "{e}");
        assert!(e.to_string().contains("once 7.0 MiB are free"), "{e}");
        assert_eq!(
            super::super::disk_full_mib((7 << 20) + 1, (11 << 20) + 1),
            (7.0, 11.1)
        );
    }
}
