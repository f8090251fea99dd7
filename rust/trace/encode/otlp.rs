//! OTLP/protobuf: finished spans as one `ExportTraceServiceRequest` body (opentelemetry-proto's trace/v1).
//!
//! A hand-written encoder rather than the `opentelemetry-proto` crate's prost types: those would need every
//! span copied into owned prost structs (a String per key and value) before encoding, which `cargo bench --bench
//! otlp` (rust/benches/otlp.rs) measures at several times this encoder's cost for the same bytes; the crate
//! stays a dev-dependency, and the tests decode this output with its prost types. Each length-delimited message
//! is written after a one-byte length placeholder, widened in place in the rare case the body reaches 128 bytes.

use crate::trace::span::{AttrValue, Attributes, Event, Link, Scope, SpanRecord};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// Span flags bits 8 and 9: "whether the parent (or link) is remote is known" and "it is".
pub const CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
pub const CONTEXT_IS_REMOTE: u32 = 0x200;

/// Appends an `ExportTraceServiceRequest` holding `spans` under one resource, grouped by instrumentation scope in
/// the order scopes first appear.
pub fn encode_request(out: &mut Vec<u8>, spans: &[impl AsRef<SpanRecord>], resource: &Attributes) {
    if spans.is_empty() {
        return;
    }
    let mut scopes: Vec<(&Scope, Vec<&SpanRecord>)> = Vec::new();
    for s in spans {
        let r = s.as_ref();
        match scopes.iter_mut().find(|g| g.0 == &*r.scope) {
            Some((_, group)) => group.push(r),
            None => scopes.push((&r.scope, vec![r])),
        }
    }
    // ExportTraceServiceRequest.resource_spans = 1
    nested_sized(out, 1, 3, |out| {
        // ResourceSpans.resource = 1 { Resource.attributes = 1 }
        nested(out, 1, |out| attrs(out, 1, resource));
        for (scope, group) in &scopes {
            // ResourceSpans.scope_spans = 2
            nested_sized(out, 2, 3, |out| {
                // ScopeSpans.scope = 1 { name = 1, version = 2 }
                nested(out, 1, |out| {
                    string(out, 1, &scope.name);
                    if let Some(v) = scope.version.as_deref() {
                        string(out, 2, v);
                    }
                });
                for (i, r) in group.iter().enumerate() {
                    super::prefetch(group.get(i + 1).copied(), group.get(i + 2).copied());
                    // ScopeSpans.spans = 2
                    nested_sized(out, 2, 2, |out| span(out, r));
                }
            });
        }
    });
}

fn span(out: &mut Vec<u8>, r: &SpanRecord) {
    bytes(out, 1, &r.trace_id.to_be_bytes());
    bytes(out, 2, &r.span_id.to_be_bytes());
    if let Some(ts) = r.tracestate.as_deref() {
        string(out, 3, ts);
    }
    if r.parent_span_id != 0 {
        bytes(out, 4, &r.parent_span_id.to_be_bytes());
    }
    string(out, 5, &r.name);
    // OTLP's SpanKind counts from SPAN_KIND_UNSPECIFIED = 0.
    uint(out, 6, r.kind as u64 + 1);
    fixed64(out, 7, r.start_ns);
    fixed64(out, 8, r.end_ns);
    attrs(out, 9, &r.attributes);
    uint(out, 10, r.dropped_attributes.into());
    for e in &r.events {
        nested(out, 11, |out| event(out, e));
    }
    uint(out, 12, r.dropped_events.into());
    for l in &r.links {
        nested(out, 13, |out| link(out, l));
    }
    uint(out, 14, r.dropped_links.into());
    // Status { message = 2, code = 3 }: always present, as the SDKs send it.
    nested(out, 15, |out| {
        string(out, 2, &r.status_message);
        uint(out, 3, r.status as u64);
    });
    fixed32(out, 16, flags(r.flags, r.parent_remote));
}

fn flags(trace_flags: u8, remote: bool) -> u32 {
    u32::from(trace_flags) | CONTEXT_HAS_IS_REMOTE | if remote { CONTEXT_IS_REMOTE } else { 0 }
}

fn event(out: &mut Vec<u8>, e: &Event) {
    fixed64(out, 1, e.time_ns);
    string(out, 2, &e.name);
    attrs(out, 3, &e.attributes);
    uint(out, 4, e.dropped_attributes.into());
}

fn link(out: &mut Vec<u8>, l: &Link) {
    bytes(out, 1, &l.trace_id.to_be_bytes());
    bytes(out, 2, &l.span_id.to_be_bytes());
    if let Some(ts) = l.tracestate.as_deref() {
        string(out, 3, ts);
    }
    attrs(out, 4, &l.attributes);
    uint(out, 5, l.dropped_attributes.into());
    fixed32(out, 6, flags(l.flags, l.remote));
}

