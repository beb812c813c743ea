//! Keeping the daemon's secrets out of core dumps, other processes and
//! swap, whatever the unit file or the shell that started keyrot says.
//!
//! [`harden_process`] runs first thing in `keyrot run`: `RLIMIT_CORE` 0
//! (soft and hard, so nothing in the process can raise it again) and
//! `PR_SET_DUMPABLE` 0, which also stops processes of the same user from
//! attaching a debugger or reading `/proc/PID/mem`. systemd's
//! `LimitCORE=0` does the first only under the shipped unit; a by-hand
//! start got neither.
//!
//! [`LockedKey`] holds key bytes (the store's master key) in a page of
//! their own, locked in RAM with `mlock` (never written to swap) and
//! marked `MADV_DONTDUMP` (left out of a core dump even if one were
//! made). Locking is best effort: `RLIMIT_MEMLOCK` (8 MiB by default on
//! current systems, 64 KiB on older ones; one page is needed per copy of
//! the key) may refuse it, and then keyrot says so once and goes on.
//!
//! Not covered: copies the AES implementation makes on the stack while it
//! seals or opens, and secrets other than the master key (a new key's
//! secret lives in `Zeroizing` buffers, wiped after use, not locked).

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};

use zeroize::Zeroize;

use rustix::process::{DumpableBehavior, Resource, Rlimit};

/// Bytes in a key.
const KEY_LEN: usize = 32;

/// What [`harden_process`] achieved, read back from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hardening {
    /// `prctl(PR_GET_DUMPABLE)` is 0.
    pub not_dumpable: bool,
    /// Soft and hard `RLIMIT_CORE` are 0.
    pub no_core: bool,
}

/// Turns core dumps off and makes the process not dumpable (see the
/// module doc); returns the state read back. A refusal (a seccomp filter,
/// say) leaves that part off: the caller logs what it got.
pub fn harden_process() -> Hardening {
    let zero = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    // prlimit64 under the hood: allowed by the unit's @system-service
    // filter, unlike setrlimit (in @resources, which the unit denies).
    let _ = rustix::process::setrlimit(Resource::Core, zero);
    let _ = rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable);
    state()
}

/// The process's dumpable flag and core limit as the kernel has them.
pub fn state() -> Hardening {
    let core = rustix::process::getrlimit(Resource::Core);
    Hardening {
        not_dumpable: matches!(
            rustix::process::dumpable_behavior(),
            Ok(DumpableBehavior::NotDumpable)
        ),
        no_core: core.current == Some(0) && core.maximum == Some(0),
    }
}

/// Set once a page could not be locked, so the warning is given once.
static LOCK_WARNED: AtomicBool = AtomicBool::new(false);

/// Bytes in a page.
const PAGE: usize = 4096;

/// A page-aligned page: a key alone in it, so locking, unlocking and
/// `MADV_DONTDUMP` never touch another allocation's memory (`munlock` does
/// not count: unlocking a shared page would unlock the other key too).
#[repr(C, align(4096))]
struct Page {
    /// The key.
    key: [u8; KEY_LEN],
    /// The rest of the page, always zero.
    _rest: [u8; PAGE - KEY_LEN],
}

impl Page {
    /// The page's address and length, for madvise/mlock/munlock.
    fn span(&mut self) -> (*mut libc::c_void, usize) {
        (
            std::ptr::from_mut(self).cast::<libc::c_void>(),
            std::mem::size_of::<Page>(),
        )
    }
}

/// Key bytes in a page of their own, locked in RAM where the limit allows,
/// left out of core dumps, zeroed and unlocked on drop. `Debug` is not
/// implemented: the holder decides what to show.
pub struct LockedKey {
    /// The page holding the key; boxed, so it never moves.
    page: Box<Page>,
    /// Whether `mlock` succeeded (and `munlock` is due on drop).
    locked: bool,
}

impl LockedKey {
    /// Copies `bytes` into a new locked page and wipes `bytes`.
    pub fn new(bytes: &mut [u8; KEY_LEN]) -> LockedKey {
        let mut page = Box::new(Page {
            key: [0; KEY_LEN],
            _rest: [0; PAGE - KEY_LEN],
        });
        let (ptr, len) = page.span();
        // SAFETY: `ptr..ptr+len` is one live allocation owned by `page`,
        // page-aligned and a page long; madvise and mlock only change how
        // the kernel treats that page, not its contents.
        let locked = unsafe {
            libc::madvise(ptr, len, libc::MADV_DONTDUMP);
            libc::mlock(ptr, len) == 0
        };
        if !locked && !LOCK_WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot lock the master key's memory page (RLIMIT_MEMLOCK too low?); it may be swapped out"
            );
        }
        page.key.copy_from_slice(bytes);
        bytes.zeroize();
        LockedKey { page, locked }
    }

    /// Whether the page is locked in RAM.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl Deref for LockedKey {
    type Target = [u8; KEY_LEN];

    fn deref(&self) -> &[u8; KEY_LEN] {
        &self.page.key
    }
}

impl Clone for LockedKey {
    fn clone(&self) -> LockedKey {
        let mut bytes = self.page.key;
        LockedKey::new(&mut bytes)
    }
}

impl Drop for LockedKey {
    fn drop(&mut self) {
        self.page.key.zeroize();
        if self.locked {
            let (ptr, len) = self.page.span();
            // SAFETY: the same live, page-aligned allocation locked in `new`.
            unsafe {
                libc::munlock(ptr, len);
            }
        }
    }
}

/// Locked memory of this process in KiB (`VmLck` of `/proc/self/status`),
/// for the start-up log line.
pub fn locked_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmLck:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_key_keeps_its_bytes_wipes_the_source_and_clones_into_its_own_page() {
        let mut src = [7u8; KEY_LEN];
        let k = LockedKey::new(&mut src);
        assert_eq!(src, [0; KEY_LEN], "the caller's copy is wiped");
        assert_eq!(*k, [7; KEY_LEN]);
        let c = k.clone();
        assert_eq!(*c, [7; KEY_LEN]);
        let at = |k: &LockedKey| std::ptr::from_ref::<Page>(&k.page) as usize;
        assert_ne!(at(&c), at(&k));
        assert_eq!(at(&k) % PAGE, 0);
        if k.is_locked() {
            assert!(locked_kib().unwrap_or(0) >= 4);
        }
        drop(k);
        assert_eq!(*c, [7; KEY_LEN], "dropping one copy leaves the other");
    }
}
