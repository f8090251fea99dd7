//! The finished-span store: a bounded ring for `get_trace` and a bounded export queue, both counting their drops.

use super::span::SpanRecord;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Inner {
    ring: VecDeque<Arc<SpanRecord>>,
    queue: Vec<Arc<SpanRecord>>,
}

/// Wait and notify on one atomic word (a futex on Linux), with no lock and no queue of waiters in user space.
///
/// The export worker waits here with the GIL released. A mutex and condvar would leave a forked child a lock
/// held, or a parked-thread queue node, belonging to a thread the child does not have; parking_lot keeps those
/// nodes in the waiting thread's TLS, and glibc hands that thread's stack to the child's next new thread, so
/// the child's first notify walked a queue through live memory (CPython 3.13: a hang in every forked child).
struct Doorbell {
    seq: AtomicU32,
}

impl Doorbell {
    fn ticket(&self) -> u32 {
        self.seq.load(Ordering::Acquire)
    }

    fn ring(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        sys::wake_all(&self.seq);
    }

    /// Returns when the word moved past `ticket`, on timeout, or spuriously; the caller re-checks its condition.
    fn wait(&self, ticket: u32, timeout: Duration) {
        sys::wait(&self.seq, ticket, timeout);
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    pub fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `word` is a live, aligned u32 for the duration of the call; a relative timeout. EAGAIN (the word
        // moved), EINTR and ETIMEDOUT all mean "look again", which the caller does.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                &ts as *const libc::timespec,
            );
        }
    }

    pub fn wake_all(word: &AtomicU32) {
        // SAFETY: as above; waking has no effect on memory.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    // No portable futex in std: poll in short naps, still without a lock.
    pub fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
        if word.load(Ordering::Acquire) == expected {
            std::thread::sleep(timeout.min(Duration::from_millis(2)));
        }
    }

    pub fn wake_all(_word: &AtomicU32) {}
}

/// Counters of the store, all monotonic.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub finished: u64,
    pub evicted: u64,
    pub queue_dropped: u64,
    pub queued: u64,
}

pub struct Store {
    // Fork safety: held only for the few instructions of a push, drain or copy, never while waiting (the doorbell
    // waits without it) and never across a GIL release: every caller in the extension holds the GIL, and a fork is
    // taken by a thread holding the GIL, so the child always inherits it unlocked. It holds no Python objects, so
    // dropping a record under it runs no Python code. The child drains the parent's queue (_export_worker.py).
    inner: Mutex<Inner>,
    /// `inner.queue.len()`, readable by the waiting export worker without the lock.
    queue_len: AtomicUsize,
    wake: AtomicBool,
    bell: Doorbell,
    ring_capacity: usize,
    queue_capacity: usize,
    /// The export worker is woken once the queue holds this many spans, not on every span.
    batch_size: usize,
    exporting: AtomicBool,
    finished: AtomicU64,
    evicted: AtomicU64,
    queue_dropped: AtomicU64,
    queued: AtomicU64,
}

impl Store {
    pub fn new(ring_capacity: usize, queue_capacity: usize, batch_size: usize) -> Store {
        Store {
            inner: Mutex::new(Inner {
                ring: VecDeque::new(),
                queue: Vec::new(),
            }),
            queue_len: AtomicUsize::new(0),
            wake: AtomicBool::new(false),
            bell: Doorbell { seq: AtomicU32::new(0) },
            ring_capacity,
            queue_capacity: queue_capacity.max(1),
            batch_size: batch_size.clamp(1, queue_capacity.max(1)),
            exporting: AtomicBool::new(false),
            finished: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            queue_dropped: AtomicU64::new(0),
            queued: AtomicU64::new(0),
        }
    }

    /// Turns the export queue on (an export worker is draining it) or off (spans only go to the ring).
    pub fn set_exporting(&self, on: bool) {
        self.exporting.store(on, Ordering::Relaxed);
        if !on {
            // Whatever is still queued will never be exported: it counts as dropped.
            let mut inner = self.inner.lock();
            self.queue_dropped
                .fetch_add(inner.queue.len() as u64, Ordering::Relaxed);
            inner.queue.clear();
            self.queue_len.store(0, Ordering::Release);
        }
    }

    pub fn exporting(&self) -> bool {
        self.exporting.load(Ordering::Relaxed)
    }

