//! Python bindings of rust/trace/: the tracer core, spans, span contexts, samplers, finished-span data.
//!
//! One crossing per user operation: `start_span` resolves the parent from the context variable, samples, draws
//! ids and builds the span in one call; `__exit__` ends it, restores the context and stores the record.

use crate::trace::baggage::{self, Baggage};
use crate::trace::buffer::Store;
use crate::trace::hex::{parse_span_id, parse_trace_id, span_id_hex, trace_id_hex};
use crate::trace::sampler::{ParentInfo, Sampler as CoreSampler};
use crate::trace::span::{
    self as core_span, AttrValue, Attributes, Event, Kind, Limits, Scope, SpanRecord, StatusCode,
};
use crate::trace::{ids, traceparent, tracestate};
use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TracerCore>()?;
    m.add_class::<Span>()?;
    m.add_class::<NonRecordingSpan>()?;
    m.add_class::<SpanContext>()?;
    m.add_class::<SpanData>()?;
    m.add_class::<Sampler>()?;
    m.add_function(wrap_pyfunction!(_noop_trace, m)?)?;
    m.add_function(wrap_pyfunction!(current_span, m)?)?;
    m.add_function(wrap_pyfunction!(_set_current_span, m)?)?;
    m.add_function(wrap_pyfunction!(_reset_current_span, m)?)?;
    m.add_function(wrap_pyfunction!(_reseed_ids, m)?)?;
    m.add_function(wrap_pyfunction!(_random_trace_id, m)?)?;
    m.add("CURRENT_SPAN", current_var(m.py())?.clone_ref(m.py()))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// The current span: one context variable for the process, read and written through the C API (no method lookups).

/// The context variable holding the current span (default None).
struct CurrentVar {
    var: Py<PyAny>,
}

static CURRENT: PyOnceLock<CurrentVar> = PyOnceLock::new();

fn current(py: Python<'_>) -> PyResult<&CurrentVar> {
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

fn current_var(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    Ok(&current(py)?.var)
}

// The C API's context-variable calls are public and unchanged since CPython 3.7, but not in the limited API
// that pyo3-ffi exposes under abi3, so they are declared here. They save two argument tuples and a Token
// method lookup per span (measured: about 40 % of an unsampled span's cost).
extern "C" {
    fn PyContextVar_Get(
        var: *mut pyo3::ffi::PyObject,
        default: *mut pyo3::ffi::PyObject,
        value: *mut *mut pyo3::ffi::PyObject,
    ) -> std::os::raw::c_int;
    fn PyContextVar_Set(var: *mut pyo3::ffi::PyObject, value: *mut pyo3::ffi::PyObject) -> *mut pyo3::ffi::PyObject;
    fn PyContextVar_Reset(var: *mut pyo3::ffi::PyObject, token: *mut pyo3::ffi::PyObject) -> std::os::raw::c_int;
}

/// The current span object, or None when no span is current.
#[inline]
fn get_current<'py>(py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
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

#[inline]
fn set_current<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let var = &current(py)?.var;
    // SAFETY: returns a new reference to a Token, or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, PyContextVar_Set(var.as_ptr(), value.as_ptr())) }
}

/// Restores the context variable; a token from another context (a span entered in one thread and left in
/// another) cannot be used, and that must not break the caller, so the error is swallowed.
#[inline]
fn reset_current(py: Python<'_>, token: &Bound<'_, PyAny>) {
    let Ok(c) = current(py) else { return };
    // SAFETY: both are live objects; a failure leaves an exception, fetched and dropped.
    unsafe {
        if PyContextVar_Reset(c.var.as_ptr(), token.as_ptr()) < 0 {
            drop(PyErr::fetch(py));
        }
    }
}

/// The span current in this context (thread or asyncio task), or None.
#[pyfunction]
fn current_span(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    get_current(py)
}

/// Makes `span` current until `_reset_current_span(token)`; the OpenTelemetry bridge and `use_span` use it.
#[pyfunction]
fn _set_current_span<'py>(py: Python<'py>, span: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    set_current(py, span)
}

#[pyfunction]
fn _reset_current_span(py: Python<'_>, token: &Bound<'_, PyAny>) {
    reset_current(py, token)
}

/// Does nothing: the floor the tracing benches measure an unsampled span against.
#[pyfunction]
#[pyo3(signature = (*_args, **_kwargs))]
fn _noop_trace(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) {}

/// Re-seeds the id generator of the calling thread (a second line behind pthread_atfork, and for tests).
#[pyfunction]
fn _reseed_ids() {
    ids::reseed();
}

/// A fresh random trace id as hex (tests of the generator; the sampler benches).
#[pyfunction]
fn _random_trace_id() -> String {
    trace_id_hex(ids::trace_id())
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers.

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Logs a warning once per process per `flag`, through the `victor_observability.tracing` logger.
#[cold]
fn warn_once(py: Python<'_>, flag: &AtomicBool, msg: &str) {
    if flag.swap(true, Ordering::Relaxed) {
        return;
    }
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    if let Ok(logger) = LOGGER.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("logging")?
            .call_method1("getLogger", ("victor_observability.tracing",))?
            .unbind())
    }) {
        // A failing log handler must not break the span path.
        let _ = logger.bind(py).call_method1("warning", (msg,));
    }
}

static WARNED_ATTRIBUTE: AtomicBool = AtomicBool::new(false);
static WARNED_SAMPLER: AtomicBool = AtomicBool::new(false);

/// Converts a Python value under OpenTelemetry's attribute rules: str, bool, int, float, homogeneous sequences
/// of them. Bytes are decoded, big ints become strings, other scalars go through `str()`; None, mappings, sets
/// and mixed sequences are refused (`None`).
fn to_attr(obj: &Bound<'_, PyAny>) -> Option<AttrValue> {
    if let Ok(s) = obj.cast::<PyString>() {
        return s.to_str().ok().map(|s| AttrValue::Str(s.to_owned()));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Some(AttrValue::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return Some(match obj.extract::<i64>() {
            Ok(i) => AttrValue::Int(i),
            Err(_) => AttrValue::Str(obj.str().ok()?.to_str().ok()?.to_owned()),
        });
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Some(AttrValue::Float(f.value()));
    }
    if obj.is_none() || obj.is_instance_of::<PyDict>() {
        return None;
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return std::str::from_utf8(b.as_bytes())
            .ok()
            .map(|s| AttrValue::Str(s.to_owned()));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return seq_attr(obj);
    }
    // Anything else with a string form (enums, UUIDs, paths, decimals) is converted, as the guide's users expect.
    let type_name = obj.get_type().name().ok()?;
    if matches!(type_name.to_str().ok()?, "set" | "frozenset" | "dict") {
        return None;
    }
    Some(AttrValue::Str(obj.str().ok()?.to_str().ok()?.to_owned()))
}

fn seq_attr(obj: &Bound<'_, PyAny>) -> Option<AttrValue> {
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

fn attr_to_py<'py>(py: Python<'py>, v: &AttrValue) -> PyResult<Bound<'py, PyAny>> {
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

fn attrs_to_py<'py>(py: Python<'py>, attrs: &Attributes) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in attrs {
        d.set_item(k, attr_to_py(py, v)?)?;
    }
    Ok(d)
}

