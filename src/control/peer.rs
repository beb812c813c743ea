//! Who is at the other end of a control connection, as the kernel says:
//! uid, gid and pid from `SO_PEERCRED`, supplementary groups from
//! `SO_PEERGROUPS` (both taken when the peer connected, so nothing the
//! peer does later changes them), and whether the `[daemon]` allow-lists
//! admit that peer without a token.

use std::os::fd::{AsFd, AsRawFd};

use keyrot_config::DaemonConfig;

/// Most supplementary groups read (Linux's `NGROUPS_MAX`).
const MAX_GROUPS: usize = 65_536;

/// The connecting process, from `SO_PEERCRED` and `SO_PEERGROUPS`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Its user id, when the kernel reports it.
    pub uid: Option<u32>,
    /// Its primary group id, when the kernel reports it.
    pub gid: Option<u32>,
    /// Its process id, when the kernel reports it.
    pub pid: Option<i32>,
    /// Its supplementary groups (empty when the kernel cannot say).
    pub groups: Vec<u32>,
}

impl Peer {
    /// The peer of an accepted connection.
    pub fn of(stream: &tokio::net::UnixStream) -> Peer {
        let cred = stream.peer_cred().ok();
        Peer {
            uid: cred.map(|c| c.uid()),
            gid: cred.map(|c| c.gid()),
            pid: cred.and_then(|c| c.pid()),
            groups: peer_groups(stream),
        }
    }

    /// Whether `[daemon] control_allow_uids`/`control_allow_gids` admit
    /// this peer without a token. Unset lists mean what the socket's mode
    /// meant before the lists existed: root and keyrot's own uid, and
    /// keyrot's own gid when `control_socket_mode` lets the group write.
    pub fn allowed(&self, d: &DaemonConfig) -> bool {
        let me = own_ids();
        let uids = d
            .control_allow_uids
            .clone()
            .unwrap_or_else(|| vec![0, me.0]);
        let gids = d.control_allow_gids.clone().unwrap_or_else(|| {
            if d.control_socket_mode & 0o020 != 0 {
                vec![me.1]
            } else {
                Vec::new()
            }
        });
        self.uid.is_some_and(|u| uids.contains(&u))
            || self.gid.is_some_and(|g| gids.contains(&g))
            || self.groups.iter().any(|g| gids.contains(g))
    }
}

/// keyrot's own effective uid and gid.
fn own_ids() -> (u32, u32) {
    // SAFETY: geteuid(2) and getegid(2) take no arguments, cannot fail and
    // touch no memory of ours.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// The peer's supplementary groups (`SO_PEERGROUPS`, Linux 4.13+); empty
/// when the kernel does not support it or the call fails.
fn peer_groups(stream: &impl AsFd) -> Vec<u32> {
    let fd = stream.as_fd().as_raw_fd();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = socklen(groups.len());
        // SAFETY: `groups` is a live, writable buffer of `len` bytes; the
        // kernel writes at most `len` bytes and stores the size it wrote
        // (or, with ERANGE, the size it needs) in `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = usize::try_from(len).unwrap_or(0) / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(count.min(groups.len()));
            return groups;
        }
        let erange = std::io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE);
        if !erange || count <= groups.len() || count > MAX_GROUPS {
            return Vec::new();
        }
        groups.resize(count, 0);
    }
}

/// `n` gids as a byte length.
fn socklen(n: usize) -> libc::socklen_t {
    libc::socklen_t::try_from(n * std::mem::size_of::<libc::gid_t>())
        .unwrap_or(libc::socklen_t::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid: Some(uid),
            gid: Some(gid),
            pid: Some(1),
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn defaults_follow_the_socket_mode() {
        let (uid, gid) = own_ids();
        let stranger = 4_000_000_000;
        let mut d = DaemonConfig::default();
        assert!(peer(0, stranger, &[]).allowed(&d), "root");
        assert!(peer(uid, stranger, &[]).allowed(&d), "keyrot's own uid");
        assert!(!peer(stranger, stranger, &[]).allowed(&d));
        // 0660: keyrot's group, primary or supplementary.
        assert!(peer(stranger, gid, &[]).allowed(&d));
        assert!(peer(stranger, stranger, &[7, gid]).allowed(&d));
        // 0600: the group is not let in.
        d.control_socket_mode = 0o600;
        assert!(!peer(stranger, gid, &[gid]).allowed(&d));
    }

    #[test]
    fn lists_replace_the_defaults() {
        let d = DaemonConfig {
            control_allow_uids: Some(vec![1000]),
            control_allow_gids: Some(vec![2000]),
            ..DaemonConfig::default()
        };
        assert!(!peer(0, 0, &[]).allowed(&d), "root is not implied");
        assert!(peer(1000, 5, &[]).allowed(&d));
        assert!(peer(5, 2000, &[]).allowed(&d));
        assert!(peer(5, 5, &[9, 2000]).allowed(&d));
        assert!(!peer(5, 5, &[9]).allowed(&d));
        assert!(
            !Peer::default().allowed(&d),
            "a peer the kernel cannot name"
        );
    }

    #[tokio::test]
    async fn the_kernel_names_this_process() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let p = Peer::of(&a);
        let (uid, gid) = own_ids();
        assert_eq!((p.uid, p.gid), (Some(uid), Some(gid)));
        assert_eq!(p.pid, Some(i32::try_from(std::process::id()).unwrap()));
        drop(b);
    }
}
