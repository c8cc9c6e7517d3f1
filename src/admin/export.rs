//! `scimd export`: a tenant's resources, one JSON line each, from one snapshot.

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::commands::readable;
use crate::config::Config;
use crate::scim::schema::Kind;
use crate::store::Store;

/// The key in a user's `meta` that says the seat limit had put it on the free plan: an
/// import places it there again (scimd's own, as `meta` is the server's).
pub const PLACED_ON_FREE: &str = "placedOnFree";

/// One resource per line, written to `out` as it is read: all users, then all groups with
/// their members, all read in one snapshot (a user created meanwhile and added to a group
/// would otherwise be a member the file does not hold). A group's members are read in
/// batches and written into its line as they come: a group of a million is never held
/// whole. A failed write (the reader gone) stops the export. Returns how many resources.
pub async fn export<W>(
    store: &Store,
    cfg: &Config,
    tenant: &str,
    out: &mut W,
) -> Result<u64, ExportFailed>
where
    W: tokio::io::AsyncWrite + Unpin + Send,
{
    readable(store, cfg, tenant)
        .await
        .map_err(ExportFailed::Read)?;
    let rt = crate::http::Runtime::new(cfg.clone());
    let read = |e: crate::store::Error| ExportFailed::Read(e.to_string());
    let snapshot = store.snapshot().map_err(read)?;
    let mut n = 0;
    for kind in [Kind::User, Kind::Group] {
        let mut after = 0u128;
        loop {
            let q = crate::store::ListQuery {
                count: 1000,
                start_index: 1,
                after: Some(after),
                ..Default::default()
            };
            let page = store
                .list_in(
                    Some(snapshot.clone()),
                    tenant.to_string(),
                    rt.rt(Some(tenant), kind),
                    q,
                )
                .await
                .map_err(read)?;
            let on_free: std::collections::HashSet<u128> = match kind {
                Kind::User => {
                    let ids = page
                        .items
                        .iter()
                        .filter_map(|r| crate::store::parse_id(&r.id));
                    store
                        .on_free(tenant.to_string(), ids.collect(), snapshot.clone())
                        .await
                        .map_err(read)?
                        .into_iter()
                        .collect()
                }
                Kind::Group => Default::default(),
            };
            for r in &page.items {
                // Read without its references: a user's groups are not exported (its
                // groups' members say them), a group's members are streamed below.
                let mut v = r.to_json("");
                // The version goes along: an import keeps it, so that an ETag never comes
                // to mean another state.
                let mut meta = v.shift_remove("meta").unwrap_or_default();
                if let Value::Object(m) = &mut meta {
                    m.shift_remove("location");
                }
                match kind {
                    Kind::User => {
                        if let Value::Object(m) = &mut meta
                            && crate::store::parse_id(&r.id).is_some_and(|id| on_free.contains(&id))
                        {
                            m.insert(PLACED_ON_FREE.into(), Value::Bool(true));
                        }
                        v.insert("meta".into(), meta);
                        let line = Value::Object(v).to_string() + "\n";
                        put(out, line.as_bytes()).await?;
                    }
                    Kind::Group => {
                        let members = store.member_batches(
                            tenant.to_string(),
                            crate::store::parse_id(&r.id).unwrap_or_default(),
                            EXPORT_STALL,
                            Some(snapshot.clone()),
                        );
                        let head = Value::Object(v).to_string();
                        write_group(&head, members, &meta, out).await?;
                    }
                }
                n += 1;
            }
            match page.next {
                Some(id) => after = id,
                None => break,
            }
        }
    }
    Ok(n)
}

/// Why an export stopped: the output could not be written (its reader gone, a full disk),
/// or the tenant could not be read.
#[derive(Debug)]
pub enum ExportFailed {
    Output(std::io::Error),
    Read(String),
}

impl From<std::io::Error> for ExportFailed {
    fn from(e: std::io::Error) -> Self {
        ExportFailed::Output(e)
    }
}

/// How long an export waits for its reader (the console) to take more: past it, the export
/// stops rather than hold its snapshot (which keeps redb from reusing the pages later
/// writes free) for as long as a paused console likes.
pub(super) const EXPORT_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// Write `bytes` to the export's reader, waiting at most `EXPORT_STALL` for it.
async fn put<W>(out: &mut W, bytes: &[u8]) -> Result<(), ExportFailed>
where
    W: tokio::io::AsyncWrite + Unpin + Send,
{
    match tokio::time::timeout(EXPORT_STALL, out.write_all(bytes)).await {
        Ok(written) => Ok(written?),
        Err(_) => Err(ExportFailed::Output(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the export's reader took nothing for a minute",
        ))),
    }
}

/// A group's line: `head` (the group without members or meta, as a JSON object), its
/// members as they are read, then `meta`; written in pieces of about 64 KiB. The same text
/// as the group read whole gives (members before meta, each `value`, `display`, `type`).
async fn write_group<W>(
    head: &str,
    mut members: tokio::sync::mpsc::Receiver<crate::store::MemberBatch>,
    meta: &Value,
    out: &mut W,
) -> Result<(), ExportFailed>
where
    W: tokio::io::AsyncWrite + Unpin + Send,
{
    use crate::store::MemberBatch;
    let Some(head) = head.strip_suffix('}') else {
        return Err(ExportFailed::Read("a group could not be written".into()));
    };
    let mut text = format!("{head},\"members\":[");
    let mut first = true;
    let written = async {
        loop {
            match members.recv().await {
                Some(MemberBatch::Members(batch)) => {
                    for (id, kind, display) in batch {
                        if !first {
                            text.push(',');
                        }
                        first = false;
                        let id = crate::store::format_id(id);
                        let m = match display {
                            Some(d) => json!({"value": id, "display": d, "type": kind.as_str()}),
                            None => json!({"value": id, "type": kind.as_str()}),
                        };
                        text.push_str(&m.to_string());
                    }
                    if text.len() > 64 << 10 {
                        put(out, text.as_bytes()).await?;
                        text.clear();
                    }
                }
                Some(MemberBatch::End) => break,
                Some(MemberBatch::Head(_)) => {}
                Some(MemberBatch::Failed(_)) | None => {
                    let e = "a group's members could not be read; see the daemon's log";
                    return Err(ExportFailed::Read(e.into()));
                }
            }
        }
        text.push_str(&format!("],\"meta\":{meta}}}\n"));
        put(out, text.as_bytes()).await
    }
    .await;
    // However it ended, until the reader has let go of the snapshot (closed, its next send
    // fails, and it ends): a console command closes the database right after, and waits
    // for every holder of it, on the one thread that would poll the reader. (A closed
    // channel reads as ended once empty, before its sender is gone: hence the count.)
    members.close();
    while members.recv().await.is_some() {}
    while members.sender_strong_count() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    written
}
