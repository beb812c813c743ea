//! Killing everything a program started, when its run times out.
//!
//! A process group is not enough: a descendant that calls `setsid` (or
//! `setpgid`) leaves the group, and one whose parent exits is reparented
//! to init, where nothing links it to the run any more. So the program is
//! made a *child subreaper* (`PR_SET_CHILD_SUBREAPER`, set between fork
//! and exec, kept across exec): while it lives, every orphan among its
//! descendants is reparented to it instead of to init, so its whole tree
//! hangs below it by parent links, whatever sessions or groups the
//! descendants moved to. At the timeout the program is stopped first (it
//! cannot reap or start anything), its tree is read from `/proc` and
//! stopped round by round until a round finds nothing new (a stopped
//! process cannot fork), and then everything found, the program's group
//! and the program itself get SIGKILL. The program dies last: were it
//! killed first, its descendants would fall to init before they were seen.
//!
//! Why not the alternatives: making keyrot itself the subreaper would
//! hand it the orphans of every program it runs (a `sendmail` that forks
//! its delivery into the background, say), mixed between concurrent runs
//! and left for keyrot to reap beside tokio's own child handling; a pidfd
//! names one process, not its descendants; and a cgroup per run needs a
//! delegated cgroup tree keyrot cannot count on. What this cannot reach: a
//! process that left after the program had already exited normally (the
//! call is over by then), or one running as another user.

use std::collections::{HashMap, HashSet};

/// Most rounds of reading and stopping the tree (a tree that keeps
/// growing for this long is killed as found).
const MAX_ROUNDS: usize = 64;

/// The `pre_exec` hook: makes the program a child subreaper. Runs in the
/// forked child before exec, so it only makes one system call.
pub(super) fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl(2) with integer arguments; it reads and writes no
    // memory of ours and is safe to call between fork and exec.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Kills `root` (a program started by [`super::Program::run`], not yet
/// reaped, so its pid cannot have been reused) and every process below it.
pub(super) fn kill(root: i32) {
    signal(root, libc::SIGSTOP);
    let mut seen: HashSet<i32> = HashSet::new();
    for _ in 0..MAX_ROUNDS {
        let new: Vec<i32> = descendants(root)
            .into_iter()
            .filter(|p| seen.insert(*p))
            .collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            signal(pid, libc::SIGSTOP);
        }
    }
    for pid in seen {
        signal(pid, libc::SIGKILL);
    }
    signal(-root, libc::SIGKILL);
    signal(root, libc::SIGKILL);
}

/// Sends `sig` to `pid` (a negative pid: that process group).
fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) only signals; it touches no memory of ours.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The live (not zombie) processes below `root`, from `/proc`.
fn descendants(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, ppid)) = state_and_parent(&stat)
            && state != "Z"
            && state != "X"
        {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut seen = HashSet::from([root]);
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for pid in children.get(&parent).into_iter().flatten() {
            if seen.insert(*pid) {
                found.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    found
}

/// The state and parent pid of a `/proc/PID/stat` line. The command name
/// (field 2) is in parentheses and may itself hold spaces and `)`, so the
/// fields are read after its last `)`.
fn state_and_parent(stat: &str) -> Option<(&str, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        assert_eq!(
            state_and_parent("42 (a) b) c) S 7 42 42 0 -1"),
            Some(("S", 7))
        );
        assert_eq!(state_and_parent("9 (sleep) Z 1 9"), Some(("Z", 1)));
        assert_eq!(state_and_parent("garbage"), None);
    }
}
