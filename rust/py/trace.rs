//! Python bindings of rust/trace/: the tracer core, spans, span contexts, samplers, finished-span data.
//!
//! One crossing per user operation: `start_span` resolves the parent from the context variable, samples, draws
//! ids and builds the span in one call; `__exit__` ends it, restores the context and stores the record.

mod context;
mod convert;
mod current;
mod data;
mod export;
mod non_recording;
mod propagation;
mod sampler;
mod shared;
mod span;
mod tracer;

use context::SpanContext;
use current::{_random_trace_id, _reseed_ids, attach_span, current_span, current_var, detach_span};
/// Exemplar sources for the metrics bindings.
pub(crate) use current::{current_sampled_ids, reset_current, sampled_ids};
use data::SpanData;
use export::{OtlpHttpConnection, SpanBatch};
use non_recording::NonRecordingSpan;
use pyo3::prelude::*;
use sampler::{ParentBasedSampler, Sampler, TraceIdRatioSampler};
pub(crate) use span::Span;
pub(crate) use tracer::TracerCore;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TracerCore>()?;
    m.add_class::<Span>()?;
    m.add_class::<NonRecordingSpan>()?;
    m.add_class::<SpanContext>()?;
    m.add_class::<SpanData>()?;
    m.add_class::<SpanBatch>()?;
    m.add_class::<OtlpHttpConnection>()?;
    m.add_class::<Sampler>()?;
    m.add_class::<TraceIdRatioSampler>()?;
    m.add_class::<ParentBasedSampler>()?;
    m.add_function(wrap_pyfunction!(current_span, m)?)?;
    m.add_function(wrap_pyfunction!(attach_span, m)?)?;
    m.add_function(wrap_pyfunction!(detach_span, m)?)?;
    m.add_function(wrap_pyfunction!(_reseed_ids, m)?)?;
    m.add_function(wrap_pyfunction!(_random_trace_id, m)?)?;
    m.add("CURRENT_SPAN", current_var(m.py())?.clone_ref(m.py()))?;
    Ok(())
}
