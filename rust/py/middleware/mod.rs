//! The middleware core: what MonitoringMiddleware does per request (exclusion, start, labels, recording), in Rust.
//!
//! Python keeps the policy (which paths are excluded, which methods are known, the header names, the status label
//! form) and the ASGI plumbing that must be Python (the coroutines that wrap `send` and `receive`); this holds them
//! as Rust values and starts each request with one call; one call per response message follows it and one ends it
//! (see `exchange.rs`).

mod asgi;
mod exchange;

use super::collector::CollectorCore;
use super::trace::TracerCore;
use crate::trace::hex::encode_into;
use asgi::{scope_get, scope_set};
use exchange::Exchange;
use hashbrown::{HashMap, HashSet};
use parking_lot::Mutex;
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use smallvec::SmallVec;
use std::time::Instant;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<MiddlewareCore>()?;
    m.add_class::<Exchange>()
}

/// The route label of requests no route matched. Must match middleware.py: UNMATCHED_ROUTE.
const UNMATCHED_ROUTE: &str = "__unmatched__";
/// The method label of methods OpenTelemetry's conventions do not know. Must match middleware.py: OTHER_METHOD.
const OTHER_METHOD: &str = "_OTHER";
/// Real extension methods (PROPFIND, VERSION-CONTROL) are short; the span keeps this much of a made-up one.
const MAX_METHOD_ORIGINAL: usize = 64;
/// (method, status) label sets kept: statuses come from apps, methods from clients (bounded to the known ones).
const MAX_LABEL_SETS: usize = 1000;

/// Where a request's metrics go: the core's own collector, called in Rust, or a stand-in's Python methods.
enum Recorder {
    Core(Py<CollectorCore>),
    Python {
        begin: Py<PyAny>,
        end: Py<PyAny>,
        cancel: Option<Py<PyAny>>,
    },
}

/// A method and its labels dict, under one status.
type MethodLabels = (Box<str>, Py<PyDict>);

/// One labels dict per (method, status), reused (the collector only reads it): status -> [(method, labels)].
#[derive(Default)]
struct LabelSets {
    kept: usize,
    by_status: HashMap<i64, SmallVec<[MethodLabels; 2]>>,
}

/// The Rust half of MonitoringMiddleware: its settings as Rust values, and the per-request work.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct MiddlewareCore {
    tracer: Py<TracerCore>,
    recorder: Recorder,
    exchange_key: Py<PyString>,
    request_id_header: Py<PyBytes>,
    trace_id_header: Py<PyBytes>,
    provider: Py<PyString>,
    status_class: bool,
    known_methods: HashSet<String>,
    excluded_exact: HashSet<String>,
    excluded_prefixes: Vec<String>,
    label_sets: Mutex<LabelSets>,
    on_failure: Py<PyAny>,
}

#[pymethods]
impl MiddlewareCore {
    #[new]
    #[pyo3(signature = (tracer, collector, *, exchange_key, request_id_header, trace_id_header, provider, status_class,
                        known_methods, excluded_exact, excluded_prefixes, on_failure))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        tracer: &Bound<'_, PyAny>,
        collector: &Bound<'_, PyAny>,
        exchange_key: Py<PyString>,
        request_id_header: Py<PyBytes>,
        trace_id_header: Py<PyBytes>,
        provider: Py<PyString>,
        status_class: bool,
        known_methods: Vec<String>,
        excluded_exact: Vec<String>,
        excluded_prefixes: Vec<String>,
        on_failure: Py<PyAny>,
    ) -> PyResult<Self> {
        let py = tracer.py();
        let tracer = tracer
            .cast::<TracerCore>()
            .map_err(|_| PyTypeError::new_err("MonitoringMiddleware: tracer must be a DistributedTracer"))?
            .clone()
            .unbind();
        let recorder = match collector.cast::<CollectorCore>() {
            Ok(core) => Recorder::Core(core.clone().unbind()),
            Err(_) => Recorder::Python {
                begin: collector.getattr(intern!(py, "begin_request"))?.unbind(),
                end: collector.getattr(intern!(py, "end_request"))?.unbind(),
                cancel: collector.getattr_opt(intern!(py, "cancel_request"))?.map(Bound::unbind),
            },
        };
        Ok(MiddlewareCore {
            tracer,
            recorder,
            exchange_key,
            request_id_header,
            trace_id_header,
            provider,
            status_class,
            known_methods: known_methods.into_iter().collect(),
            excluded_exact: excluded_exact.into_iter().collect(),
            excluded_prefixes,
            label_sets: Mutex::new(LabelSets::default()),
            on_failure,
        })
    }

    /// Starts an HTTP request: None when its path is excluded (or, never seen yet, when starting it failed: then it
    /// is served unrecorded and the failure reported). Otherwise it is in flight, its SERVER span is current, and
    /// the returned Exchange is in the scope (for `unmonitor`) until `finish`. With `add_headers`,
    /// the response start gets the request id and trace id headers.
    #[pyo3(signature = (scope, add_headers = true))]
    fn start<'py>(
        slf: &Bound<'py, Self>,
        scope: &Bound<'py, PyAny>,
        add_headers: bool,
    ) -> Option<Bound<'py, Exchange>> {
        match Self::try_start(slf, scope, add_headers) {
            Ok(started) => started,
            // Monitoring never breaks the request it monitors: served unrecorded, the failure counted and logged.
            Err(e) => {
                slf.get().report(slf.py(), e);
                None
            }
        }
    }
}

