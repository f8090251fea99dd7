//! Conversions at the seam: attribute values under OpenTelemetry's rules, span kinds, statuses, baggage.

use crate::trace::baggage::Baggage;
use crate::trace::span::{AttrValue, Attributes, Kind, StatusCode};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Logs a warning once per process per `flag`, through the `victor_observability.tracing` logger.
#[cold]
pub(crate) fn warn_once(py: Python<'_>, flag: &AtomicBool, msg: &str) {
    if flag.swap(true, Ordering::Relaxed) {
        return;
    }
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    // get + set, not get_or_try_init: that would run Python (an import) inside the cell's once-lock, and a fork
    // taken meanwhile by another thread would leave the child that lock held for good. Racing here is harmless.
    if LOGGER.get(py).is_none() {
        if let Ok(logger) = py
            .import("logging")
            .and_then(|m| m.call_method1("getLogger", ("victor_observability.tracing",)))
        {
            let _ = LOGGER.set(py, logger.unbind());
        }
    }
    if let Some(logger) = LOGGER.get(py) {
        // A failing log handler must not break the span path.
        let _ = logger.bind(py).call_method1("warning", (msg,));
    }
}

pub(crate) static WARNED_ATTRIBUTE: AtomicBool = AtomicBool::new(false);
pub(crate) static WARNED_SAMPLER: AtomicBool = AtomicBool::new(false);

/// Converts a Python value under OpenTelemetry's attribute rules: str, bool, int, float, homogeneous sequences
/// of them. Bytes are decoded, big ints become strings, other scalars go through `str()`; None, mappings, sets
/// and mixed sequences are refused (`None`).
pub(crate) fn to_attr(obj: &Bound<'_, PyAny>) -> Option<AttrValue> {
    if let Ok(s) = obj.cast::<PyString>() {
        return s.to_str().ok().map(|s| AttrValue::Str(s.into()));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Some(AttrValue::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return Some(match obj.extract::<i64>() {
            Ok(i) => AttrValue::Int(i),
            Err(_) => AttrValue::Str(obj.str().ok()?.to_str().ok()?.into()),
        });
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Some(AttrValue::Float(f.value()));
    }
    if obj.is_none() || obj.is_instance_of::<PyDict>() {
        return None;
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return std::str::from_utf8(b.as_bytes()).ok().map(|s| AttrValue::Str(s.into()));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return seq_attr(obj);
    }
    // Anything else with a string form (enums, UUIDs, paths, decimals) is converted, as the guide's users expect.
    let type_name = obj.get_type().name().ok()?;
    if matches!(type_name.to_str().ok()?, "set" | "frozenset" | "dict") {
        return None;
    }
    Some(AttrValue::Str(obj.str().ok()?.to_str().ok()?.into()))
}

pub(crate) fn seq_attr(obj: &Bound<'_, PyAny>) -> Option<AttrValue> {
    let items: Vec<Bound<'_, PyAny>> = obj
        .try_iter()
        .ok()?
        .filter_map(Result::ok)
        .filter(|i| !i.is_none())
        .collect();
    let Some(first) = items.first() else {
        return Some(AttrValue::StrArray(Vec::new()));
    };
    if first.is_instance_of::<PyString>() {
        items
            .iter()
            .map(|i| i.cast::<PyString>().ok()?.to_str().ok().map(str::to_owned))
            .collect::<Option<_>>()
            .map(AttrValue::StrArray)
    } else if first.is_instance_of::<PyBool>() {
        items
            .iter()
            .map(|i| i.cast::<PyBool>().ok().map(|b| b.is_true()))
            .collect::<Option<_>>()
            .map(AttrValue::BoolArray)
    } else if first.is_instance_of::<PyInt>() {
        items
            .iter()
            .map(|i| {
                if i.is_instance_of::<PyBool>() {
                    None
                } else {
                    i.extract::<i64>().ok()
                }
            })
            .collect::<Option<_>>()
            .map(AttrValue::IntArray)
    } else if first.is_instance_of::<PyFloat>() {
        items
            .iter()
            .map(|i| i.cast::<PyFloat>().ok().map(|f| f.value()))
            .collect::<Option<_>>()
            .map(AttrValue::FloatArray)
    } else {
        None
    }
}

pub(crate) fn attr_to_py<'py>(py: Python<'py>, v: &AttrValue) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        AttrValue::Str(s) => PyString::new(py, s).into_any(),
        AttrValue::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        AttrValue::Int(i) => i.into_pyobject(py)?.into_any(),
        AttrValue::Float(f) => PyFloat::new(py, *f).into_any(),
        AttrValue::StrArray(a) => PyTuple::new(py, a)?.into_any(),
        AttrValue::BoolArray(a) => PyTuple::new(py, a)?.into_any(),
        AttrValue::IntArray(a) => PyTuple::new(py, a)?.into_any(),
        AttrValue::FloatArray(a) => PyTuple::new(py, a)?.into_any(),
    })
}

