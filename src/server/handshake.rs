//! What a failed TLS handshake says about its client. An IdP that cannot connect reports
//! only "SSL error" in its own console; the reason (a certificate it does not trust, plain
//! HTTP to the HTTPS port, a client too old) belongs in scimd's log and metrics too.

use rustls::{AlertDescription, InvalidMessage, PeerIncompatible};

use crate::http::limit::LINES_PER_HOUR;
use crate::metrics::HANDSHAKE_REASONS;

/// Why a handshake did not finish.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The client refused the served certificate: it sent a certificate alert.
    Distrusted(AlertDescription),
    /// The client closed the connection once it had the certificate, without an alert:
    /// how Java's HttpClient refuses one it does not trust (and curl one that lacks the
    /// host name).
    SilentlyClosed,
    /// The first bytes were not a TLS record: plain HTTP, most likely.
    NotTls,
    /// The client offered no protocol version, cipher suite or key exchange scimd accepts.
    Incompatible(PeerIncompatible),
    /// The client went quiet before the handshake finished.
    TimedOut,
    /// The client closed or reset the connection mid-handshake: a load tool stopping, a
    /// health probe that only connects. Counted apart so that `other` stays worth a look.
    Closed,
    /// Anything else: another alert, a malformed message.
    Other,
}

impl Failure {
    /// Reads the error `tokio_rustls`' accept gave, which wraps rustls' own.
    pub fn of(e: &std::io::Error) -> Failure {
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            use std::io::ErrorKind::{
                BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof,
            };
            return match e.kind() {
                UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => Failure::Closed,
                _ => Failure::Other,
            };
        };
        match tls {
            rustls::Error::AlertReceived(a) if about_the_certificate(*a) => Failure::Distrusted(*a),
            rustls::Error::InvalidMessage(
                InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion,
            ) => Failure::NotTls,
            rustls::Error::PeerIncompatible(why) => Failure::Incompatible(why.clone()),
            _ => Failure::Other,
        }
    }

    /// The failure, knowing whether the client was sent a certificate before it: a close
    /// after one is most likely a silent refusal, before one a probe that only connects.
    pub fn after(self, certificate_sent: bool) -> Failure {
        match self {
            Failure::Closed if certificate_sent => Failure::SilentlyClosed,
            f => f,
        }
    }

    /// Whether this failure is worth a line above DEBUG: the kinds an admin can act on, once
    /// an hour per client address and reason (an `UnknownCA` fixed, a `BadCertificate` is
    /// news), and at most `LINES_PER_HOUR` times an hour for each kind, so that scanners from many
    /// addresses do not fill the journal. `within_this_hour` says whether each `what` was
    /// said fewer than its `n` times in the last hour, and if so counts this time against
    /// all of them (against none if not).
    fn loud(
        &self,
        peer: std::net::SocketAddr,
        within_this_hour: impl FnOnce(&[(&str, u32)]) -> bool,
    ) -> bool {
        let actionable = matches!(
            self,
            Failure::Distrusted(_)
                | Failure::SilentlyClosed
                | Failure::NotTls
                | Failure::Incompatible(_)
        );
        actionable
            && within_this_hour(&[
                (&format!("handshake {self:?} {}", peer.ip()), 1),
                (&format!("handshake {}", self.label()), LINES_PER_HOUR),
            ])
    }

    /// The metric label, one of `metrics::HANDSHAKE_REASONS`.
    pub fn label(&self) -> &'static str {
        let [
            distrusted,
            silent,
            not_tls,
            incompatible,
            timeout,
            closed,
            other,
        ] = HANDSHAKE_REASONS;
        match self {
            Failure::Distrusted(_) => distrusted,
            Failure::SilentlyClosed => silent,
            Failure::NotTls => not_tls,
            Failure::Incompatible(_) => incompatible,
            Failure::TimedOut => timeout,
            Failure::Closed => closed,
            Failure::Other => other,
        }
    }

    /// Logs the failure (`error`: what the handshake said, if it said anything): the kinds
    /// an admin can act on at WARN or INFO when `loud` says so, and everything else at DEBUG.
    pub fn log(
        &self,
        peer: std::net::SocketAddr,
        error: Option<&std::io::Error>,
        within_this_hour: impl FnOnce(&[(&str, u32)]) -> bool,
    ) {
        if !self.loud(peer, within_this_hour) {
            let error = error.map(tracing::field::display);
            tracing::debug!(%peer, failure = ?self, error, "TLS handshake did not finish");
            return;
        }
        match self {
            Failure::Distrusted(alert) => tracing::warn!(
                %peer,
                alert = ?alert,
                "a client refused the server's certificate in the TLS handshake: an IdP must trust the chain (a CA it knows, with the intermediates in the tls.cert file) and find the Base URL's host name in it (said once an hour per address and reason, and 20 times an hour at most)"
            ),
            Failure::SilentlyClosed => tracing::info!(
                %peer,
                "a client closed the connection once it had the server's certificate, without saying why: Java's HttpClient does so when it does not trust the certificate (and curl when it lacks the host name): an IdP must trust the chain (a CA it knows, with the intermediates in the tls.cert file) and find the Base URL's host name in it (said once an hour per address and reason, and 20 times an hour at most)"
            ),
            Failure::NotTls => tracing::info!(
                %peer,
                "a client sent something other than TLS, likely plain HTTP, to this HTTPS port: the Base URL must start with https:// (said once an hour per address and reason, and 20 times an hour at most)"
            ),
            _ => tracing::warn!(
                %peer,
                failure = ?self,
                "a client offered no TLS version or cipher suite scimd accepts (TLS 1.2 or 1.3, ECDHE with AES-GCM or ChaCha20-Poly1305) (said once an hour per address and reason, and 20 times an hour at most)"
            ),
        }
    }
}