fn baggage_to_py<'py>(py: Python<'py>, b: Option<&Arc<Baggage>>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    if let Some(b) = b {
        for (k, v) in b.iter() {
            d.set_item(k, v)?;
        }
    }
    Ok(d)
}

fn baggage_from_py(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Arc<Baggage>>> {
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

fn kind_from_py(kind: Option<&Bound<'_, PyAny>>) -> PyResult<Kind> {
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

fn status_from_py(status: &Bound<'_, PyAny>) -> PyResult<StatusCode> {
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

// ---------------------------------------------------------------------------------------------------------------
// Shared tracer state.

enum SamplerImpl {
    Core(CoreSampler),
    /// A Python object with `should_sample(trace_id: str, parent_sampled: bool | None, name: str) -> bool`.
    Custom(Py<PyAny>),
}

struct Shared {
    store: Store,
    limits: Limits,
    sampler: SamplerImpl,
    service_name: String,
    invalid_attributes: AtomicU64,
    sampler_errors: AtomicU64,
    started: AtomicU64,
    unsampled: AtomicU64,
}

impl Shared {
    fn sample(&self, py: Python<'_>, trace_id: u128, parent: Option<ParentInfo>, name: &Bound<'_, PyString>) -> bool {
        match &self.sampler {
            SamplerImpl::Core(s) => s.should_sample(trace_id, parent),
            SamplerImpl::Custom(obj) => {
                let parent_sampled = parent.map(|p| p.sampled);
                match obj
                    .bind(py)
                    .call_method1(
                        intern!(py, "should_sample"),
                        (trace_id_hex(trace_id), parent_sampled, name),
                    )
                    .and_then(|r| r.is_truthy())
                {
                    Ok(b) => b,
                    Err(e) => {
                        // A broken sampler must not break requests: do not sample, count, log once.
                        self.sampler_errors.fetch_add(1, Ordering::Relaxed);
                        warn_once(
                            py,
                            &WARNED_SAMPLER,
                            &format!("custom sampler failed, spans not sampled: {e}"),
                        );
                        false
                    }
                }
            }
        }
    }

    /// True when an unsampled parent always yields an unsampled child.
    #[inline]
    fn follows_unsampled_parent(&self) -> bool {
        matches!(
            self.sampler,
            SamplerImpl::Core(CoreSampler::AlwaysOff | CoreSampler::ParentBased { .. })
        )
    }

    fn convert(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> Option<(String, AttrValue)> {
        let key = key
            .cast::<PyString>()
            .ok()
            .and_then(|k| k.to_str().ok())
            .filter(|k| !k.is_empty());
        match (key, to_attr(value)) {
            (Some(k), Some(v)) => Some((k.to_owned(), self.limits.clip(v))),
            _ => {
                self.invalid_attributes.fetch_add(1, Ordering::Relaxed);
                warn_once(
                    py,
                    &WARNED_ATTRIBUTE,
                    "span attribute dropped: keys must be non-empty str, values str, bool, int, float or \
                     homogeneous sequences of them (counted in tracer.stats()['invalid_attributes'])",
                );
                None
            }
        }
    }
}

/// What a new span inherits from its parent.
struct ParentCtx {
    trace_id: u128,
    span_id: u64,
    flags: u8,
    remote: bool,
    tracestate: Option<Arc<str>>,
    baggage: Option<Arc<Baggage>>,
}

fn parent_of(obj: &Bound<'_, PyAny>) -> PyResult<Option<ParentCtx>> {
    if let Ok(s) = obj.cast::<Span>() {
        let s = s.get();
        return Ok(Some(ParentCtx {
            trace_id: s.trace_id,
            span_id: s.span_id,
            flags: traceparent::FLAG_SAMPLED,
            remote: false,
            tracestate: s.tracestate.clone(),
            baggage: s.state.lock().baggage.clone(),
        }));
    }
    if let Ok(s) = obj.cast::<NonRecordingSpan>() {
        let c = &s.get().ctx;
        return Ok(Some(ParentCtx {
            trace_id: c.trace_id,
            span_id: c.span_id,
            flags: c.flags,
            remote: c.remote,
            tracestate: c.tracestate.clone(),
            baggage: c.baggage.clone(),
        }));
    }
    if let Ok(c) = obj.cast::<SpanContext>() {
        let c = c.get();
        return Ok(Some(ParentCtx {
            trace_id: c.trace_id,
            span_id: c.span_id,
            flags: c.flags,
            remote: c.remote,
            tracestate: c.tracestate.clone(),
            baggage: c.baggage.clone(),
        }));
    }
    // None: no parent here; False: explicitly none, a new trace (start_span reads None as "the current span").
    if obj.is_none() || obj.cast::<PyBool>().is_ok_and(|b| !b.is_true()) {
        return Ok(None);
    }
    Err(PyTypeError::new_err(format!(
        "parent must be a Span, NonRecordingSpan, SpanContext, None or False, not {}",
        obj.get_type().name()?
    )))
}

// ---------------------------------------------------------------------------------------------------------------
// The tracer core.

/// The Rust half of DistributedTracer: sampling, ids, spans, propagation and the finished-span store.
#[pyclass(frozen, subclass, module = "victor_observability._core")]
pub struct TracerCore {
    shared: Arc<Shared>,
    scope: Arc<Scope>,
}

#[pymethods]
impl TracerCore {
    #[new]
    #[pyo3(signature = (service_name, *, sampler=None, max_spans=10_000, max_queue_size=2048, max_export_batch_size=512,
                        max_attributes=128, max_events=128, max_value_len=4096, **_rest))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        service_name: &str,
        sampler: Option<&Bound<'_, PyAny>>,
        max_spans: usize,
        max_queue_size: usize,
        max_export_batch_size: usize,
        max_attributes: usize,
        max_events: usize,
        max_value_len: usize,
        _rest: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        if service_name.is_empty() {
            return Err(PyValueError::new_err("tracer: service_name must be a non-empty string"));
        }
        let sampler = match sampler {
            None => SamplerImpl::Core(CoreSampler::AlwaysOn),
            Some(s) if s.is_none() => SamplerImpl::Core(CoreSampler::AlwaysOn),
            Some(s) => match s.cast::<Sampler>() {
                Ok(core) => SamplerImpl::Core(core.get().inner.clone()),
                Err(_) if s.hasattr(intern!(s.py(), "should_sample"))? => SamplerImpl::Custom(s.clone().unbind()),
                Err(_) => {
                    return Err(PyValueError::new_err(format!(
                        "tracer {service_name:?}: sampler must be a Sampler or have should_sample(), not {}",
                        s.get_type().name()?
                    )))
                }
            },
        };
        Ok(TracerCore {
            shared: Arc::new(Shared {
                store: Store::new(max_spans, max_queue_size, max_export_batch_size),
                limits: Limits {
                    max_attributes,
                    max_events,
                    max_event_attributes: max_attributes,
                    max_value_len,
                },
                sampler,
                service_name: service_name.to_owned(),
                invalid_attributes: AtomicU64::new(0),
                sampler_errors: AtomicU64::new(0),
                started: AtomicU64::new(0),
                unsampled: AtomicU64::new(0),
            }),
            scope: Arc::new(Scope {
                name: service_name.to_owned(),
                version: None,
            }),
        })
    }

    #[getter]
    fn service_name(&self) -> &str {
        &self.shared.service_name
    }

    #[getter]
    fn scope_name(&self) -> &str {
        &self.scope.name
    }

    /// A core sharing this tracer's sampler and store, whose spans carry another instrumentation scope.
    #[pyo3(signature = (name, version=None))]
    fn with_scope(&self, name: &str, version: Option<String>) -> TracerCore {
        TracerCore {
            shared: self.shared.clone(),
            scope: Arc::new(Scope {
                name: name.to_owned(),
                version,
            }),
        }
    }

    /// Starts a span under `parent` (default: the current span). Returns a `Span`, or a `NonRecordingSpan`
    /// when the sampler says no; both are context managers that make the span current and end it.
    #[pyo3(signature = (name, parent=None, kind=None, attributes=None, start_time=None))]
    fn start_span<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
        parent: Option<&Bound<'py, PyAny>>,
        kind: Option<&Bound<'py, PyAny>>,
        attributes: Option<&Bound<'py, PyAny>>,
        start_time: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kind = kind_from_py(kind)?;
        let shared = &self.shared;
        let parent = match parent {
            Some(p) => parent_of(p)?,
            None => match get_current(py)? {
                Some(cur) => {
                    // Inside an unsampled local span, a sampler that follows the parent (or samples nothing)
                    // says no again: the child is a no-op span sharing the parent's context, which it need not
                    // make current (it already is), so it costs one call and no ids. What propagates from
                    // inside it is the same trace with the sampled flag off, as for any unsampled span.
                    if let Ok(nr) = cur.cast::<NonRecordingSpan>() {
                        let c = &nr.get().ctx;
                        if !c.remote && shared.follows_unsampled_parent() {
                            shared.started.fetch_add(1, Ordering::Relaxed);
                            shared.unsampled.fetch_add(1, Ordering::Relaxed);
                            let ctx = Ctx {
                                tracestate: c.tracestate.clone(),
                                baggage: c.baggage.clone(),
                                ..*c
                            };
                            return Ok(Bound::new(
                                py,
                                NonRecordingSpan {
                                    ctx,
                                    tokens: Mutex::new(SmallVec::new()),
                                },
                            )?
                            .into_any());
                        }
                    }
                    parent_of(&cur)?
                }
                None => None,
            },
        };
        shared.started.fetch_add(1, Ordering::Relaxed);
        let trace_id = parent.as_ref().map_or_else(ids::trace_id, |p| p.trace_id);
        let info = parent.as_ref().map(|p| ParentInfo {
            sampled: p.flags & traceparent::FLAG_SAMPLED != 0,
            remote: p.remote,
        });
        let span_id = ids::span_id();
        if !shared.sample(py, trace_id, info, name) {
            shared.unsampled.fetch_add(1, Ordering::Relaxed);
            let ctx = Ctx {
                trace_id,
                span_id,
                flags: 0,
                remote: false,
                tracestate: parent.as_ref().and_then(|p| p.tracestate.clone()),
                baggage: parent.and_then(|p| p.baggage),
            };
            return Ok(Bound::new(
                py,
                NonRecordingSpan {
                    ctx,
                    tokens: Mutex::new(SmallVec::new()),
                },
            )?
            .into_any());
        }
        let mut state = SpanState {
            name: name.to_str()?.to_owned(),
            attributes: Attributes::new(),
            dropped_attributes: 0,
            events: Vec::new(),
            dropped_events: 0,
            status: StatusCode::Unset,
            status_message: String::new(),
            baggage: None,
            tokens: SmallVec::new(),
            record: None,
        };
        if let Some(attrs) = attributes.filter(|a| !a.is_none()) {
            let d = attrs
                .cast::<PyDict>()
                .map_err(|_| PyTypeError::new_err("attributes must be a dict"))?;
            for (k, v) in d.iter() {
                if let Some((k, v)) = shared.convert(py, &k, &v) {
                    core_span::set_attribute(
                        &mut state.attributes,
                        &mut state.dropped_attributes,
                        shared.limits.max_attributes,
                        k,
                        v,
                    );
                }
            }
        }
        let (parent_span_id, parent_remote, tracestate) = match parent {
            Some(p) => {
                state.baggage = p.baggage;
                (p.span_id, p.remote, p.tracestate)
            }
            None => (0, false, None),
        };
        let span = Span {
            trace_id,
            span_id,
            parent_span_id,
            parent_remote,
            tracestate,
            kind,
            start_ns: start_time.unwrap_or_else(now_ns),
            started: Instant::now(),
            shared: shared.clone(),
            scope: self.scope.clone(),
            state: Mutex::new(state),
        };
        Ok(Bound::new(py, span)?.into_any())
    }

    /// Writes `traceparent`, `tracestate` and `baggage` for `context` (default: the current span) into a dict,
    /// a mutable mapping, or a list of (bytes, bytes) pairs; returns the carrier. No current span: unchanged.
    #[pyo3(signature = (headers, context=None))]
    fn inject_context<'py>(
        &self,
        py: Python<'py>,
        headers: Bound<'py, PyAny>,
        context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ctx = match context {
            Some(c) => parent_of(c)?,
            None => match get_current(py)? {
                Some(cur) => parent_of(&cur)?,
                None => None,
            },
        };
        let Some(ctx) = ctx else { return Ok(headers) };
        let tp = traceparent::format(ctx.trace_id, ctx.span_id, ctx.flags & traceparent::FLAG_SAMPLED);
        // Only ASCII hex digits and dashes were written.
        let tp = std::str::from_utf8(&tp).unwrap_or_default();
        let ts = ctx
            .tracestate
            .as_deref()
            .map(tracestate::truncate)
            .filter(|t| !t.is_empty());
        let bg = ctx
            .baggage
            .as_deref()
            .map(|b| baggage::format(b))
            .filter(|b| !b.is_empty());
        if let Ok(list) = headers.cast::<PyList>() {
            list.append((PyBytes::new(py, b"traceparent"), PyBytes::new(py, tp.as_bytes())))?;
            if let Some(ts) = ts {
                list.append((PyBytes::new(py, b"tracestate"), PyBytes::new(py, ts.as_bytes())))?;
            }
            if let Some(bg) = bg {
                list.append((PyBytes::new(py, b"baggage"), PyBytes::new(py, bg.as_bytes())))?;
            }
        } else {
            headers.set_item(intern!(py, "traceparent"), tp)?;
            if let Some(ts) = ts {
                headers.set_item(intern!(py, "tracestate"), ts.as_ref())?;
            }
            if let Some(bg) = bg {
                headers.set_item(intern!(py, "baggage"), bg)?;
            }
        }
        Ok(headers)
    }

    /// Reads an incoming context from a dict, any mapping, or a list of (name, value) pairs (str or bytes, names
    /// case-insensitive). None when traceparent is missing, repeated or invalid; never raises. An invalid
    /// tracestate is discarded (the trace still continues), invalid baggage members are skipped.
    fn extract_context(&self, py: Python<'_>, headers: &Bound<'_, PyAny>) -> Option<SpanContext> {
        // Any Python error while reading odd carriers means "no context", never an exception.
        extract(py, headers).unwrap_or_default()
    }

    /// Waits (without the GIL) until a batch is queued, `wake()` is called, or `timeout` seconds pass.
    fn wait(&self, py: Python<'_>, timeout: f64) -> bool {
        let shared = self.shared.clone();
        let timeout = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        py.detach(move || shared.store.wait(timeout))
    }

    fn wake(&self) {
        self.shared.store.wake();
    }

    /// Turns the export queue on while an export worker runs.
    fn set_exporting(&self, on: bool) {
        self.shared.store.set_exporting(on);
    }

    /// Takes up to `max` finished spans from the export queue.
    fn drain(&self, max: usize) -> Vec<SpanData> {
        self.shared
            .store
            .drain(max)
            .into_iter()
            .map(|r| SpanData {
                record: r,
                shared: self.shared.clone(),
            })
            .collect()
    }

    fn queue_len(&self) -> usize {
        self.shared.store.queue_len()
    }

    /// The buffered finished spans of a trace (hex id), in the order they ended.
    fn get_trace(&self, trace_id: &str) -> Vec<SpanData> {
        let Some(id) = parse_trace_id(trace_id) else {
            return Vec::new();
        };
        self.shared
            .store
            .trace(id)
            .into_iter()
            .map(|r| SpanData {
                record: r,
                shared: self.shared.clone(),
            })
            .collect()
    }

    /// Every buffered finished span, oldest first.
    fn finished_spans(&self) -> Vec<SpanData> {
        self.shared
            .store
            .all()
            .into_iter()
            .map(|r| SpanData {
                record: r,
                shared: self.shared.clone(),
            })
            .collect()
    }

    fn clear_spans(&self) {
        self.shared.store.clear();
    }

    /// Counters: spans started, unsampled, finished, evicted from the buffer, dropped by the full export
    /// queue, invalid attributes dropped, sampler errors.
    fn core_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.shared.store.stats();
        let d = PyDict::new(py);
        d.set_item("spans_started", self.shared.started.load(Ordering::Relaxed))?;
        d.set_item("spans_unsampled", self.shared.unsampled.load(Ordering::Relaxed))?;
        d.set_item("spans_finished", s.finished)?;
        d.set_item("spans_evicted", s.evicted)?;
        d.set_item("spans_queued", s.queued)?;
        d.set_item("queue_dropped", s.queue_dropped)?;
        d.set_item(
            "invalid_attributes",
            self.shared.invalid_attributes.load(Ordering::Relaxed),
        )?;
        d.set_item("sampler_errors", self.shared.sampler_errors.load(Ordering::Relaxed))?;
        Ok(d)
    }

    #[getter]
    fn sampler<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.shared.sampler {
            SamplerImpl::Core(s) => Ok(Bound::new(py, Sampler { inner: s.clone() })?.into_any()),
            SamplerImpl::Custom(o) => Ok(o.bind(py).clone()),
        }
    }
}

