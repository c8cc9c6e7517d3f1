//! Rendering: SCIM JSON bodies with `application/scim+json`, the RFC 7644 error body, and
//! the headers that go with them.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::scim::error::ScimError;

pub type Resp = Response<Body>;

/// A response body: whole, or streamed in chunks from a producer (a large group's members),
/// so memory stays bounded whatever the size of the answer.
#[derive(Debug)]
pub enum Body {
    Full(Option<Bytes>),
    Stream {
        rx: mpsc::Receiver<Bytes>,
        /// What is left of the last chunk received, past the parts handed on.
        rest: Option<Bytes>,
    },
}

impl Body {
    pub fn full(b: impl Into<Bytes>) -> Body {
        Body::Full(Some(b.into()))
    }

    pub fn stream(rx: mpsc::Receiver<Bytes>) -> Body {
        Body::Stream { rx, rest: None }
    }
}

/// The most of a body handed to hyper at once. hyper asks for the next part only when it
/// has room to send it, so the rest stays here, counted, until the client takes what went
/// before; an HTTP/2 stream the client resets leaves the rest never sent, and known so.
/// What h2 drops with such a stream is at most about a part, so parts are small: one
/// frame's worth.
pub const PART: usize = 16 * 1024;

/// `all`'s first part; the rest, if any, is left in `rest`.
fn part_of(mut all: Bytes, rest: &mut Option<Bytes>) -> Bytes {
    if all.len() > PART {
        let part = all.split_to(PART);
        *rest = Some(all);
        part
    } else {
        all
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut *self {
            Body::Full(b) => Poll::Ready(b.take().map(|all| Ok(Frame::data(part_of(all, b))))),
            Body::Stream { rx, rest } => {
                if let Some(left) = rest.take() {
                    return Poll::Ready(Some(Ok(Frame::data(part_of(left, rest)))));
                }
                rx.poll_recv(cx)
                    .map(|c| c.map(|all| Ok(Frame::data(part_of(all, rest)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream { .. } => SizeHint::default(),
        }
    }
}

pub const SCIM_JSON: &str = "application/scim+json";

pub fn json(status: u16, body: &Value) -> Resp {
    json_bytes(status, serde_json::to_vec(body).unwrap_or_default())
}

/// A JSON body already written.
pub fn json_bytes(status: u16, bytes: Vec<u8>) -> Resp {
    let mut r = Response::new(Body::full(bytes));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    r
}

pub fn empty(status: u16) -> Resp {
    // Ended before it starts: hyper's HTTP/2 side would give a body of 0 bytes a
    // `content-length: 0`, which a 204 must not carry (RFC 9110 §8.6), nor a 304 unlike
    // the 200's.
    let mut r = Response::new(Body::Full(None));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
    r
}

/// A refusal's detail as the client got it, for the request's log line: an admin without
/// the IdP's console sees why, not only the status.
#[derive(Debug, Clone)]
pub struct Detail {
    text: String,
    /// The status it came with: refusals of the request as a whole (a read-only token's
    /// write, an endpoint not served) quote nothing of a body, whatever words they use.
    status: u16,
}

/// Longest detail a log line carries; a client's long input does not make long lines.
const DETAIL_LOGGED: usize = 300;

impl Detail {
    /// What the log line may show: cut to `DETAIL_LOGGED` characters, and nothing when it
    /// names the password or an attribute named like a secret (`redact::names_a_secret`), as
    /// a detail about one, or quoting a PATCH path or filter naming one, may quote the value
    /// itself (the client has it; the log must not).
    /// `withhold` takes out what else must not be logged (a token quoted from the path)
    /// before the cut, so that no part of it is left.
    pub fn for_log(&self, withhold: impl FnOnce(&str) -> String) -> Option<String> {
        // (A 401's detail is scimd's own text about the Authorization header, never the
        // token: it names "token" without quoting one.)
        let whole_request = matches!(self.status, 401 | 403 | 405 | 501);
        (whole_request || !crate::scim::redact::names_a_secret(&self.text))
            .then(|| clip(&withhold(&self.text), DETAIL_LOGGED).into_owned())
    }
}

/// At most `chars` characters of `s`, with "…" when some were cut: text from a client
/// goes into log lines, which must stay short.
pub fn clip(s: &str, chars: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]).into(),
        None => s.into(),
    }
}

/// `s` whole if it has at most `chars` characters, else its first and last `chars / 2`
/// around an ellipsis: the end of a client's URN-qualified name (the attribute) tells more
/// than its long, shared beginning.
pub fn clip_middle(s: &str, chars: usize) -> std::borrow::Cow<'_, str> {
    let n = s.chars().count();
    if n <= chars {
        return s.into();
    }
    let head: String = s.chars().take(chars / 2).collect();
    let tail: String = s.chars().skip(n - chars / 2).collect();
    format!("{head}…{tail}").into()
}

/// The one place a `ScimError` becomes an HTTP response.
pub fn error(e: &ScimError) -> Resp {
    error_with(e, &[])
}

/// `error`, with fields of its own beside the error's (a 410 from the change feed says where
/// to continue).
pub fn error_with(e: &ScimError, extra: &[(&str, Value)]) -> Resp {
    let mut body = e.to_json();
    for (k, v) in extra {
        body[*k] = v.clone();
    }
    let mut r = json(e.status, &body);
    // For the request's log line, which sees only the response.
    if let Some(t) = e.scim_type {
        r.extensions_mut().insert(t);
    }
    r.extensions_mut().insert(Detail {
        text: e.detail.clone(),
        status: e.status,
    });
    if e.status == 401 {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"scimd\""),
        );
    }
    if e.status == 503 || e.status == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    r
}

