//! Counter and gauge values: plain atomics, no locks on the increment.

use super::atomic::{AtomicF64, Slots};
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

// Slot layouts, read back by rust/multiproc (must match merge.rs and archive.rs).
/// Counter: `[whole increments (u64), fractional increments (f64 bits)]`.
pub const COUNTER_SLOTS: usize = 2;
/// Gauge: `[value (f64 bits)]`, plus `[last change (ns since the epoch)]` when it is timestamped.
pub const GAUGE_SLOTS: usize = 1;
pub const GAUGE_SLOTS_TIMESTAMPED: usize = 2;

/// A monotonic counter. Whole-number increments take the integer fast path (one `fetch_add`);
/// fractional ones a compare-exchange on an f64; the value is their sum.
#[derive(Debug)]
pub struct CounterValue {
    s: Slots,
}

impl Default for CounterValue {
    fn default() -> Self {
        CounterValue {
            s: Slots::heap(COUNTER_SLOTS),
        }
    }
}

impl CounterValue {
    /// A counter over given slots (at least `COUNTER_SLOTS`).
    pub fn with_slots(s: Slots) -> Self {
        assert!(s.len() >= COUNTER_SLOTS);
        CounterValue { s }
    }

    #[inline]
    fn floats(&self) -> &AtomicF64 {
        AtomicF64::view(&self.s[1])
    }

    #[inline]
    pub fn inc_int(&self, n: u64) {
        self.s[0].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds a finite, non-negative amount (callers check; see `check_non_negative`); false when
    /// refused because the total would overflow to infinity.
    #[inline]
    pub fn inc(&self, v: f64) -> bool {
        if v.fract() == 0.0 && v < 9.0e15 {
            self.inc_int(v as u64);
            true
        } else {
            self.floats().add_finite(v)
        }
    }

    pub fn get(&self) -> f64 {
        self.s[0].load(Ordering::Relaxed) as f64 + self.floats().get()
    }

    /// Adds a fractional amount without the integer fast path (a merge keeps the parts apart).
    pub fn inc_float(&self, v: f64) {
        self.floats().add(v);
    }

    /// The two parts, for a merge that must stay exact: whole increments, fractional sum.
    pub fn parts(&self) -> (u64, f64) {
        (self.s[0].load(Ordering::Relaxed), self.floats().get())
    }

    pub fn reset(&self) {
        self.s[0].store(0, Ordering::Relaxed);
        self.floats().set(0.0);
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
    /// Not given at all (the guide's "bad" `record_request("/chat", True, 123.4)`, or None).
    Missing,
}

impl Invalid {
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Nan => "nan",
            Invalid::Infinite => "infinite",
            Invalid::Negative => "negative",
            Invalid::NotANumber => "not_a_number",
            Invalid::Overflow => "overflow",
            Invalid::Missing => "missing_argument",
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

/// A gauge: an f64 that can go up and down. A timestamped gauge (multi-process `mostrecent`
/// modes) also stores when it last changed, so a merge can pick the latest write.
#[derive(Debug)]
pub struct GaugeValue {
    s: Slots,
}

impl Default for GaugeValue {
    fn default() -> Self {
        GaugeValue {
            s: Slots::heap(GAUGE_SLOTS),
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl GaugeValue {
    /// A gauge over given slots: `GAUGE_SLOTS`, or `GAUGE_SLOTS_TIMESTAMPED` to keep a timestamp.
    pub fn with_slots(s: Slots) -> Self {
        assert!(s.len() >= GAUGE_SLOTS);
        GaugeValue { s }
    }

    #[inline]
    fn cell(&self) -> &AtomicF64 {
        AtomicF64::view(&self.s[0])
    }

    #[inline]
    fn touch(&self) {
        if let Some(ts) = self.s.get(1) {
            ts.fetch_max(now_ns(), Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn set(&self, v: f64) {
        self.cell().set(v);
        self.touch();
    }

    #[inline]
    pub fn add(&self, v: f64) {
        self.cell().add(v);
        self.touch();
    }

    pub fn get(&self) -> f64 {
        self.cell().get()
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
