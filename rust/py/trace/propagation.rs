//! Reading W3C headers from any carrier: dicts, mappings, lists of (name, value) pairs, str or bytes.

use super::context::{Ctx, SpanContext};
use crate::trace::baggage;
use crate::trace::{traceparent, tracestate};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use std::borrow::Cow;
use std::sync::Arc;

pub(crate) fn header_bytes<'a>(v: &'a Bound<'_, PyAny>) -> Option<Cow<'a, [u8]>> {
    if let Ok(s) = v.cast::<PyString>() {
        return s.to_str().ok().map(|s| Cow::Borrowed(s.as_bytes()));
    }
    if let Ok(b) = v.cast::<PyBytes>() {
        return Some(Cow::Borrowed(b.as_bytes()));
    }
    None
}

#[derive(Default)]
pub(crate) struct Found {
    pub(crate) traceparent: Option<Vec<u8>>,
    pub(crate) traceparents: usize,
    pub(crate) tracestate: Option<Vec<u8>>,
    pub(crate) baggage: Option<Vec<u8>>,
}

impl Found {
    pub(crate) fn add(&mut self, name: &[u8], value: &Bound<'_, PyAny>) {
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

    pub(crate) fn scan_pair(&mut self, name: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) {
        if let Some(n) = header_bytes(name) {
            if matches!(n.len(), 7 | 10 | 11) {
                self.add(&n, value);
            }
        }
    }
}

pub(crate) fn extract(py: Python<'_>, headers: &Bound<'_, PyAny>) -> PyResult<Option<SpanContext>> {
    let mut found = Found::default();
    if let Ok(d) = headers.cast::<PyDict>() {
        // The common case, lowercase keys, costs three lookups; anything else falls back to a scan.
        if let Some(tp) = d.get_item(intern!(py, "traceparent"))? {
            found.traceparents = 1;
            found.traceparent = header_bytes(&tp).map(|v| v.into_owned());
            let mut hits = 1;
            if let Some(ts) = d.get_item(intern!(py, "tracestate"))? {
                found.tracestate = header_bytes(&ts).map(|v| v.into_owned());
                hits += 1;
            }
            if let Some(bg) = d.get_item(intern!(py, "baggage"))? {
                found.baggage = header_bytes(&bg).map(|v| v.into_owned());
                hits += 1;
            }
            if hits < 3 && d.len() > hits {
                // Header names are case-insensitive: `TraceState` or `Baggage` may be among the other keys.
                found = Found::default();
                for (k, v) in d.iter() {
                    found.scan_pair(&k, &v);
                }
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
    Ok(context_of(&found))
}

/// The incoming context of the W3C headers found; None when traceparent is missing, repeated or invalid.
pub(crate) fn context_of(found: &Found) -> Option<SpanContext> {
    if found.traceparents != 1 {
        return None; // missing, or repeated: the spec says to restart the trace
    }
    let tp = found.traceparent.as_deref().and_then(traceparent::parse)?;
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
    Some(SpanContext {
        ctx: Ctx {
            trace_id: tp.trace_id,
            span_id: tp.span_id,
            flags: tp.flags & traceparent::KNOWN_FLAGS,
            remote: true,
            tracestate,
            baggage,
        },
    })
}
