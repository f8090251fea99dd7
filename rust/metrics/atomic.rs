//! Lock-free value cells: an f64 in an AtomicU64, and the blocks of atomics a series' values live in.

use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
#[repr(transparent)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn new(v: f64) -> Self {
        AtomicF64(AtomicU64::new(v.to_bits()))
    }

    /// Views an atomic word as an f64 cell (the word may live in a shared file: see `Slots`).
    #[inline]
    pub fn view(word: &AtomicU64) -> &AtomicF64 {
        // SAFETY: AtomicF64 is repr(transparent) over AtomicU64.
        unsafe { &*(word as *const AtomicU64 as *const AtomicF64) }
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

/// The atomics of one series' value: on the heap in single-process mode, or in the process's
/// mmap'd store file in multi-process mode, where other processes read them. Either way the
/// record path is an atomic op through one pointer.
pub struct Slots {
    ptr: NonNull<AtomicU64>,
    len: usize,
    heap: bool,
}

// SAFETY: the words are atomics; the memory outlives the Slots (heap: owned; store: never unmapped).
unsafe impl Send for Slots {}
unsafe impl Sync for Slots {}

impl Slots {
    pub fn heap(len: usize) -> Self {
        let b: Box<[AtomicU64]> = (0..len).map(|_| AtomicU64::new(0)).collect();
        let ptr = NonNull::new(Box::into_raw(b) as *mut AtomicU64).expect("Box is never null");
        Slots { ptr, len, heap: true }
    }

    /// # Safety
    /// `ptr` must point to `len` 8-aligned, zero-initialised words that stay mapped for the life
    /// of the process and that nothing else writes non-atomically.
    pub unsafe fn external(ptr: NonNull<AtomicU64>, len: usize) -> Self {
        Slots { ptr, len, heap: false }
    }

    pub fn is_shared(&self) -> bool {
        !self.heap
    }
}

impl Deref for Slots {
    type Target = [AtomicU64];

    #[inline]
    fn deref(&self) -> &[AtomicU64] {
        // SAFETY: see the constructors.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        if self.heap {
            // SAFETY: built by `heap` from a Box<[AtomicU64]> of this length.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len)) });
        }
    }
}

impl fmt::Debug for Slots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slots")
            .field("len", &self.len)
            .field("shared", &!self.heap)
            .finish()
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
