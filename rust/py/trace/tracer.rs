//! The tracer core: `start_span`, inject and extract, and the finished-span store's Python face.

use super::context::{Ctx, SpanContext};
use super::convert::{as_dict, kind_from_py, now_ns};
use super::current::{get_current, set_current};
use super::data::SpanData;
use super::export::SpanBatch;
use super::non_recording::NonRecordingSpan;
use super::propagation::{context_of, extract, Found};
use super::sampler::Sampler;
use super::shared::{parent_of, SamplerImpl, Shared};
use super::span::{Span, SpanState};
use crate::trace::baggage;
use crate::trace::buffer::Store;
use crate::trace::hex::parse_trace_id;
use crate::trace::sampler::{ParentInfo, Sampler as CoreSampler};
use crate::trace::span::{self as core_span, Attributes, Kind, Limits, Scope, StatusCode};
use crate::trace::{ids, traceparent, tracestate};
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use smallvec::SmallVec;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request's start, for the middleware core: the SERVER span (made current) and the token that restores the span
/// before it, its ids, and the request's own id (when worth echoing) and user agent (sampled spans only).
pub(crate) struct ServerStart<'py> {
    pub(crate) span: Bound<'py, PyAny>,
    pub(crate) token: Bound<'py, PyAny>,
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) request_id: Option<Bound<'py, PyBytes>>,
    pub(crate) user_agent: Option<String>,
}

// The tracer core.

/// The Rust half of DistributedTracer: sampling, ids, spans, propagation and the finished-span store.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct TracerCore {
    pub(crate) shared: Arc<Shared>,
    pub(crate) scope: Arc<Scope>,
}

impl TracerCore {
    /// The middleware's start of a request in one crossing: reads the ASGI headers (a list of (bytes, bytes))
    /// once for the W3C context, the request id and the user agent; starts the SERVER span `name` under the
    /// incoming context (else the current span) and makes it current.
    pub(crate) fn begin_server<'py>(
        &self,
        py: Python<'py>,
        headers: &Bound<'py, PyAny>,
        name: &Bound<'py, PyString>,
        attributes: Option<&Bound<'py, PyAny>>,
        request_id_header: &[u8],
    ) -> PyResult<ServerStart<'py>> {
        const MAX_REQUEST_ID: usize = 128;
        const MAX_USER_AGENT: usize = 512;
        let mut found = Found::default();
        let mut request_id: Option<Bound<'py, PyBytes>> = None;
        let mut user_agent: Option<Bound<'py, PyBytes>> = None;
        let mut read = |pair: Bound<'py, PyAny>| {
            let Ok(pair) = pair.cast_into::<PyTuple>() else {
                return;
            };
            if pair.len() != 2 {
                return;
            }
            // Borrowed: most headers are only looked at, so no reference is taken for them.
            let (Ok(name), Ok(value)) = (pair.get_borrowed_item(0), pair.get_borrowed_item(1)) else {
                return;
            };
            let Ok(n) = name.cast::<PyBytes>() else { return };
            let n = n.as_bytes();
            if n == request_id_header {
                // The last one wins, and one that is not worth echoing replaces an earlier good one.
                request_id = value
                    .cast::<PyBytes>()
                    .ok()
                    .filter(|v| {
                        let b = v.as_bytes();
                        !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| (0x20..0x7f).contains(c))
                    })
                    .map(|v| v.to_owned());
            } else if n == b"user-agent" {
                user_agent = value.cast::<PyBytes>().ok().map(|v| v.to_owned());
            } else if matches!(n.len(), 7 | 10 | 11) {
                found.add(n, &value);
            }
        };
        // ASGI's headers are an iterable of (bytes, bytes): a list from every server, a tuple from some apps.
        let parent = if let Ok(list) = headers.cast::<PyList>() {
            list.iter().for_each(&mut read);
            context_of(&found)
        } else if let Ok(tuple) = headers.cast::<PyTuple>() {
            tuple.iter().for_each(&mut read);
            context_of(&found)
        } else if headers.is_none() {
            None
        } else {
            // Another carrier (a mapping): its context only.
            extract(py, headers).unwrap_or_default()
        };
        let parent = match parent {
            Some(ctx) => Some(Bound::new(py, ctx)?.into_any()),
            None => None,
        };
        let span = self.start(py, name, parent.as_ref(), Kind::Server, attributes, None)?;
        let (trace_id, span_id, sampled) = if let Ok(n) = span.cast::<NonRecordingSpan>() {
            (n.get().ctx.trace_id, n.get().ctx.span_id, false)
        } else if let Ok(s) = span.cast::<Span>() {
            (s.get().trace_id, s.get().span_id, true)
        } else {
            (0, 0, false)
        };
        // Only a recorded span keeps the user agent (as latin-1, the first 512 bytes): an unsampled one makes none.
        let user_agent = user_agent.filter(|_| sampled).map(|v| {
            let b = v.as_bytes();
            b[..b.len().min(MAX_USER_AGENT)]
                .iter()
                .map(|&c| c as char)
                .collect::<String>()
        });
        let token = set_current(py, &span)?;
        Ok(ServerStart {
            span,
            token,
            trace_id,
            span_id,
            request_id,
            user_agent,
        })
    }

    fn start<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
        parent: Option<&Bound<'py, PyAny>>,
        kind: Kind,
        attributes: Option<&Bound<'py, PyAny>>,
        start_time: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
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
                                    shares_parent: true,
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
        // Our trace ids are random; a continued trace is random only if its parent says so.
        let random = parent
            .as_ref()
            .map_or(traceparent::FLAG_RANDOM, |p| p.flags & traceparent::FLAG_RANDOM);
        if !shared.sample(py, trace_id, info, name) {
            shared.unsampled.fetch_add(1, Ordering::Relaxed);
            let ctx = Ctx {
                trace_id,
                span_id,
                flags: random,
                remote: false,
                tracestate: parent.as_ref().and_then(|p| p.tracestate.clone()),
                baggage: parent.and_then(|p| p.baggage),
            };
            return Ok(Bound::new(
                py,
                NonRecordingSpan {
                    ctx,
                    shares_parent: false,
                    tokens: Mutex::new(SmallVec::new()),
                },
            )?
            .into_any());
        }
        let mut state = SpanState {
            name: name.to_str()?.into(),
            attributes: Attributes::new(),
            dropped_attributes: 0,
            events: Vec::new(),
            dropped_events: 0,
            links: Vec::new(),
            dropped_links: 0,
            status: StatusCode::Unset,
            status_message: String::new(),
            baggage: None,
            tokens: SmallVec::new(),
            record: None,
        };
        if let Some(attrs) = attributes.filter(|a| !a.is_none()) {
            let d = as_dict(attrs)?;
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
            flags: traceparent::FLAG_SAMPLED | random,
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
}

