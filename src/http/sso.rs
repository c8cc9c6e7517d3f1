//! The stub SAML endpoint: IdP portals post a SAML response to the app's Consumer (ACS) URL;
//! scimd only sends the person on to the application's login page. The posted body is read
//! (bounded) and thrown away as it arrives; the target comes from the configuration alone, never
//! from the request, so there is no open redirect.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Body;

use super::Runtime;
use super::response::Resp;

/// Largest form body accepted (SAML responses are a few KiB; signed ones with certificates
/// stay well under this).
const MAX_FORM: usize = 256 * 1024;

/// `Some(tenant)` (`None` inside for the server-wide form) when `path` is the endpoint,
/// matched as the router matches every other path: each segment percent-decoded, the fixed
/// names in any case, the tenant's name lowercased (an ACS URL typed with capitals, or
/// encoded by a portal, must reach its tenant's page, not the server's default).
pub fn match_path(path: &str) -> Option<Option<String>> {
    // Asked of every request: most are SCIM paths, answered without decoding them.
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    if !(last.contains('%') || last.eq_ignore_ascii_case("login_redirect")) {
        return None;
    }
    let decoded = super::router::segments(path);
    let segs: Vec<&str> = decoded.iter().map(|s| s.as_ref()).collect();
    let is = |s: &str, name: &str| s.eq_ignore_ascii_case(name);
    match segs.as_slice() {
        [s, l] if is(s, "sso") && is(l, "login_redirect") => Some(None),
        [ts, t, s, l] if is(ts, "tenants") && is(s, "sso") && is(l, "login_redirect") => {
            Some(Some(super::router::tenant_of(t)))
        }
        _ => None,
    }
}

fn text(status: StatusCode, msg: &str) -> Resp {
    let mut r = Response::new(super::response::Body::full(msg.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub async fn handle<B>(req: Request<B>, tenant: Option<String>, rt: &Runtime) -> Resp
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.method() != Method::GET && req.method() != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use GET, HEAD or POST\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
        return r;
    }
    if req.method() == Method::POST {
        // Drained, never kept: anyone may post here without a token, and 100 streams on each
        // of many connections, each holding its form, would hold the server's memory.
        let timeout = std::time::Duration::from_secs(rt.config.server.request_timeout_secs);
        if !super::unread::drain(Box::pin(req.into_body()), MAX_FORM as u64, timeout).await {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the form body is too large or did not arrive\n",
            );
        }
    }
    // A tenant's own target, else the server's, for a tenant name that exists or not: the
    // answer must not tell which tenant names exist.
    let target = tenant
        .as_ref()
        .and_then(|t| rt.config.tenants.get(t))
        .and_then(|tc| tc.login_redirect_url.clone())
        .or_else(|| rt.config.server.login_redirect_url.clone());
    let Some(target) = target else {
        return text(
            StatusCode::NOT_FOUND,
            "no login redirect is configured here: set login_redirect_url in [tenants.NAME] \
             (or in [server] for /sso/login_redirect)\n",
        );
    };
    let mut r = text(StatusCode::SEE_OTHER, "");
    match HeaderValue::from_str(&target) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the configured login_redirect_url is not a valid header value\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    /// A form sent in 1 KiB frames, each frame counting itself alive until dropped; notes
    /// the most frames alive at once.
    struct Form {
        left: usize,
        alive: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    }

    struct Alive(Arc<AtomicUsize>);

    impl AsRef<[u8]> for Alive {
        fn as_ref(&self) -> &[u8] {
            &[b'x'; 1024]
        }
    }

    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl Body for Form {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            self.left -= 1;
            let n = self.alive.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(n, Ordering::SeqCst);
            let data = Bytes::from_owner(Alive(self.alive.clone()));
            Poll::Ready(Some(Ok(hyper::body::Frame::data(data))))
        }
    }

    /// Anyone may post here: a form kept until its end, on 100 streams of many connections,
    /// would hold the server's memory. Each part is let go before the next is read.
    #[tokio::test]
    async fn a_posted_form_is_dropped_as_it_arrives() {
        let rt = Runtime::new(crate::config::Config::default());
        let (alive, most) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
        let form = Form {
            left: 200,
            alive: Arc::clone(&alive),
            most: Arc::clone(&most),
        };
        let req = Request::post("/sso/login_redirect").body(form).unwrap();
        let r = handle(req, None, &rt).await;
        // Nothing is configured: 404, after the whole form was read.
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert_eq!(alive.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn matches_both_forms_only() {
        assert_eq!(match_path("/sso/login_redirect"), Some(None));
        assert_eq!(
            match_path("/tenants/acme/sso/login_redirect/"),
            Some(Some("acme".into()))
        );
        assert_eq!(match_path("/sso/login_redirect/x"), None);
        assert_eq!(match_path("/scim/v2/Users"), None);
        // As every other path: decoded, the names in any case, the tenant lowercased.
        for path in [
            "/tenants/ACME/sso/login_redirect",
            "/tenants/%61cme/sso/login_redirect",
            "/tenants/acme/sso/login%5Fredirect",
            "/tenants/acme/%73so/login_redirect",
            "/Tenants/Acme/SSO/Login_Redirect",
        ] {
            assert_eq!(match_path(path), Some(Some("acme".into())), "{path}");
        }
        assert_eq!(match_path("/sso/login%5fredirect"), Some(None));
    }
}
