//! Trace and span ids, W3C traceparent/tracestate, finished-span records (see issue 3).
