//! Counter and gauge values: plain atomics, no locks on the increment.

use super::atomic::AtomicF64;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonic counter. Whole-number increments take the integer fast path (one `fetch_add`);
/// fractional ones a compare-exchange on an f64; the value is their sum.
#[derive(Debug, Default)]
pub struct CounterValue {
    ints: AtomicU64,
    floats: AtomicF64,
}

impl CounterValue {
    #[inline]
    pub fn inc_int(&self, n: u64) {
        self.ints.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds a finite, non-negative amount (callers check; see `check_non_negative`); false when
    /// refused because the total would overflow to infinity.
    #[inline]
    pub fn inc(&self, v: f64) -> bool {
        if v.fract() == 0.0 && v < 9.0e15 {
            self.inc_int(v as u64);
            true
        } else {
            self.floats.add_finite(v)
        }
    }

    pub fn get(&self) -> f64 {
        self.ints.load(Ordering::Relaxed) as f64 + self.floats.get()
    }

    pub fn reset(&self) {
        self.ints.store(0, Ordering::Relaxed);
        self.floats.set(0.0);
    }
}

/// Why a sample is refused; its `as_str` is the `reason` label of `<prefix>_invalid_samples_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Nan,
    Infinite,
    Negative,
    /// Not a number at all (a str, None, an object): not the same mistake as a NaN.
    NotANumber,
    /// Finite, but it would have made a running sum infinite (see `AtomicF64::add_finite`).
    Overflow,
}

impl Invalid {
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Nan => "nan",
            Invalid::Infinite => "infinite",
            Invalid::Negative => "negative",
            Invalid::NotANumber => "not_a_number",
            Invalid::Overflow => "overflow",
        }
    }
}

/// Classifies a sample that must be a finite, non-negative number (latencies, costs, counts).
#[inline]
pub fn check_non_negative(v: f64) -> Result<f64, Invalid> {
    if v.is_nan() {
        Err(Invalid::Nan)
    } else if v.is_infinite() {
        Err(Invalid::Infinite)
    } else if v < 0.0 {
        Err(Invalid::Negative)
    } else {
        Ok(v)
    }
}

/// A gauge: an f64 that can go up and down.
#[derive(Debug, Default)]
pub struct GaugeValue(AtomicF64);

impl GaugeValue {
    #[inline]
    pub fn set(&self, v: f64) {
        self.0.set(v)
    }

    #[inline]
    pub fn add(&self, v: f64) {
        self.0.add(v)
    }

    pub fn get(&self) -> f64 {
        self.0.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_mixes_int_and_float() {
        let c = CounterValue::default();
        c.inc(1.0);
        c.inc(2.5);
        c.inc_int(3);
        assert_eq!(c.get(), 6.5);
    }

    #[test]
    fn classifies_bad_samples() {
        assert_eq!(check_non_negative(f64::NAN), Err(Invalid::Nan));
        assert_eq!(check_non_negative(f64::INFINITY), Err(Invalid::Infinite));
        assert_eq!(check_non_negative(-1.0), Err(Invalid::Negative));
        assert_eq!(check_non_negative(0.0), Ok(0.0));
    }

    #[test]
    fn gauge_goes_both_ways() {
        let g = GaugeValue::default();
        g.add(5.0);
        g.add(-2.0);
        assert_eq!(g.get(), 3.0);
        g.set(-7.5);
        assert_eq!(g.get(), -7.5);
    }
}
