//! Every redb table scimd keeps, named `key_value`. Tenants are keyed by their configured
//! name; resource ids are UUIDv7 as `u128`, so key order is creation order.

use redb::{MultimapTableDefinition, TableDefinition};

/// `schema_version` → the on-disk layout version.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// (tenant, kind, id) → the resource record (JSON: body without members, meta).
pub const RESOURCES: TableDefinition<(&str, u8, u128), &[u8]> =
    TableDefinition::new("tenant_kind_id_resource");

/// (tenant, kind) → number of resources, so an unfiltered list knows `totalResults`.
pub const COUNTS: TableDefinition<(&str, u8), u64> = TableDefinition::new("tenant_kind_count");

/// (tenant, fold(userName)) → user id. Unique.
pub const USERNAME_USERID: TableDefinition<(&str, &str), u128> =
    TableDefinition::new("tenant_username_userid");

/// (tenant, kind, externalId) → ids. Exact match: externalId is caseExact.
pub const EXTERNALID_ID: MultimapTableDefinition<(&str, u8, &str), u128> =
    MultimapTableDefinition::new("tenant_kind_externalid_id");

/// (tenant, fold(email value)) → user ids.
pub const EMAIL_USERID: MultimapTableDefinition<(&str, &str), u128> =
    MultimapTableDefinition::new("tenant_email_userid");

/// (tenant, kind, fold(displayName)) → ids; at most one per name for groups.
pub const DISPLAYNAME_ID: MultimapTableDefinition<(&str, u8, &str), u128> =
    MultimapTableDefinition::new("tenant_kind_displayname_id");

/// (tenant, group, member) → member kind code.
pub const GROUPID_MEMBERID: TableDefinition<(&str, u128, u128), u8> =
    TableDefinition::new("tenant_groupid_memberid");

/// (tenant, group, member) → the member's `display` as the client sent it, for members
/// given one: IdPs send it (Okta the user's login) and read it back, and RFC 7643 §2.4 has
/// the client set it. Rows are in `GROUPID_MEMBERID`'s order, so a member list reads both
/// side by side.
pub const MEMBER_DISPLAY: TableDefinition<(&str, u128, u128), &str> =
    TableDefinition::new("tenant_groupid_memberid_display");

/// (tenant, member, group) → (): the mirror of `GROUPID_MEMBERID`.
pub const MEMBERID_GROUPID: TableDefinition<(&str, u128, u128), ()> =
    TableDefinition::new("tenant_memberid_groupid");

/// Layout 2 added `RANKS`, layout 3 `MODIFIED_ID`; layout 4 recounted the plan counters and
/// took groups out of `MODIFIED_ID`, which files of earlier builds lacked or held; layout 5
/// folds names where earlier layouts lowercased them; layout 6 folds them without the case
/// mappings that change a name's length (`scim::fold`); layout 7 indexes the users earlier
/// upgrades left out of the userName index (`refold::index_left_out`).
pub const SCHEMA_VERSION: u64 = 7;

/// (tenant, kind, meta.lastModified in Unix nanoseconds, id) → (), for users: a filter on
/// lastModified (Okta's incremental import asks `meta.lastModified gt "…"`) reads a range of
/// it. Groups are left out: every membership change moves a group's time, and keeping an
/// index in step would cost each such PATCH two more tree updates.
pub const MODIFIED_ID: TableDefinition<(&str, u8, i64, u128), ()> =
    TableDefinition::new("tenant_kind_modified_id");

/// (tenant, kind, level, id prefix) → how many resources have ids under that prefix
/// (`ranks.rs`: finds a deep `startIndex` page without stepping over everything before it).
pub const RANKS: TableDefinition<(&str, u8, u8, u64), u64> =
    TableDefinition::new("tenant_kind_level_prefix_count");

/// (tenant, seq) → event JSON (ids and attribute names only).
pub const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("tenant_seq_event");

/// tenant → last event sequence number.
pub const EVENT_SEQ: TableDefinition<&str, u64> = TableDefinition::new("tenant_eventseq");

/// (tenant, user) → (): active users placed on the free plan by the seat limit.
pub const OVERFLOW_USERID: TableDefinition<(&str, u128), ()> =
    TableDefinition::new("tenant_overflow_userid");

/// (tenant, kind, "urn:attr", value) → id: unique attributes of declared extensions.
pub const UNIQUE_ID: TableDefinition<(&str, u8, &str, &str), u128> =
    TableDefinition::new("tenant_kind_attr_value_id");
