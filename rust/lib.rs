//! The Rust core of victor-observability: exact, lock-free mechanisms; policy lives in Python, but for schema.rs.
pub mod error;
pub mod exposition;
pub mod metrics;
#[cfg(unix)]
pub mod multiproc;
// Windows: the same interface, always off (no shared file mappings or file locks to build it on).
#[cfg(not(unix))]
#[path = "multiproc/unsupported.rs"]
pub mod multiproc;
pub mod schema;
pub mod trace;

#[cfg(feature = "python")]
mod py;
