//! The Rust core of victor-observability: exact, lock-free mechanisms; policy lives in Python, but for schema.rs.
pub mod error;
pub mod exposition;
pub mod metrics;
pub mod schema;
pub mod trace;

#[cfg(feature = "python")]
mod py;