/// The answer to a HEAD: GET's status and headers, with the length GET's content would have
/// had when it is known, and no content (a streamed body's producer stops when it is dropped).
pub fn without_content(r: Resp) -> Resp {
    let (mut parts, body) = r.into_parts();
    // A 304 has no content to give the length of (RFC 9110 §8.6 allows only the 200's).
    if let Body::Full(Some(b)) = &body
        && parts.status != http::StatusCode::NOT_MODIFIED
    {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
    }
    Response::from_parts(parts, Body::Full(None))
}

/// RFC 7644 §3.8: a client must be able to ask for `application/json`. One whose Accept
/// names it and not `application/scim+json` gets its JSON labelled so; every other client,
/// and one sending no Accept, gets the default `application/scim+json`. Nothing is refused
/// for its Accept: an IdP that sends `*/*` or an odd list still gets its answer.
pub fn negotiated(mut r: Resp, accept: Option<&HeaderValue>) -> Resp {
    let plain = accept
        .and_then(|a| a.to_str().ok())
        .is_some_and(prefers_plain_json);
    if plain
        && r.headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|t| t == SCIM_JSON)
    {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    r
}

/// Whether to answer `application/json`: the Accept value rules `application/scim+json`
/// out (names it only with a weight of 0), or asks for `application/json` (with a weight
/// above 0) and does not name `application/scim+json`.
fn prefers_plain_json(accept: &str) -> bool {
    let mut json = false;
    // Whether application/scim+json was named, and then with a weight above 0.
    let mut scim: Option<bool> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.get(..2)
                .filter(|k| k.eq_ignore_ascii_case("q="))
                .and_then(|_| p.get(2..)?.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        // Named with a weight of 0, it is ruled out (RFC 9110 §12.4.2), not asked for;
        // ruled out, the one other type there is to give is plain JSON, whatever else the
        // client accepts (`*/*` included).
        if media.eq_ignore_ascii_case(SCIM_JSON) {
            scim = Some(scim.unwrap_or(false) || !refused);
        }
        json |= media.eq_ignore_ascii_case("application/json") && !refused;
    }
    match scim {
        Some(acceptable) => !acceptable,
        None => json,
    }
}

