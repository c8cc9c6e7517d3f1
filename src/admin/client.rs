//! The console's side of the admin socket.

use std::path::Path;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::END;

/// Run `req` on the daemon, sending the lines of `body` after it (an import's file, a line
/// at a time as it is read, opened once: it may be a pipe); returns its final status line
/// (nothing when it stopped before it). The resource lines before it go to `each` in pieces
/// as they come (an export's; with whether the piece ends its line), progress lines to
/// `progress`. `None` when no daemon listens.
pub async fn converse(
    path: &Path,
    req: &Value,
    body: &mut Option<tokio::fs::File>,
    progress: &mut dyn FnMut(u64, u64),
    each: &mut dyn FnMut(&[u8], bool),
) -> Option<Vec<String>> {
    let stream = UnixStream::connect(path).await.ok()?;
    // Taken only once a daemon listens: else the caller imports from it itself.
    let body = body.take();
    let (r, w) = stream.into_split();
    let mut w = tokio::io::BufWriter::with_capacity(256 << 10, w);
    // Past the connection, a failed write is no reason to think no daemon listens: what it
    // answers is read (it may have refused the import), or that it answered nothing.
    // A write that fails: the daemon closed (said below, from what it answered).
    let gone = |_: std::io::Error| String::new();
    let sent = async {
        w.write_all(format!("{req}\n").as_bytes())
            .await
            .map_err(gone)?;
        if let Some(file) = body {
            let mut lines = BufReader::with_capacity(256 << 10, file).lines();
            let mut n = 0usize;
            while let Some(l) = lines
                .next_line()
                .await
                .map_err(|e| format!("line {}: {e}", n + 1))?
            {
                n += 1;
                // The daemon would take it for the end of the file.
                if l == END {
                    return Err(format!(
                        "line {n} is the end mark of scimd's admin channel, not a resource"
                    ));
                }
                w.write_all(l.as_bytes()).await.map_err(gone)?;
                w.write_all(b"\n").await.map_err(gone)?;
            }
            w.write_all(format!("{END}\n").as_bytes())
                .await
                .map_err(gone)?;
        }
        w.flush().await.map_err(gone)?;
        Ok::<(), String>(())
    }
    .await;
    if let Err(said) = sent {
        // Closed before the end mark: the daemon runs nothing.
        if !said.is_empty() {
            return Some(vec![json!({"ok": false, "error": said}).to_string()]);
        }
    }
    // Held open until the answer is read: its end closing tells the daemon the console went
    // away (an import then stops).
    let _open = w;
    let mut from = BufReader::with_capacity(256 << 10, r);
    let mut got = Vec::new();
    // A resource (an export's line) is passed on unparsed and in pieces as it comes: a
    // group of a million members is a line of 60 MB. Other lines are short and read whole.
    const RESOURCE: &[u8] = b"{\"schemas\"";
    let mut head: Vec<u8> = Vec::new();
    let mut in_resource = false;
    while let Ok(buf) = from.fill_buf().await {
        if buf.is_empty() {
            break;
        }
        let (part, ends) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        let used = part.len() + usize::from(ends);
        if in_resource {
            each(part, ends);
            from.consume(used);
            in_resource = !ends;
            continue;
        }
        head.extend_from_slice(part);
        from.consume(used);
        if head.starts_with(RESOURCE) {
            each(&head, ends);
            head.clear();
            in_resource = !ends;
            continue;
        }
        if !ends {
            continue; // a line not yet whole (or a resource's start not yet seen whole)
        }
        let l = String::from_utf8_lossy(&head).into_owned();
        head.clear();
        if l.is_empty() {
            continue;
        }
        let v = serde_json::from_str::<Value>(&l).unwrap_or_default();
        if let [Some(done), Some(total)] = v["progress"]
            .as_array()
            .map(|p| {
                [
                    p.first().and_then(Value::as_u64),
                    p.get(1).and_then(Value::as_u64),
                ]
            })
            .unwrap_or_default()
        {
            progress(done, total);
            continue;
        }
        let last = v.get("ok").is_some();
        got.push(l);
        if last {
            break;
        }
    }
    Some(got)
}

/// Ask the running daemon; `None` when no daemon listens on the socket.
pub async fn ask(path: &Path, req: &Value) -> Option<Value> {
    exchange(UnixStream::connect(path).await.ok()?, req).await
}

/// One request and its one-line answer (`None`: closed, or not an answer).
async fn exchange(stream: UnixStream, req: &Value) -> Option<Value> {
    let (r, mut w) = stream.into_split();
    w.write_all(format!("{req}\n").as_bytes()).await.ok()?;
    let line = BufReader::new(r).lines().next_line().await.ok()??;
    serde_json::from_str(&line).ok()
}

/// What asking the daemon within a time found.
pub enum Asked {
    Answered(Value),
    /// No daemon listens on the socket.
    NoDaemon,
    /// One took the request (or the kernel queued it for one) and said nothing in time:
    /// stopped (SIGSTOP, a debugger), or out of file descriptors.
    Silent,
}

/// `ask`, giving up after `within`: a monitor's `status` must answer, not hang with the
/// daemon.
pub async fn ask_within(path: &Path, req: &Value, within: std::time::Duration) -> Asked {
    let Ok(stream) = tokio::time::timeout(within, UnixStream::connect(path)).await else {
        return Asked::Silent;
    };
    let Ok(stream) = stream else {
        return Asked::NoDaemon;
    };
    match tokio::time::timeout(within, exchange(stream, req)).await {
        Ok(Some(v)) => Asked::Answered(v),
        // Closed without an answer: gone meanwhile.
        Ok(None) => Asked::NoDaemon,
        Err(_) => Asked::Silent,
    }
}
