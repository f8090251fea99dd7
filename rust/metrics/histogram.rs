//! Prometheus cumulative-bucket histograms: validated bounds, per-bucket atomic counts, a sum.

use super::atomic::{AtomicF64, Slots};
use crate::error::{Error, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Validated upper bounds, strictly increasing, always ending in +Inf.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds(Arc<[f64]>);

impl Bounds {
    pub fn new(metric: &str, bounds: &[f64]) -> Result<Self> {
        if bounds.is_empty() {
            return Err(Error::value(metric, "histogram needs at least one bucket"));
        }
        let mut v: Vec<f64> = Vec::with_capacity(bounds.len() + 1);
        for &b in bounds {
            if b.is_nan() {
                return Err(Error::value(metric, "histogram bucket bound is NaN"));
            }
            if let Some(&last) = v.last() {
                if b <= last {
                    return Err(Error::value(
                        metric,
                        "histogram buckets must be in strictly increasing order",
                    ));
                }
            }
            v.push(b);
        }
        if *v.last().unwrap() != f64::INFINITY {
            v.push(f64::INFINITY);
        }
        Ok(Bounds(v.into()))
    }

    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }

    /// Index of the first bucket whose bound is >= v (+Inf catches everything, NaN included).
    #[inline]
    pub fn index(&self, v: f64) -> usize {
        let b = &self.0;
        // A short linear scan beats binary search for the usual ten-odd buckets.
        if b.len() <= 16 {
            b.iter().position(|&ub| v <= ub).unwrap_or(b.len() - 1)
        } else {
            b.partition_point(|&ub| ub < v).min(b.len() - 1)
        }
    }
}

/// One labelled histogram series: non-cumulative counts per bucket (cumulated when encoded) and a sum.
/// Slot layout (read back by rust/multiproc): `[sum (f64 bits), count per bound...]`.
#[derive(Debug)]
pub struct HistogramValue {
    bounds: Bounds,
    s: Slots,
}

/// The slots a histogram over `bounds` needs.
pub fn histogram_slots(bounds: &Bounds) -> usize {
    1 + bounds.as_slice().len()
}

impl HistogramValue {
    pub fn new(bounds: Bounds) -> Self {
        let s = Slots::heap(histogram_slots(&bounds));
        HistogramValue { bounds, s }
    }

    /// A histogram over given slots (at least `histogram_slots(&bounds)`).
    pub fn with_slots(bounds: Bounds, s: Slots) -> Self {
        assert!(s.len() >= histogram_slots(&bounds));
        HistogramValue { bounds, s }
    }

    #[inline]
    fn counts(&self) -> &[std::sync::atomic::AtomicU64] {
        &self.s[1..]
    }

    /// Counts `v` in its bucket and the sum; false, counting nothing, when `v` would make a
    /// finite sum infinite (the caller counts it as invalid).
    #[inline]
    pub fn observe(&self, v: f64) -> bool {
        self.observe_bucket(v).is_some()
    }

    /// `observe`, returning the bucket `v` landed in (its exemplar's slot), or None when refused.
    #[inline]
    pub fn observe_bucket(&self, v: f64) -> Option<usize> {
        if !AtomicF64::view(&self.s[0]).add_finite(v) {
            return None;
        }
        let index = self.bounds.index(v);
        self.s[1 + index].fetch_add(1, Ordering::Relaxed);
        Some(index)
    }

    /// Adds non-cumulative per-bucket counts and a sum (a merged view is built this way).
    pub fn add_raw(&self, counts: &[u64], sum: f64) {
        for (c, &n) in self.counts().iter().zip(counts) {
            c.fetch_add(n, Ordering::Relaxed);
        }
        AtomicF64::view(&self.s[0]).add(sum);
    }

    pub fn bounds(&self) -> &[f64] {
        self.bounds.as_slice()
    }

    /// Whether the counts live in a multi-process store file (then so do the series' exemplars).
    pub fn is_shared(&self) -> bool {
        self.s.is_shared()
    }

    /// The bucket `v` lands in (its exemplar's slot).
    #[inline]
    pub fn bucket_of(&self, v: f64) -> usize {
        self.bounds.index(v)
    }

    /// Cumulative counts, one per bound; the last is the total count.
    pub fn cumulative(&self) -> Vec<u64> {
        let mut acc = 0;
        self.counts()
            .iter()
            .map(|c| {
                acc += c.load(Ordering::Relaxed);
                acc
            })
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.counts().iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn sum(&self) -> f64 {
        AtomicF64::view(&self.s[0]).get()
    }

    pub fn reset(&self) {
        self.counts().iter().for_each(|c| c.store(0, Ordering::Relaxed));
        AtomicF64::view(&self.s[0]).set(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_get_inf_and_reject_disorder() {
        let b = Bounds::new("m", &[1.0, 2.0]).unwrap();
        assert_eq!(b.as_slice(), &[1.0, 2.0, f64::INFINITY]);
        assert!(Bounds::new("m", &[2.0, 1.0]).is_err());
        assert!(Bounds::new("m", &[1.0, 1.0]).is_err());
        assert!(Bounds::new("m", &[f64::NAN]).is_err());
        assert!(Bounds::new("m", &[]).is_err());
        assert_eq!(Bounds::new("m", &[1.0, f64::INFINITY]).unwrap().as_slice().len(), 2);
    }

    #[test]
    fn observe_lands_in_le_bucket() {
        let h = HistogramValue::new(Bounds::new("m", &[1.0, 5.0]).unwrap());
        h.observe(1.0);
        h.observe(3.0);
        h.observe(100.0);
        assert_eq!(h.cumulative(), vec![1, 2, 3]);
        assert_eq!(h.count(), 3);
        assert_eq!(h.sum(), 104.0);
    }

    #[test]
    fn many_bounds_use_binary_search() {
        let bounds: Vec<f64> = (1..=40).map(|i| i as f64).collect();
        let b = Bounds::new("m", &bounds).unwrap();
        assert_eq!(b.index(0.5), 0);
        assert_eq!(b.index(1.0), 0);
        assert_eq!(b.index(1.5), 1);
        assert_eq!(b.index(40.0), 39);
        assert_eq!(b.index(41.0), 40);
    }
}
