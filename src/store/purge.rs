//! Taking a tenant's data out of the database for good (`scimd tenant purge`), once it is no
//! longer configured: its resources, indexes, memberships, counters and change feed.

use redb::{ReadableMultimapTable, ReadableTable};

use super::write::W;
use super::{Error, R, Store};

/// Entries taken out per commit: a tenant of a million users is removed in a few hundred
/// commits, each short enough that the other tenants' writes never wait long behind it.
const CHUNK: usize = 20_000;

/// The exclusive upper bound of every key whose first element is `tenant`. Tenant names
/// hold only a-z, 0-9, '-' and '_', so none sorts between `tenant` and `tenant` + NUL.
fn after(tenant: &str) -> String {
    format!("{tenant}\0")
}

impl W<'_> {
    /// Take out up to `limit` of `tenant`'s entries, table by table; how many were taken (0
    /// once nothing of it is left). The number of its last event stays, and the call that
    /// finds the rest gone passes one more: a tenant added again under the name numbers its
    /// feed past every event a reader may have seen, and a reader that had read all of it
    /// is told (410) that what it holds is gone, instead of being served an empty feed.
    pub(super) fn purge_tenant(&mut self, tenant: &str, limit: usize) -> R<u64> {
        let end = after(tenant);
        let end = end.as_str();
        let mut left = limit;
        // Whole-key tables: the range is exactly this tenant's keys.
        macro_rules! drain {
            ($table:expr, $from:expr, $to:expr) => {
                if left > 0 {
                    let mut gone = $table.extract_from_if($from..$to, |_, _| true)?;
                    while left > 0 {
                        match gone.next() {
                            Some(e) => {
                                e?;
                                left -= 1;
                            }
                            None => break,
                        }
                    }
                }
            };
        }
        // Multimap tables: a key's values go together.
        macro_rules! drain_multi {
            ($table:expr, $from:expr, $to:expr, |$k:ident| $owned:expr, |$o:ident| $key:expr) => {
                if left > 0 {
                    let mut keys = Vec::new();
                    for e in $table.range($from..$to)?.take(left) {
                        let ($k, _) = e?;
                        let $k = $k.value();
                        keys.push($owned);
                    }
                    for $o in &keys {
                        for v in $table.remove_all($key)? {
                            v?;
                            left = left.saturating_sub(1);
                        }
                    }
                }
            };
        }
        drain!(self.res, (tenant, 0u8, 0u128), (end, 0u8, 0u128));
        drain!(self.usernames, (tenant, ""), (end, ""));
        drain!(self.members, (tenant, 0u128, 0u128), (end, 0u128, 0u128));
        drain!(self.member_of, (tenant, 0u128, 0u128), (end, 0u128, 0u128));
        drain!(self.displays, (tenant, 0u128, 0u128), (end, 0u128, 0u128));
        drain!(self.overflow, (tenant, 0u128), (end, 0u128));
        drain!(self.unique, (tenant, 0u8, "", ""), (end, 0u8, "", ""));
        drain!(
            self.modified,
            (tenant, 0u8, i64::MIN, 0u128),
            (end, 0u8, i64::MIN, 0u128)
        );
        drain!(self.ranks, (tenant, 0u8, 0u8, 0u64), (end, 0u8, 0u8, 0u64));
        drain!(self.events, (tenant, 0u64), (end, 0u64));
        // externalId and displayName: the same key shape, (tenant, kind, value).
        for table in [&mut self.ext_ids, &mut self.names] {
            drain_multi!(
                table,
                (tenant, 0u8, ""),
                (end, 0u8, ""),
                |k| (k.1, k.2.to_string()),
                |o| (tenant, o.0, o.1.as_str())
            );
        }
        drain_multi!(
            self.emails,
            (tenant, ""),
            (end, ""),
            |k| k.1.to_string(),
            |o| (tenant, o.as_str())
        );
        // The counters last: while any of the rest is left, `status` still lists the tenant.
        drain!(self.counts, (tenant, 0u8), (end, 0u8));
        if left > 0 {
            // A name that never had a feed has no reader to tell.
            if self.seqs.get(tenant)?.is_some() {
                super::events::skip_one(&mut self.seqs, tenant)?;
            }
            super::plan::Applied::forget(&mut self.txn.open_table(super::tables::META)?, tenant)?;
            self.plans_applied.insert(tenant.to_string(), None);
        }
        Ok(Ok((limit - left) as u64))
    }
}

impl Store {
    /// Take out everything `tenant` has stored, a chunk a commit; how many entries were
    /// taken. A purge cut short (a crash, a full disk) leaves the rest, and running it again
    /// finishes it: the tenant is not served meanwhile, as it is not configured.
    pub async fn purge_tenant(&self, tenant: String) -> Result<u64, Error> {
        self.purge_tenant_in(tenant, CHUNK).await
    }

    pub(super) async fn purge_tenant_in(&self, tenant: String, chunk: usize) -> Result<u64, Error> {
        let mut total = 0;
        loop {
            let t = tenant.clone();
            let n = self
                .write(tenant.clone(), move |w| w.purge_tenant(&t, chunk))
                .await?;
            total += n;
            if n < chunk as u64 {
                return Ok(total);
            }
        }
    }
}