#[pymethods]
impl TracerCore {
    #[new]
    #[pyo3(signature = (service_name, *, sampler=None, max_spans=10_000, max_queue_size=2048, max_export_batch_size=512,
                        max_attributes=128, max_events=128, max_value_len=4096, **_rest))]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
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
    pub(crate) fn service_name(&self) -> &str {
        &self.shared.service_name
    }

    #[getter]
    pub(crate) fn scope_name(&self) -> &str {
        &self.scope.name
    }

    /// A core sharing this tracer's sampler and store, whose spans carry another instrumentation scope.
    #[pyo3(signature = (name, version=None))]
    pub(crate) fn with_scope(&self, name: &str, version: Option<String>) -> TracerCore {
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
    pub(crate) fn start_span<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
        parent: Option<&Bound<'py, PyAny>>,
        kind: Option<&Bound<'py, PyAny>>,
        attributes: Option<&Bound<'py, PyAny>>,
        start_time: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.start(py, name, parent, kind_from_py(kind)?, attributes, start_time)
    }

    /// Writes `traceparent`, `tracestate` and `baggage` for `context` (default: the current span) into a dict,
    /// a mutable mapping, or a list of (bytes, bytes) pairs; returns the carrier. No current span: unchanged.
    #[pyo3(signature = (headers, context=None))]
    pub(crate) fn inject_context<'py>(
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
        let tp = traceparent::format(ctx.trace_id, ctx.span_id, ctx.flags & traceparent::KNOWN_FLAGS);
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
    pub(crate) fn extract_context(&self, py: Python<'_>, headers: &Bound<'_, PyAny>) -> PyResult<Option<SpanContext>> {
        // Any Exception while reading odd carriers means "no context"; KeyboardInterrupt, SystemExit and other
        // BaseExceptions that are not Exceptions are the user's, not the carrier's: they go through.
        match extract(py, headers) {
            Err(err) if !err.is_instance_of::<pyo3::exceptions::PyException>(py) => Err(err),
            result => Ok(result.unwrap_or_default()),
        }
    }

    /// Waits (without the GIL) until a batch is queued, `wake()` is called, or `timeout` seconds pass.
    pub(crate) fn wait(&self, py: Python<'_>, timeout: f64) -> bool {
        let shared = self.shared.clone();
        let timeout = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        py.detach(move || shared.store.wait(timeout))
    }

    pub(crate) fn wake(&self) {
        self.shared.store.wake();
    }

    /// Turns the export queue on while an export worker runs.
    pub(crate) fn set_exporting(&self, on: bool) {
        self.shared.store.set_exporting(on);
    }

    /// Takes up to `max` finished spans from the export queue, as one batch (no Python object per span).
    pub(crate) fn drain(&self, max: usize) -> SpanBatch {
        SpanBatch {
            records: self.shared.store.drain(max),
            shared: self.shared.clone(),
        }
    }

    pub(crate) fn queue_len(&self) -> usize {
        self.shared.store.queue_len()
    }

    /// The buffered finished spans of a trace (hex id), in the order they ended.
    pub(crate) fn get_trace(&self, trace_id: &str) -> Vec<SpanData> {
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
    pub(crate) fn finished_spans(&self) -> Vec<SpanData> {
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

    pub(crate) fn clear_spans(&self) {
        self.shared.store.clear();
    }

    /// Counters: spans started, unsampled, finished, evicted from the buffer, dropped by the full export
    /// queue, invalid attributes dropped, sampler errors.
    pub(crate) fn core_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
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
    pub(crate) fn sampler<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.shared.sampler {
            SamplerImpl::Core(s) => Ok(Bound::new(py, Sampler { inner: s.clone() })?.into_any()),
            SamplerImpl::Custom(o) => Ok(o.bind(py).clone()),
        }
    }
}
