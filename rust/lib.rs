//! The Rust core of victor-observability: exact, lock-free mechanisms; all policy lives in Python.
pub mod error;
pub mod exposition;
pub mod metrics;
pub mod multiproc;
pub mod trace;

#[cfg(feature = "python")]
mod py;