fn header_bytes<'a>(v: &'a Bound<'_, PyAny>) -> Option<Cow<'a, [u8]>> {
    if let Ok(s) = v.cast::<PyString>() {
        return s.to_str().ok().map(|s| Cow::Owned(s.as_bytes().to_vec()));
    }
    if let Ok(b) = v.cast::<PyBytes>() {
        return Some(Cow::Borrowed(b.as_bytes()));
    }
    None
}

#[derive(Default)]
struct Found {
    traceparent: Option<Vec<u8>>,
    traceparents: usize,
    tracestate: Option<Vec<u8>>,
    baggage: Option<Vec<u8>>,
}

impl Found {
    fn add(&mut self, name: &[u8], value: &Bound<'_, PyAny>) {
        let append = |slot: &mut Option<Vec<u8>>, v: &[u8]| match slot {
            Some(s) => {
                s.push(b',');
                s.extend_from_slice(v);
            }
            None => *slot = Some(v.to_vec()),
        };
        if name.eq_ignore_ascii_case(b"traceparent") {
            self.traceparents += 1;
            self.traceparent = header_bytes(value).map(|v| v.into_owned());
        } else if name.eq_ignore_ascii_case(b"tracestate") {
            if let Some(v) = header_bytes(value) {
                append(&mut self.tracestate, &v);
            }
        } else if name.eq_ignore_ascii_case(b"baggage") {
            if let Some(v) = header_bytes(value) {
                append(&mut self.baggage, &v);
            }
        }
    }