impl MiddlewareCore {
    fn try_start<'py>(
        slf: &Bound<'py, Self>,
        scope: &Bound<'py, PyAny>,
        add_headers: bool,
    ) -> PyResult<Option<Bound<'py, Exchange>>> {
        let py = slf.py();
        let this = slf.get();
        let path = scope_get(scope, intern!(py, "path"))?;
        let method = scope_get(scope, intern!(py, "method"))?;
        let headers = scope_get(scope, intern!(py, "headers"))?;
        if let Some(path) = path.as_ref().and_then(|p| p.cast::<PyString>().ok()) {
            // A path that is not UTF-8 (lone surrogates in a hand-made scope) is no excluded one.
            if path.to_str().is_ok_and(|p| this.excluded(p)) {
                return Ok(None);
            }
        }
        let method = match method {
            Some(m) => m,
            None => intern!(py, "GET").clone().into_any(),
        };
        let known = method
            .cast::<PyString>()
            .ok()
            .filter(|m| m.to_str().is_ok_and(|m| this.known_methods.contains(m)));
        let (name, label, attributes) = match known {
            Some(m) => (m.clone(), m.clone(), None),
            None => {
                // OpenTelemetry's conventions: the span is named "HTTP", the method as sent kept (cut short).
                let sent = method.str()?;
                let sent = sent.to_string_lossy();
                let sent = &*sent;
                let cut = sent
                    .char_indices()
                    .nth(MAX_METHOD_ORIGINAL)
                    .map_or(sent, |(i, _)| &sent[..i]);
                let attrs = PyDict::new(py);
                attrs.set_item(intern!(py, "http.request.method_original"), cut)?;
                (
                    intern!(py, "HTTP").clone(),
                    PyString::new(py, OTHER_METHOD),
                    Some(attrs.into_any()),
                )
            }
        };
        let headers = headers.unwrap_or_else(|| py.None().into_bound(py));
        Self::begin(slf, scope, &headers, &name, label, attributes.as_ref(), add_headers).map(Some)
    }

    /// The request's span started and made current, its exchange made and put in the scope, then it is in flight.
    #[allow(clippy::too_many_arguments)]
    fn begin<'py>(
        slf: &Bound<'py, Self>,
        scope: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        name: &Bound<'py, PyString>,
        label: Bound<'py, PyString>,
        attributes: Option<&Bound<'py, PyAny>>,
        add_headers: bool,
    ) -> PyResult<Bound<'py, Exchange>> {
        let py = slf.py();
        let this = slf.get();
        let begun = this.tracer.get().begin_server(
            py,
            headers,
            name,
            attributes,
            this.request_id_header.bind(py).as_bytes(),
        )?;
        // Without an incoming id, the server span's id serves: unique per request, and it finds the trace.
        let rid = match begun.request_id {
            Some(r) => r,
            None => {
                let mut buf = [0u8; 16];
                encode_into(begun.span_id as u128, 16, &mut buf);
                PyBytes::new(py, &buf)
            }
        };
        let mut buf = [0u8; 32];
        encode_into(begun.trace_id, 32, &mut buf);
        let extra = PyList::new(
            py,
            [
                PyTuple::new(py, [this.request_id_header.bind(py).clone(), rid])?,
                PyTuple::new(py, [this.trace_id_header.bind(py).clone(), PyBytes::new(py, &buf)])?,
            ],
        )?;
        let exchange = Bound::new(
            py,
            Exchange::new(
                slf.clone().unbind(),
                scope.clone().unbind(),
                begun.span.unbind(),
                begun.token.unbind(),
                label.unbind(),
                begun.user_agent,
                extra.unbind(),
                add_headers,
                Instant::now(),
            ),
        )?;
        // The /metrics and health apps find it here to take scrapes and probes out (see _asgi.unmonitor).
        let key = this.exchange_key.bind(py);
        if let Err(e) = scope_set(scope, key, &exchange) {
            exchange.get().reset_token(py);
            return Err(e);
        }
        this.begin_in_flight(py);
        Ok(exchange)
    }

    fn excluded(&self, path: &str) -> bool {
        self.excluded_exact.contains(path) || self.excluded_prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }

    /// The request is in flight. A stand-in collector that raises is reported, never the request's problem.
    fn begin_in_flight(&self, py: Python<'_>) {
        match &self.recorder {
            Recorder::Core(c) => c.get().mark_in_flight(),
            Recorder::Python { begin, .. } => {
                if let Err(e) = begin.bind(py).call0() {
                    self.report(py, e);
                }
            }
        }
    }

    /// Undoes `begin_in_flight` for a request taken out; false when the collector cannot (then it stays counted).
    fn cancel_in_flight(&self, py: Python<'_>) -> bool {
        match &self.recorder {
            Recorder::Core(c) => {
                c.get().unmark_in_flight();
                true
            }
            Recorder::Python {
                cancel: Some(cancel), ..
            } => {
                if let Err(e) = cancel.bind(py).call0() {
                    self.report(py, e);
                }
                true
            }
            Recorder::Python { cancel: None, .. } => false,
        }
    }

    /// Records a finished request (in-flight - 1 included).
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        py: Python<'_>,
        route: &Bound<'_, PyString>,
        method: &Bound<'_, PyString>,
        status: i64,
        success: bool,
        latency_ms: f64,
        span: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let labels = self.labels(py, method, status)?;
        let provider = self.provider.bind(py);
        match &self.recorder {
            Recorder::Core(c) => c.get().end_request_with(
                py,
                route.as_any(),
                provider.as_any(),
                success,
                Ok(latency_ms),
                Some(labels.as_any()),
                Some(span),
            ),
            // A stand-in gets the arguments it always got (no span).
            Recorder::Python { end, .. } => end
                .bind(py)
                .call1((route, provider, success, latency_ms, labels))
                .map(drop),
        }
    }

    /// The extra labels of a request, one dict per (method, status) reused.
    fn labels<'py>(&self, py: Python<'py>, method: &Bound<'py, PyString>, status: i64) -> PyResult<Bound<'py, PyDict>> {
        let m = method.to_str()?;
        let known = {
            let sets = self.label_sets.lock();
            sets.by_status
                .get(&status)
                .and_then(|v| v.iter().find(|(k, _)| &**k == m))
                .map(|found| found.1.clone_ref(py))
        };
        if let Some(labels) = known {
            return Ok(labels.into_bound(py));
        }
        // Made without the lock: making Python objects can run Python code (a collection's finalizers), which must
        // not find the lock held (a fork from there would leave it held in the child).
        let labels = PyDict::new(py);
        labels.set_item(intern!(py, "method"), method)?;
        let shown = if self.status_class {
            format!("{}xx", status.div_euclid(100))
        } else {
            status.to_string()
        };
        labels.set_item(intern!(py, "status"), shown)?;
        let kept = labels.clone().unbind();
        let mut sets = self.label_sets.lock();
        let by_method = sets.by_status.entry(status).or_default();
        // Another thread may have kept the same set meanwhile; the first kept serves.
        if !by_method.iter().any(|(k, _)| &**k == m) && sets.kept < MAX_LABEL_SETS {
            sets.kept += 1;
            sets.by_status.entry(status).or_default().push((m.into(), kept));
        } else {
            drop(sets);
            drop(kept);
        }
        Ok(labels)
    }

    /// A failure to record: the middleware's `_record_failed` counts it and logs the first.
    fn report(&self, py: Python<'_>, e: PyErr) {
        if let Err(again) = self.on_failure.bind(py).call1((e.into_value(py),)) {
            again.write_unraisable(py, None);
        }
    }
}
