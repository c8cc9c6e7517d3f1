//! Cursors (RFC 9865) as clients see them: opaque base64url that names the list it belongs
//! to and where it resumes.

use crate::scim::error::{ScimError, ScimResult};
use crate::scim::schema::Kind;
use crate::scim::sort::SortKey;
use crate::store::{PlanCursor, SortMark};

/// What a list cursor belongs to: the tenant, the resource type (0 for both), the filter
/// and the sort it pages through. A cursor carries it after its resume point, so one used
/// on another list is `invalidCursor` rather than a silently empty or wrong page.
#[derive(Clone, Copy)]
pub(super) struct CursorScope([u8; 5]);

/// Names the order sort keys compare in; changed whenever that order changes.
const SORT_ORDER_GENERATION: &str = "simple case folding of NFD, layout 6";

/// The type byte of a plan-list scope, outside the resource types' codes.
const PLAN_LIST: u8 = 0xF0;

impl CursorScope {
    pub(super) fn new(
        tenant: &str,
        kinds: &[Kind],
        filter: Option<&str>,
        sort_by: Option<&str>,
        sort_order: Option<&str>,
    ) -> CursorScope {
        let kind = match kinds {
            [k] => k.code(),
            _ => 0,
        };
        let list = [filter, sort_by, sort_order].map(|s| s.unwrap_or_default().trim());
        // A sorted walk resumes at a sort key, whose order moves when the way names are
        // folded does (layout 6): a cursor from before is refused, not resumed in the
        // wrong place.
        match list[1] {
            "" => CursorScope::of(kind, &[tenant, list[0], list[1], list[2]]),
            _ => CursorScope::of(
                kind,
                &[tenant, list[0], list[1], list[2], SORT_ORDER_GENERATION],
            ),
        }
    }

    /// A tenant's `/plan/members` list of one status (`""`: every status).
    pub(super) fn plan(tenant: &str, status: &str) -> CursorScope {
        CursorScope::of(PLAN_LIST, &[tenant, status])
    }

    fn of(kind: u8, parts: &[&str]) -> CursorScope {
        let h = crate::auth::digest(&parts.join("\0"));
        CursorScope([kind, h[0], h[1], h[2], h[3]])
    }

    /// Plan-list cursors: a user's id, or `~` and an existing-members entry (`~` is outside
    /// base64url, so the two never meet), each followed by the scope.
    pub(super) fn encode_plan(&self, c: &PlanCursor) -> String {
        match c {
            PlanCursor::Start => String::new(),
            PlanCursor::User(id) => self.encode(*id),
            PlanCursor::Tail(m) => format!("~{}", self.wrap(m.as_bytes())),
        }
    }

    pub(super) fn decode_plan(&self, c: &str) -> ScimResult<PlanCursor> {
        if let Some(entry) = c.trim().strip_prefix('~') {
            let bytes = self.point(entry)?.ok_or_else(|| not_a_cursor(c))?;
            return String::from_utf8(bytes)
                .ok()
                .filter(|m| !m.is_empty())
                .map(PlanCursor::Tail)
                .ok_or_else(|| not_a_cursor(c));
        }
        match self.decode(c)? {
            0 => Ok(PlanCursor::Start),
            id => Ok(PlanCursor::User(id)),
        }
    }

    fn wrap(&self, point: &[u8]) -> String {
        use base64::Engine;
        let mut b = point.to_vec();
        b.extend_from_slice(&self.0);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// Resume after this id (creation-ordered lists): an index read to resume, whatever
    /// was created or deleted in between.
    pub(super) fn encode(&self, id: u128) -> String {
        self.wrap(&id.to_be_bytes())
    }

    /// Resume at a mark (sorted lists, and lists over both types): the type's code, then 0
    /// for its first, or 1, the id, and the key (0 for none, 1 and an f64, 2 and UTF-8).
    pub(super) fn encode_mark(&self, m: &Mark) -> String {
        let mut b = vec![m.kind.code()];
        match &m.after {
            None => b.push(0),
            Some(SortMark { key, id }) => {
                b.push(1);
                b.extend_from_slice(&id.to_be_bytes());
                match key {
                    None => b.push(0),
                    Some(SortKey::Num(n)) => {
                        b.push(1);
                        b.extend_from_slice(&n.to_bits().to_be_bytes());
                    }
                    Some(SortKey::Text(t)) => {
                        b.push(2);
                        b.extend_from_slice(t.as_bytes());
                    }
                }
            }
        }
        self.wrap(&b)
    }

    /// The resume point of a cursor of this list; `None` for an empty cursor (the first
    /// page).
    fn point(&self, c: &str) -> ScimResult<Option<Vec<u8>>> {
        if c.trim().is_empty() {
            return Ok(None);
        }
        let mut b = cursor_bytes(c);
        let Some(at) = b.len().checked_sub(self.0.len()).filter(|&n| n > 0) else {
            return Err(not_a_cursor(c));
        };
        if b[at..] != self.0 {
            return Err(ScimError::bad(
                crate::scim::error::ScimType::InvalidCursor,
                "this cursor belongs to another list (another tenant, resource type, filter, \
                 sort or status) or comes from an older scimd; start again with an empty cursor",
            ));
        }
        b.truncate(at);
        Ok(Some(b))
    }

    /// The id after which the page starts (0: the first page).
    pub(super) fn decode(&self, c: &str) -> ScimResult<u128> {
        match self.point(c)? {
            None => Ok(0),
            Some(p) => p
                .try_into()
                .map(u128::from_be_bytes)
                .map_err(|_| not_a_cursor(c)),
        }
    }

    /// Where a walk by mark resumes (the first of `kinds`' first type for an empty cursor).
    pub(super) fn decode_mark(&self, c: &str, kinds: &[Kind]) -> ScimResult<Mark> {
        let Some(p) = self.point(c)? else {
            return Ok(Mark {
                kind: kinds[0],
                after: None,
            });
        };
        let bad = || not_a_cursor(c);
        let kind = kinds
            .iter()
            .copied()
            .find(|k| p.first() == Some(&k.code()))
            .ok_or_else(bad)?;
        let after = match &p[1..] {
            [0] => None,
            [1, rest @ ..] if rest.len() > 16 => {
                let (id, key) = rest.split_at(16);
                let id = u128::from_be_bytes(id.try_into().map_err(|_| bad())?);
                let key = match key {
                    [0] => None,
                    [1, n @ ..] => Some(SortKey::Num(f64::from_bits(u64::from_be_bytes(
                        n.try_into().map_err(|_| bad())?,
                    )))),
                    [2, t @ ..] => Some(SortKey::Text(
                        String::from_utf8(t.to_vec()).map_err(|_| bad())?,
                    )),
                    _ => return Err(bad()),
                };
                Some(SortMark { key, id })
            }
            _ => return Err(bad()),
        };
        Ok(Mark { kind, after })
    }
}

/// Where a walk of a sorted list, or of both types, resumes: in this type, after this
/// resource (`None`: at the type's first).
pub(super) struct Mark {
    pub(super) kind: Kind,
    pub(super) after: Option<SortMark>,
}

/// A cursor's bytes (empty when it is not base64url).
fn cursor_bytes(c: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c.trim())
        .unwrap_or_default()
}

fn not_a_cursor(c: &str) -> ScimError {
    ScimError::bad(
        crate::scim::error::ScimType::InvalidCursor,
        format!("\"{c}\" is not a cursor this server issued"),
    )
}