/// Repeated `KeyValue { key = 1, value = 2 }` in field `field`.
fn attrs(out: &mut Vec<u8>, field: u32, attributes: &Attributes) {
    for (k, v) in attributes {
        nested(out, field, |out| {
            string(out, 1, k);
            nested(out, 2, |out| any_value(out, v));
        });
    }
}

/// The body of an `AnyValue`: a oneof, so even a default value (false, 0, "") is written, or it would be unset.
fn any_value(out: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::Str(s) => string_always(out, 1, s),
        AttrValue::Bool(b) => {
            key(out, 2, VARINT);
            varint(out, u64::from(*b));
        }
        AttrValue::Int(i) => {
            key(out, 3, VARINT);
            varint(out, *i as u64);
        }
        AttrValue::Float(f) => {
            key(out, 4, FIXED64);
            out.extend_from_slice(&f.to_le_bytes());
        }
        // array_value = 5: ArrayValue { values = 1 } of AnyValue
        AttrValue::StrArray(a) => array(out, a, |out, s| string_always(out, 1, s)),
        AttrValue::BoolArray(a) => array(out, a, |out, b| any_value(out, &AttrValue::Bool(*b))),
        AttrValue::IntArray(a) => array(out, a, |out, i| any_value(out, &AttrValue::Int(*i))),
        AttrValue::FloatArray(a) => array(out, a, |out, f| any_value(out, &AttrValue::Float(*f))),
    }
}

fn array<T>(out: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
    nested(out, 5, |out| {
        for item in items {
            nested(out, 1, |out| each(out, item));
        }
    });
}

