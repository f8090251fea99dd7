//! One leader per directory (the alert evaluator): whoever holds the lock on `leader.lock`.
//! The lock is an open-file-description lock, so the kernel drops it when the holder dies and
//! the next process to try takes over; a fork child shares the description, so it closes its
//! inherited copy and competes on its own.

use super::sys;
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub const LEADER_LOCK: &str = "leader.lock";

/// The lock file this process holds (or tried), and the pid that opened it.
static HELD: Mutex<Option<(u32, File, bool)>> = Mutex::new(None);

/// Whether this process leads `dir`, taking the lead if nobody holds it. Never waits.
pub fn try_lead(dir: &Path) -> io::Result<bool> {
    let pid = std::process::id();
    let mut held = HELD.lock();
    if let Some((owner, _, leads)) = held.as_ref() {
        if *owner == pid && *leads {
            return Ok(true);
        }
    }
    // A parent's description (inherited through fork) must not count as ours: drop it.
    if held.as_ref().is_some_and(|(owner, _, _)| *owner != pid) {
        *held = None;
    }
    let file = match held.take() {
        Some((_, f, _)) => f,
        None => OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(LEADER_LOCK))?,
    };
    let leads = sys::try_lock_exclusive(&file)?;
    *held = Some((pid, file, leads));
    Ok(leads)
}

/// See `super::after_fork_in_child`: the leader state is re-checked by pid, so only the lock goes.
pub(super) fn after_fork_in_child() {
    if HELD.is_locked() {
        // SAFETY: the owning thread does not exist in the fork child; no guard will ever drop.
        unsafe { HELD.force_unlock() };
    }
}
