//! Span (recording): a context manager that can also be ended by hand; its unsampled twin is in non_recording.rs.

use super::context::{Ctx, SpanContext};
use super::convert::{as_dict, attrs_to_py, baggage_to_py, status_from_py};
use super::current::{reset_current, set_current};
use super::data::SpanData;
use super::shared::{parent_of, Shared};
use crate::trace::baggage::Baggage;
use crate::trace::hex::{span_id_hex, trace_id_hex};
use crate::trace::span::{
    self as core_span, AttrValue, Attributes, Event, Kind, Link, Scope, SpanRecord, StatusCode, Text,
};
use parking_lot::Mutex;
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString};
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct SpanState {
    pub(crate) name: Text,
    pub(crate) attributes: Attributes,
    pub(crate) dropped_attributes: u32,
    pub(crate) events: Vec<Event>,
    pub(crate) dropped_events: u32,
    pub(crate) links: Vec<Link>,
    pub(crate) dropped_links: u32,
    pub(crate) status: StatusCode,
    pub(crate) status_message: String,
    pub(crate) baggage: Option<Arc<Baggage>>,
    /// Context-variable tokens of the `with` blocks this span is current in (almost always 0 or 1).
    pub(crate) tokens: SmallVec<[Py<PyAny>; 1]>,
    /// Set once the span has ended; later calls read it and change nothing.
    pub(crate) record: Option<Arc<SpanRecord>>,
}

/// A sampled, recording span. Use it as a context manager (current inside the block, ended on exit, an
/// exception recorded and re-raised) or call `end()` by hand.
#[pyclass(frozen, module = "victor_observability.tracing")]
pub struct Span {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) parent_span_id: u64,
    pub(crate) parent_remote: bool,
    /// Sampled, plus the random bit when the trace id is ours or the parent said it is random.
    pub(crate) flags: u8,
    pub(crate) tracestate: Option<Arc<str>>,
    pub(crate) kind: Kind,
    pub(crate) start_ns: u64,
    pub(crate) started: Instant,
    pub(crate) shared: Arc<Shared>,
    pub(crate) scope: Arc<Scope>,
    // Fork safety: held only to copy or update plain Rust fields, never across a GIL release or a Python call
    // (Python objects are built after it is released), so a fork, taken with the GIL, never finds it held.
    pub(crate) state: Mutex<SpanState>,
}

impl Span {
    /// This span's context, as its SpanContext reports it and its children inherit it.
    pub(crate) fn ctx(&self) -> Ctx {
        Ctx {
            trace_id: self.trace_id,
            span_id: self.span_id,
            flags: self.flags,
            remote: false,
            tracestate: self.tracestate.clone(),
            baggage: self.state.lock().baggage.clone(),
        }
    }

