//! A lock-free high-dynamic-range recorder for percentiles (p50/p95/p99 within 0.05% relative error).
//!
//! The layout is HdrHistogram's: one bucket per binary exponent, split linearly into 1,024
//! sub-buckets, so every bucket is at most 1/1024 of its value wide and its midpoint is within
//! 1/2048 of any value in it. Unlike the `hdrhistogram` crate, whose `record` takes `&mut self`
//! (a mutex on every observation when shared across threads), counts here are atomics and an
//! exponent's sub-buckets are allocated on first use, so a latency family spanning 1 ms..10 s
//! holds about 14 x 8 KiB.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

const SUB_BITS: u32 = 10;
const SUB_COUNT: usize = 1 << SUB_BITS;
/// Smallest exponent kept apart from zero: 2^-20 is about 1e-6 (a nanosecond in milliseconds).
const MIN_EXP: i32 = -20;
/// Largest exponent: 2^43 is about 8.8e12; larger values share the top bucket (max is kept exactly).
const MAX_EXP: i32 = 43;
const SLOTS: usize = (MAX_EXP - MIN_EXP + 1) as usize;

type Slot = Box<[AtomicU64]>;

#[derive(Debug)]
pub struct HdrRecorder {
    slots: Box<[OnceLock<Slot>]>,
    /// Values below 2^MIN_EXP, zero included.
    zeros: AtomicU64,
    /// Bits of the largest and smallest value: positive f64 bits order like the values.
    max_bits: AtomicU64,
    min_bits: AtomicU64,
}

impl Default for HdrRecorder {
    fn default() -> Self {
        HdrRecorder {
            slots: (0..SLOTS).map(|_| OnceLock::new()).collect(),
            zeros: AtomicU64::new(0),
            max_bits: AtomicU64::new(0),
            min_bits: AtomicU64::new(f64::INFINITY.to_bits()),
        }
    }
}

#[inline]
fn locate(v: f64) -> Option<(usize, usize)> {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
    if exp < MIN_EXP {
        return None;
    }
    if exp > MAX_EXP {
        return Some((SLOTS - 1, SUB_COUNT - 1));
    }
    let sub = ((bits >> (52 - SUB_BITS)) & (SUB_COUNT as u64 - 1)) as usize;
    Some(((exp - MIN_EXP) as usize, sub))
}

fn midpoint(slot: usize, sub: usize) -> f64 {
    let exp = slot as i32 + MIN_EXP;
    2f64.powi(exp) * (1.0 + (sub as f64 + 0.5) / SUB_COUNT as f64)
}

impl HdrRecorder {
    /// Records a finite, non-negative value (callers drop the others).
    #[inline]
    pub fn record(&self, v: f64) {
        match locate(v) {
            None => {
                self.zeros.fetch_add(1, Ordering::Relaxed);
            }
            Some((slot, sub)) => {
                let s = self.slots[slot].get_or_init(|| (0..SUB_COUNT).map(|_| AtomicU64::new(0)).collect());
                s[sub].fetch_add(1, Ordering::Relaxed);
            }
        }
        // Plain loads first: a new extreme is rare, and an RMW on every record is not free.
        let bits = v.to_bits();
        if bits > self.max_bits.load(Ordering::Relaxed) {
            self.max_bits.fetch_max(bits, Ordering::Relaxed);
        }
        if bits < self.min_bits.load(Ordering::Relaxed) {
            self.min_bits.fetch_min(bits, Ordering::Relaxed);
        }
    }

    /// Bytes held by the sub-bucket arrays allocated so far (one per binary exponent in use).
    pub fn allocated_bytes(&self) -> usize {
        self.slots.iter().filter(|s| s.get().is_some()).count() * SUB_COUNT * std::mem::size_of::<AtomicU64>()
    }

    /// The number of recorded values (summed from the buckets: a query, not a hot path).
    pub fn count(&self) -> u64 {
        self.zeros.load(Ordering::Relaxed)
            + self
                .slots
                .iter()
                .flat_map(|s| s.get())
                .flat_map(|s| s.iter())
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>()
    }

