//! The manual pages: clap's, one per command, with the top page completed by what the
//! argument definitions cannot say (files, environment, exit codes).

/// The top page's sections that clap's definitions do not give (roff).
const EXTRA: &str = r#".SH FILES
.TP
\fI/etc/scimd/scimd.toml\fR
The configuration: listen address, TLS, storage, tenants and their token hashes (the
default of \fB\-\-config\fR). Edits by \fBscimd tenant add\fR and \fBscimd token\fR take
\fI.scimd.toml.lock\fR beside it.
.TP
\fI/var/lib/scimd/scimd.redb\fR
Every tenant's users, groups, memberships and change feed (\fBstorage.dir\fR). Copy it
only with \fBscimd backup\fR; put a copy back only with \fBscimd restore\fR.
.TP
\fI/var/lib/scimd/admin.sock\fR
The running daemon's console socket (owner\-only): \fBstatus\fR, \fBbackup\fR,
\fBexport\fR and the other commands ask the daemon through it.
.TP
\fI/var/lib/scimd/tls/\fR
The self\-signed certificate and key, when \fBtls.self_signed\fR is set.
.SH ENVIRONMENT
.TP
\fBSCIMD_\fR\fISECTION\fR\fB__\fR\fIKEY\fR
Overrides a key of the configuration file, e.g. \fBSCIMD_SERVER__LISTEN=0.0.0.0:8443\fR.
.TP
\fBRUST_LOG\fR
Overrides \fBlog.level\fR (a level, or tracing directives).
.SH EXIT STATUS
.TP
0
Done.
.TP
1
The command failed (the message says why).
.TP
2
A configuration or a request the command refuses: \fBcheck\-config\fR and \fBserve\fR
with a file that has problems (listed), an edit that would break the file, a command
missing its confirmation.
.TP
3
\fBstatus\fR: the daemon is not running.
.TP
4
\fBstatus\fR: whether it runs cannot be told (the configuration, or the database and
the admin socket, unreadable by this user).
.SH SEE ALSO
README.md and docs/operations.md in the source, /usr/share/doc/scimd in the package.
"#;

/// The top page (`scimd.1`): clap's, then `EXTRA`.
pub(crate) fn top_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    page.extend_from_slice(EXTRA.as_bytes());
    Ok(page)
}

/// Every page into `dir`, as the package ships them (the top page refers to scimd-serve(1)
/// and the others).
pub(crate) fn write_pages(cmd: clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    clap_mangen::generate_to(cmd.clone(), dir)?;
    std::fs::write(dir.join("scimd.1"), top_page(cmd)?)
}
