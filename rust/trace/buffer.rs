//! The finished-span store: a bounded ring for `get_trace` and a bounded export queue, both counting their drops.

use super::span::SpanRecord;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Inner {
    ring: VecDeque<Arc<SpanRecord>>,
    queue: Vec<Arc<SpanRecord>>,
    wake: bool,
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
    inner: Mutex<Inner>,
    cond: Condvar,
    ring_capacity: usize,
    queue_capacity: usize,
    /// The export worker is woken once the queue holds this many spans, not on every span.
    batch_size: usize,
    exporting: std::sync::atomic::AtomicBool,
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
                wake: false,
            }),
            cond: Condvar::new(),
            ring_capacity,
            queue_capacity: queue_capacity.max(1),
            batch_size: batch_size.clamp(1, queue_capacity.max(1)),
            exporting: std::sync::atomic::AtomicBool::new(false),
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
                self.queued.fetch_add(1, Ordering::Relaxed);
                if inner.queue.len() == self.batch_size {
                    self.cond.notify_one();
                }
            }
        }
    }

    /// Takes up to `max` queued spans, oldest first.
    pub fn drain(&self, max: usize) -> Vec<Arc<SpanRecord>> {
        let mut inner = self.inner.lock();
        let n = max.min(inner.queue.len());
        inner.queue.drain(..n).collect()
    }

    pub fn queue_len(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// Waits until a batch is queued, `wake()` is called, or `timeout` passes; true unless it timed out idle.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut inner = self.inner.lock();
        if inner.wake || inner.queue.len() >= self.batch_size {
            inner.wake = false;
            return true;
        }
        let timed_out = self.cond.wait_for(&mut inner, timeout).timed_out();
        inner.wake = false;
        !timed_out
    }

    /// Wakes the export worker now (flush, shutdown).
    pub fn wake(&self) {
        self.inner.lock().wake = true;
        self.cond.notify_all();
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
}