    fn scan_pair(&mut self, name: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) {
        if let Some(n) = header_bytes(name) {
            if matches!(n.len(), 7 | 10 | 11) {
                self.add(&n, value);
            }
        }
    }
}

fn extract(py: Python<'_>, headers: &Bound<'_, PyAny>) -> PyResult<Option<SpanContext>> {
    let mut found = Found::default();
    if let Ok(d) = headers.cast::<PyDict>() {
        // The common case, lowercase keys, costs three lookups; anything else falls back to a scan.
        if let Some(tp) = d.get_item(intern!(py, "traceparent"))? {
            found.traceparents = 1;
            found.traceparent = header_bytes(&tp).map(|v| v.into_owned());
            if let Some(ts) = d.get_item(intern!(py, "tracestate"))? {
                found.tracestate = header_bytes(&ts).map(|v| v.into_owned());
            }
            if let Some(bg) = d.get_item(intern!(py, "baggage"))? {
                found.baggage = header_bytes(&bg).map(|v| v.into_owned());
            }
        } else {
            for (k, v) in d.iter() {
                found.scan_pair(&k, &v);
            }
        }
    } else if headers.is_instance_of::<PyList>() || headers.is_instance_of::<PyTuple>() {
        for pair in headers.try_iter()? {
            let pair = pair?;
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract()?;
            found.scan_pair(&k, &v);
        }
    } else if headers.hasattr(intern!(py, "items"))? {
        // Mappings, including case-insensitive multi-dicts (Starlette, httpx) that yield repeated names.
        for pair in headers.call_method0(intern!(py, "items"))?.try_iter()? {
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
            found.scan_pair(&k, &v);
        }
    } else {
        return Ok(None);
    }
    if found.traceparents != 1 {
        return Ok(None); // missing, or repeated: the spec says to restart the trace
    }
    let Some(tp) = found.traceparent.as_deref().and_then(traceparent::parse) else {
        return Ok(None);
    };
    let tracestate = found
        .tracestate
        .as_deref()
        .and_then(tracestate::parse)
        .filter(|s| !s.is_empty())
        .map(Arc::from);
    let baggage = found
        .baggage
        .as_deref()
        .map(baggage::parse)
        .filter(|b| !b.is_empty())
        .map(Arc::new);
    Ok(Some(SpanContext {
        trace_id: tp.trace_id,
        span_id: tp.span_id,
        flags: tp.flags & traceparent::FLAG_SAMPLED,
        remote: true,
        tracestate,
        baggage,
    }))
}