/// The alerts a client sends when its check of the server's certificate fails (RFC 8446
/// §6.2): OpenSSL and rustls send `unknown_ca` for a chain they cannot trace to a root they
/// trust, such as a self-signed one; others say `certificate_unknown`.
fn about_the_certificate(a: AlertDescription) -> bool {
    matches!(
        a,
        AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn certificate_alerts_mean_the_client_distrusts_the_chain() {
        for a in [
            AlertDescription::UnknownCA,
            AlertDescription::CertificateUnknown,
            AlertDescription::BadCertificate,
            AlertDescription::CertificateExpired,
        ] {
            let f = Failure::of(&wrapped(rustls::Error::AlertReceived(a)));
            assert_eq!(f, Failure::Distrusted(a));
            assert_eq!(f.label(), "certificate_refused");
        }
        // An alert about something else is not the certificate's fault.
        assert_eq!(
            Failure::of(&wrapped(rustls::Error::AlertReceived(
                AlertDescription::HandshakeFailure
            ))),
            Failure::Other
        );
    }

    #[test]
    fn plain_http_and_old_clients_and_resets_are_told_apart() {
        assert_eq!(
            Failure::of(&wrapped(rustls::Error::InvalidMessage(
                InvalidMessage::InvalidContentType
            ))),
            Failure::NotTls
        );
        let old = Failure::of(&wrapped(rustls::Error::PeerIncompatible(
            PeerIncompatible::SupportedVersionsExtensionRequired,
        )));
        assert_eq!(old.label(), "incompatible");
        for kind in [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::UnexpectedEof,
        ] {
            let gone = Failure::of(&std::io::Error::from(kind));
            assert_eq!(gone, Failure::Closed);
            assert_eq!(gone.label(), "closed");
            // Once the client had the certificate, closing is how some refuse it.
            let silent = Failure::of(&std::io::Error::from(kind)).after(true);
            assert_eq!(silent, Failure::SilentlyClosed);
            assert_eq!(silent.label(), "closed_after_certificate");
            assert_eq!(gone.clone().after(false), Failure::Closed);
        }
        assert_eq!(Failure::NotTls.after(true), Failure::NotTls);
        let odd = std::io::Error::other("something else");
        assert_eq!(Failure::of(&odd), Failure::Other);
    }

    #[test]
    fn loud_once_per_address_and_a_few_times_in_all() {
        let said = std::sync::Mutex::new(std::collections::HashMap::<String, u32>::new());
        let within = |budgets: &[(&str, u32)]| {
            let mut m = said.lock().unwrap();
            let all = budgets
                .iter()
                .all(|(what, n)| m.get(*what).copied().unwrap_or(0) < *n);
            if all {
                for (what, _) in budgets {
                    *m.entry(what.to_string()).or_default() += 1;
                }
            }
            all
        };
        let peer = |last: u8| std::net::SocketAddr::from(([10, 0, 0, last], 443));
        let f = Failure::NotTls;
        assert!(f.loud(peer(1), within));
        assert!(!f.loud(peer(1), within), "the same address again");
        let mut loud = 1;
        for last in 2..=100 {
            loud += usize::from(f.loud(peer(last), within));
        }
        assert_eq!(loud, LINES_PER_HOUR as usize, "a spray of addresses");
        // An address refused while the budget was spent is said once it is back.
        said.lock().unwrap().remove("handshake not_tls");
        assert!(f.loud(peer(100), within), "its own hour was not used up");
        // Another kind has its own budget; timeouts and resets are never loud.
        assert!(Failure::Distrusted(AlertDescription::UnknownCA).loud(peer(1), within));
        assert!(
            Failure::Distrusted(AlertDescription::BadCertificate).loud(peer(1), within),
            "another alert from the same address is news"
        );
        assert!(!Failure::TimedOut.loud(peer(200), within));
        assert!(!Failure::Other.loud(peer(201), within));
    }
}
