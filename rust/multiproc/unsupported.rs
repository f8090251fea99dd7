//! Multi-process mode where the platform has no shared file mappings and file locks (Windows):
//! the same interface as rust/multiproc/mod.rs, always off; `enable` says why.

#[path = "mode.rs"]
mod mode;

pub use mode::Mode;

use crate::metrics::atomic::Slots;
use crate::metrics::family::{Family, Series, Value};
use crate::metrics::hdr::HdrHome;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Families with the series to encode, in exposition order.
pub type View = Vec<(Arc<Family>, Vec<Arc<Series>>)>;

pub mod store {
    use super::Mode;
    use crate::metrics::family::Kind;

    /// No store, so no catalog record.
    pub fn family_record(_: &str, _: &str, _: Kind, _: Mode, _: bool, _: &[f64]) -> Vec<u8> {
        Vec::new()
    }
}

pub fn enable(_dir: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "multi-process mode needs shared file mappings and file locks (a Unix platform)",
    ))
}

#[inline]
pub fn is_enabled() -> bool {
    false
}

pub fn dir() -> Option<PathBuf> {
    None
}

pub fn own_path() -> Option<PathBuf> {
    None
}

pub fn alloc_value(_family: &Family, _labels: &[(Arc<str>, Box<str>)]) -> Option<Value> {
    None
}

pub fn alloc_hdr_head(_home: &HdrHome) -> Option<Slots> {
    None
}

pub fn alloc_hdr_block(_home: &HdrHome, _slot: usize) -> Option<Slots> {
    None
}

pub fn view(families: &[Arc<Family>]) -> View {
    crate::exposition::snapshot(families)
}

pub fn view_of(local: View, _exemplars: bool) -> View {
    local
}

pub fn archive_dead(_dir: &Path) -> io::Result<usize> {
    Ok(0)
}

pub fn try_lead(_dir: &Path) -> io::Result<bool> {
    Ok(true)
}
