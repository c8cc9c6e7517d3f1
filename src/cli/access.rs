//! Whether the service user can reach the files the configuration names. `check-config` is
//! often run as root (an admin with sudo), and root reads everything: a key copied in as
//! root with mode 0600 passes root's check and then fails the service's start.

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
    /// Its primary group as a command takes it: the name, or the number if it has none
    /// (`nobody`'s is `nogroup`: `chown nobody:nobody` would fail).
    pub group: String,
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
        let primary: u32 = fields.next()?.parse().ok()?;
        let mut gids: Vec<u32> = vec![primary];
        let mut group_name = primary.to_string();
        for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if let [g, _, gid, ..] = f[..]
                && gid.parse() == Ok(primary)
            {
                group_name = g.to_string();
            }
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
            group: group_name,
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

    /// Everything that keeps this account from opening `path` with `want`: each directory on
    /// the way that it cannot enter (those above the path, and above every link the way
    /// follows), then the file itself. Empty if it can, or if `path` cannot be looked at.
    pub fn cannot(&self, path: &Path, want: u32) -> Vec<String> {
        let Some(dirs) = dirs_on_the_way(path) else {
            return Vec::new();
        };
        let mut out: Vec<String> = dirs
            .iter()
            .filter_map(|d| {
                let m = std::fs::metadata(d).ok()?;
                (!self.may(m.uid(), m.gid(), m.mode(), 1)).then(|| {
                    // Its owner is judged by the owner's bits alone: a group bit gives it
                    // nothing.
                    let fix = if m.uid() == self.uid {
                        format!("chmod u+x {}", d.display())
                    } else {
                        format!("chgrp {0} {1} && chmod g+x {1}", self.group, d.display())
                    };
                    format!(
                        "the user {0} cannot enter the directory {1} (owner uid {2}, group gid \
                         {3}, mode {4:04o}): `{fix}`",
                        self.name,
                        d.display(),
                        m.uid(),
                        m.gid(),
                        m.mode() & 0o7777,
                    )
                })
            })
            .collect();
        out.extend(self.cannot_open(path, want));
        out
    }

    fn cannot_open(&self, path: &Path, want: u32) -> Option<String> {
        let real = std::fs::canonicalize(path).ok()?;
        let path = real.as_path();
        let m = std::fs::metadata(path).ok()?;
        (!self.may(m.uid(), m.gid(), m.mode(), want)).then(|| {
            let owns = m.uid() == self.uid;
            let (what, fix) = match want {
                4 if owns => ("read", format!("chmod u+r {}", path.display())),
                _ if owns && m.is_dir() => {
                    ("read and write", format!("chmod u+rwx {}", path.display()))
                }
                _ if owns => ("read and write", format!("chmod u+rw {}", path.display())),
                4 => (
                    "read",
                    format!("chgrp {0} {1} && chmod g+r {1}", self.group, path.display()),
                ),
                _ if m.is_dir() => (
                    "read and write",
                    format!("chown -R {}:{} {}", self.name, self.group, path.display()),
                ),
                _ => (
                    "read and write",
                    format!("chown {}:{} {}", self.name, self.group, path.display()),
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

/// The directories a lookup of `path` passes through, in order and each once: those above
/// it, and, for every link on the way (the file itself or a directory above it), those
/// above where the link leads. `None` if `path` cannot be made absolute.
fn dirs_on_the_way(path: &Path) -> Option<Vec<std::path::PathBuf>> {
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    let mut add = |p: &Path| {
        let mut above: Vec<&Path> = p.ancestors().skip(1).collect();
        above.reverse();
        for d in above {
            if !dirs.iter().any(|x| x == d) {
                dirs.push(d.to_path_buf());
            }
        }
    };
    let mut at = std::path::absolute(path).ok()?;
    // A loop of links ends the walk; the open fails on it anyway.
    for _ in 0..40 {
        add(&lexical(&at));
        // The directory the name is in, as it really is (links on its way followed).
        let Some(parent) = at.parent().and_then(|p| std::fs::canonicalize(p).ok()) else {
            break;
        };
        add(&parent.join("x"));
        let Some(name) = at.file_name() else {
            break;
        };
        match std::fs::read_link(parent.join(name)) {
            Ok(to) => at = parent.join(to),
            Err(_) => break,
        }
    }
    Some(dirs)
}

/// `path` with `.` and `..` taken out by their names, as a link's target is written.
fn lexical(path: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The name of the local account with `uid`, from `/etc/passwd`.
pub(crate) fn name_of(uid: u32) -> Option<String> {
    named_in("/etc/passwd", uid)
}

/// The group `gid` is, by name, as `/etc/group` gives it.
pub(crate) fn group_name_of(gid: u32) -> Option<String> {
    named_in("/etc/group", gid)
}

/// The name of the entry with `id` in its third field, in `/etc/passwd` or `/etc/group`.
fn named_in(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[2].parse() == Ok(id)).then(|| f[0].to_string())
    })
}

/// Whether this process runs as root: `/proc/self` belongs to the effective user.
pub(crate) fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        scimd:x:998:997::/var/lib/scimd:/usr/sbin/nologin\n\
        svc:x:1001:4242::/srv:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nscimd:x:997:\nssl-cert:x:110:scimd,postgres\n\
        nogroup:x:65534:\n";

    #[test]
    fn the_account_has_its_primary_and_supplementary_groups() {
        let a = Account::from_files("scimd", PASSWD, GROUP).unwrap();
        assert_eq!((a.uid, a.gids.clone()), (998, vec![997, 110]));
        assert_eq!(a.group, "scimd");
        assert!(Account::from_files("nobody", PASSWD, GROUP).is_none());
        // A primary group named otherwise, or not named at all, as a command takes it.
        let passwd = format!("{PASSWD}nobody:x:65534:65534::/:/usr/sbin/nologin\n");
        let a = Account::from_files("nobody", &passwd, GROUP).unwrap();
        assert_eq!(a.group, "nogroup");
        assert_eq!(
            Account::from_files("svc", PASSWD, GROUP).unwrap().group,
            "4242"
        );
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
            group: "svcgroup".into(),
        };
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let why = other.cannot(&key, 4).join("\n");
        assert!(
            why.contains("cannot read") && why.contains("mode 0600"),
            "{why}"
        );
        assert!(why.contains("`chgrp svcgroup "), "{why}");
        let why = other.cannot(&key, 6).join("\n");
        assert!(why.contains("`chown svc:svcgroup "), "{why}");
        // Its own file, shut by the owner's bits: a group bit would not help.
        // (Root passes every check: as root, the file is given to another uid.)
        let mut uid = std::fs::metadata(&key).unwrap().uid();
        if uid == 0 {
            uid = u32::MAX - 2;
            std::os::unix::fs::chown(&key, Some(uid), None).unwrap();
        }
        let owner = Account { uid, ..other };
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o040)).unwrap();
        let why = owner.cannot(&key, 4).join("\n");
        assert!(
            why.contains("`chmod u+r ") && !why.contains("chgrp"),
            "{why}"
        );
        let why = owner.cannot(&key, 6).join("\n");
        assert!(
            why.contains("`chmod u+rw ") && !why.contains("chown"),
            "{why}"
        );
        let other = Account {
            uid: u32::MAX - 1,
            ..owner
        };
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o700)).unwrap();
        let why = other.cannot(&key, 4).join("\n");
        assert!(why.contains("cannot enter the directory"), "{why}");
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(other.cannot(&key, 4).is_empty());
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
        let why = other.cannot(&link, 4).join("\n");
        assert!(
            why.contains("cannot enter the directory") && why.contains("archive"),
            "{why}"
        );
        // A link to a link inside a shut directory: each hop's directory counts.
        let shut = dir.path().join("shut");
        std::fs::create_dir(&shut).unwrap();
        std::os::unix::fs::symlink(&key, shut.join("k2")).unwrap();
        std::fs::set_permissions(&shut, std::fs::Permissions::from_mode(0o700)).unwrap();
        let hop = inner.join("k1");
        std::os::unix::fs::symlink(shut.join("k2"), &hop).unwrap();
        let why = other.cannot(&hop, 4).join("\n");
        assert!(why.contains("shut"), "{why}");
        // A shut directory and an unreadable file are both said in one run.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let whys = other.cannot(&hop, 4);
        assert_eq!(whys.len(), 2, "{whys:?}");
        assert!(whys[1].contains("cannot read"), "{whys:?}");
        assert!(
            !other.cannot(&inner, 6).is_empty(),
            "0755 is not writable by others"
        );
    }
}