// ---------------------------------------------------------------------------------------------------------------
// Span contexts.

#[derive(Clone)]
struct Ctx {
    trace_id: u128,
    span_id: u64,
    flags: u8,
    remote: bool,
    tracestate: Option<Arc<str>>,
    baggage: Option<Arc<Baggage>>,
}

/// An immutable trace context: what `extract_context` returns and `parent=` accepts.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct SpanContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
    remote: bool,
    tracestate: Option<Arc<str>>,
    baggage: Option<Arc<Baggage>>,
}

#[pymethods]
impl SpanContext {
    #[new]
    #[pyo3(signature = (trace_id, span_id, sampled=true, is_remote=true, tracestate=None, baggage=None))]
    fn new(
        trace_id: &str,
        span_id: &str,
        sampled: bool,
        is_remote: bool,
        tracestate: Option<&str>,
        baggage: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let tid = parse_trace_id(trace_id).ok_or_else(|| {
            PyValueError::new_err(format!(
                "trace_id {trace_id:?}: need 32 lowercase hex digits, not all zero"
            ))
        })?;
        let sid = parse_span_id(span_id).ok_or_else(|| {
            PyValueError::new_err(format!(
                "span_id {span_id:?}: need 16 lowercase hex digits, not all zero"
            ))
        })?;
        let tracestate = match tracestate {
            None => None,
            Some(t) => {
                let canon = tracestate::parse(t.as_bytes())
                    .ok_or_else(|| PyValueError::new_err(format!("tracestate {t:?} is invalid")))?;
                if canon.is_empty() {
                    None
                } else {
                    Some(Arc::from(canon))
                }
            }
        };
        Ok(SpanContext {
            trace_id: tid,
            span_id: sid,
            flags: if sampled { traceparent::FLAG_SAMPLED } else { 0 },
            remote: is_remote,
            tracestate,
            baggage: baggage_from_py(baggage)?,
        })
    }

    #[getter]
    fn trace_id(&self) -> String {
        trace_id_hex(self.trace_id)
    }
    #[getter]
    fn span_id(&self) -> String {
        span_id_hex(self.span_id)
    }
    #[getter]
    fn trace_id_int(&self) -> u128 {
        self.trace_id
    }
    #[getter]
    fn span_id_int(&self) -> u64 {
        self.span_id
    }
    #[getter]
    fn trace_flags(&self) -> u8 {
        self.flags
    }
    #[getter]
    fn sampled(&self) -> bool {
        self.flags & traceparent::FLAG_SAMPLED != 0
    }
    #[getter]
    fn is_remote(&self) -> bool {
        self.remote
    }
    #[getter]
    fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }
    #[getter]
    fn baggage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        baggage_to_py(py, self.baggage.as_ref())
    }
    #[getter]
    fn traceparent(&self) -> String {
        String::from_utf8_lossy(&traceparent::format(self.trace_id, self.span_id, self.flags)).into_owned()
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<SpanContext>().is_ok_and(|o| {
            let o = o.get();
            o.trace_id == self.trace_id && o.span_id == self.span_id && o.flags == self.flags && o.remote == self.remote
        })
    }
    fn __hash__(&self) -> u64 {
        (self.trace_id as u64) ^ self.span_id
    }
    fn __repr__(&self) -> String {
        format!(
            "SpanContext(trace_id={:?}, span_id={:?}, sampled={}, is_remote={})",
            self.trace_id(),
            self.span_id(),
            if self.sampled() { "True" } else { "False" },
            if self.remote { "True" } else { "False" }
        )
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Spans.

struct SpanState {
    name: String,
    attributes: Attributes,
    dropped_attributes: u32,
    events: Vec<Event>,
    dropped_events: u32,
    status: StatusCode,
    status_message: String,
    baggage: Option<Arc<Baggage>>,
    /// Context-variable tokens of the `with` blocks this span is current in (almost always 0 or 1).
    tokens: SmallVec<[Py<PyAny>; 1]>,
    /// Set once the span has ended; later calls read it and change nothing.
    record: Option<Arc<SpanRecord>>,
}

/// A sampled, recording span. Use it as a context manager (current inside the block, ended on exit, an
/// exception recorded and re-raised) or call `end()` by hand.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct Span {
    trace_id: u128,
    span_id: u64,
    parent_span_id: u64,
    parent_remote: bool,
    tracestate: Option<Arc<str>>,
    kind: Kind,
    start_ns: u64,
    started: Instant,
    shared: Arc<Shared>,
    scope: Arc<Scope>,
    state: Mutex<SpanState>,
}

impl Span {
    fn set_one(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) {
        let Some((k, v)) = self.shared.convert(py, key, value) else {
            return;
        };
        let mut st = self.state.lock();
        if st.record.is_none() {
            let st = &mut *st;
            core_span::set_attribute(
                &mut st.attributes,
                &mut st.dropped_attributes,
                self.shared.limits.max_attributes,
                k,
                v,
            );
        }
    }

    fn event(
        &self,
        py: Python<'_>,
        name: String,
        attributes: Option<&Bound<'_, PyAny>>,
        time_ns: Option<u64>,
    ) -> PyResult<()> {
        let mut attrs = Attributes::new();
        let mut dropped = 0;
        if let Some(a) = attributes.filter(|a| !a.is_none()) {
            let d = a
                .cast::<PyDict>()
                .map_err(|_| PyTypeError::new_err("event attributes must be a dict"))?;
            for (k, v) in d.iter() {
                if let Some((k, v)) = self.shared.convert(py, &k, &v) {
                    core_span::set_attribute(&mut attrs, &mut dropped, self.shared.limits.max_event_attributes, k, v);
                }
            }
        }
        let time_ns = time_ns.unwrap_or_else(|| self.now());
        let mut st = self.state.lock();
        if st.record.is_some() {
            return Ok(());
        }
        if st.events.len() < self.shared.limits.max_events {
            st.events.push(Event {
                name,
                time_ns,
                attributes: attrs,
                dropped_attributes: dropped,
            });
        } else {
            st.dropped_events = st.dropped_events.saturating_add(1);
        }
        Ok(())
    }

