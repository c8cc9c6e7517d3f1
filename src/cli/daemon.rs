//! `scimd serve`: logging, and the server's life under systemd: readiness, more start-up
//! time while a large file is checked, reloads on SIGHUP and on certificate renewal, and a
//! clean stop on SIGTERM.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use scimd::config::Config;
use scimd::server::Server;

use super::console::base_url;

/// `eprintln!` that never panics: a server whose standard error lost its reader (a log pipe
/// restarted) goes on serving rather than die on a line no one would read.
macro_rules! tell {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// `tell!` for a failure: on the journal each line says it is an error (`<3>`), so that
/// `journalctl -p err` and alerts on priority see why the service did not start.
macro_rules! fail {
    ($($t:tt)*) => {{
        use std::io::Write;
        let text = format!($($t)*);
        let mark = if on_journal() { "<3>" } else { "" };
        let mut err = std::io::stderr().lock();
        for line in text.lines() {
            let _ = writeln!(err, "{mark}{line}");
        }
    }};
}

/// Whether standard error is the journal's stream: systemd names that stream's device and
/// inode in JOURNAL_STREAM (and a child that inherited the variable may have another
/// standard error). Lines there start with their syslog priority, `<4>` for a warning,
/// which journald reads and strips (SyslogLevelPrefix=, on by default): without it every
/// line is stored at the default priority, info, and `journalctl -p warning` shows nothing.
pub(crate) fn on_journal() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let named = std::env::var("JOURNAL_STREAM").ok();
        let Some((dev, ino)) = named.as_deref().and_then(|v| v.split_once(':')) else {
            return false;
        };
        rustix::fs::fstat(std::io::stderr())
            .is_ok_and(|st| (dev, ino) == (&st.st_dev.to_string(), &st.st_ino.to_string()))
    })
}

/// Each event as `inner` writes it, after its syslog priority (`on_journal`).
struct Prioritised<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Prioritised<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut w: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        // Every line of it: journald reads each line as an entry of its own.
        let mut text = String::new();
        let inner = tracing_subscriber::fmt::format::Writer::new(&mut text);
        self.0.format_event(ctx, inner, event)?;
        for line in text.split_inclusive('\n') {
            write!(w, "<{priority}>{line}")?;
        }
        Ok(())
    }
}

/// Directives that go before the admin's (which may still raise them). rustls warns on every
/// connection whose client sends an IP address as SNI (what a Base URL like
/// https://10.0.0.5:8443/... makes clients do) or asks to renegotiate, and h2 on every
/// connection that resets streams too fast: the client's doing, one line per connection,
/// which any client could repeat to flood the journal. scimd logs failed handshakes itself,
/// within limits, and counts them in /metrics.
const QUIET: &str = "rustls=error,h2=error";

pub(crate) fn init_logging(level: &str, format: &str) {
    // RUST_LOG overrides log.level, but a word that is no level would silence every line
    // (read as a module name), as check-config refuses in the file: said, and passed over.
    let env = std::env::var("RUST_LOG").ok();
    let bad_env = env
        .as_deref()
        .and_then(scimd::config::bad_log_level)
        .map(str::to_string);
    // QUIET goes before RUST_LOG's own directives, which may still raise it.
    let from_env = match (&bad_env, &env) {
        (None, Some(e)) if !e.trim().is_empty() => {
            tracing_subscriber::EnvFilter::try_new(format!("{QUIET},{e}")).ok()
        }
        _ => None,
    };
    let filter = from_env.unwrap_or_else(|| {
        let level = scimd::config::log_directives(level);
        tracing_subscriber::EnvFilter::new(format!("{QUIET},{level}"))
    });
    // A log line that cannot be written (the reader of standard error gone: a log pipe
    // restarted) is dropped: reporting it with `eprintln!` panics on the same broken
    // stream, and the panic's own log line then aborts the process, so any client whose
    // request was logged could stop the server.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    let format_json = tracing_subscriber::fmt::format().json();
    match (format == "json", on_journal()) {
        (true, false) => builder.json().init(),
        (true, true) => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(Prioritised(format_json))
            .init(),
        (false, false) => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // journald adds its own timestamps and shows escape codes as text: plain lines.
        (false, true) => builder
            .with_ansi(false)
            .event_format(Prioritised(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .init(),
    }
    // A panic (a bug, or redb on a damaged page) is a log line like any other: the default
    // report is bare text on standard error, which breaks a stream of JSON lines.
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        let thread = std::thread::current().name().map(str::to_string);
        // Captured only when RUST_BACKTRACE asks for it, as the default report does.
        let trace = std::backtrace::Backtrace::capture();
        let backtrace = (trace.status() == std::backtrace::BacktraceStatus::Captured)
            .then(|| trace.to_string());
        tracing::error!(location, thread, backtrace, "panicked: {message}");
    }));
    if let Some(bad) = bad_env {
        tracing::warn!(
            "RUST_LOG: {bad:?} is not a level; using log.level ({level}) instead (use error, \
             warn, info, debug or trace, or target=level parts)"
        );
    }
}

