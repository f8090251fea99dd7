//! The only PyO3 code: `#[pyclass]` wrappers over the core and the `_core` module.

#[cfg(feature = "bench")]
mod bench;
pub(crate) mod collector;
mod metrics;
mod middleware;
mod multiproc;
mod trace;

use crate::error::{Error, ErrorKind};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e.kind {
            ErrorKind::Value => PyValueError::new_err(e.to_string()),
            ErrorKind::Type => PyTypeError::new_err(e.to_string()),
        }
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    multiproc::register(m)?;
    metrics::register(m)?;
    collector::register(m)?;
    trace::register(m)?;
    middleware::register(m)?;
    #[cfg(feature = "bench")]
    bench::register(m)?;
    Ok(())
}