    /// Now, on the span's own clock: the start's wall time plus monotonic elapsed time, so durations never go
    /// negative when the wall clock steps.
    fn now(&self) -> u64 {
        self.start_ns + self.started.elapsed().as_nanos() as u64
    }

    fn exception_event(
        &self,
        py: Python<'_>,
        exc: &Bound<'_, PyAny>,
        extra: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let ty = exc.get_type();
        let type_name = ty.qualname()?.to_string();
        let message = exc.str().map(|s| s.to_string()).unwrap_or_default();
        static FORMAT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let stack = FORMAT
            .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                Ok(py.import("traceback")?.getattr("format_exception")?.unbind())
            })
            .and_then(|f| {
                let tb = exc.getattr(intern!(py, "__traceback__"))?;
                let lines = f.bind(py).call1((ty.clone(), exc, tb))?;
                Ok(PyString::new(py, "")
                    .call_method1(intern!(py, "join"), (lines,))?
                    .to_string())
            })
            .unwrap_or_default();
        let attrs = PyDict::new(py);
        attrs.set_item("exception.type", &type_name)?;
        attrs.set_item("exception.message", &message)?;
        attrs.set_item("exception.stacktrace", stack)?;
        if let Some(extra) = extra.filter(|e| !e.is_none()) {
            attrs.update(extra.cast::<pyo3::types::PyMapping>()?)?;
        }
        self.event(py, "exception".to_owned(), Some(attrs.as_any()), None)?;
        Ok(if message.is_empty() {
            type_name
        } else {
            format!("{type_name}: {message}")
        })
    }

    fn finish(&self, end_ns: Option<u64>) {
        let end_ns = end_ns.unwrap_or_else(|| self.now());
        let record = {
            let mut st = self.state.lock();
            if st.record.is_some() {
                return;
            }
            let record = Arc::new(SpanRecord {
                trace_id: self.trace_id,
                span_id: self.span_id,
                parent_span_id: self.parent_span_id,
                parent_remote: self.parent_remote,
                flags: traceparent::FLAG_SAMPLED,
                tracestate: self.tracestate.clone(),
                name: std::mem::take(&mut st.name),
                kind: self.kind,
                start_ns: self.start_ns,
                end_ns: end_ns.max(self.start_ns),
                attributes: std::mem::take(&mut st.attributes),
                dropped_attributes: st.dropped_attributes,
                events: std::mem::take(&mut st.events),
                dropped_events: st.dropped_events,
                status: st.status,
                status_message: std::mem::take(&mut st.status_message),
                scope: self.scope.clone(),
            });
            st.record = Some(record.clone());
            record
        };
        self.shared.store.push(record);
    }

    fn read<T>(&self, f: impl FnOnce(Option<&SpanRecord>, &SpanState) -> T) -> T {
        let st = self.state.lock();
        f(st.record.as_deref(), &st)
    }
}

#[pymethods]
impl Span {
    #[getter]
    fn trace_id(&self) -> String {
        trace_id_hex(self.trace_id)
    }
    #[getter]
    fn span_id(&self) -> String {
        span_id_hex(self.span_id)
    }
    #[getter]
    fn parent_span_id(&self) -> Option<String> {
        (self.parent_span_id != 0).then(|| span_id_hex(self.parent_span_id))
    }
    #[getter]
    fn name(&self) -> String {
        self.read(|r, st| r.map_or_else(|| st.name.clone(), |r| r.name.clone()))
    }
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind.name()
    }
    #[getter]
    fn sampled(&self) -> bool {
        true
    }
    #[getter]
    fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }
    #[getter]
    fn start_time_ns(&self) -> u64 {
        self.start_ns
    }
    #[getter]
    fn end_time_ns(&self) -> Option<u64> {
        self.read(|r, _| r.map(|r| r.end_ns))
    }
    /// Milliseconds from start to end (or to now while the span runs).
    #[getter]
    fn duration_ms(&self) -> f64 {
        let end = self.read(|r, _| r.map(|r| r.end_ns)).unwrap_or_else(|| self.now());
        (end - self.start_ns) as f64 / 1e6
    }
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.read(|r, st| attrs_to_py(py, r.map_or(&st.attributes, |r| &r.attributes)))
    }
    #[getter]
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.read(|r, st| events_to_py(py, r.map_or(&st.events, |r| &r.events)))
    }
    #[getter]
    fn status(&self) -> &'static str {
        self.read(|r, st| r.map_or(st.status, |r| r.status).name())
    }
    #[getter]
    fn status_message(&self) -> String {
        self.read(|r, st| r.map_or_else(|| st.status_message.clone(), |r| r.status_message.clone()))
    }
    #[getter]
    fn context(&self) -> SpanContext {
        SpanContext {
            trace_id: self.trace_id,
            span_id: self.span_id,
            flags: traceparent::FLAG_SAMPLED,
            remote: false,
            tracestate: self.tracestate.clone(),
            baggage: self.state.lock().baggage.clone(),
        }
    }
    #[getter]
    fn baggage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        baggage_to_py(py, self.state.lock().baggage.as_ref())
    }
    #[getter]
    fn is_ended(&self) -> bool {
        self.state.lock().record.is_some()
    }
    fn is_recording(&self) -> bool {
        self.state.lock().record.is_none()
    }

    fn set_attribute(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) {
        self.set_one(py, key, value)
    }

    fn set_attributes(&self, py: Python<'_>, attributes: &Bound<'_, PyAny>) -> PyResult<()> {
        let d = attributes
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err("attributes must be a dict"))?;
        for (k, v) in d.iter() {
            self.set_one(py, &k, &v);
        }
        Ok(())
    }

    #[pyo3(signature = (name, attributes=None, timestamp=None))]
    fn add_event(
        &self,
        py: Python<'_>,
        name: String,
        attributes: Option<&Bound<'_, PyAny>>,
        timestamp: Option<u64>,
    ) -> PyResult<()> {
        self.event(py, name, attributes, timestamp)
    }

    /// Adds an `exception` event (type, message, stack trace) without changing the status.
    #[pyo3(signature = (exception, attributes=None))]
    fn record_exception(
        &self,
        py: Python<'_>,
        exception: &Bound<'_, PyAny>,
        attributes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.exception_event(py, exception, attributes).map(|_| ())
    }

    /// Records `exception` and sets the status to error with its type and message.
    fn set_error(&self, py: Python<'_>, exception: &Bound<'_, PyAny>) -> PyResult<()> {
        let description = self.exception_event(py, exception, None)?;
        let mut st = self.state.lock();
        if st.record.is_none() {
            st.status = StatusCode::Error;
            st.status_message = description;
        }
        Ok(())
    }

    /// Sets the status: "unset", "ok" or "error" (or a StatusCode); the description is kept for errors only.
    #[pyo3(signature = (status, description=None))]
    fn set_status(&self, status: &Bound<'_, PyAny>, description: Option<String>) -> PyResult<()> {
        let code = status_from_py(status)?;
        let mut st = self.state.lock();
        if st.record.is_none() {
            st.status = code;
            st.status_message = if code == StatusCode::Error {
                description.unwrap_or_default()
            } else {
                String::new()
            };
        }
        Ok(())
    }

    fn update_name(&self, name: String) {
        let mut st = self.state.lock();
        if st.record.is_none() {
            st.name = name;
        }
    }

    /// Sets a baggage entry that child spans inherit and `inject_context` propagates.
    fn set_baggage_item(&self, key: String, value: String) {
        let mut st = self.state.lock();
        let mut b: Baggage = st.baggage.as_deref().cloned().unwrap_or_default();
        match b.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = value,
            None => b.push((key, value)),
        }
        st.baggage = Some(Arc::new(b));
    }

    fn get_baggage_item(&self, key: &str) -> Option<String> {
        self.state
            .lock()
            .baggage
            .as_ref()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Ends the span (idempotent): its record goes to the tracer's buffer and export queue.
    #[pyo3(signature = (end_time=None))]
    fn end(&self, end_time: Option<u64>) {
        self.finish(end_time)
    }

    /// The finished record, once ended.
    fn to_span_data(&self) -> Option<SpanData> {
        self.state.lock().record.clone().map(|r| SpanData {
            record: r,
            shared: self.shared.clone(),
        })
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let token = set_current(slf.py(), slf.as_any())?;
        slf.get().state.lock().tokens.push(token.unbind());
        Ok(slf.clone())
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        if !exc.is_none() {
            // Recording must never replace the user's exception with ours.
            if let Err(e) = self.set_error(py, exc) {
                drop(e);
            }
        }
        let token = self.state.lock().tokens.pop();
        if let Some(token) = token {
            reset_current(py, token.bind(py));
        }
        self.finish(None);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "Span(name={:?}, trace_id={:?}, span_id={:?})",
            self.name(),
            self.trace_id(),
            self.span_id()
        )
    }
}

