//! Reading a request body: its media type and charset, its size against the limits and the
//! room its tenant's connections and all connections share, and its JSON.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use serde_json::Value;

use super::{App, Runtime, backlog};
use crate::scim::error::{ScimError, ScimResult};

impl App {
    pub(super) async fn read_body<B>(
        &self,
        req: Request<B>,
        rt: &Runtime,
        conn: Option<&backlog::Backlog>,
        who: &crate::auth::Principal,
    ) -> ScimResult<(Value, backlog::BodyRoom)>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            if !is_json(ct.as_bytes()) {
                return Err(ScimError::new(
                    415,
                    None,
                    format!(
                        "the body must be JSON (Content-Type: application/scim+json), not {}",
                        match String::from_utf8_lossy(ct.as_bytes()).trim() {
                            "" => "an empty Content-Type".into(),
                            given => given.to_string(),
                        }
                    ),
                ));
            }
            if let Some(cs) = foreign_charset(ct.as_bytes()) {
                return Err(ScimError::new(
                    415,
                    None,
                    format!("the body must be UTF-8 JSON, not charset {cs}"),
                ));
            }
        }
        // A compressed body read as JSON would only be refused as garbage, and one merely
        // labelled compressed would be stored as if it had been decoded.
        if let Some(ce) = coding_besides(req.headers(), header::CONTENT_ENCODING, "identity") {
            return Err(ScimError::new(
                415,
                None,
                format!("the body must not be encoded (Content-Encoding: {ce}); send plain JSON"),
            ));
        }
        // hyper undoes the chunked framing only (RFC 9112 §6.1: a coding the server does
        // not understand is 501); another coding would reach the JSON reader still applied.
        if let Some(te) = coding_besides(req.headers(), header::TRANSFER_ENCODING, "chunked") {
            return Err(ScimError::new(
                501,
                None,
                format!(
                    "the body's transfer coding {te} is not supported; send the body plain, \
                     with Content-Length or Transfer-Encoding: chunked"
                ),
            ));
        }
        let max = rt.config.server.max_body_bytes;
        let too_large = || {
            ScimError::new(
                413,
                None,
                format!(
                    "the request body is larger than the server's limit of {max} bytes \
                     (server.max_body_bytes in its configuration)"
                ),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return Err(too_large());
        }
        let timeout = Duration::from_secs(rt.config.server.request_timeout_secs);
        let deadline = tokio::time::Instant::now() + timeout;
        // Room for the body before any of it is read; without a length, for the largest.
        let reserve = declared.map_or(max, |len| len as usize);
        let shared = self.tenant_bodies(rt, who);
        let shared: Vec<&backlog::Room> = shared.iter().collect();
        let Ok(mut room) = tokio::time::timeout_at(
            deadline,
            backlog::Backlog::body_room(conn, &shared, &self.bodies, reserve),
        )
        .await
        else {
            return Err(ScimError::new(
                503,
                None,
                "the server is receiving too many request bodies at once; retry later",
            ));
        };
        let collected =
            tokio::time::timeout_at(deadline, Limited::new(req.into_body(), max).collect()).await;
        let bytes = match collected {
            Err(_) => {
                return Err(ScimError::new(
                    408,
                    None,
                    "the request body did not arrive in time",
                ));
            }
            Ok(Err(e)) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return Err(too_large());
                }
                // The connection broke off, or was closed at the end of a shutdown's grace:
                // the log line says which, and that the client got no answer if so.
                return Err(ScimError::invalid_syntax(format!(
                    "the request body could not be read (the connection ended before it was \
                     whole?): {e}"
                )));
            }
            Ok(Ok(c)) => c.to_bytes(),
        };
        // HTTP/2: hyper ends a body the client reset (RST_STREAM NO_ERROR or CANCEL) as if
        // it were whole. One short of its Content-Length was given up on (RFC 9113 §8.1.1:
        // malformed), and must not be carried out.
        if let Some(len) = declared
            && bytes.len() as u64 != len
        {
            return Err(ScimError::invalid_syntax(format!(
                "the request body ended after {} of the {len} bytes its Content-Length gives \
                 (the client cancelled it?)",
                bytes.len()
            )));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ScimError::invalid_syntax(
                "the request body is empty; a JSON object was expected",
            ));
        }
        room.shrink_to(bytes.len());
        // RFC 8259 §8.1: a byte order mark may be ignored; some Windows tools write one.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let value = crate::scim::json::parse(bytes).map_err(|e| {
            // UTF-16 (a BOM, or the NUL beside each ASCII character) is what PowerShell's
            // Out-File and .NET's Encoding.Unicode write: name it, not the position.
            let utf16 = bytes.starts_with(b"\xFF\xFE")
                || bytes.starts_with(b"\xFE\xFF")
                || bytes.iter().take(4).any(|&b| b == 0);
            // UTF-32 puts three NULs beside each ASCII character: two of them side by side
            // at its start (big-endian, or after a little-endian mark) or after its first.
            let utf32 = bytes.starts_with(b"\xFF\xFE\0\0")
                || bytes.starts_with(b"\0\0")
                || bytes.get(1..3) == Some(b"\0\0");
            if utf16 {
                let name = if utf32 { "UTF-32" } else { "UTF-16" };
                ScimError::invalid_syntax(format!(
                    "the request body is {name}; JSON must be sent as UTF-8 (RFC 8259 §8.1)"
                ))
            } else {
                ScimError::invalid_syntax(format!("the request body is not valid JSON: {e}"))
            }
        })?;
        Ok((value, room))
    }
}

/// The first coding a comma-separated coding header (`Content-Encoding`,
/// `Transfer-Encoding`) names besides `allowed`, in any of its lines.
fn coding_besides<'a>(
    headers: &'a http::HeaderMap,
    name: header::HeaderName,
    allowed: &str,
) -> Option<&'a str> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .find(|e| !e.eq_ignore_ascii_case(allowed))
}

/// `application/scim+json`, `application/json`, any other `+json` type, or `text/json`
/// (older .NET and Java stacks label JSON so), with any parameters. A missing Content-Type
/// is let through: some clients omit it, and the body is checked as JSON anyway.
fn is_json(ct: &[u8]) -> bool {
    let ct = String::from_utf8_lossy(ct).to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence == "application/json"
        || essence == "text/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A `charset` parameter other than UTF-8 (JSON is UTF-8, RFC 8259 §8.1): the body would be
/// read as something it is not.
fn foreign_charset(ct: &[u8]) -> Option<String> {
    let ct = String::from_utf8_lossy(ct);
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        let v = v.trim().trim_matches('"');
        // US-ASCII is a subset of UTF-8: an ASCII body is a UTF-8 one, and any other byte
        // is refused as not UTF-8 anyway.
        (k.trim().eq_ignore_ascii_case("charset")
            && !["utf-8", "utf8", "us-ascii", "ascii"]
                .iter()
                .any(|c| v.eq_ignore_ascii_case(c)))
        .then(|| v.to_string())
    })
}
