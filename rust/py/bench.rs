//! Bench hooks: the no-op floors the Python benches measure against. Built only with `--features bench`
//! (`make bench`), so the released extension does not carry them.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(noop, m)?)?;
    m.add_function(wrap_pyfunction!(_noop_trace, m)?)?;
    m.add_class::<_NoopContext>()?;
    Ok(())
}

/// Does nothing: the floor the benches compare record calls against.
#[pyfunction]
#[pyo3(signature = (*_args, **_kwargs))]
fn noop(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) {}

/// Does nothing: the floor the tracing benches measure an unsampled span against.
#[pyfunction]
#[pyo3(signature = (*_args, **_kwargs))]
fn _noop_trace(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) {}

/// A context manager that does nothing (bench floor for the cost of a `with` block on an extension type).
#[pyclass(frozen, module = "victor_observability._core")]
pub struct _NoopContext;

#[pymethods]
impl _NoopContext {
    #[new]
    fn new() -> Self {
        _NoopContext
    }
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf.clone()
    }
    fn __exit__(&self, _a: &Bound<'_, PyAny>, _b: &Bound<'_, PyAny>, _c: &Bound<'_, PyAny>) -> bool {
        false
    }
}
