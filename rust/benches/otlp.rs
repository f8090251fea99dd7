//! Our OTLP encoder beside the `opentelemetry-proto` crate's prost types encoding the same batch to the same bytes.

use _core::trace::encode::json;
use _core::trace::encode::otlp::encode_request;
use _core::trace::span::{AttrValue, Attributes, Kind, Scope, SpanRecord, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 512;
const ROUNDS: usize = 400;

/// A server span with three attributes, as the Python benches make.
fn batch() -> Vec<Arc<SpanRecord>> {
    let scope = Arc::new(Scope {
        name: "svc".into(),
        version: None,
    });
    (0..BATCH as u64)
        .map(|i| {
            Arc::new(SpanRecord {
                trace_id: u128::from(i) * 0x9e37_79b9_7f4a_7c15,
                span_id: i + 1,
                parent_span_id: 0,
                parent_remote: false,
                flags: 1,
                tracestate: None,
                name: "GET /api/items".into(),
                kind: Kind::Server,
                start_ns: 1_700_000_000_000_000_000 + i,
                end_ns: 1_700_000_000_000_100_000 + i,
                attributes: vec![
                    ("http.method".into(), AttrValue::Str("GET".into())),
                    ("http.status_code".into(), AttrValue::Int(200)),
                    ("user.id".into(), AttrValue::Str(format!("user-{i}").into())),
                ],
                dropped_attributes: 0,
                events: vec![],
                dropped_events: 0,
                links: vec![],
                dropped_links: 0,
                status: StatusCode::Unset,
                status_message: String::new(),
                scope: scope.clone(),
            })
        })
        .collect()
}

fn any(v: &AttrValue) -> AnyValue {
    use any_value::Value;
    let arr = |values: Vec<AnyValue>| Value::ArrayValue(ArrayValue { values });
    let value = match v {
        AttrValue::Str(s) => Value::StringValue(s.to_string()),
        AttrValue::Bool(b) => Value::BoolValue(*b),
        AttrValue::Int(i) => Value::IntValue(*i),
        AttrValue::Float(f) => Value::DoubleValue(*f),
        AttrValue::StrArray(a) => arr(a.iter().map(|s| any(&AttrValue::Str(s.as_str().into()))).collect()),
        AttrValue::BoolArray(a) => arr(a.iter().map(|b| any(&AttrValue::Bool(*b))).collect()),
        AttrValue::IntArray(a) => arr(a.iter().map(|i| any(&AttrValue::Int(*i))).collect()),
        AttrValue::FloatArray(a) => arr(a.iter().map(|f| any(&AttrValue::Float(*f))).collect()),
    };
    AnyValue { value: Some(value) }
}

fn kvs(attrs: &Attributes) -> Vec<KeyValue> {
    attrs
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.to_string(),
            value: Some(any(v)),
            ..Default::default()
        })
        .collect()
}

/// What using the crate costs: copy each record into its prost types, then encode.
fn with_prost(spans: &[Arc<SpanRecord>], resource: &Attributes) -> Vec<u8> {
    let spans = spans
        .iter()
        .map(|r| Span {
            trace_id: r.trace_id.to_be_bytes().to_vec(),
            span_id: r.span_id.to_be_bytes().to_vec(),
            trace_state: r.tracestate.as_deref().unwrap_or_default().to_owned(),
            parent_span_id: Vec::new(),
            flags: u32::from(r.flags) | 0x100,
            name: r.name.to_string(),
            kind: r.kind as i32 + 1,
            start_time_unix_nano: r.start_ns,
            end_time_unix_nano: r.end_ns,
            attributes: kvs(&r.attributes),
            dropped_attributes_count: 0,
            events: vec![],
            dropped_events_count: 0,
            links: vec![],
            dropped_links_count: 0,
            status: Some(Status {
                message: r.status_message.clone(),
                code: r.status as i32,
            }),
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: kvs(resource),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "svc".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

fn ns_per_span(f: impl Fn() -> Vec<u8>) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..ROUNDS {
            black_box(f());
        }
        best = best.min(t.elapsed().as_nanos() as f64 / (ROUNDS * BATCH) as f64);
    }
    best
}

fn main() {
    let spans = batch();
    let resource: Attributes = vec![
        ("service.name".into(), AttrValue::Str("svc".into())),
        (
            "telemetry.sdk.name".into(),
            AttrValue::Str("victor-observability".into()),
        ),
    ];
    let ours = || {
        let mut out = Vec::new();
        encode_request(&mut out, &spans, &resource);
        out
    };
    let theirs = || with_prost(&spans, &resource);
    assert_eq!(ours(), theirs(), "both encoders must write the same bytes");
    let (a, b) = (ns_per_span(ours), ns_per_span(theirs));
    println!("otlp encode, {BATCH}-span batches, ns per span (best of 5):");
    println!("  ours            {a:8.1}");
    println!("  prost (crate)   {b:8.1}   ({:.2}x ours)", b / a);
    // As the extension encodes: into a buffer kept between batches.
    let scratch = std::cell::RefCell::new(Vec::new());
    let j = ns_per_span(|| {
        let mut out = scratch.take();
        out.clear();
        json::write_lines(&mut out, &spans, "svc", json::Style::COMPACT);
        let len = out.len();
        scratch.replace(out);
        vec![len as u8]
    });
    println!("json lines encode, ns per span: {j:.1}");
}