    /// Stores a finished span; never blocks beyond one uncontended lock, never grows past the capacities.
    pub fn push(&self, record: Arc<SpanRecord>) {
        self.finished.fetch_add(1, Ordering::Relaxed);
        let exporting = self.exporting();
        if self.ring_capacity == 0 && !exporting {
            return;
        }
        let mut batch_ready = false;
        let mut inner = self.inner.lock();
        if self.ring_capacity > 0 {
            if inner.ring.len() >= self.ring_capacity {
                inner.ring.pop_front();
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
            inner.ring.push_back(record.clone());
        }
        if exporting {
            if inner.queue.len() >= self.queue_capacity {
                self.queue_dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                inner.queue.push(record);
                self.queue_len.store(inner.queue.len(), Ordering::Release);
                self.queued.fetch_add(1, Ordering::Relaxed);
                batch_ready = inner.queue.len() == self.batch_size;
            }
        }
        drop(inner);
        if batch_ready {
            self.bell.ring();
        }
    }

    /// Takes up to `max` queued spans, oldest first.
    pub fn drain(&self, max: usize) -> Vec<Arc<SpanRecord>> {
        let mut inner = self.inner.lock();
        let n = max.min(inner.queue.len());
        let out: Vec<_> = inner.queue.drain(..n).collect();
        self.queue_len.store(inner.queue.len(), Ordering::Release);
        out
    }

    pub fn queue_len(&self) -> usize {
        self.queue_len.load(Ordering::Acquire)
    }

    /// Waits until a batch is queued, `wake()` is called, or `timeout` passes; true unless it timed out idle.
    /// Takes no lock: see `Doorbell`.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            // The ticket is read before the condition, so a ring between the two makes the wait return at once.
            let ticket = self.bell.ticket();
            if self.wake.swap(false, Ordering::AcqRel) || self.queue_len() >= self.batch_size {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.bell.wait(ticket, deadline - now);
        }
    }

    /// Wakes the export worker now (flush, shutdown).
    pub fn wake(&self) {
        self.wake.store(true, Ordering::Release);
        self.bell.ring();
    }

    /// The buffered spans of one trace, in the order they finished.
    pub fn trace(&self, trace_id: u128) -> Vec<Arc<SpanRecord>> {
        self.inner
            .lock()
            .ring
            .iter()
            .filter(|r| r.trace_id == trace_id)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Arc<SpanRecord>> {
        self.inner.lock().ring.iter().cloned().collect()
    }

    pub fn clear(&self) {
        self.inner.lock().ring.clear();
    }

    pub fn stats(&self) -> Stats {
        Stats {
            finished: self.finished.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            queue_dropped: self.queue_dropped.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::span::{Kind, Scope, StatusCode};

    fn rec(trace_id: u128) -> SpanRecord {
        SpanRecord {
            trace_id,
            span_id: 1,
            parent_span_id: 0,
            parent_remote: false,
            flags: 1,
            tracestate: None,
            name: "s".into(),
            kind: Kind::Internal,
            start_ns: 1,
            end_ns: 2,
            attributes: vec![],
            dropped_attributes: 0,
            events: vec![],
            dropped_events: 0,
            links: vec![],
            dropped_links: 0,
            status: StatusCode::Unset,
            status_message: String::new(),
            scope: Arc::new(Scope::default()),
        }
    }

    #[test]
    fn ring_is_bounded() {
        let s = Store::new(3, 10, 5);
        for i in 1..=5 {
            s.push(Arc::new(rec(i)));
        }
        assert_eq!(s.all().len(), 3);
        assert_eq!(s.stats().evicted, 2);
        assert_eq!(s.trace(5).len(), 1);
        assert!(s.trace(1).is_empty());
        assert_eq!(s.queue_len(), 0, "nothing queued while not exporting");
    }

    #[test]
    fn queue_is_bounded() {
        let s = Store::new(0, 4, 2);
        s.set_exporting(true);
        for i in 1..=6 {
            s.push(Arc::new(rec(i)));
        }
        assert_eq!(s.stats().queue_dropped, 2);
        assert!(s.wait(Duration::from_millis(1)));
        assert_eq!(s.drain(3).len(), 3);
        assert_eq!(s.drain(3).len(), 1);
        assert!(!s.wait(Duration::from_millis(1)));
    }

    #[test]
    fn wait_wakes_on_a_batch_or_wake_from_another_thread() {
        let s = Arc::new(Store::new(0, 100, 2));
        s.set_exporting(true);
        let pusher = {
            let s = s.clone();
            std::thread::spawn(move || {
                s.push(Arc::new(rec(1)));
                s.push(Arc::new(rec(2)));
            })
        };
        // An hour: only the batch can end this wait.
        assert!(s.wait(Duration::from_secs(3600)));
        pusher.join().unwrap();
        assert_eq!(s.drain(10).len(), 2);
        let waker = {
            let s = s.clone();
            std::thread::spawn(move || s.wake())
        };
        assert!(s.wait(Duration::from_secs(3600)));
        waker.join().unwrap();
        assert!(!s.wait(Duration::ZERO), "a wake is consumed by the wait it ends");
    }

    #[test]
    fn a_waiting_worker_holds_no_lock() {
        let s = Arc::new(Store::new(0, 100, 50));
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || s.wait(Duration::from_secs(3600)))
        };
        // Whenever a fork lands during the wait, the child must find the store free: probe it while it waits.
        for _ in 0..1000 {
            assert!(s.inner.try_lock().is_some());
            std::thread::yield_now();
        }
        s.wake();
        assert!(waiter.join().unwrap());
    }
}