pub(crate) fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Until the returned sender is dropped, call `extend` every `every`. Start-up opens the
/// database, and a file left by a crash or power loss is first checked page by page (seconds
/// per GiB): for a large directory that can outlast systemd's start timeout, which would
/// kill the check and restart it from the beginning, again and again.
pub(crate) fn keep_extending(
    every: std::time::Duration,
    extend: impl Fn() + Send + 'static,
) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
            extend();
        }
    });
    tx
}

pub(crate) fn serve(path: PathBuf) -> ExitCode {
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            fail!("{e}");
            // `serve` without --config is the first thing a build from source runs.
            if let Some(hint) = super::console::unreadable(&e, &path) {
                fail!("{hint}");
            }
            // Exit 2 stops systemd restarting (RestartPreventExitStatus=2); certificate files
            // not there yet are a reason to try again in 5 s instead, as files that do not
            // load are (exit 1).
            let later = e
                .parsed
                .as_ref()
                .is_some_and(|c| c.only_cert_files_missing());
            return ExitCode::from(if later { 1 } else { 2 });
        }
    };
    // Root serving a state directory another user owns (a packaged install started by hand)
    // makes files there, the self-signed certificate first, that the service cannot use.
    use std::os::unix::fs::MetadataExt;
    if super::access::running_as_root()
        && let Ok(m) = std::fs::metadata(&cfg.storage.dir)
        && m.uid() != 0
    {
        let owner = super::access::name_of(m.uid()).unwrap_or_else(|| m.uid().to_string());
        let group = super::access::group_name_of(m.gid()).unwrap_or_else(|| m.gid().to_string());
        fail!(
            "scimd: not serving as root: storage.dir {} belongs to {owner}, the user scimd runs \
             as (files root made there, such as the self-signed certificate, the service could \
             not use). Start the service (`systemctl start scimd`), or run it as that user: \
             `setpriv --reuid={owner} --regid={group} --init-groups scimd serve --config {}`",
            cfg.storage.dir.display(),
            path.display()
        );
        return ExitCode::from(2);
    }
    init_logging(&cfg.log.level, &cfg.log.format);
    // The package runs it as its own user; a build from source started by root on a
    // network address serves every IdP with root's rights over the machine.
    if super::access::running_as_root()
        && cfg
            .server
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| !a.ip().is_loopback())
    {
        tracing::warn!(
            listen = %cfg.server.listen,
            "serving a network address as root: run scimd as a user of its own (the Debian \
             package does; see README, \"Running it\")"
        );
    }
    // Long reads run on the blocking pool. They are CPU work on pages the OS has cached, so
    // a few threads per core keep the cores busy; each thread more holds its own allocator
    // heap, and 64 of them under a burst of scans tripled the resident memory.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(scimd::store::READ_THREADS)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            fail!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut closed = None;
    let code = rt.block_on(async {
        let starting = keep_extending(std::time::Duration::from_secs(10), || {
            notify(&[
                sd_notify::NotifyState::ExtendTimeoutUsec(30_000_000),
                sd_notify::NotifyState::Status("opening the database"),
            ])
        });
        for w in cfg.warnings() {
            tracing::warn!("{w}");
        }
        let bound = Server::bind(cfg.clone()).await;
        drop(starting);
        let server = match bound {
            Ok(s) => s,
            Err(e) => {
                // Said once: plainly to a terminal (a log line's time and colours add
                // nothing there), as a log line anywhere else (the journal, a file, JSON).
                if std::io::stderr().is_terminal() && cfg.log.format != "json" {
                    fail!("scimd: cannot start: {e}");
                } else {
                    tracing::error!("cannot start: {e}");
                }
                // A file of a newer scimd, an empty or damaged one, or a database or state
                // directory the service user may not use: starting again would only refuse
                // it again (exit 2 stops systemd's restarts), until an admin acts.
                use scimd::{server::StartError, store::StoreError, tls::TlsError};
                return match e {
                    StartError::Store(
                        StoreError::TooNew { .. }
                        | StoreError::Denied { .. }
                        | StoreError::Empty { .. }
                        | StoreError::Damaged { .. },
                    )
                    | StartError::Tls(TlsError::Unreadable { .. }) => ExitCode::from(2),
                    StartError::StateDir { source, .. }
                        if source.kind() == std::io::ErrorKind::PermissionDenied =>
                    {
                        ExitCode::from(2)
                    }
                    _ => ExitCode::FAILURE,
                };
            }
        };
        // Signal handlers go in before anyone is told we listen, so an early SIGHUP or
        // SIGTERM is handled rather than killing the process.
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(hup), Ok(term), Ok(int)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            fail!("scimd: cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        let addr = server.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let (base, note) = base_url(&cfg.server, &addr);
        tracing::info!(%addr, tenants = cfg.tenants.len(), commit = env!("SCIMD_COMMIT"), "scimd {} listening", env!("CARGO_PKG_VERSION"));
        // The banner for whoever watches a terminal or the journal; in JSON mode every line
        // of the stream must be JSON (log shippers, `jq`), so it goes out as log events.
        let json = cfg.log.format == "json";
        let banner = |line: String| {
            if json {
                tracing::info!("{}", line.trim());
            } else {
                tell!("{line}");
            }
        };
        if !json {
            tell!("scimd {} (commit {}) listening on {addr}", env!("CARGO_PKG_VERSION"), env!("SCIMD_COMMIT"));
        }
        banner(format!("  SCIM Base URL: {base}/scim/v2  (or {base}/tenants/NAME/scim/v2)"));
        if let Some(n) = note {
            banner(format!("  {n}"));
        }
        if let Some(fp) = &server.fingerprint {
            banner(format!("  TLS certificate SHA-256 fingerprint: {fp}"));
        }
        let db = cfg.storage.db_path();
        if server.new_database {
            // An IdP syncing into an empty directory re-creates everyone: after a typo in
            // storage.dir the admin must learn it now, not from duplicated accounts.
            tracing::warn!(path = %db.display(), "started with a new, empty database (none was at this path); if this server held data before, storage.dir names the wrong directory: stop it before an IdP syncs into it");
        }
        banner(format!(
            "  Database: {}{}",
            db.display(),
            if server.new_database { "  (new and empty: made by this start)" } else { "" }
        ));
        let reloader = server.reloader();
        for w in reloader.cert_warnings() {
            say_tls("tls", &w);
        }
        // Ready only now: the database is open and the listener bound.
        notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("serving")]);
        tokio::spawn(watch_signals_and_certs(path, reloader, hup));
        closed = server.store_closed();
        server.serve(shutdown_signal(term, int)).await;
        ExitCode::SUCCESS
    });
    // The tasks still holding the store (the reload watcher, requests cut off at the grace
    // period's end) go with the runtime; then the writer lets go of the database, and redb
    // marks the file closed cleanly. A file left open needs a repair at the next open, and
    // tools that only read it (`scimd restore` reading the feed numbers the database it
    // replaces gave out) cannot open it.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    // Nothing is ever sent: the channel disconnects when the writer is done.
    if let Some(c) = closed
        && let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            c.recv_timeout(std::time::Duration::from_secs(10))
    {
        tracing::warn!("the database was not closed cleanly; the next start repairs it");
    }
    if code == ExitCode::SUCCESS {
        tracing::info!("stopped");
    }
    code
}

