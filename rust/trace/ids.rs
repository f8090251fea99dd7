//! Trace and span id generation: a per-thread wyrand generator seeded from the OS and re-seeded after fork().

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// Bumped in the child after every fork(); a thread whose seed is older re-seeds, so parent and child never
/// continue the same sequence (Python's `random` state plays no part).
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

fn install_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic, which is async-signal-safe.
        #[cfg(unix)]
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

/// wyrand: one multiply per draw, passes BigCrush, plenty for ids that must be unique, not secret.
struct Rng {
    state: Cell<u64>,
    generation: Cell<u64>,
    seeded: Cell<bool>,
}

thread_local! {
    static RNG: Rng = const { Rng { state: Cell::new(0), generation: Cell::new(0), seeded: Cell::new(false) } };
}

fn os_seed() -> u64 {
    let mut buf = [0u8; 8];
    if getrandom::fill(&mut buf).is_err() {
        // No OS entropy (never seen on Linux): mix time, pid and a stack address rather than fail.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let local = 0u8;
        return (t as u64) ^ ((std::process::id() as u64) << 32) ^ (&local as *const u8 as u64);
    }
    u64::from_le_bytes(buf)
}

#[inline]
fn next_u64() -> u64 {
    RNG.with(|r| {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        if !r.seeded.get() || r.generation.get() != generation {
            install_atfork();
            r.state.set(os_seed());
            r.generation.set(FORK_GENERATION.load(Ordering::Relaxed));
            r.seeded.set(true);
        }
        let s = r.state.get().wrapping_add(0xa076_1d64_78bd_642f);
        r.state.set(s);
        let t = (s as u128).wrapping_mul((s ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A random, non-zero 16-byte trace id.
#[inline]
pub fn trace_id() -> u128 {
    loop {
        let id = ((next_u64() as u128) << 64) | next_u64() as u128;
        if id != 0 {
            return id;
        }
    }
}

/// A random, non-zero 8-byte span id.
#[inline]
pub fn span_id() -> u64 {
    loop {
        let id = next_u64();
        if id != 0 {
            return id;
        }
    }
}

/// Forces the calling thread to re-seed on its next draw (tests; `os.register_at_fork` as a second line).
pub fn reseed() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn never_zero_and_unique() {
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let t = trace_id();
            assert_ne!(t, 0);
            assert!(seen.insert(t));
            assert_ne!(span_id(), 0);
        }
    }

    #[test]
    fn threads_differ() {
        let a = std::thread::spawn(trace_id).join().unwrap();
        let b = std::thread::spawn(trace_id).join().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn reseed_changes_sequence() {
        let _ = span_id();
        reseed();
        let x = span_id();
        assert_ne!(x, 0);
    }

    #[test]
    fn bits_look_uniform() {
        let mut ones = [0u32; 64];
        let n = 20_000;
        for _ in 0..n {
            let v = span_id();
            for (i, c) in ones.iter_mut().enumerate() {
                *c += ((v >> i) & 1) as u32;
            }
        }
        for c in ones {
            assert!((n / 2 - 600..n / 2 + 600).contains(&c), "bit count {c}");
        }
    }
}
