//! Metric values, families of labelled series, the registry and the collector's one-call recorders.
pub mod atomic;
pub mod collector;
pub mod exemplar;
pub mod family;
pub mod hdr;
pub mod histogram;
pub mod labels;
pub mod registry;
pub mod validate;
pub mod value;

pub use family::{Family, Kind, Series};
pub use registry::Registry;
