//! Python bindings of rust/trace/: ids, traceparent, span records (issue 3).

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