pub fn with_header(mut r: Resp, name: header::HeaderName, value: &str) -> Resp {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn names_cut_in_the_middle_keep_their_ends() {
        assert_eq!(clip_middle("short", 160), "short");
        let name = format!("urn:{}:costCentreCode", "x".repeat(200));
        let cut = clip_middle(&name, 160);
        assert_eq!(cut.chars().count(), 161);
        assert!(
            cut.starts_with("urn:xx") && cut.ends_with(":costCentreCode"),
            "{cut}"
        );
        assert!(cut.contains('…'), "{cut}");
        // Characters, not bytes.
        assert_eq!(clip_middle("ééééé", 2), "é…é");
    }

    #[tokio::test]
    async fn a_whole_body_goes_to_hyper_in_parts_of_its_full_length() {
        let mut b = Body::full(vec![7u8; 2 * PART + 100]);
        assert_eq!(b.size_hint().exact(), Some(2 * PART as u64 + 100));
        let mut parts = Vec::new();
        while let Some(f) = b.frame().await {
            parts.push(f.unwrap().into_data().unwrap().len());
        }
        assert_eq!(parts, [PART, PART, 100]);
        assert!(b.is_end_stream());
    }

    #[tokio::test]
    async fn a_streamed_body_hands_each_chunk_on_in_parts() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Bytes::from(vec![1u8; PART + 1])).await.unwrap();
        tx.send(Bytes::from(vec![2u8; 10])).await.unwrap();
        tx.send(Bytes::from(vec![3u8; 2 * PART])).await.unwrap();
        drop(tx);
        let mut b = Body::stream(rx);
        let mut parts = Vec::new();
        while let Some(f) = b.frame().await {
            let d = f.unwrap().into_data().unwrap();
            parts.push((d[0], d.len()));
        }
        assert_eq!(parts, [(1, PART), (1, 1), (2, 10), (3, PART), (3, PART)]);
    }

    #[test]
    fn plain_json_only_when_asked_for_or_scim_json_ruled_out() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "text/html, application/json;q=0.9",
            "application/scim+json;q=0, application/json",
            "application/scim+json; Q=0, application/json",
            // Ruled out, with or without another type accepted.
            "application/scim+json;q=0",
            "application/scim+json;q=0.0, */*",
            "application/scim+json;q=0, application/*;q=0.5",
        ] {
            assert!(prefers_plain_json(yes), "{yes}");
        }
        for no in [
            "application/scim+json",
            "application/json, application/scim+json",
            "application/scim+json;q=0.5, application/json",
            "*/*",
            "application/json;q=0",
            "",
        ] {
            assert!(!prefers_plain_json(no), "{no}");
        }
        let ct = |r: &Resp| {
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_string()
        };
        let asked = HeaderValue::from_static("application/json");
        assert_eq!(
            ct(&negotiated(json(200, &Value::Null), Some(&asked))),
            "application/json"
        );
        assert_eq!(ct(&negotiated(json(200, &Value::Null), None)), SCIM_JSON);
        // Only a SCIM JSON body is relabelled (the metrics page keeps its own type).
        let mut text = empty(200);
        text.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(ct(&negotiated(text, Some(&asked))), "text/plain");
    }
}

#[cfg(test)]
mod logged_detail {
    use super::*;

    #[test]
    fn the_logged_detail_is_cut_and_never_one_naming_the_password() {
        let long = ScimError::invalid_value("é".repeat(400));
        let d = error(&long).extensions().get::<Detail>().cloned().unwrap();
        let logged = d.for_log(str::to_string).unwrap();
        assert_eq!(logged.chars().count(), DETAIL_LOGGED + 1, "cut, with …");
        for secret in [
            "unknown path PassWord[value eq \"Hunter2\"]",
            "attribute \"ssnSecret\" must be a string, got the number 123456789",
            "attribute \"apiToken\" must be a string, got true",
        ] {
            let e = ScimError::invalid_value(secret);
            let d = error(&e).extensions().get::<Detail>().cloned().unwrap();
            assert!(d.for_log(str::to_string).is_none(), "{secret}");
        }
        // A refusal of the whole request quotes no body: said, though it names tokens.
        for (status, text) in [
            (
                403,
                "the token \"app\" has scope read; writes need a token with scope provision",
            ),
            (
                501,
                "/Me is not supported: tokens belong to provisioning clients, not to users",
            ),
        ] {
            let d = error(&ScimError::new(status, None, text));
            let d = d.extensions().get::<Detail>().cloned().unwrap();
            assert_eq!(d.for_log(str::to_string).as_deref(), Some(text));
        }
    }
}