    pub(crate) fn set_one(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) {
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

    pub(crate) fn event(
        &self,
        py: Python<'_>,
        name: String,
        attributes: Option<&Bound<'_, PyAny>>,
        time_ns: Option<u64>,
    ) -> PyResult<()> {
        let mut attrs = Attributes::new();
        let mut dropped = 0;
        if let Some(a) = attributes.filter(|a| !a.is_none()) {
            let d = as_dict(a)?;
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

    pub(crate) fn link(&self, py: Python<'_>, ctx: &Ctx, attributes: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let mut attrs = Attributes::new();
        let mut dropped = 0;
        if let Some(a) = attributes.filter(|a| !a.is_none()) {
            for (k, v) in as_dict(a)?.iter() {
                if let Some((k, v)) = self.shared.convert(py, &k, &v) {
                    core_span::set_attribute(&mut attrs, &mut dropped, self.shared.limits.max_event_attributes, k, v);
                }
            }
        }
        let mut st = self.state.lock();
        if st.record.is_some() {
            return Ok(());
        }
        // OpenTelemetry's default link limit and per-link attribute limit match its event limits.
        if st.links.len() < self.shared.limits.max_events {
            st.links.push(Link {
                trace_id: ctx.trace_id,
                span_id: ctx.span_id,
                flags: ctx.flags,
                remote: ctx.remote,
                tracestate: ctx.tracestate.clone(),
                attributes: attrs,
                dropped_attributes: dropped,
            });
        } else {
            st.dropped_links = st.dropped_links.saturating_add(1);
        }
        Ok(())
    }

    /// Now, on the span's own clock: the start's wall time plus monotonic elapsed time, so durations never go
    /// negative when the wall clock steps.
    pub(crate) fn now(&self) -> u64 {
        self.start_ns + self.started.elapsed().as_nanos() as u64
    }

    pub(crate) fn exception_event(
        &self,
        py: Python<'_>,
        exc: &Bound<'_, PyAny>,
        extra: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let ty = exc.get_type();
        let type_name = ty.qualname()?.to_string();
        let message = exc.str().map(|s| s.to_string()).unwrap_or_default();
        static FORMAT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        // get + set, not get_or_try_init: see warn_once in convert.rs (no Python runs inside the once-lock).
        if FORMAT.get(py).is_none() {
            if let Ok(f) = py.import("traceback").and_then(|m| m.getattr("format_exception")) {
                let _ = FORMAT.set(py, f.unbind());
            }
        }
        let stack = FORMAT
            .get(py)
            .ok_or_else(|| PyErr::new::<pyo3::exceptions::PyRuntimeError, _>("traceback unavailable"))
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

    pub(crate) fn finish(&self, end_ns: Option<u64>) {
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
                flags: self.flags,
                tracestate: self.tracestate.clone(),
                name: std::mem::take(&mut st.name),
                kind: self.kind,
                start_ns: self.start_ns,
                end_ns: end_ns.max(self.start_ns),
                attributes: std::mem::take(&mut st.attributes),
                dropped_attributes: st.dropped_attributes,
                events: std::mem::take(&mut st.events),
                dropped_events: st.dropped_events,
                links: std::mem::take(&mut st.links),
                dropped_links: st.dropped_links,
                status: st.status,
                status_message: std::mem::take(&mut st.status_message),
                scope: self.scope.clone(),
            });
            st.record = Some(record.clone());
            record
        };
        self.shared.store.push(record);
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(Option<&SpanRecord>, &SpanState) -> T) -> T {
        let st = self.state.lock();
        f(st.record.as_deref(), &st)
    }
}

#[pymethods]
impl Span {
    #[getter]
    pub(crate) fn trace_id(&self) -> String {
        trace_id_hex(self.trace_id)
    }
    #[getter]
    pub(crate) fn span_id(&self) -> String {
        span_id_hex(self.span_id)
    }
    #[getter]
    pub(crate) fn parent_span_id(&self) -> Option<String> {
        (self.parent_span_id != 0).then(|| span_id_hex(self.parent_span_id))
    }
    #[getter]
    pub(crate) fn name(&self) -> String {
        self.read(|r, st| r.map_or(&st.name, |r| &r.name).to_string())
    }
    #[getter]
    pub(crate) fn kind(&self) -> &'static str {
        self.kind.name()
    }
    #[getter]
    pub(crate) fn sampled(&self) -> bool {
        true
    }
    #[getter]
    pub(crate) fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }
    #[getter]
    pub(crate) fn start_time_ns(&self) -> u64 {
        self.start_ns
    }
    #[getter]
    pub(crate) fn end_time_ns(&self) -> Option<u64> {
        self.read(|r, _| r.map(|r| r.end_ns))
    }
    /// Milliseconds from start to end (or to now while the span runs).
    #[getter]
    pub(crate) fn duration_ms(&self) -> f64 {
        let end = self.read(|r, _| r.map(|r| r.end_ns)).unwrap_or_else(|| self.now());
        (end - self.start_ns) as f64 / 1e6
    }
    #[getter]
    pub(crate) fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        // Copied out first: building Python objects can run a finalizer that releases the GIL, and the span
        // lock is never held across a GIL release (a fork would then leave the child this span locked).
        let attrs = self.read(|r, st| r.map_or(&st.attributes, |r| &r.attributes).clone());
        attrs_to_py(py, &attrs)
    }
    #[getter]
    pub(crate) fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let events = self.read(|r, st| r.map_or(&st.events, |r| &r.events).clone());
        events_to_py(py, &events)
    }
    #[getter]
    pub(crate) fn status(&self) -> &'static str {
        self.read(|r, st| r.map_or(st.status, |r| r.status).name())
    }
    #[getter]
    pub(crate) fn status_message(&self) -> String {
        self.read(|r, st| r.map_or_else(|| st.status_message.clone(), |r| r.status_message.clone()))
    }
    #[getter]
    pub(crate) fn context(&self) -> SpanContext {
        SpanContext { ctx: self.ctx() }
    }
    #[getter]
    pub(crate) fn baggage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        baggage_to_py(py, self.state.lock().baggage.as_ref())
    }
    #[getter]
    pub(crate) fn is_ended(&self) -> bool {
        self.state.lock().record.is_some()
    }
    pub(crate) fn is_recording(&self) -> bool {
        self.state.lock().record.is_none()
    }

    pub(crate) fn set_attribute(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) {
        self.set_one(py, key, value)
    }

    pub(crate) fn set_attributes(&self, py: Python<'_>, attributes: &Bound<'_, PyAny>) -> PyResult<()> {
        let d = as_dict(attributes)?;
        // Convert first, then take the lock once for all of them.
        let converted: SmallVec<[(Text, AttrValue); 16]> =
            d.iter().filter_map(|(k, v)| self.shared.convert(py, &k, &v)).collect();
        let mut st = self.state.lock();
        if st.record.is_none() {
            let st = &mut *st;
            for (k, v) in converted {
                core_span::set_attribute(
                    &mut st.attributes,
                    &mut st.dropped_attributes,
                    self.shared.limits.max_attributes,
                    k,
                    v,
                );
            }
        }
        Ok(())
    }

    #[pyo3(signature = (name, attributes=None, timestamp=None))]
    pub(crate) fn add_event(
        &self,
        py: Python<'_>,
        name: String,
        attributes: Option<&Bound<'_, PyAny>>,
        timestamp: Option<u64>,
    ) -> PyResult<()> {
        self.event(py, name, attributes, timestamp)
    }

    /// Links this span to another span's context (a Span, NonRecordingSpan or SpanContext), with attributes.
    #[pyo3(signature = (context, attributes=None))]
    pub(crate) fn add_link(
        &self,
        py: Python<'_>,
        context: &Bound<'_, PyAny>,
        attributes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        match parent_of(context)? {
            Some(ctx) => self.link(py, &ctx, attributes),
            None => Err(PyTypeError::new_err(
                "add_link needs a Span, NonRecordingSpan or SpanContext",
            )),
        }
    }

    /// Adds an `exception` event (type, message, stack trace) without changing the status.
    #[pyo3(signature = (exception, attributes=None))]
    pub(crate) fn record_exception(
        &self,
        py: Python<'_>,
        exception: &Bound<'_, PyAny>,
        attributes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.exception_event(py, exception, attributes).map(|_| ())
    }

    /// Records `exception` and sets the status to error with its type and message.
    pub(crate) fn set_error(&self, py: Python<'_>, exception: &Bound<'_, PyAny>) -> PyResult<()> {
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
    pub(crate) fn set_status(&self, status: &Bound<'_, PyAny>, description: Option<String>) -> PyResult<()> {
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

    pub(crate) fn update_name(&self, name: &str) {
        let mut st = self.state.lock();
        if st.record.is_none() {
            st.name = name.into();
        }
    }

    /// Sets a baggage entry that child spans inherit and `inject_context` propagates.
    pub(crate) fn set_baggage_item(&self, key: String, value: String) {
        let mut st = self.state.lock();
        let mut b: Baggage = st.baggage.as_deref().cloned().unwrap_or_default();
        match b.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = value,
            None => b.push((key, value)),
        }
        st.baggage = Some(Arc::new(b));
    }

    pub(crate) fn get_baggage_item(&self, key: &str) -> Option<String> {
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
    pub(crate) fn end(&self, end_time: Option<u64>) {
        self.finish(end_time)
    }

    /// Ends an HTTP server span in one call (the middleware's end of request): OpenTelemetry's HTTP
    /// attributes under one lock, the name `METHOD route`, error status on 5xx, then `end()`.
    #[pyo3(signature = (method, path, scheme, status, route=None, server_address=None, user_agent=None))]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn end_http_server(
        &self,
        method: &str,
        path: &str,
        scheme: &str,
        status: i64,
        route: Option<&str>,
        server_address: Option<&str>,
        user_agent: Option<&str>,
    ) {
        {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            if st.record.is_some() {
                return;
            }
            let limits = &self.shared.limits;
            let mut put = |k: &str, v: AttrValue| {
                core_span::set_attribute(
                    &mut st.attributes,
                    &mut st.dropped_attributes,
                    limits.max_attributes,
                    k.into(),
                    limits.clip(v),
                )
            };
            put("http.request.method", AttrValue::Str(method.into()));
            put("url.path", AttrValue::Str(path.into()));
            put("url.scheme", AttrValue::Str(scheme.into()));
            put("http.response.status_code", AttrValue::Int(status));
            if let Some(r) = route {
                put("http.route", AttrValue::Str(r.into()));
            }
            if let Some(a) = server_address {
                put("server.address", AttrValue::Str(a.into()));
            }
            if let Some(ua) = user_agent {
                put("user_agent.original", AttrValue::Str(ua.into()));
            }
            if let Some(r) = route {
                // OpenTelemetry's HTTP conventions name a span of an unknown method "HTTP {route}".
                let shown = if method == "_OTHER" { "HTTP" } else { method };
                st.name = format!("{shown} {r}").into();
            }
            // An error status set already (an exception recorded) keeps its message.
            if status >= 500 && st.status != StatusCode::Error {
                st.status = StatusCode::Error;
                st.status_message = format!("HTTP {status}");
            }
        }
        self.finish(None)
    }

    /// The finished record, once ended.
    pub(crate) fn to_span_data(&self) -> Option<SpanData> {
        self.state.lock().record.clone().map(|r| SpanData {
            record: r,
            shared: self.shared.clone(),
        })
    }

    pub(crate) fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let token = set_current(slf.py(), slf.as_any())?;
        slf.get().state.lock().tokens.push(token.unbind());
        Ok(slf.clone())
    }

    pub(crate) fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        if !exc.is_none() {
            // Recording must never replace the user's exception with ours, so errors here are dropped. A status
            // the code set by hand (an error with its own message, or ok) is kept, as OpenTelemetry does.
            if let Ok(description) = self.exception_event(py, exc, None) {
                let mut st = self.state.lock();
                if st.record.is_none() && st.status == StatusCode::Unset {
                    st.status = StatusCode::Error;
                    st.status_message = description;
                }
            }
        }
        let token = self.state.lock().tokens.pop();
        if let Some(token) = token {
            reset_current(py, token.bind(py));
        }
        self.finish(None);
        false
    }

    pub(crate) fn __repr__(&self) -> String {
        format!(
            "Span(name={:?}, trace_id={:?}, span_id={:?})",
            self.name(),
            self.trace_id(),
            self.span_id()
        )
    }
}

pub(crate) fn events_to_py<'py>(py: Python<'py>, events: &[Event]) -> PyResult<Bound<'py, PyList>> {
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

// must match rust/trace/encode/json/mod.rs: write_links
pub(crate) fn links_to_py<'py>(py: Python<'py>, links: &[Link]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for l in links {
        let d = PyDict::new(py);
        d.set_item("trace_id", trace_id_hex(l.trace_id))?;
        d.set_item("span_id", span_id_hex(l.span_id))?;
        d.set_item("attributes", attrs_to_py(py, &l.attributes)?)?;
        if l.dropped_attributes > 0 {
            d.set_item("dropped_attributes", l.dropped_attributes)?;
        }
        out.append(d)?;
    }
    Ok(out)
}
