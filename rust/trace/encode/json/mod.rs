//! JSON lines of finished spans, byte for byte what Python's `json.dumps(span.to_dict())` wrote before.
//!
//! Not serde_json: the output must stay what users' log pipelines already parse, and that is Python's json
//! module with its defaults, `ensure_ascii` (every non-ASCII character as a lowercase `\uXXXX`, astral ones as
//! surrogate pairs) and `repr` floats (`1e+16`, `1e-05`, `NaN`, `Infinity`), neither of which serde_json writes
//! (`scalar.rs`).
//!
//! Each span is written into capacity reserved once for an upper bound of its line (`span_bound`), through a
//! cursor that checks nothing per byte: a capacity check on every push was most of the encoding time.

mod scalar;

use crate::trace::span::{AttrValue, Attributes, Event, Kind, Link, Scope, SpanRecord, StatusCode};
use scalar::{
    str_bound, with_cursor, write_bool, write_duration_ms, write_float_to, write_hex, write_i64, write_u64, Cursor,
    NUMBER,
};
pub use scalar::{write_float, write_str, Style};
use std::sync::Arc;

/// Appends one line per span (the JSON object and `\n`), in the field order of `SpanData.to_dict`.
pub fn write_lines(out: &mut Vec<u8>, spans: &[impl AsRef<SpanRecord>], service: &str, style: Style) {
    // The end of a line is the same for most spans of a batch (status unset, no tracestate, the one service and
    // scope): escaped once per batch and scope, then copied whole.
    let mut tail = Tail::default();
    for (i, s) in spans.iter().enumerate() {
        let r = s.as_ref();
        super::prefetch(spans.get(i + 1).map(AsRef::as_ref), spans.get(i + 2).map(AsRef::as_ref));
        tail.prepare(r, service, style);
        let bound = span_bound(r, service, &tail);
        // `span_bound` is an upper bound of what `write_span` writes (every string at six bytes per input byte,
        // every number at its longest): the cursor asserts it in debug builds (the tests), and the length is
        // checked against it before it is kept.
        with_cursor(out, bound, |w| {
            write_span(w, r, service, style, &tail);
            w.byte(b'\n');
        });
    }
}

/// The constant end of a span's line, for spans of one scope with no status message, tracestate, drop counts or
/// links: `,"status":{"code":"unset","message":""},"tracestate":null,"service_name":"svc","scope":"scope"}` for
/// each status code, separators as the style says.
#[derive(Default)]
struct Tail {
    scope: Option<Arc<Scope>>,
    end: [Vec<u8>; 3],
}

impl Tail {
    fn prepare(&mut self, r: &SpanRecord, service: &str, style: Style) {
        if self.scope.as_ref().is_some_and(|s| Arc::ptr_eq(s, &r.scope)) {
            return;
        }
        let mut names = Vec::new();
        with_cursor(&mut names, 64 + str_bound(service) + str_bound(&r.scope.name), |w| {
            w.field(b"service_name", style);
            w.str(service);
            w.field(b"scope", style);
            w.str(&r.scope.name);
            w.byte(b'}');
        });
        let (sep, col) = if style.spaced { (", ", ": ") } else { (",", ":") };
        for (code, end) in [StatusCode::Unset, StatusCode::Ok, StatusCode::Error]
            .into_iter()
            .zip(&mut self.end)
        {
            *end = format!(
                "{sep}\"status\"{col}{{\"code\"{col}\"{}\"{sep}\"message\"{col}\"\"}}{sep}\"tracestate\"{col}null",
                code.name()
            )
            .into_bytes();
            end.extend_from_slice(&names);
        }
        self.scope = Some(r.scope.clone());
    }
}

// Upper bounds of what the writers below write, in bytes. Generous: a wrong bound is memory corruption, a loose
// one costs only reserved capacity.
/// The fixed text of a span line: field names, separators, ids, numbers, counts (about 500 at most).
const SPAN_FIXED: usize = 768;
/// The fixed text of an event or link object.
const ITEM_FIXED: usize = 192;

fn value_bound(v: &AttrValue) -> usize {
    match v {
        AttrValue::Str(s) => str_bound(s),
        AttrValue::Bool(_) | AttrValue::Int(_) | AttrValue::Float(_) => NUMBER,
        AttrValue::StrArray(a) => 2 + a.iter().map(|s| str_bound(s) + 2).sum::<usize>(),
        AttrValue::BoolArray(a) => 2 + a.len() * 7,
        AttrValue::IntArray(a) => 2 + a.len() * (NUMBER + 2),
        AttrValue::FloatArray(a) => 2 + a.len() * (NUMBER + 2),
    }
}

