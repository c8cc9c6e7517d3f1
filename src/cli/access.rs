//! Whether the service user can reach the files the configuration names. `check-config` runs
//! as root (systemd's `ExecStartPre`, or an admin with sudo), and root reads everything: a key
//! copied in as root with mode 0600 passes root's check and then fails the service's start.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The account the packaged unit runs scimd as.
pub(crate) const SERVICE_USER: &str = "scimd";

/// A local account: its name, uid and every group it is in.
#[derive(Debug)]
pub(crate) struct Account {
    pub name: String,
    pub uid: u32,
    pub gids: Vec<u32>,
}

impl Account {
    /// `name` from `/etc/passwd` and `/etc/group`; `None` if there is no such local account.
    pub fn local(name: &str) -> Option<Account> {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        Account::from_files(name, &passwd, &group)
    }

    fn from_files(name: &str, passwd: &str, group: &str) -> Option<Account> {
        let mut fields = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name) && f.len() >= 4)?
            .into_iter()
            .skip(2);
        let uid = fields.next()?.parse().ok()?;
        let mut gids: Vec<u32> = vec![fields.next()?.parse().ok()?];
        for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if let [_, _, gid, members, ..] = f[..]
                && members.split(',').any(|m| m == name)
                && let Ok(gid) = gid.parse()
            {
                gids.push(gid);
            }
        }
        Some(Account {
            name: name.to_string(),
            uid,
            gids,
        })
    }

    /// Whether the mode bits give this account `want` (4 read, 2 write, 1 execute; ORed) on
    /// a file with this owner, group and mode. ACLs are not read.
    fn may(&self, uid: u32, gid: u32, mode: u32, want: u32) -> bool {
        if self.uid == 0 {
            return true;
        }
        let bits = if uid == self.uid {
            mode >> 6
        } else if self.gids.contains(&gid) {
            mode >> 3
        } else {
            mode
        };
        bits & want == want
    }

    /// Why this account cannot open `path` with `want` (every directory above it needs
    /// execute, and so does every directory above where a link in it leads), or `None` if it
    /// can, or if `path` cannot be looked at.
    pub fn cannot(&self, path: &Path, want: u32) -> Option<String> {
        let path = std::path::absolute(path).ok()?;
        let real = std::fs::canonicalize(&path).ok()?;
        let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
        dirs.reverse();
        let mut real_dirs: Vec<&Path> = real.ancestors().skip(1).collect();
        real_dirs.reverse();
        for d in dirs.into_iter().chain(real_dirs) {
            let m = std::fs::metadata(d).ok()?;
            if !self.may(m.uid(), m.gid(), m.mode(), 1) {
                return Some(format!(
                    "the user {0} cannot enter the directory {1} (owner uid {2}, group gid {3}, \
                     mode {4:04o}): `chgrp {0} {1} && chmod g+x {1}`",
                    self.name,
                    d.display(),
                    m.uid(),
                    m.gid(),
                    m.mode() & 0o7777
                ));
            }
        }
        let path = real.as_path();
        let m = std::fs::metadata(path).ok()?;
        (!self.may(m.uid(), m.gid(), m.mode(), want)).then(|| {
            let (what, fix) = match want {
                4 => (
                    "read",
                    format!("chgrp {0} {1} && chmod g+r {1}", self.name, path.display()),
                ),
                _ if m.is_dir() => (
                    "read and write",
                    format!("chown -R {0}:{0} {1}", self.name, path.display()),
                ),
                _ => (
                    "read and write",
                    format!("chown {0}:{0} {1}", self.name, path.display()),
                ),
            };
            format!(
                "the user {} cannot {what} {} (owner uid {}, group gid {}, mode {:04o}), and the \
                 service runs as {0}: `{fix}`",
                self.name,
                path.display(),
                m.uid(),
                m.gid(),
                m.mode() & 0o7777
            )
        })
    }
}

/// Whether this process runs as root: `/proc/self` belongs to the effective user.
pub(crate) fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nscimd:x:998:997::/var/lib/scimd:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nscimd:x:997:\nssl-cert:x:110:scimd,postgres\n";

    #[test]
    fn the_account_has_its_primary_and_supplementary_groups() {
        let a = Account::from_files("scimd", PASSWD, GROUP).unwrap();
        assert_eq!((a.uid, a.gids.clone()), (998, vec![997, 110]));
        assert!(Account::from_files("nobody", PASSWD, GROUP).is_none());
    }

    #[test]
    fn mode_bits_decide_by_owner_then_group_then_others() {
        let a = Account::from_files("scimd", PASSWD, GROUP).unwrap();
        // root:root 0600: a key copied in by root and never given to the group.
        assert!(!a.may(0, 0, 0o600, 4));
        // root:scimd 0640, as the docs say.
        assert!(a.may(0, 997, 0o640, 4));
        // root:ssl-cert 0640, a supplementary group.
        assert!(a.may(0, 110, 0o640, 4));
        assert!(!a.may(0, 110, 0o640, 6));
        // Owned by scimd but 0400 is read-only.
        assert!(a.may(998, 0, 0o400, 4) && !a.may(998, 0, 0o400, 6));
        assert!(a.may(0, 0, 0o644, 4));
    }

    #[test]
    fn a_file_or_a_directory_above_it_that_shuts_the_account_out_is_named() {
        let dir = tempfile::tempdir().unwrap();
        // tempfile makes it owner-only.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let inner = dir.path().join("tls");
        std::fs::create_dir(&inner).unwrap();
        let key = inner.join("key.pem");
        std::fs::write(&key, "k").unwrap();
        // Somebody else: not the owner (this test's user), in no group of the files.
        let other = Account {
            name: "svc".into(),
            uid: u32::MAX - 1,
            gids: vec![u32::MAX - 1],
        };
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let why = other.cannot(&key, 4).unwrap_or_default();
        assert!(
            why.contains("cannot read") && why.contains("mode 0600"),
            "{why}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o700)).unwrap();
        let why = other.cannot(&key, 4).unwrap_or_default();
        assert!(why.contains("cannot enter the directory"), "{why}");
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(other.cannot(&key, 4), None);
        // A link (certbot's live/ into archive/) is followed: archive/ must be entered too.
        let archive = dir.path().join("archive");
        std::fs::create_dir(&archive).unwrap();
        std::fs::write(archive.join("key1.pem"), "k").unwrap();
        std::fs::set_permissions(
            archive.join("key1.pem"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = inner.join("live.pem");
        std::os::unix::fs::symlink(archive.join("key1.pem"), &link).unwrap();
        let why = other.cannot(&link, 4).unwrap_or_default();
        assert!(
            why.contains("cannot enter the directory") && why.contains("archive"),
            "{why}"
        );
        assert!(
            other.cannot(&inner, 6).is_some(),
            "0755 is not writable by others"
        );
    }
}