fn events_to_py<'py>(py: Python<'py>, events: &[Event]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for e in events {
        let d = PyDict::new(py);
        d.set_item("name", &e.name)?;
        d.set_item("timestamp_ns", e.time_ns)?;
        d.set_item("attributes", attrs_to_py(py, &e.attributes)?)?;
        if e.dropped_attributes > 0 {
            d.set_item("dropped_attributes", e.dropped_attributes)?;
        }
        out.append(d)?;
    }
    Ok(out)
}

/// An unsampled span: records nothing, but is current inside its block so its context (sampled flag off)
/// still propagates and its children share its trace id.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct NonRecordingSpan {
    ctx: Ctx,
    /// One entry per `with` block: the token to restore, or None when the span was already current.
    tokens: Mutex<SmallVec<[Option<Py<PyAny>>; 1]>>,
}

// The setters accept and ignore what a recording span would take.
#[pymethods]
#[allow(unused_variables)]
impl NonRecordingSpan {
    /// A non-recording span standing for `context` (an incoming or foreign span), so it can be made current.
    #[staticmethod]
    fn from_context(context: &Bound<'_, SpanContext>) -> NonRecordingSpan {
        let c = context.get();
        NonRecordingSpan {
            ctx: Ctx {
                trace_id: c.trace_id,
                span_id: c.span_id,
                flags: c.flags,
                remote: c.remote,
                tracestate: c.tracestate.clone(),
                baggage: c.baggage.clone(),
            },
            tokens: Mutex::new(SmallVec::new()),
        }
    }
    #[getter]
    fn trace_id(&self) -> String {
        trace_id_hex(self.ctx.trace_id)
    }
    #[getter]
    fn span_id(&self) -> String {
        span_id_hex(self.ctx.span_id)
    }
    #[getter]
    fn parent_span_id(&self) -> Option<String> {
        None
    }
    #[getter]
    fn name(&self) -> &'static str {
        ""
    }
    #[getter]
    fn sampled(&self) -> bool {
        self.ctx.flags & traceparent::FLAG_SAMPLED != 0
    }
    #[getter]
    fn tracestate(&self) -> Option<&str> {
        self.ctx.tracestate.as_deref()
    }
    #[getter]
    fn context(&self) -> SpanContext {
        SpanContext {
            trace_id: self.ctx.trace_id,
            span_id: self.ctx.span_id,
            flags: self.ctx.flags,
            remote: self.ctx.remote,
            tracestate: self.ctx.tracestate.clone(),
            baggage: self.ctx.baggage.clone(),
        }
    }
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> Bound<'py, PyDict> {
        PyDict::new(py)
    }
    #[getter]
    fn baggage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        baggage_to_py(py, self.ctx.baggage.as_ref())
    }
    #[getter]
    fn status(&self) -> &'static str {
        "unset"
    }
    fn is_recording(&self) -> bool {
        false
    }
    fn set_attribute(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) {}
    fn set_attributes(&self, attributes: &Bound<'_, PyAny>) {}
    #[pyo3(signature = (name, attributes=None, timestamp=None))]
    fn add_event(
        &self,
        name: &Bound<'_, PyAny>,
        attributes: Option<&Bound<'_, PyAny>>,
        timestamp: Option<&Bound<'_, PyAny>>,
    ) {
    }
    #[pyo3(signature = (exception, attributes=None))]
    fn record_exception(&self, exception: &Bound<'_, PyAny>, attributes: Option<&Bound<'_, PyAny>>) {}
    fn set_error(&self, exception: &Bound<'_, PyAny>) {}
    #[pyo3(signature = (status, description=None))]
    fn set_status(&self, status: &Bound<'_, PyAny>, description: Option<&Bound<'_, PyAny>>) {}
    fn update_name(&self, name: &Bound<'_, PyAny>) {}
    fn set_baggage_item(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) {}
    fn get_baggage_item(&self, key: &str) -> Option<String> {
        self.ctx
            .baggage
            .as_ref()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
    #[pyo3(signature = (end_time=None))]
    fn end(&self, end_time: Option<&Bound<'_, PyAny>>) {}
    fn to_span_data(&self) -> Option<SpanData> {
        None
    }
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let py = slf.py();
        // A child sharing its unsampled parent's context need not replace it.
        let me = &slf.get().ctx;
        let already = get_current(py)?.is_some_and(|cur| {
            cur.is(slf)
                || cur.cast::<NonRecordingSpan>().is_ok_and(|c| {
                    let c = &c.get().ctx;
                    c.trace_id == me.trace_id && c.span_id == me.span_id && !c.remote
                })
        });
        let token = if already {
            None
        } else {
            Some(set_current(py, slf.as_any())?.unbind())
        };
        slf.get().tokens.lock().push(token);
        Ok(slf.clone())
    }
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        let token = self.tokens.lock().pop();
        if let Some(Some(token)) = token {
            reset_current(py, token.bind(py));
        }
        false
    }
    fn __repr__(&self) -> String {
        format!(
            "NonRecordingSpan(trace_id={:?}, span_id={:?})",
            self.trace_id(),
            self.span_id()
        )
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Finished spans, as exporters see them.

/// A finished span, read-only: what exporters receive and `get_trace` returns.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct SpanData {
    record: Arc<SpanRecord>,
    shared: Arc<Shared>,
}

#[pymethods]
impl SpanData {
    #[getter]
    fn name(&self) -> &str {
        &self.record.name
    }
    #[getter]
    fn trace_id(&self) -> String {
        trace_id_hex(self.record.trace_id)
    }
    #[getter]
    fn span_id(&self) -> String {
        span_id_hex(self.record.span_id)
    }
    #[getter]
    fn parent_span_id(&self) -> Option<String> {
        (self.record.parent_span_id != 0).then(|| span_id_hex(self.record.parent_span_id))
    }
    /// Raw 16-byte / 8-byte ids, as OTLP wants them.
    #[getter]
    fn trace_id_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.record.trace_id.to_be_bytes())
    }
    #[getter]
    fn span_id_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.record.span_id.to_be_bytes())
    }
    #[getter]
    fn parent_span_id_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        if self.record.parent_span_id == 0 {
            PyBytes::new(py, b"")
        } else {
            PyBytes::new(py, &self.record.parent_span_id.to_be_bytes())
        }
    }
    #[getter]
    fn parent_is_remote(&self) -> bool {
        self.record.parent_remote
    }
    #[getter]
    fn trace_flags(&self) -> u8 {
        self.record.flags
    }
    #[getter]
    fn tracestate(&self) -> Option<&str> {
        self.record.tracestate.as_deref()
    }
    #[getter]
    fn kind(&self) -> &'static str {
        self.record.kind.name()
    }
    /// OpenTelemetry's SpanKind index (internal 0 ... consumer 4); OTLP's enum is this plus one.
    #[getter]
    fn kind_index(&self) -> u8 {
        self.record.kind as u8
    }
    #[getter]
    fn start_time_ns(&self) -> u64 {
        self.record.start_ns
    }
    #[getter]
    fn end_time_ns(&self) -> u64 {
        self.record.end_ns
    }
    #[getter]
    fn duration_ms(&self) -> f64 {
        (self.record.end_ns - self.record.start_ns) as f64 / 1e6
    }
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        attrs_to_py(py, &self.record.attributes)
    }
    #[getter]
    fn dropped_attributes(&self) -> u32 {
        self.record.dropped_attributes
    }
    #[getter]
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        events_to_py(py, &self.record.events)
    }
    #[getter]
    fn dropped_events(&self) -> u32 {
        self.record.dropped_events
    }
    #[getter]
    fn status(&self) -> &'static str {
        self.record.status.name()
    }
    #[getter]
    fn status_message(&self) -> &str {
        &self.record.status_message
    }
    #[getter]
    fn scope_name(&self) -> &str {
        &self.record.scope.name
    }
    #[getter]
    fn scope_version(&self) -> Option<&str> {
        self.record.scope.version.as_deref()
    }
    #[getter]
    fn service_name(&self) -> &str {
        &self.shared.service_name
    }

    /// A JSON-ready dict of the span (the JSON lines exporter writes one per line).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("name", self.name())?;
        d.set_item("trace_id", self.trace_id())?;
        d.set_item("span_id", self.span_id())?;
        d.set_item("parent_span_id", self.parent_span_id())?;
        d.set_item("kind", self.kind())?;
        d.set_item("start_time_unix_nano", self.record.start_ns)?;
        d.set_item("end_time_unix_nano", self.record.end_ns)?;
        d.set_item("duration_ms", self.duration_ms())?;
        d.set_item("attributes", self.attributes(py)?)?;
        d.set_item("events", self.events(py)?)?;
        let status = PyDict::new(py);
        status.set_item("code", self.status())?;
        status.set_item("message", self.status_message())?;
        d.set_item("status", status)?;
        d.set_item("tracestate", self.tracestate())?;
        d.set_item("service_name", self.service_name())?;
        d.set_item("scope", self.scope_name())?;
        if self.record.dropped_attributes > 0 || self.record.dropped_events > 0 {
            d.set_item("dropped_attributes", self.record.dropped_attributes)?;
            d.set_item("dropped_events", self.record.dropped_events)?;
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "SpanData(name={:?}, trace_id={:?}, span_id={:?})",
            self.record.name,
            self.trace_id(),
            self.span_id()
        )
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Samplers.