/// SIGHUP re-reads the configuration and certificate; certificate files renewed on disk are
/// picked up within 30 s. A broken new configuration or certificate is refused and the old
/// one stays in force.
pub(crate) async fn watch_signals_and_certs(
    path: PathBuf,
    reloader: scimd::server::Reloader,
    mut hup: tokio::signal::unix::Signal,
) {
    let mut stamp = reloader.cert_stamp();
    // Files that changed but did not load, tried once more before that is an error: a
    // renewal writes the certificate and the key one after the other.
    let mut unready = None;
    // Files holding a certificate not valid yet, already said.
    let mut waiting = None;
    let mut every = reloader.watch_secs();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(every.max(1)));
    // A certificate that ends while the daemon runs is warned of daily, not only at start.
    let day = std::time::Duration::from_secs(24 * 60 * 60);
    let mut daily = tokio::time::interval_at(tokio::time::Instant::now() + day, day);
    // `systemctl status` says so while writes are refused (a full disk, a damaged file), as
    // `/healthz` does: the journal's one line about it may have scrolled away.
    let mut status = "serving".to_string();
    let mut look = tokio::time::interval(STATUS_EVERY);
    // When little room on the database's disk was last said: again hourly while it lasts.
    let mut low_said: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                notify(&[sd_notify::NotifyState::Reloading, sd_notify::NotifyState::monotonic_usec_now().unwrap_or(sd_notify::NotifyState::Status("reloading"))]);
                let applied = match Config::load(&path) {
                    Ok(c) => reloader.apply(c).await,
                    // One line, so that `journalctl | grep 'reload refused'` shows the reasons.
                    Err(e) => Err(super::escape_controls(&format!(
                        "invalid configuration {}: {}",
                        e.file.display(),
                        e.problems.join("; ")
                    ))),
                };
                // Files holding a certificate not valid yet stay looked at, said once; so
                // do renewed files a refused reload did not take.
                let mut looked_at = true;
                let mut not_yet_valid = false;
                match applied {
                    Ok(r) => {
                        not_yet_valid = r.cert_not_yet_valid;
                        // What check-config warns about is a warning here too, as at start.
                        for w in r.warnings {
                            say_tls("reload", &w);
                        }
                        for n in r.notes {
                            tracing::info!("reload: {n}");
                        }
                        tracing::info!("configuration reloaded");
                        notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
                    }
                    Err(e) => {
                        looked_at = false;
                        tracing::error!("reload refused, the previous configuration stays in force: {e}");
                        notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("reload failed; previous configuration in force")]);
                    }
                }
                match (looked_at, not_yet_valid) {
                    (false, _) => {}
                    (true, true) => waiting = reloader.cert_stamp(),
                    (true, false) => stamp = reloader.cert_stamp(),
                }
                // A reload may start, stop or change the look for renewed files.
                if reloader.watch_secs() != every {
                    every = reloader.watch_secs();
                    tick = tokio::time::interval(std::time::Duration::from_secs(every.max(1)));
                }
            }
            _ = tick.tick(), if every > 0 => {
                let now = reloader.cert_stamp();
                if now.is_some() && now != stamp {
                    let second_try = unready == now;
                    unready = None;
                    match reloader.reload_cert() {
                        Ok(fp) => {
                            tracing::info!(fingerprint = %fp, "certificate files changed: new certificate in use");
                            for w in reloader.cert_warnings() {
                                say_tls("tls", &w);
                            }
                        }
                        // Looked at again at every look, said once: in use once it is valid.
                        Err(e) if e.not_yet_valid => {
                            if waiting != now {
                                tracing::error!("certificate files changed but hold a certificate not valid yet; keeping the old certificate, and taking the new one once it is valid: {e}");
                                waiting = now;
                            }
                            continue;
                        }
                        Err(e) if !second_try => {
                            tracing::info!("certificate files changed but do not load yet (a renewal still writing them?); trying again in {every} s: {e}");
                            unready = now;
                            continue;
                        }
                        Err(e) => tracing::error!("certificate files changed but cannot be used; keeping the old certificate: {e}"),
                    }
                    stamp = now;
                }
            }
            _ = look.tick() => {
                let now = status_of(&reloader);
                if now != status {
                    status = now;
                    notify(&[sd_notify::NotifyState::Status(&status)]);
                }
                match reloader.room() {
                    Some(r) if r.low() && low_said.is_none_or(|t| t.elapsed() >= LOW_ROOM_EVERY) => {
                        tracing::warn!(
                            "the disk holding the database has {:.1} MiB free (the file is {:.1} MiB): writes will be refused (503) once it fills; free space there, or move storage.dir to a larger disk",
                            r.free as f64 / 1048576.0,
                            r.file as f64 / 1048576.0
                        );
                        low_said = Some(std::time::Instant::now());
                    }
                    Some(r) if r.ample() && low_said.is_some() => {
                        low_said = None;
                        tracing::info!(
                            "the disk holding the database has room again ({:.1} MiB free)",
                            r.free as f64 / 1048576.0
                        );
                    }
                    _ => {}
                }
            }
            _ = daily.tick() => {
                for w in reloader.cert_warnings() {
                    say_tls("tls", &w);
                }
            }
        }
    }
}

