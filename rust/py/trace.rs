//! Python bindings of rust/trace/: the tracer core, spans, span contexts, samplers, finished-span data.
//!
//! One crossing per user operation: `start_span` resolves the parent from the context variable, samples, draws
//! ids and builds the span in one call; `__exit__` ends it, restores the context and stores the record.

mod context;
mod convert;
mod current;
mod data;
mod non_recording;
mod propagation;
mod sampler;
mod shared;
mod span;
mod tracer;

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

use context::*;
use convert::*;
use current::*;
use data::*;
use non_recording::*;
use propagation::*;
use sampler::*;
use shared::*;
use span::*;
use tracer::*;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TracerCore>()?;
    m.add_class::<Span>()?;
    m.add_class::<NonRecordingSpan>()?;
    m.add_class::<SpanContext>()?;
    m.add_class::<SpanData>()?;
    m.add_class::<Sampler>()?;
    m.add_class::<_NoopContext>()?;
    m.add_function(wrap_pyfunction!(_noop_trace, m)?)?;
    m.add_function(wrap_pyfunction!(current_span, m)?)?;
    m.add_function(wrap_pyfunction!(_set_current_span, m)?)?;
    m.add_function(wrap_pyfunction!(_reset_current_span, m)?)?;
    m.add_function(wrap_pyfunction!(_reseed_ids, m)?)?;
    m.add_function(wrap_pyfunction!(_random_trace_id, m)?)?;
    m.add("CURRENT_SPAN", current_var(m.py())?.clone_ref(m.py()))?;
    Ok(())
}