pub(crate) fn attrs_to_py<'py>(py: Python<'py>, attrs: &Attributes) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in attrs {
        d.set_item(k.as_str(), attr_to_py(py, v)?)?;
    }
    Ok(d)
}

pub(crate) fn baggage_to_py<'py>(py: Python<'py>, b: Option<&Arc<Baggage>>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    if let Some(b) = b {
        for (k, v) in b.iter() {
            d.set_item(k, v)?;
        }
    }
    Ok(d)
}

pub(crate) fn baggage_from_py(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Arc<Baggage>>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let d = obj
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err("baggage must be a dict of str to str"))?;
    let mut out = Baggage::new();
    for (k, v) in d.iter() {
        out.push((k.str()?.to_str()?.to_owned(), v.str()?.to_str()?.to_owned()));
    }
    Ok(if out.is_empty() { None } else { Some(Arc::new(out)) })
}

pub(crate) fn kind_from_py(kind: Option<&Bound<'_, PyAny>>) -> PyResult<Kind> {
    let Some(kind) = kind else { return Ok(Kind::Internal) };
    if kind.is_none() {
        return Ok(Kind::Internal);
    }
    // SpanKind is a str enum, so its members are str instances carrying the value.
    if let Ok(s) = kind.cast::<PyString>() {
        let s = s.to_str()?;
        return Kind::parse(s).ok_or_else(|| PyValueError::new_err(format!("unknown span kind {s:?}")));
    }
    if let Ok(i) = kind.extract::<i64>() {
        return Kind::from_index(i).ok_or_else(|| PyValueError::new_err(format!("unknown span kind {i}")));
    }
    if let Ok(v) = kind.getattr(intern!(kind.py(), "name")) {
        if let Ok(s) = v.cast::<PyString>() {
            if let Some(k) = Kind::parse(s.to_str()?) {
                return Ok(k);
            }
        }
    }
    Err(PyValueError::new_err(format!("unknown span kind {}", kind.repr()?)))
}

pub(crate) fn status_from_py(status: &Bound<'_, PyAny>) -> PyResult<StatusCode> {
    if let Ok(s) = status.cast::<PyString>() {
        let s = s.to_str()?;
        return StatusCode::parse(s).ok_or_else(|| PyValueError::new_err(format!("unknown span status {s:?}")));
    }
    if let Ok(i) = status.extract::<i64>() {
        return match i {
            0 => Ok(StatusCode::Unset),
            1 => Ok(StatusCode::Ok),
            2 => Ok(StatusCode::Error),
            _ => Err(PyValueError::new_err(format!("unknown span status {i}"))),
        };
    }
    if let Ok(v) = status.getattr(intern!(status.py(), "name")) {
        if let Ok(s) = v.cast::<PyString>() {
            if let Some(c) = StatusCode::parse(s.to_str()?) {
                return Ok(c);
            }
        }
    }
    Err(PyValueError::new_err(format!("unknown span status {}", status.repr()?)))
}

/// A dict as it is, any other mapping copied into one; anything else is a TypeError.
pub(crate) fn as_dict<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    if let Ok(d) = obj.cast::<PyDict>() {
        return Ok(d.clone());
    }
    let Ok(mapping) = obj.cast::<pyo3::types::PyMapping>() else {
        let type_name = obj.get_type().name()?;
        return Err(PyTypeError::new_err(format!(
            "attributes must be a mapping, not {type_name}"
        )));
    };
    let d = PyDict::new(obj.py());
    d.update(mapping)?;
    Ok(d)
}
