//! SpanData: a finished span, read-only, as exporters and `get_trace` see it.

use super::convert::attrs_to_py;
use super::shared::Shared;
use super::span::{events_to_py, links_to_py};
use crate::trace::hex::{span_id_hex, trace_id_hex};
use crate::trace::span::SpanRecord;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::sync::Arc;

/// A finished span, read-only: what exporters receive and `get_trace` returns.
#[pyclass(frozen, module = "victor_observability.tracing")]
pub struct SpanData {
    pub(crate) record: Arc<SpanRecord>,
    pub(crate) shared: Arc<Shared>,
}

#[pymethods]
impl SpanData {
    #[getter]
    pub(crate) fn name(&self) -> &str {
        &self.record.name
    }
    #[getter]
    pub(crate) fn trace_id(&self) -> String {
        trace_id_hex(self.record.trace_id)
    }
    #[getter]
    pub(crate) fn span_id(&self) -> String {
        span_id_hex(self.record.span_id)
    }
    #[getter]
    pub(crate) fn parent_span_id(&self) -> Option<String> {
        (self.record.parent_span_id != 0).then(|| span_id_hex(self.record.parent_span_id))
    }
    /// Raw 16-byte / 8-byte ids, as OTLP wants them.
    #[getter]
    pub(crate) fn trace_id_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.record.trace_id.to_be_bytes())
    }
    #[getter]
    pub(crate) fn span_id_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.record.span_id.to_be_bytes())
    }
    #[getter]
    pub(crate) fn parent_span_id_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        if self.record.parent_span_id == 0 {
            PyBytes::new(py, b"")
        } else {
            PyBytes::new(py, &self.record.parent_span_id.to_be_bytes())
        }
    }
    #[getter]
    pub(crate) fn parent_is_remote(&self) -> bool {
        self.record.parent_remote
    }
    #[getter]
    pub(crate) fn trace_flags(&self) -> u8 {
        self.record.flags
    }
    #[getter]
    pub(crate) fn tracestate(&self) -> Option<&str> {
        self.record.tracestate.as_deref()
    }
    #[getter]
    pub(crate) fn kind(&self) -> &'static str {
        self.record.kind.name()
    }
    /// OpenTelemetry's SpanKind index (internal 0 ... consumer 4); OTLP's enum is this plus one.
    #[getter]
    pub(crate) fn kind_index(&self) -> u8 {
        self.record.kind as u8
    }
    #[getter]
    pub(crate) fn start_time_ns(&self) -> u64 {
        self.record.start_ns
    }
    #[getter]
    pub(crate) fn end_time_ns(&self) -> u64 {
        self.record.end_ns
    }
    #[getter]
    pub(crate) fn duration_ms(&self) -> f64 {
        (self.record.end_ns - self.record.start_ns) as f64 / 1e6
    }
    #[getter]
    pub(crate) fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        attrs_to_py(py, &self.record.attributes)
    }
    #[getter]
    pub(crate) fn dropped_attributes(&self) -> u32 {
        self.record.dropped_attributes
    }
    #[getter]
    pub(crate) fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        events_to_py(py, &self.record.events)
    }
    #[getter]
    pub(crate) fn dropped_events(&self) -> u32 {
        self.record.dropped_events
    }
    /// The spans this one links to: dicts of trace_id, span_id, attributes (and dropped_attributes if any).
    #[getter]
    pub(crate) fn links<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        links_to_py(py, &self.record.links)
    }
    #[getter]
    pub(crate) fn dropped_links(&self) -> u32 {
        self.record.dropped_links
    }
    #[getter]
    pub(crate) fn status(&self) -> &'static str {
        self.record.status.name()
    }
    #[getter]
    pub(crate) fn status_message(&self) -> &str {
        &self.record.status_message
    }
    #[getter]
    pub(crate) fn scope_name(&self) -> &str {
        &self.record.scope.name
    }
    #[getter]
    pub(crate) fn scope_version(&self) -> Option<&str> {
        self.record.scope.version.as_deref()
    }
    #[getter]
    pub(crate) fn service_name(&self) -> &str {
        &self.shared.service_name
    }

    /// A JSON-ready dict of the span (the JSON lines exporter writes one per line).
    pub(crate) fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
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
        // Only when there are links, so the lines of spans without them stay what they always were.
        if !self.record.links.is_empty() {
            d.set_item("links", self.links(py)?)?;
        }
        Ok(d)
    }

    pub(crate) fn __repr__(&self) -> String {
        format!(
            "SpanData(name={:?}, trace_id={:?}, span_id={:?})",
            self.record.name,
            self.trace_id(),
            self.span_id()
        )
    }
}