/// A warning about the served certificate (or any reload warning, `what` its source): an
/// error when no IdP can connect now (expired, not valid yet), a warning otherwise.
fn say_tls(what: &str, w: &str) {
    let certificate = w.strip_prefix("tls: ").unwrap_or(w);
    if scimd::x509::stops_clients(certificate) {
        tracing::error!("{what}: {w}");
    } else {
        tracing::warn!("{what}: {w}");
    }
}

/// How often the systemd STATUS is brought up to date with refused writes (and the room on
/// the database's disk looked at).
const STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// How often little room on the database's disk is said again while it lasts.
const LOW_ROOM_EVERY: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// The STATUS line for systemd: serving, or why writes are refused.
fn status_of(reloader: &scimd::server::Reloader) -> String {
    use scimd::store::Refused;
    match reloader.writes_refused() {
        None => "serving".into(),
        Some(Refused::DiskFull { .. }) => {
            "serving reads; writes refused: the disk holding the database is full".into()
        }
        Some(Refused::Damaged(_)) => {
            "serving reads; writes refused: the database file is damaged (see the log)".into()
        }
        Some(Refused::FileGone(_)) => {
            "serving reads; writes refused: the database file was removed or replaced (see the \
             log)"
                .into()
        }
    }
}

pub(crate) async fn shutdown_signal(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    notify(&[sd_notify::NotifyState::Stopping]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Each line of an event reaches journald with the event's priority.
    #[test]
    fn every_line_of_an_event_carries_its_priority() {
        let out = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Sink(sink.clone()))
            .with_ansi(false)
            .event_format(Prioritised(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("first\nsecond");
            tracing::warn!("careful");
            tracing::info!("fine");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("<3>ERROR ") && lines[0].ends_with("first"),
            "{text}"
        );
        assert_eq!(lines[1], "<3>second");
        assert!(
            lines[2].starts_with("<4> WARN ") && lines[3].starts_with("<6> INFO "),
            "{text}"
        );
    }

    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn start_up_keeps_asking_for_time_until_it_is_done() {
        let calls = Arc::new(AtomicUsize::new(0));
        // The thread holds this clone until it ends.
        let counted = calls.clone();
        let starting = keep_extending(Duration::from_millis(5), move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while calls.load(Ordering::SeqCst) < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "no extension asked for"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(starting);
        // A call in flight may still land, however late a loaded machine runs it; then the
        // thread must end, so that nothing asks for time after start-up.
        while Arc::strong_count(&calls) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "still asking for time after start-up"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let after = calls.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(calls.load(Ordering::SeqCst), after);
    }
}