/// A built-in head sampler; see tracing.py for the public constructors.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct Sampler {
    inner: CoreSampler,
}

#[pymethods]
impl Sampler {
    #[staticmethod]
    fn always_on() -> Sampler {
        Sampler {
            inner: CoreSampler::AlwaysOn,
        }
    }
    #[staticmethod]
    fn always_off() -> Sampler {
        Sampler {
            inner: CoreSampler::AlwaysOff,
        }
    }
    #[staticmethod]
    fn trace_id_ratio(ratio: f64) -> PyResult<Sampler> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(PyValueError::new_err(format!(
                "sampler ratio {ratio} must be within [0, 1]"
            )));
        }
        Ok(Sampler {
            inner: CoreSampler::ratio(ratio),
        })
    }
    #[staticmethod]
    fn parent_based(root: &Bound<'_, Sampler>) -> Sampler {
        Sampler {
            inner: CoreSampler::ParentBased {
                root: Box::new(root.get().inner.clone()),
            },
        }
    }
    /// The decision for a trace id (hex) and the parent's sampled flag (None for a root).
    #[pyo3(signature = (trace_id, parent_sampled=None, name=None))]
    fn should_sample(
        &self,
        trace_id: &str,
        parent_sampled: Option<bool>,
        name: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = name;
        let id = parse_trace_id(trace_id)
            .ok_or_else(|| PyValueError::new_err(format!("trace_id {trace_id:?} is invalid")))?;
        Ok(self
            .inner
            .should_sample(id, parent_sampled.map(|sampled| ParentInfo { sampled, remote: false })))
    }
    #[getter]
    fn description(&self) -> String {
        self.inner.describe()
    }
    fn __repr__(&self) -> String {
        format!("Sampler({})", self.inner.describe())
    }
}
