//! An f64 that threads update without locks: bits in an AtomicU64, changed by compare-exchange.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn new(v: f64) -> Self {
        AtomicF64(AtomicU64::new(v.to_bits()))
    }

    #[inline]
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    #[inline]
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    #[inline]
    pub fn add(&self, delta: f64) {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(cur) + delta).to_bits();
            match self
                .0
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Adds `delta` unless that would take a finite value to infinity (two 1e308s): an infinite sum
    /// stays infinite for the life of the process, so the one absurd addend is refused instead.
    /// Returns whether it was added.
    #[inline]
    pub fn add_finite(&self, delta: f64) -> bool {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let old = f64::from_bits(cur);
            let new = old + delta;
            if !new.is_finite() && old.is_finite() && delta.is_finite() {
                return false;
            }
            match self
                .0
                .compare_exchange_weak(cur, new.to_bits(), Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_adds_are_exact() {
        let a = Arc::new(AtomicF64::new(0.0));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| a.add(0.5)))
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(a.get(), 40_000.0);
    }

    #[test]
    fn add_finite_refuses_an_overflow() {
        let a = AtomicF64::new(0.0);
        assert!(a.add_finite(1e308));
        assert!(!a.add_finite(1e308));
        assert_eq!(a.get(), 1e308);
    }
}
