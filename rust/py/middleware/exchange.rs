//! One request/response as it passes the middleware: its status, completion, disconnects, and its record.

use super::asgi::{declared_length, route_matched, route_of, scope_get, scope_remove, scope_str, UNDECLARED};
use super::{MiddlewareCore, UNMATCHED_ROUTE};
use crate::py::trace::{reset_current, Span};
use parking_lot::Mutex;
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyString};
use pyo3::PyTraverseError;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Instant;

/// The status label of a request whose client went away before the response was complete (nginx's code).
const CLIENT_CLOSED: i64 = 499;

// Flags: each set once, by the one task serving the request (the atomics make the class Sync, not fast paths).
const STARTED: u8 = 1;
const COMPLETED: u8 = 2;
const DISCONNECTED: u8 = 4;
const DONE: u8 = 8;
const UNMONITORED: u8 = 16;

/// No Content-Length seen yet (the remaining count is computed at the first of several chunks).
const UNKNOWN: i64 = i64::MIN;

/// The Python objects a request holds until its end lets go of them: the scope (which holds us while the request
/// runs, and may hold the app's wrappers of ours), the span (taken by the record) and the context token (taken when
/// the span before ours is made current again).
struct Held {
    scope: Option<Py<PyAny>>,
    span: Option<Py<PyAny>>,
    token: Option<Py<PyAny>>,
}

/// One request, from `MiddlewareCore.start` to its record: the wrappers of `send` and `receive` report to it.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct Exchange {
    core: Py<MiddlewareCore>,
    held: Mutex<Held>,
    method: Py<PyString>,
    user_agent: Option<String>,
    extra_headers: Py<PyList>,
    add_headers: bool,
    t0: Instant,
    flags: AtomicU8,
    status: AtomicI64,
    remaining: AtomicI64,
    t_end_ns: AtomicU64,
}

