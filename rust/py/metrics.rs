//! Python bindings of rust/metrics/ and rust/exposition.rs.

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