fn attrs_bound(attrs: &Attributes) -> usize {
    2 + attrs
        .iter()
        .map(|(k, v)| str_bound(k) + 4 + value_bound(v))
        .sum::<usize>()
}

fn span_bound(r: &SpanRecord, service: &str, tail: &Tail) -> usize {
    let mut n = SPAN_FIXED
        + str_bound(&r.name)
        + attrs_bound(&r.attributes)
        + str_bound(&r.status_message)
        + r.tracestate.as_deref().map_or(0, str_bound)
        + str_bound(service)
        + str_bound(&r.scope.name)
        + tail.end[r.status as usize].len();
    for e in &r.events {
        n += ITEM_FIXED + str_bound(&e.name) + attrs_bound(&e.attributes);
    }
    for l in &r.links {
        n += ITEM_FIXED + attrs_bound(&l.attributes);
    }
    n
}

// must match rust/py/trace/data.rs: SpanData.to_dict (keys, order, and when the optional keys appear)
fn write_span(w: &mut Cursor, r: &SpanRecord, service: &str, style: Style, tail: &Tail) {
    w.byte(b'{');
    w.name(b"name", style);
    w.str(&r.name);
    w.field(b"trace_id", style);
    write_hex(w, r.trace_id, 32);
    w.field(b"span_id", style);
    write_hex(w, r.span_id as u128, 16);
    w.field(b"parent_span_id", style);
    if r.parent_span_id == 0 {
        w.bytes(b"null");
    } else {
        write_hex(w, r.parent_span_id as u128, 16);
    }
    w.field(b"kind", style);
    // must match span.rs: Kind::NAMES (each arm a copy of known length, inlined: no call to memcpy)
    match r.kind {
        Kind::Internal => w.bytes(b"\"internal\""),
        Kind::Server => w.bytes(b"\"server\""),
        Kind::Client => w.bytes(b"\"client\""),
        Kind::Producer => w.bytes(b"\"producer\""),
        Kind::Consumer => w.bytes(b"\"consumer\""),
    }
    w.field(b"start_time_unix_nano", style);
    write_u64(w, r.start_ns);
    w.field(b"end_time_unix_nano", style);
    write_u64(w, r.end_ns);
    w.field(b"duration_ms", style);
    write_duration_ms(w, r.end_ns.wrapping_sub(r.start_ns));
    w.field(b"attributes", style);
    write_attrs(w, &r.attributes, style);
    w.field(b"events", style);
    write_events(w, &r.events, style);
    let plain_tail = r.tracestate.is_none()
        && r.status_message.is_empty()
        && r.dropped_attributes == 0
        && r.dropped_events == 0
        && r.links.is_empty()
        && tail.scope.as_ref().is_some_and(|s| Arc::ptr_eq(s, &r.scope));
    if plain_tail {
        w.bytes(&tail.end[r.status as usize]);
        return;
    }
    w.field(b"status", style);
    w.byte(b'{');
    w.name(b"code", style);
    w.byte(b'"');
    w.bytes(r.status.name().as_bytes());
    w.byte(b'"');
    w.field(b"message", style);
    w.str(&r.status_message);
    w.byte(b'}');
    w.field(b"tracestate", style);
    match &r.tracestate {
        Some(t) => w.str(t),
        None => w.bytes(b"null"),
    }
    w.field(b"service_name", style);
    w.str(service);
    w.field(b"scope", style);
    w.str(&r.scope.name);
    if r.dropped_attributes > 0 || r.dropped_events > 0 {
        w.field(b"dropped_attributes", style);
        write_u64(w, r.dropped_attributes.into());
        w.field(b"dropped_events", style);
        write_u64(w, r.dropped_events.into());
    }
    if !r.links.is_empty() {
        w.field(b"links", style);
        write_links(w, &r.links, style);
    }
    w.byte(b'}');
}

fn write_events(w: &mut Cursor, events: &[Event], style: Style) {
    w.byte(b'[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            w.item(style);
        }
        w.byte(b'{');
        w.name(b"name", style);
        w.str(&e.name);
        w.field(b"timestamp_ns", style);
        write_u64(w, e.time_ns);
        w.field(b"attributes", style);
        write_attrs(w, &e.attributes, style);
        if e.dropped_attributes > 0 {
            w.field(b"dropped_attributes", style);
            write_u64(w, e.dropped_attributes.into());
        }
        w.byte(b'}');
    }
    w.byte(b']');
}

