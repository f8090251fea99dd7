//! The current span: one process-wide context variable, read and written through the C API; the small
//! module-level functions.

use crate::trace::hex::trace_id_hex;
use crate::trace::ids;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// The context variable holding the current span (default None).
pub(crate) struct CurrentVar {
    pub(crate) var: Py<PyAny>,
}

pub(crate) static CURRENT: PyOnceLock<CurrentVar> = PyOnceLock::new();

pub(crate) fn current(py: Python<'_>) -> PyResult<&CurrentVar> {
    CURRENT.get_or_try_init(py, || {
        let kwargs = PyDict::new(py);
        kwargs.set_item("default", py.None())?;
        let var = py
            .import("contextvars")?
            .getattr("ContextVar")?
            .call(("victor_observability.current_span",), Some(&kwargs))?;
        Ok(CurrentVar { var: var.unbind() })
    })
}

pub(crate) fn current_var(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    Ok(&current(py)?.var)
}

// The C API's context-variable calls are public and unchanged since CPython 3.7, but not in the limited API
// that pyo3-ffi exposes under abi3, so they are declared here. They save two argument tuples and a Token
// method lookup per span (measured: about 40 % of an unsampled span's cost). The symbols resolve against the
// running interpreter on Linux and macOS; Windows links abi3 modules to python3.dll, which lacks them, so
// there the bound methods are called instead (below).
#[cfg(not(windows))]
extern "C" {
    pub(crate) fn PyContextVar_Get(
        var: *mut pyo3::ffi::PyObject,
        default: *mut pyo3::ffi::PyObject,
        value: *mut *mut pyo3::ffi::PyObject,
    ) -> std::os::raw::c_int;
    pub(crate) fn PyContextVar_Set(
        var: *mut pyo3::ffi::PyObject,
        value: *mut pyo3::ffi::PyObject,
    ) -> *mut pyo3::ffi::PyObject;
    pub(crate) fn PyContextVar_Reset(
        var: *mut pyo3::ffi::PyObject,
        token: *mut pyo3::ffi::PyObject,
    ) -> std::os::raw::c_int;
}

/// The current span object, or None when no span is current.
#[cfg(not(windows))]
#[inline]
pub(crate) fn get_current<'py>(py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let var = &current(py)?.var;
    let mut value: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    // SAFETY: `var` is a ContextVar (default None); on success `value` is a new reference.
    unsafe {
        if PyContextVar_Get(var.as_ptr(), std::ptr::null_mut(), &mut value) < 0 {
            return Err(PyErr::fetch(py));
        }
        if value.is_null() {
            return Ok(None);
        }
        let obj = Bound::from_owned_ptr(py, value);
        Ok(if obj.is_none() { None } else { Some(obj) })
    }
}

#[cfg(not(windows))]
#[inline]
pub(crate) fn set_current<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let var = &current(py)?.var;
    // SAFETY: returns a new reference to a Token, or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, PyContextVar_Set(var.as_ptr(), value.as_ptr())) }
}

/// Restores the context variable; a token from another context (a span entered in one thread and left in
/// another) cannot be used, and that must not break the caller, so the error is swallowed.
#[cfg(not(windows))]
#[inline]
pub(crate) fn reset_current(py: Python<'_>, token: &Bound<'_, PyAny>) {
    let Ok(c) = current(py) else { return };
    // SAFETY: both are live objects; a failure leaves an exception, fetched and dropped.
    unsafe {
        if PyContextVar_Reset(c.var.as_ptr(), token.as_ptr()) < 0 {
            drop(PyErr::fetch(py));
        }
    }
}

#[cfg(windows)]
#[inline]
pub(crate) fn get_current<'py>(py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let obj = current(py)?.var.bind(py).call_method0(intern!(py, "get"))?;
    Ok(if obj.is_none() { None } else { Some(obj) })
}

#[cfg(windows)]
#[inline]
pub(crate) fn set_current<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    current(py)?.var.bind(py).call_method1(intern!(py, "set"), (value,))
}

#[cfg(windows)]
#[inline]
pub(crate) fn reset_current(py: Python<'_>, token: &Bound<'_, PyAny>) {
    if let Ok(c) = current(py) {
        // A token from another context must not break the caller.
        let _ = c.var.bind(py).call_method1(intern!(py, "reset"), (token,));
    }
}

/// The span current in this context (thread or asyncio task), or None.
#[pyfunction]
pub(crate) fn current_span(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    get_current(py)
}

/// Makes `span` current until `detach_span(token)`; the OpenTelemetry bridge and `use_span` use it.
#[pyfunction]
pub(crate) fn attach_span<'py>(py: Python<'py>, span: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    set_current(py, span)
}

#[pyfunction]
pub(crate) fn detach_span(py: Python<'_>, token: &Bound<'_, PyAny>) {
    reset_current(py, token)
}

/// Re-seeds the id generator of the calling thread (a second line behind pthread_atfork, and for tests).
#[pyfunction]
pub(crate) fn _reseed_ids() {
    ids::reseed();
}

/// A fresh random trace id as hex (tests of the generator; the sampler benches).
#[pyfunction]
pub(crate) fn _random_trace_id() -> String {
    trace_id_hex(ids::trace_id())
}

/// The trace and span ids of `obj` when it is a sampled span (a recording `Span`; a `NonRecordingSpan` has none).
#[inline]
pub(crate) fn sampled_ids(obj: &Bound<'_, PyAny>) -> Option<(u128, u64)> {
    // Span cannot be subclassed: the exact type is the whole test, without walking a NonRecordingSpan's MRO.
    if !obj.is_exact_instance_of::<super::span::Span>() {
        return None;
    }
    // SAFETY: the type was checked just above.
    let span = unsafe { obj.cast_unchecked::<super::span::Span>() }.get();
    Some((span.trace_id, span.span_id))
}

/// The ids of the current span when it is sampled: an exemplar's source, read on the record path through the
/// C API without calling into Python.
#[inline]
pub(crate) fn current_sampled_ids(py: Python<'_>) -> Option<(u128, u64)> {
    // An error reading the variable (there is none in practice) means no exemplar, never an exception.
    sampled_ids(&get_current(py).ok()??)
}
