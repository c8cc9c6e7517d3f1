//! The operator's endpoints: `/metrics` and `/healthz`.

use std::net::SocketAddr;

use http::header;

use super::App;
use super::response::{self, Resp};
use crate::scim::error::ScimError;
use crate::scim::schema::Kind;
use crate::store::Refused;

impl App {
    /// Note the end of the certificate `resolver` now serves, for `/metrics`.
    pub fn served_certificate(&self, resolver: &crate::tls::CertResolver) {
        let ends = resolver.not_after().unwrap_or(0);
        (self.metrics.certificate_not_after).store(ends, std::sync::atomic::Ordering::Relaxed);
    }

    /// `GET /metrics`: Prometheus text, for the holder of `server.metrics_token_sha256`.
    pub(super) async fn metrics_page(
        &self,
        (headers, extensions): (&http::HeaderMap, &http::Extensions),
        peer: SocketAddr,
    ) -> Resp {
        let rt = self.runtime();
        let Some(want) = rt.config.server.metrics_token_sha256.clone() else {
            return response::error(&ScimError::not_found(
                "metrics are off: set server.metrics_token_sha256",
            ));
        };
        let auth = super::auth::authorization(headers);
        let auth = auth.as_deref();
        let ok = crate::auth::unhex(&want.to_ascii_lowercase()).is_some_and(|want| {
            auth.and_then(crate::auth::bearer)
                .is_some_and(|t| crate::auth::is_token(t, &want))
        });
        if !ok {
            let why = || "not the metrics token (server.metrics_token_sha256)".to_string();
            return self.refused(peer, (headers, extensions), None, why);
        }
        let mut out = String::new();
        self.metrics.render(&mut out);
        self.store.metrics.render(&mut out);
        out.push_str("# HELP scimd_database_bytes Size of the database file.\n# TYPE scimd_database_bytes gauge\n");
        out.push_str(&format!(
            "scimd_database_bytes {}\n",
            self.store.file_size()
        ));
        // A monitor sees the disk filling before writes are refused for it.
        if let Some(free) = self.store.disk_free() {
            out.push_str("# HELP scimd_database_disk_free_bytes Bytes free to scimd on the disk holding the database.\n# TYPE scimd_database_disk_free_bytes gauge\n");
            out.push_str(&format!("scimd_database_disk_free_bytes {free}\n"));
        }
        // As /healthz says it, for a monitor that scrapes rather than probes.
        out.push_str("# HELP scimd_writes_refused Whether the IdPs' writes are refused (503), by reason: the database file found damaged, removed or replaced while running (file_gone), or its disk full.\n# TYPE scimd_writes_refused gauge\n");
        let refused = self.store.writes_refused();
        for (reason, on) in [
            ("damaged", matches!(refused, Some(Refused::Damaged(_)))),
            ("file_gone", matches!(refused, Some(Refused::FileGone(_)))),
            (
                "disk_full",
                matches!(refused, Some(Refused::DiskFull { .. })),
            ),
        ] {
            out.push_str(&format!(
                "scimd_writes_refused{{reason=\"{reason}\"}} {}\n",
                u8::from(on)
            ));
        }
        out.push_str(
            "# HELP scimd_resources Users and groups per tenant.\n# TYPE scimd_resources gauge\n",
        );
        // A tenant taken out of the configuration still holds its data on disk.
        let mut tenants: Vec<String> = rt.config.tenants.keys().cloned().collect();
        tenants.extend(self.store.stored_tenants().await.unwrap_or_default());
        tenants.sort();
        tenants.dedup();
        for tenant in &tenants {
            for kind in [Kind::User, Kind::Group] {
                // A count the database cannot give is left out, never shown as zero.
                let Ok(n) = self.store.count(tenant.clone(), kind).await else {
                    continue;
                };
                out.push_str(&format!(
                    "scimd_resources{{tenant=\"{tenant}\",kind=\"{}\"}} {n}\n",
                    kind.as_str()
                ));
            }
        }
        let mut r = http::Response::new(response::Body::full(out));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    }

    /// `GET /healthz`: no token; 200 when the database answers a read and takes writes,
    /// else 503.
    pub(super) async fn health(&self) -> Resp {
        let readable = self.store.check().await.is_ok();
        // Readable but refusing writes: an IdP's changes fail, so a monitor must hear of it.
        let refused = self.store.writes_refused();
        let ok = readable && refused.is_none();
        let database = match (readable, refused) {
            // What was found goes to the log only: this answer needs no token.
            (_, Some(Refused::Damaged(_))) => "damaged: writes refused until a backup is \
                                             restored (the server log says what the scrub \
                                             found); reads served"
                .to_string(),
            (readable, Some(Refused::FileGone(_))) => format!(
                "file removed or replaced while running: writes refused until it is put back \
                 (the server log says how); {}",
                if readable {
                    "reads served from the file still open"
                } else {
                    "cannot be read"
                }
            ),
            (false, _) => "cannot be read".to_string(),
            (true, Some(Refused::DiskFull { free, needed })) => {
                let (free, needed) = crate::store::disk_full_mib(free, needed);
                format!(
                    "disk full ({free:.1} MiB free): writes refused until {needed:.1} MiB are \
                     free; reads served"
                )
            }
            (true, None) => "ok".to_string(),
        };
        let body = serde_json::json!({
            "status": if ok { "ok" } else { "unavailable" },
            "version": env!("CARGO_PKG_VERSION"),
            "commit": env!("SCIMD_COMMIT"),
            "database": database,
        });
        let mut r = response::json(if ok { 200 } else { 503 }, &body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    }
}