impl Exchange {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        core: Py<MiddlewareCore>,
        scope: Py<PyAny>,
        span: Py<PyAny>,
        token: Py<PyAny>,
        method: Py<PyString>,
        user_agent: Option<String>,
        extra_headers: Py<PyList>,
        add_headers: bool,
        t0: Instant,
    ) -> Exchange {
        Exchange {
            core,
            held: Mutex::new(Held {
                scope: Some(scope),
                span: Some(span),
                token: Some(token),
            }),
            method,
            user_agent,
            extra_headers,
            add_headers,
            t0,
            flags: AtomicU8::new(0),
            status: AtomicI64::new(500),
            remaining: AtomicI64::new(UNKNOWN),
            t_end_ns: AtomicU64::new(0),
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags.load(Relaxed) & flag != 0
    }

    fn set(&self, flag: u8) {
        // A load and a store, not a locked read-modify-write: every method runs holding the GIL (the extension is
        // built for GIL CPython), so no two of them interleave. DONE, which decides who records, is a swap.
        self.flags.store(self.flags.load(Relaxed) | flag, Relaxed);
    }

    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The response start: its status, its declared length, and our headers added.
    fn started(&self, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = message.py();
        if let Some(status) = message.get_item(intern!(py, "status"))? {
            let code = match status.extract::<i64>() {
                Ok(c) => c,
                Err(_) => py.get_type::<PyInt>().call1((status,))?.extract::<i64>()?,
            };
            self.status.store(code, Relaxed);
        }
        self.set(STARTED);
        let headers = message.get_item(intern!(py, "headers"))?;
        if self.add_headers {
            let extra = self.extra_headers.bind(py);
            let merged = match &headers {
                Some(h) => match h.cast::<PyList>() {
                    Ok(list) => list.as_sequence().concat(extra.as_sequence())?.into_any(),
                    Err(_) => {
                        let list = PyList::empty(py);
                        for item in h.try_iter()? {
                            list.append(item?)?;
                        }
                        for item in extra.iter() {
                            list.append(item)?;
                        }
                        list.into_any()
                    }
                },
                None => PyList::new(py, extra.iter())?.into_any(),
            };
            message.set_item(intern!(py, "headers"), merged)?;
        }
        if let Some(h) = headers {
            self.remaining.store(declared_length(&h), Relaxed);
        } else {
            self.remaining.store(UNDECLARED, Relaxed);
        }
        Ok(())
    }

    /// A body chunk: the response is complete at its last chunk, or at its declared length (a client that has
    /// Content-Length bytes is done, whether or not an empty final chunk follows).
    fn body(&self, message: &Bound<'_, PyDict>) -> PyResult<bool> {
        let py = message.py();
        let more = match message.get_item(intern!(py, "more_body"))? {
            Some(m) => m.is_truthy()?,
            None => false,
        };
        if !more {
            return Ok(true);
        }
        let sent = match message.get_item(intern!(py, "body"))? {
            Some(b) => match b.cast::<PyBytes>() {
                Ok(b) => b.as_bytes().len(),
                Err(_) => b.len()?,
            },
            None => 0,
        };
        let mut remaining = self.remaining.load(Relaxed);
        if remaining == UNKNOWN {
            remaining = UNDECLARED;
        }
        remaining -= i64::try_from(sent).unwrap_or(i64::MAX);
        self.remaining.store(remaining, Relaxed);
        Ok(remaining == 0)
    }

    /// Records the request, once: before the last chunk goes out, so that a client holding the whole response also
    /// finds it counted; else when the app returns or raises.
    fn complete(&self, py: Python<'_>, error: Option<&Bound<'_, PyAny>>) {
        if self.flags.fetch_or(DONE, Relaxed) & DONE != 0 {
            return;
        }
        // Taken under the lock, used without it: the record calls Python code (a route's attributes, a stand-in).
        let (scope, span) = {
            let mut held = self.held.lock();
            (held.scope.as_ref().map(|s| s.clone_ref(py)), held.span.take())
        };
        let (Some(scope), Some(span)) = (scope, span) else {
            return;
        };
        let core = self.core.get();
        if let Err(e) = self.record(py, core, scope.bind(py), span.bind(py), error) {
            core.report(py, e);
        }
    }

    fn record(
        &self,
        py: Python<'_>,
        core: &MiddlewareCore,
        scope: &Bound<'_, PyAny>,
        span: &Bound<'_, PyAny>,
        error: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let flags = self.flags.load(Relaxed);
        let completed = flags & COMPLETED != 0;
        let t_end = if completed {
            self.t_end_ns.load(Relaxed)
        } else {
            self.elapsed_ns()
        };
        let status = if !completed && flags & DISCONNECTED != 0 {
            CLIENT_CLOSED
        } else if error.is_some() && flags & STARTED == 0 {
            // An exception before the response is what the client sees as a 500.
            500
        } else {
            self.status.load(Relaxed)
        };
        // A route object that cannot be read is no match: the request still counts, under __unmatched__.
        let route = route_of(scope).ok().flatten();
        let route = match &route {
            Some(r) => r.clone(),
            None => PyString::new(py, UNMATCHED_ROUTE),
        };
        let success = status < 500 && (error.is_none() || status == CLIENT_CLOSED);
        let latency_ms = t_end as f64 / 1e6;
        let method = self.method.bind(py);
        let recorded = if flags & UNMONITORED == 0 {
            // The server span (when sampled) is the exemplar of the bucket this latency lands in.
            core.record(py, &route, method, status, success, latency_ms, span)
        } else {
            Ok(())
        };
        // Unsampled: nothing to end (its end is a no-op), so no attributes are gathered for it.
        if let Ok(s) = span.cast::<Span>() {
            let s = s.get();
            // The span always ends: a value that cannot be read (not UTF-8, a broken scope) is shown lossily or
            // left out, and a failure to record the exception is reported after the end.
            let errored = error
                .filter(|_| status != CLIENT_CLOSED)
                .and_then(|e| s.set_error(py, e).err());
            // OpenTelemetry's HTTP server attributes (not url.query: query strings carry tokens too often), the name
            // "GET /items/{item_id}", error status on 5xx and the end, in one call.
            let path = scope_str(scope, intern!(py, "path")).ok().flatten();
            let scheme = scope_str(scope, intern!(py, "scheme")).ok().flatten();
            let server = scope_get(scope, intern!(py, "server"))
                .ok()
                .flatten()
                .filter(|s| s.is_truthy().unwrap_or(false))
                .and_then(|s| s.get_item(0).and_then(|h| h.str()).ok());
            let path = path.as_ref().map(|p| p.to_string_lossy());
            let scheme = scheme.as_ref().map(|p| p.to_string_lossy());
            let server = server.as_ref().map(|p| p.to_string_lossy());
            let shown_route = route_matched(&route).then(|| route.to_string_lossy());
            s.end_http_server(
                &method.to_string_lossy(),
                path.as_deref().unwrap_or(""),
                scheme.as_deref().unwrap_or("http"),
                status,
                shown_route.as_deref(),
                server.as_deref(),
                self.user_agent.as_deref().filter(|u| !u.is_empty()),
            );
            if let Some(e) = errored {
                return Err(e);
            }
        }
        recorded
    }

    /// Restores the span that was current before this request's (once).
    pub(super) fn reset_token(&self, py: Python<'_>) {
        let token = self.held.lock().token.take();
        if let Some(token) = token {
            reset_current(py, token.bind(py));
        }
    }
}

