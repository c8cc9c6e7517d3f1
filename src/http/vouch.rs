//! Telling the server which connections belong to clients that hold a valid token.
//!
//! Connection slots are few (`server.max_connections`), and a client needs no token to take
//! one: a TLS handshake, or a request that earns a 401, holds a slot until a timeout ends it.
//! When every slot is taken, the server makes room by closing a connection that has never
//! carried a valid token, so strangers cannot keep an IdP out. Only a connection that showed
//! a token, and has had none refused since (a reload may revoke it), is safe from that, and
//! with several tenants only up to half the slots for one tenant's tokens (see
//! `server::in_flight`), so one tenant cannot keep the others out.

use std::sync::Arc;

/// A connection as a request on it may speak of it to the server.
pub trait Vouch: Send + Sync {
    /// A request on this connection carried `tenant`'s valid token named `token`.
    fn vouch(&self, tenant: &str, token: &str);
    /// A request on this connection was refused for its token: it is a stranger again. The
    /// token it showed before may have been revoked since, and must not keep its holder's
    /// connections safe from closing.
    fn disown(&self);
}

/// The connection a request came on, carried in its extensions by the server.
#[derive(Clone)]
pub struct Voucher(pub Arc<dyn Vouch>);

/// A request with these extensions was refused for its token: its connection is a
/// stranger again.
pub fn disown(extensions: &http::Extensions) {
    if let Some(conn) = extensions.get::<Voucher>() {
        conn.0.disown();
    }
}

/// `req` carried `who`'s valid token: say so for its connection.
pub fn vouch_for<B>(req: &http::Request<B>, who: &crate::auth::Principal) {
    if let Some(conn) = req.extensions().get::<Voucher>() {
        conn.0.vouch(&who.tenant, &who.token_name);
    }
}