// must match rust/py/trace/data.rs: links_to_py
fn write_links(w: &mut Cursor, links: &[Link], style: Style) {
    w.byte(b'[');
    for (i, l) in links.iter().enumerate() {
        if i > 0 {
            w.item(style);
        }
        w.byte(b'{');
        w.name(b"trace_id", style);
        write_hex(w, l.trace_id, 32);
        w.field(b"span_id", style);
        write_hex(w, l.span_id as u128, 16);
        w.field(b"attributes", style);
        write_attrs(w, &l.attributes, style);
        if l.dropped_attributes > 0 {
            w.field(b"dropped_attributes", style);
            write_u64(w, l.dropped_attributes.into());
        }
        w.byte(b'}');
    }
    w.byte(b']');
}

fn write_attrs(w: &mut Cursor, attrs: &Attributes, style: Style) {
    w.byte(b'{');
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            w.item(style);
        }
        w.str(k);
        w.byte(b':');
        if style.spaced {
            w.byte(b' ');
        }
        write_value(w, v, style);
    }
    w.byte(b'}');
}

fn write_value(w: &mut Cursor, v: &AttrValue, style: Style) {
    fn array<T>(w: &mut Cursor, items: &[T], style: Style, mut each: impl FnMut(&mut Cursor, &T)) {
        w.byte(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                w.item(style);
            }
            each(w, item);
        }
        w.byte(b']');
    }
    match v {
        AttrValue::Str(s) => w.str(s),
        AttrValue::Bool(b) => write_bool(w, *b),
        AttrValue::Int(i) => write_i64(w, *i),
        AttrValue::Float(f) => write_float_to(w, *f),
        AttrValue::StrArray(a) => array(w, a, style, |w, s| w.str(s)),
        AttrValue::BoolArray(a) => array(w, a, style, |w, b| write_bool(w, *b)),
        AttrValue::IntArray(a) => array(w, a, style, |w, i| write_i64(w, *i)),
        AttrValue::FloatArray(a) => array(w, a, style, |w, f| write_float_to(w, *f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::span::{Kind, Scope, StatusCode};
    use std::sync::Arc;

    #[test]
    fn a_span_line() {
        let r = SpanRecord {
            trace_id: 1,
            span_id: 2,
            parent_span_id: 0,
            parent_remote: false,
            flags: 1,
            tracestate: None,
            name: "op".into(),
            kind: Kind::Server,
            start_ns: 1_000,
            end_ns: 2_500_000,
            attributes: vec![
                ("a".into(), AttrValue::Int(-3)),
                ("b".into(), AttrValue::FloatArray(vec![1.0, 0.5])),
            ],
            dropped_attributes: 0,
            events: vec![],
            dropped_events: 0,
            links: vec![],
            dropped_links: 0,
            status: StatusCode::Ok,
            status_message: String::new(),
            scope: Arc::new(Scope {
                name: "svc".into(),
                version: None,
            }),
        };
        let mut out = Vec::new();
        write_lines(&mut out, &[Arc::new(r)], "svc", Style::COMPACT);
        let want = concat!(
            r#"{"name":"op","trace_id":"00000000000000000000000000000001","span_id":"0000000000000002","#,
            r#""parent_span_id":null,"kind":"server","start_time_unix_nano":1000,"end_time_unix_nano":2500000,"#,
            r#""duration_ms":2.499,"attributes":{"a":-3,"b":[1.0,0.5]},"events":[],"#,
            r#""status":{"code":"ok","message":""},"tracestate":null,"service_name":"svc","scope":"svc"}"#,
            "\n"
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn the_bound_holds_for_the_worst_strings() {
        // Strings of the characters that escape longest, in every field that takes a string; the cursor asserts
        // the bound on every write in this (debug) build.
        for s in [
            "\u{1}".repeat(50),
            "\u{1f600}".repeat(40),
            "\u{e9}".repeat(70),
            "\"\\".repeat(33),
        ] {
            let attrs: Attributes = vec![
                (s.as_str().into(), AttrValue::Str(s.as_str().into())),
                (
                    s.as_str().into(),
                    AttrValue::StrArray(vec![s.clone(), String::new(), s.clone()]),
                ),
                (
                    "f".into(),
                    AttrValue::FloatArray(vec![-1.7976931348623157e308, -2.2250738585072014e-308, f64::NAN]),
                ),
                ("i".into(), AttrValue::IntArray(vec![i64::MIN, i64::MAX])),
                ("b".into(), AttrValue::BoolArray(vec![false, true, false])),
            ];
            let r = SpanRecord {
                trace_id: u128::MAX,
                span_id: u64::MAX,
                parent_span_id: u64::MAX,
                parent_remote: true,
                flags: 1,
                tracestate: Some(s.as_str().into()),
                name: s.as_str().into(),
                kind: Kind::Consumer,
                start_ns: 0,
                end_ns: u64::MAX,
                attributes: attrs.clone(),
                dropped_attributes: u32::MAX,
                events: vec![Event {
                    name: s.clone(),
                    time_ns: u64::MAX,
                    attributes: attrs.clone(),
                    dropped_attributes: u32::MAX,
                }],
                dropped_events: u32::MAX,
                links: vec![Link {
                    trace_id: u128::MAX,
                    span_id: u64::MAX,
                    flags: 1,
                    remote: true,
                    tracestate: None,
                    attributes: attrs,
                    dropped_attributes: u32::MAX,
                }],
                dropped_links: u32::MAX,
                status: StatusCode::Error,
                status_message: s.clone(),
                scope: Arc::new(Scope {
                    name: s.clone(),
                    version: None,
                }),
            };
            for style in [Style::COMPACT, Style::DEFAULT] {
                let mut out = Vec::new();
                write_lines(&mut out, &[Arc::new(r.clone())], &s, style);
                assert!(out.ends_with(b"}\n"));
            }
        }
    }

    #[test]
    fn every_kind_by_its_name() {
        for (i, name) in Kind::NAMES.iter().enumerate() {
            let kind = Kind::from_index(i as i64).unwrap();
            let r = SpanRecord {
                trace_id: 1,
                span_id: 2,
                parent_span_id: 0,
                parent_remote: false,
                flags: 1,
                tracestate: None,
                name: "n".into(),
                kind,
                start_ns: 0,
                end_ns: 0,
                attributes: vec![],
                dropped_attributes: 0,
                events: vec![],
                dropped_events: 0,
                links: vec![],
                dropped_links: 0,
                status: StatusCode::Unset,
                status_message: String::new(),
                scope: Arc::new(Scope::default()),
            };
            let mut out = Vec::new();
            write_lines(&mut out, &[Arc::new(r)], "s", Style::COMPACT);
            assert!(String::from_utf8(out)
                .unwrap()
                .contains(&format!(r#","kind":"{name}","#)));
        }
    }

    #[test]
    fn spans_of_two_scopes_and_statuses_in_one_batch() {
        // The per-batch tail is cached by scope: a change of scope, status or tracestate must show in the line.
        let base = |scope: &Arc<Scope>, status: StatusCode, tracestate: Option<&str>| SpanRecord {
            trace_id: 1,
            span_id: 2,
            parent_span_id: 3,
            parent_remote: false,
            flags: 1,
            tracestate: tracestate.map(Into::into),
            name: "n".into(),
            kind: Kind::Internal,
            start_ns: 0,
            end_ns: 1_000_000,
            attributes: vec![],
            dropped_attributes: 0,
            events: vec![],
            dropped_events: 0,
            links: vec![],
            dropped_links: 0,
            status,
            status_message: String::new(),
            scope: scope.clone(),
        };
        let (a, b) = (
            Arc::new(Scope {
                name: "a".into(),
                version: None,
            }),
            Arc::new(Scope {
                name: "b".into(),
                version: None,
            }),
        );
        let spans = [
            Arc::new(base(&a, StatusCode::Unset, None)),
            Arc::new(base(&b, StatusCode::Ok, None)),
            Arc::new(base(&a, StatusCode::Error, Some("k=v"))),
            Arc::new(base(&a, StatusCode::Error, None)),
        ];
        let mut out = Vec::new();
        write_lines(&mut out, &spans, "svc", Style::DEFAULT);
        let text = String::from_utf8(out).unwrap();
        let tails: Vec<&str> = text.lines().map(|l| &l[l.find("\"status\"").unwrap()..]).collect();
        assert_eq!(
            tails,
            [
                r#""status": {"code": "unset", "message": ""}, "tracestate": null, "service_name": "svc", "scope": "a"}"#,
                r#""status": {"code": "ok", "message": ""}, "tracestate": null, "service_name": "svc", "scope": "b"}"#,
                r#""status": {"code": "error", "message": ""}, "tracestate": "k=v", "service_name": "svc", "scope": "a"}"#,
                r#""status": {"code": "error", "message": ""}, "tracestate": null, "service_name": "svc", "scope": "a"}"#,
            ]
        );
    }
}