#[pymethods]
impl Exchange {
    // The scope holds the exchange while the request runs and the exchange holds the scope: a request abandoned
    // without `finish` leaves that cycle to the garbage collector, which must see through the exchange to free it.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Never waits: the lock is only held for a few instructions by the task serving the request, and a
        // traversal that finds it held skips this object's references for this collection.
        if let Some(held) = self.held.try_lock() {
            visit.call(&held.scope)?;
            visit.call(&held.span)?;
            visit.call(&held.token)?;
        }
        visit.call(&self.core)
    }

    fn __clear__(&self) {
        // Dropped once the lock is released: a decref can run Python code, which could come back here.
        let taken = {
            let mut held = self.held.lock();
            (held.scope.take(), held.span.take(), held.token.take())
        };
        drop(taken);
    }

    /// A message the app sends: the response start (status, our headers) or a body chunk (the last one records).
    /// Never raises: a message it cannot read is left to the server to refuse.
    fn on_send(&self, message: &Bound<'_, PyAny>) {
        let py = message.py();
        let Ok(message) = message.cast::<PyDict>() else { return };
        let Ok(Some(kind)) = message.get_item(intern!(py, "type")) else {
            return;
        };
        let Ok(kind) = kind.cast_into::<PyString>() else { return };
        let result = match kind.to_str() {
            Ok("http.response.body") => self.body(message).map(|done| {
                if done {
                    self.t_end_ns.store(self.elapsed_ns(), Relaxed);
                    self.set(COMPLETED);
                    self.complete(py, None);
                }
            }),
            Ok("http.response.start") => self.started(message),
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.core.get().report(py, e);
        }
    }

    /// The server's send raised OSError: the client is gone.
    fn send_failed(&self) {
        self.set(DISCONNECTED);
    }

    /// The server said `http.disconnect`: before the response was complete, the client went away.
    fn client_gone(&self) {
        if !self.has(COMPLETED) {
            self.set(DISCONNECTED);
        }
    }

    /// The app returned (`error` None) or raised: out of the scope, the span before it current again, recorded
    /// if no chunk recorded it already.
    #[pyo3(signature = (error = None))]
    fn finish(&self, py: Python<'_>, error: Option<&Bound<'_, PyAny>>) {
        // The scope holds us, we hold the server's send and receive (through the wrappers), which hold the scope:
        // unlinked here, the request's objects are freed by refcount when it ends.
        // One lock for the common case, a response its last chunk recorded already: the scope is let go of here.
        let recorded = self.has(DONE);
        let (scope, token) = {
            let mut held = self.held.lock();
            let scope = if recorded {
                held.scope.take()
            } else {
                held.scope.as_ref().map(|s| s.clone_ref(py))
            };
            (scope, held.token.take())
        };
        if let Some(scope) = &scope {
            let scope = scope.bind(py);
            let key = self.core.get().exchange_key.bind(py);
            // Gone already (the app took it out) is fine: nothing else looks it up once the app has returned.
            scope_remove(scope, key);
        }
        if let Some(token) = token {
            reset_current(py, token.bind(py));
        }
        if !recorded {
            self.complete(py, error);
            let rest = self.held.lock().scope.take();
            drop(rest);
        }
        drop(scope);
    }

    /// The decorator form's end of the app's part: the span before this request's current again.
    fn detach(&self, py: Python<'_>) {
        self.reset_token(py);
    }

    /// A scrape or probe (the app said so through `_asgi.unmonitor`): out of the request metrics, and out of the
    /// in-flight gauge at once, so the scrape it serves does not count itself.
    fn unmonitor(&self, py: Python<'_>) {
        if self.has(UNMONITORED | DONE) {
            return;
        }
        if self.core.get().cancel_in_flight(py) {
            self.set(UNMONITORED);
        }
    }

    /// The headers this request's response gets: the request id (as sent when worth echoing, else the span id) and
    /// the trace id.
    #[getter]
    fn response_headers<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.extra_headers.bind(py).clone()
    }
}