    pub fn max(&self) -> Option<f64> {
        let bits = self.max_bits.load(Ordering::Relaxed);
        (self.min_bits.load(Ordering::Relaxed) <= bits).then(|| f64::from_bits(bits))
    }

    pub fn min(&self) -> Option<f64> {
        let bits = self.min_bits.load(Ordering::Relaxed);
        (bits <= self.max_bits.load(Ordering::Relaxed)).then(|| f64::from_bits(bits))
    }

    /// The value at quantile `q` (0..=1) by nearest rank; None when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.quantiles(&[q]).pop().flatten()
    }

    /// Several quantiles in one pass over the buckets, in the order asked.
    pub fn quantiles(&self, qs: &[f64]) -> Vec<Option<f64>> {
        let zeros = self.zeros.load(Ordering::Relaxed);
        let slots: Vec<Option<Vec<u64>>> = self
            .slots
            .iter()
            .map(|s| s.get().map(|s| s.iter().map(|c| c.load(Ordering::Relaxed)).collect()))
            .collect();
        let total: u64 = zeros + slots.iter().flatten().flatten().sum::<u64>();
        if total == 0 {
            return vec![None; qs.len()];
        }
        let (lo, hi) = (self.min().unwrap_or(0.0), self.max().unwrap_or(f64::INFINITY));
        let mut order: Vec<usize> = (0..qs.len()).collect();
        order.sort_by(|&a, &b| qs[a].total_cmp(&qs[b]));
        let mut out = vec![None; qs.len()];
        let mut seen = zeros;
        let mut next = 0;
        let rank = |q: f64| ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        while next < order.len() && rank(qs[order[next]]) <= seen {
            out[order[next]] = Some(if rank(qs[order[next]]) == total { hi } else { lo });
            next += 1;
        }
        'outer: for (slot, counts) in slots.iter().enumerate() {
            let Some(counts) = counts else { continue };
            for (sub, &c) in counts.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                seen += c;
                while next < order.len() && rank(qs[order[next]]) <= seen {
                    let top = rank(qs[order[next]]) == total || (slot, sub) == (SLOTS - 1, SUB_COUNT - 1);
                    out[order[next]] = Some(if top { hi } else { midpoint(slot, sub).clamp(lo, hi) });
                    next += 1;
                }
                if next == order.len() {
                    break 'outer;
                }
            }
        }
        out
    }

    /// Forgets every recorded value (keeps the allocated sub-buckets).
    pub fn reset(&self) {
        self.zeros.store(0, Ordering::Relaxed);
        for slot in self.slots.iter().flat_map(|s| s.get()) {
            slot.iter().for_each(|c| c.store(0, Ordering::Relaxed));
        }
        self.max_bits.store(0, Ordering::Relaxed);
        self.min_bits.store(f64::INFINITY.to_bits(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_quantiles() {
        assert_eq!(HdrRecorder::default().quantile(0.5), None);
    }

    #[test]
    fn quantiles_are_within_a_twentieth_of_a_percent() {
        let h = HdrRecorder::default();
        let mut values: Vec<f64> = (1..=100_000).map(|i| (i as f64) * 0.37 + 0.001).collect();
        values.iter().for_each(|&v| h.record(v));
        values.sort_by(f64::total_cmp);
        for q in [0.5, 0.95, 0.99, 0.999] {
            let exact = values[((q * values.len() as f64).ceil() as usize) - 1];
            let got = h.quantile(q).unwrap();
            assert!(((got - exact) / exact).abs() < 0.0005, "q={q} got={got} exact={exact}");
        }
        assert_eq!(h.quantile(1.0).unwrap(), *values.last().unwrap());
        assert_eq!(h.count(), 100_000);
    }

    #[test]
    fn zeros_and_huge_values() {
        let h = HdrRecorder::default();
        h.record(0.0);
        h.record(0.0);
        h.record(1e15);
        assert_eq!(h.quantile(0.5), Some(0.0));
        assert_eq!(h.quantile(1.0), Some(1e15));
        assert_eq!(h.quantiles(&[0.99, 0.1]), vec![Some(1e15), Some(0.0)]);
    }
}