#[inline]
fn key(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

#[inline]
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field whose body `body` writes; the length is patched in afterwards.
#[inline]
fn nested(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    nested_sized(out, field, 1, body)
}

/// `nested` with room for a length of `guess` bytes left before the body: a span (128 bytes to 16 KiB) takes
/// two, a whole batch three. A wrong guess moves the body once; no allocation either way.
#[inline]
fn nested_sized(out: &mut Vec<u8>, field: u32, guess: usize, body: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    let at = out.len();
    out.resize(at + guess, 0);
    body(out);
    let len = out.len() - at - guess;
    let mut prefix = [0u8; 10];
    let mut n = 0;
    let mut v = len as u64;
    while v >= 0x80 {
        prefix[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    prefix[n] = v as u8;
    n += 1;
    if n > guess {
        out.resize(out.len() + n - guess, 0);
        out.copy_within(at + guess..at + guess + len, at + n);
    } else if n < guess {
        out.copy_within(at + guess..at + guess + len, at + n);
        out.truncate(at + n + len);
    }
    out[at..at + n].copy_from_slice(&prefix[..n]);
}

/// proto3 leaves default scalars out; the decoded message is the same either way, and the body is smaller.
fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        string_always(out, field, s);
    }
}

fn string_always(out: &mut Vec<u8>, field: u32, s: &str) {
    bytes(out, field, s.as_bytes());
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(out, field, VARINT);
        varint(out, v);
    }
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(out, field, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        key(out, field, FIXED32);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::span::{Kind, StatusCode};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;
    use std::sync::Arc;

    fn record(name: &str, scope: &Arc<Scope>) -> SpanRecord {
        SpanRecord {
            trace_id: 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10,
            span_id: 0x1112_1314_1516_1718,
            parent_span_id: 0x2122_2324_2526_2728,
            parent_remote: true,
            flags: 1,
            tracestate: Some("v=1,x=y".into()),
            name: name.into(),
            kind: Kind::Client,
            start_ns: 1_700_000_000_000_000_000,
            end_ns: 1_700_000_000_123_456_789,
            attributes: vec![
                ("s".into(), AttrValue::Str("h\u{e9}llo \u{1f600}".into())),
                ("empty".into(), AttrValue::Str("".into())),
                ("b".into(), AttrValue::Bool(false)),
                ("i".into(), AttrValue::Int(-42)),
                ("f".into(), AttrValue::Float(0.0)),
                ("sa".into(), AttrValue::StrArray(vec!["a".into(), String::new()])),
                ("ba".into(), AttrValue::BoolArray(vec![true, false])),
                ("ia".into(), AttrValue::IntArray(vec![i64::MIN, 0, i64::MAX])),
                ("fa".into(), AttrValue::FloatArray(vec![])),
                ("long".into(), AttrValue::Str("x".repeat(300).into())),
            ],
            dropped_attributes: 3,
            events: vec![Event {
                name: "ev".into(),
                time_ns: 5,
                attributes: vec![("k".into(), AttrValue::Int(1))],
                dropped_attributes: 1,
            }],
            dropped_events: 2,
            links: vec![Link {
                trace_id: 7,
                span_id: 8,
                flags: 0,
                remote: false,
                tracestate: None,
                attributes: vec![("l".into(), AttrValue::Float(2.5))],
                dropped_attributes: 0,
            }],
            dropped_links: 1,
            status: StatusCode::Error,
            status_message: "boom".into(),
            scope: scope.clone(),
        }
    }

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn arr(values: Vec<any_value::Value>) -> any_value::Value {
        any_value::Value::ArrayValue(ArrayValue {
            values: values.into_iter().map(|v| AnyValue { value: Some(v) }).collect(),
        })
    }

    /// The same span built as prost types, field by field, independently of the encoder.
    fn expected_span(name: &str) -> Span {
        use any_value::Value::*;
        Span {
            trace_id: (0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10u128).to_be_bytes().to_vec(),
            span_id: 0x1112_1314_1516_1718u64.to_be_bytes().to_vec(),
            trace_state: "v=1,x=y".into(),
            parent_span_id: 0x2122_2324_2526_2728u64.to_be_bytes().to_vec(),
            flags: 0x301,
            name: name.into(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_123_456_789,
            attributes: vec![
                kv("s", StringValue("h\u{e9}llo \u{1f600}".into())),
                kv("empty", StringValue(String::new())),
                kv("b", BoolValue(false)),
                kv("i", IntValue(-42)),
                kv("f", DoubleValue(0.0)),
                kv("sa", arr(vec![StringValue("a".into()), StringValue(String::new())])),
                kv("ba", arr(vec![BoolValue(true), BoolValue(false)])),
                kv("ia", arr(vec![IntValue(i64::MIN), IntValue(0), IntValue(i64::MAX)])),
                kv("fa", arr(vec![])),
                kv("long", StringValue("x".repeat(300))),
            ],
            dropped_attributes_count: 3,
            events: vec![span::Event {
                time_unix_nano: 5,
                name: "ev".into(),
                attributes: vec![kv("k", IntValue(1))],
                dropped_attributes_count: 1,
            }],
            dropped_events_count: 2,
            links: vec![span::Link {
                trace_id: 7u128.to_be_bytes().to_vec(),
                span_id: 8u64.to_be_bytes().to_vec(),
                trace_state: String::new(),
                attributes: vec![kv("l", DoubleValue(2.5))],
                dropped_attributes_count: 0,
                flags: 0x100,
            }],
            dropped_links_count: 1,
            status: Some(Status {
                message: "boom".into(),
                code: 2,
            }),
        }
    }

    #[test]
    fn decodes_with_the_official_types_to_the_spans_made() {
        let a = Arc::new(Scope {
            name: "a".into(),
            version: Some("1.0".into()),
        });
        let b = Arc::new(Scope {
            name: "b".into(),
            version: None,
        });
        let spans = vec![
            Arc::new(record("one", &a)),
            Arc::new(record("two", &b)),
            Arc::new(record("three", &a)),
        ];
        let resource: Attributes = vec![("service.name".into(), AttrValue::Str("svc".into()))];
        let mut out = Vec::new();
        encode_request(&mut out, &spans, &resource);
        let got = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
        let want = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", any_value::Value::StringValue("svc".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "a".into(),
                            version: "1.0".into(),
                            ..Default::default()
                        }),
                        spans: vec![expected_span("one"), expected_span("three")],
                        schema_url: String::new(),
                    },
                    ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "b".into(),
                            ..Default::default()
                        }),
                        spans: vec![expected_span("two")],
                        schema_url: String::new(),
                    },
                ],
                schema_url: String::new(),
            }],
        };
        assert_eq!(got, want);
        // Canonical bytes too: prost writes the same message identically.
        assert_eq!(out, want.encode_to_vec());
    }

    #[test]
    fn lengths_of_every_width() {
        // Every length width under every guess of it, after bytes already written.
        for n in [0usize, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
            for guess in 1..=3 {
                let mut out = vec![9u8; 5];
                nested_sized(&mut out, 1, guess, |out| out.extend((0..n).map(|i| i as u8)));
                let mut want = vec![9u8; 5];
                key(&mut want, 1, LEN);
                varint(&mut want, n as u64);
                want.extend((0..n).map(|i| i as u8));
                assert_eq!(out, want, "{n} bytes, guess {guess}");
            }
        }
    }

    #[test]
    fn no_spans_no_body() {
        let mut out = Vec::new();
        encode_request(&mut out, &Vec::<Arc<SpanRecord>>::new(), &vec![]);
        assert!(out.is_empty());
    }
}
