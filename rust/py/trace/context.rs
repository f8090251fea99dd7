//! SpanContext: the immutable trace context that `extract_context` returns and `parent=` accepts.

use super::convert::{baggage_from_py, baggage_to_py};
use crate::trace::baggage::Baggage;
use crate::trace::hex::{parse_span_id, parse_trace_id, span_id_hex, trace_id_hex};
use crate::trace::{traceparent, tracestate};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Arc;

/// A span's trace context: what a SpanContext holds, a NonRecordingSpan carries and a new span inherits.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) flags: u8,
    pub(crate) remote: bool,
    pub(crate) tracestate: Option<Arc<str>>,
    pub(crate) baggage: Option<Arc<Baggage>>,
}

/// An immutable trace context: what `extract_context` returns and `parent=` accepts.
#[pyclass(frozen, module = "victor_observability.tracing")]
pub struct SpanContext {
    pub(crate) ctx: Ctx,
}

#[pymethods]
impl SpanContext {
    #[new]
    #[pyo3(signature = (trace_id, span_id, sampled=true, is_remote=true, tracestate=None, baggage=None))]
    pub(crate) fn new(
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
            ctx: Ctx {
                trace_id: tid,
                span_id: sid,
                flags: if sampled { traceparent::FLAG_SAMPLED } else { 0 },
                remote: is_remote,
                tracestate,
                baggage: baggage_from_py(baggage)?,
            },
        })
    }

    #[getter]
    pub(crate) fn trace_id(&self) -> String {
        trace_id_hex(self.ctx.trace_id)
    }
    #[getter]
    pub(crate) fn span_id(&self) -> String {
        span_id_hex(self.ctx.span_id)
    }
    #[getter]
    pub(crate) fn trace_id_int(&self) -> u128 {
        self.ctx.trace_id
    }
    #[getter]
    pub(crate) fn span_id_int(&self) -> u64 {
        self.ctx.span_id
    }
    #[getter]
    pub(crate) fn trace_flags(&self) -> u8 {
        self.ctx.flags
    }
    #[getter]
    pub(crate) fn sampled(&self) -> bool {
        self.ctx.flags & traceparent::FLAG_SAMPLED != 0
    }
    #[getter]
    pub(crate) fn is_remote(&self) -> bool {
        self.ctx.remote
    }
    #[getter]
    pub(crate) fn tracestate(&self) -> Option<&str> {
        self.ctx.tracestate.as_deref()
    }
    #[getter]
    pub(crate) fn baggage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        baggage_to_py(py, self.ctx.baggage.as_ref())
    }
    #[getter]
    pub(crate) fn traceparent(&self) -> String {
        String::from_utf8_lossy(&traceparent::format(
            self.ctx.trace_id,
            self.ctx.span_id,
            self.ctx.flags,
        ))
        .into_owned()
    }
    pub(crate) fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<SpanContext>().is_ok_and(|o| {
            let (o, me) = (&o.get().ctx, &self.ctx);
            o.trace_id == me.trace_id && o.span_id == me.span_id && o.flags == me.flags && o.remote == me.remote
        })
    }
    pub(crate) fn __hash__(&self) -> u64 {
        (self.ctx.trace_id as u64) ^ self.ctx.span_id
    }
    pub(crate) fn __repr__(&self) -> String {
        format!(
            "SpanContext(trace_id={:?}, span_id={:?}, sampled={}, is_remote={})",
            self.trace_id(),
            self.span_id(),
            if self.sampled() { "True" } else { "False" },
            if self.ctx.remote { "True" } else { "False" }
        )
    }
}
