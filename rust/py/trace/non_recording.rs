//! NonRecordingSpan: an unsampled span that records nothing but still carries its context.

use super::context::{Ctx, SpanContext};
use super::convert::baggage_to_py;
use super::current::{get_current, reset_current, set_current};
use super::data::SpanData;
use crate::trace::hex::{span_id_hex, trace_id_hex};
use crate::trace::traceparent;
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use smallvec::SmallVec;

/// An unsampled span: records nothing, but is current inside its block so its context (sampled flag off)
/// still propagates and its children share its trace id.
#[pyclass(frozen, module = "victor_observability.tracing")]
pub struct NonRecordingSpan {
    pub(crate) ctx: Ctx,
    /// Made for a child of an unsampled span, sharing its context: entering it usually changes nothing.
    pub(crate) shares_parent: bool,
    /// One entry per `with` block: the token to restore, or None when the span was already current.
    pub(crate) tokens: Mutex<SmallVec<[Option<Py<PyAny>>; 1]>>,
}

// The setters accept and ignore what a recording span would take.
#[pymethods]
#[allow(unused_variables)]
impl NonRecordingSpan {
    /// A non-recording span standing for `context` (an incoming or foreign span), so it can be made current.
    #[staticmethod]
    pub(crate) fn from_context(context: &Bound<'_, SpanContext>) -> NonRecordingSpan {
        NonRecordingSpan {
            ctx: context.get().ctx.clone(),
            shares_parent: false,
            tokens: Mutex::new(SmallVec::new()),
        }
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
    pub(crate) fn parent_span_id(&self) -> Option<String> {
        None
    }
    #[getter]
    pub(crate) fn name(&self) -> &'static str {
        ""
    }
    #[getter]
    pub(crate) fn sampled(&self) -> bool {
        self.ctx.flags & traceparent::FLAG_SAMPLED != 0
    }
    #[getter]
    pub(crate) fn tracestate(&self) -> Option<&str> {
        self.ctx.tracestate.as_deref()
    }
    #[getter]
    pub(crate) fn context(&self) -> SpanContext {
        SpanContext { ctx: self.ctx.clone() }
    }
    #[getter]
    pub(crate) fn attributes<'py>(&self, py: Python<'py>) -> Bound<'py, PyDict> {
        PyDict::new(py)
    }
    #[getter]
    pub(crate) fn baggage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        baggage_to_py(py, self.ctx.baggage.as_ref())
    }
    #[getter]
    pub(crate) fn status(&self) -> &'static str {
        "unset"
    }
    pub(crate) fn is_recording(&self) -> bool {
        false
    }
    pub(crate) fn set_attribute(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) {}
    pub(crate) fn set_attributes(&self, attributes: &Bound<'_, PyAny>) {}
    #[pyo3(signature = (name, attributes=None, timestamp=None))]
    pub(crate) fn add_event(
        &self,
        name: &Bound<'_, PyAny>,
        attributes: Option<&Bound<'_, PyAny>>,
        timestamp: Option<&Bound<'_, PyAny>>,
    ) {
    }
    #[pyo3(signature = (context, attributes=None))]
    pub(crate) fn add_link(&self, context: &Bound<'_, PyAny>, attributes: Option<&Bound<'_, PyAny>>) {}
    #[pyo3(signature = (exception, attributes=None))]
    pub(crate) fn record_exception(&self, exception: &Bound<'_, PyAny>, attributes: Option<&Bound<'_, PyAny>>) {}
    pub(crate) fn set_error(&self, exception: &Bound<'_, PyAny>) {}
    #[pyo3(signature = (status, description=None))]
    pub(crate) fn set_status(&self, status: &Bound<'_, PyAny>, description: Option<&Bound<'_, PyAny>>) {}
    pub(crate) fn update_name(&self, name: &Bound<'_, PyAny>) {}
    pub(crate) fn set_baggage_item(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) {}
    pub(crate) fn get_baggage_item(&self, key: &str) -> Option<String> {
        self.ctx
            .baggage
            .as_ref()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
    #[pyo3(signature = (end_time=None))]
    pub(crate) fn end(&self, end_time: Option<&Bound<'_, PyAny>>) {}
    #[pyo3(signature = (method, path, scheme, status, route=None, server_address=None, user_agent=None))]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn end_http_server(
        &self,
        method: &Bound<'_, PyAny>,
        path: &Bound<'_, PyAny>,
        scheme: &Bound<'_, PyAny>,
        status: &Bound<'_, PyAny>,
        route: Option<&Bound<'_, PyAny>>,
        server_address: Option<&Bound<'_, PyAny>>,
        user_agent: Option<&Bound<'_, PyAny>>,
    ) {
    }
    pub(crate) fn to_span_data(&self) -> Option<SpanData> {
        None
    }
    pub(crate) fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let py = slf.py();
        // A child sharing its unsampled parent's context need not replace it.
        let me = &slf.get().ctx;
        let already = slf.get().shares_parent
            && get_current(py)?.is_some_and(|cur| {
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
    pub(crate) fn __exit__(
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
    pub(crate) fn __repr__(&self) -> String {
        format!(
            "NonRecordingSpan(trace_id={:?}, span_id={:?})",
            self.trace_id(),
            self.span_id()
        )
    }
}
