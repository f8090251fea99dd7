//! Trace and span ids, W3C traceparent/tracestate/baggage, span records and their bounded buffer (issue 3).
pub mod baggage;
pub mod buffer;
pub mod encode;
pub mod hex;
pub mod http;
pub mod ids;
pub mod sampler;
pub mod span;
pub mod traceparent;
pub mod tracestate;
