//! OpenMetrics exemplars: the latest (trace, span) or explicit label set per histogram bucket.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// OpenMetrics (and prometheus-client) cap an exemplar's label set, names and values together, at 128 characters.
pub const MAX_EXEMPLAR_CHARS: usize = 128;

/// What an exemplar points at: a span (the common case, stored without allocating) or labels the caller gave.
#[derive(Debug, Clone, PartialEq)]
pub enum ExemplarLabels {
    Span {
        trace_id: u128,
        span_id: u64,
    },
    /// Sorted by name, validated by the caller (see `check_labels`).
    Custom(Arc<[(Box<str>, Box<str>)]>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: ExemplarLabels,
    pub value: f64,
    /// Seconds since the Unix epoch, when the observation was made.
    pub timestamp: f64,
}

/// One slot per bucket, allocated with a series' first exemplar (most series never get one).
///
/// Fork safety: every slot is only ever tried, never waited for, and held only to move a plain value in or out,
/// never across a GIL release or a Python call. A writer that finds its slot busy drops its exemplar (another one,
/// just as recent, is being written), and a reader skips the slot for that scrape; so even a slot left busy in
/// a forked child by a thread that does not exist there costs that bucket its exemplar, never a deadlock.
#[derive(Debug)]
pub struct Exemplars {
    slots: Box<[Slot]>,
}

/// A try-only lock around one exemplar. Not a Mutex: with nothing ever waiting, taking it is one atomic swap and
/// giving it back a plain release store, where a mutex's unlock is a second locked instruction. That one was most of
/// an exemplar's cost (interleaved, same build: observe with one 1.31-1.32x a plain observe under parking_lot's
/// Mutex, 1.19x with this).
#[derive(Debug, Default)]
struct Slot {
    busy: AtomicBool,
    exemplar: UnsafeCell<Option<Exemplar>>,
}

// SAFETY: `exemplar` is only touched by the one thread that turned `busy` from false to true.
unsafe impl Sync for Slot {}

impl Slot {
    #[inline]
    fn try_with<R>(&self, f: impl FnOnce(&mut Option<Exemplar>) -> R) -> Option<R> {
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        // SAFETY: this thread set `busy`, so it alone holds the slot until the store below.
        let r = f(unsafe { &mut *self.exemplar.get() });
        self.busy.store(false, Ordering::Release);
        Some(r)
    }
}

impl Exemplars {
    pub fn new(buckets: usize) -> Self {
        Exemplars {
            slots: (0..buckets).map(|_| Slot::default()).collect(),
        }
    }

    /// Makes `exemplar` the latest of bucket `index`.
    #[inline]
    pub fn set(&self, index: usize, exemplar: Exemplar) {
        let Some(slot) = self.slots.get(index) else { return };
        // A custom label set is freed after the slot is released.
        drop(slot.try_with(|e| e.replace(exemplar)));
    }

    /// A copy of every bucket's exemplar (None where there is none, or its slot is busy this instant).
    pub fn get_all(&self) -> Vec<Option<Exemplar>> {
        self.slots.iter().map(|s| s.try_with(|e| e.clone()).flatten()).collect()
    }
}

/// Checks an explicit exemplar's labels by prometheus-client's rules: valid label names, at most 128 characters
/// of names and values together. Returns them sorted by name.
pub fn check_labels(pairs: Vec<(String, String)>) -> Result<ExemplarLabels, &'static str> {
    let chars: usize = pairs.iter().map(|(k, v)| k.chars().count() + v.chars().count()).sum();
    if chars > MAX_EXEMPLAR_CHARS {
        return Err("exemplar labels exceed 128 characters");
    }
    if pairs.iter().any(|(k, _)| !super::validate::is_label_name(k)) {
        return Err("invalid exemplar label name");
    }
    let mut pairs: Vec<(Box<str>, Box<str>)> = pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err("duplicate exemplar label name");
    }
    Ok(ExemplarLabels::Custom(pairs.into()))
}

/// Seconds since the Unix epoch, now, to the clock tick (a few milliseconds): the coarse clock costs a quarter of
/// the precise one, which the exemplar's budget (1.3x the plain record) feels, and a scrape interval is seconds.
#[cfg(target_os = "linux")]
#[inline]
pub fn now_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_REALTIME_COARSE exists on every Linux since 2.6.32.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    } else {
        precise_now()
    }
}

#[cfg(not(target_os = "linux"))]
#[inline]
pub fn now_seconds() -> f64 {
    precise_now()
}

fn precise_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace_id: u128) -> Exemplar {
        Exemplar {
            labels: ExemplarLabels::Span { trace_id, span_id: 7 },
            value: 1.0,
            timestamp: 2.0,
        }
    }

    #[test]
    fn the_coarse_clock_is_the_wall_clock() {
        assert!((now_seconds() - precise_now()).abs() < 1.0);
    }

    #[test]
    fn latest_per_bucket() {
        let e = Exemplars::new(3);
        e.set(1, span(1));
        e.set(1, span(2));
        e.set(9, span(3));
        let all = e.get_all();
        assert_eq!(all.len(), 3);
        assert!(all[0].is_none() && all[2].is_none());
        assert_eq!(all[1].as_ref().unwrap().labels, span(2).labels);
    }

    #[test]
    fn busy_slot_drops_the_writer_and_skips_the_reader() {
        let e = Exemplars::new(1);
        e.set(0, span(1));
        e.slots[0].try_with(|_| {
            e.set(0, span(2));
            assert_eq!(e.get_all(), vec![None]);
        });
        assert_eq!(e.get_all()[0].as_ref().unwrap().labels, span(1).labels);
    }

    #[test]
    fn custom_labels_follow_prometheus_client_rules() {
        let ok = check_labels(vec![("z".into(), "1".into()), ("a".into(), "2".into())]).unwrap();
        let ExemplarLabels::Custom(pairs) = ok else { panic!() };
        assert_eq!(&*pairs[0].0, "a");
        // 128 characters (not bytes) pass; 129 do not.
        assert!(check_labels(vec![("k".into(), "é".repeat(127))]).is_ok());
        assert!(check_labels(vec![("k".into(), "é".repeat(128))]).is_err());
        assert!(check_labels(vec![("bad-name".into(), "v".into())]).is_err());
        assert!(check_labels(vec![("a".into(), "1".into()), ("a".into(), "2".into())]).is_err());
    }
}
