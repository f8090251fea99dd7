//! Finished-span records: attributes under OpenTelemetry's value rules and per-span limits, events, status.

use std::sync::Arc;

/// An attribute value as OpenTelemetry allows it: a scalar or a homogeneous array of scalars.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
    StrArray(Vec<String>),
    BoolArray(Vec<bool>),
    IntArray(Vec<i64>),
    FloatArray(Vec<f64>),
}

pub type Attributes = Vec<(String, AttrValue)>;

/// Per-span bounds on memory; past them attributes and events are dropped and counted on the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_attributes: usize,
    pub max_events: usize,
    pub max_event_attributes: usize,
    /// Longer string values are cut to this many characters.
    pub max_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // OpenTelemetry's defaults for counts; strings are capped so one huge value cannot pin megabytes.
        Limits {
            max_attributes: 128,
            max_events: 128,
            max_event_attributes: 128,
            max_value_len: 4096,
        }
    }
}

impl Limits {
    /// Cuts over-long strings at a char boundary.
    pub fn clip(&self, value: AttrValue) -> AttrValue {
        let cut = |s: String| -> String {
            if s.len() <= self.max_value_len {
                return s;
            }
            let mut end = self.max_value_len;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_owned()
        };
        match value {
            AttrValue::Str(s) => AttrValue::Str(cut(s)),
            AttrValue::StrArray(v) => AttrValue::StrArray(v.into_iter().map(cut).collect()),
            other => other,
        }
    }
}

/// Sets `key` (replacing an existing value), or drops and counts it once the limit is reached.
pub fn set_attribute(attrs: &mut Attributes, dropped: &mut u32, limit: usize, key: String, value: AttrValue) {
    if let Some(slot) = attrs.iter_mut().find(|(k, _)| *k == key) {
        slot.1 = value;
    } else if attrs.len() < limit {
        attrs.push((key, value));
    } else {
        *dropped = dropped.saturating_add(1);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub time_ns: u64,
    pub attributes: Attributes,
    pub dropped_attributes: u32,
}

/// A reference to another span (a batch job's inputs, a message's producer), with attributes of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub trace_id: u128,
    pub span_id: u64,
    pub flags: u8,
    pub remote: bool,
    pub tracestate: Option<Arc<str>>,
    pub attributes: Attributes,
    pub dropped_attributes: u32,
}

/// Span kinds in OpenTelemetry's order; the OTLP enum value is this plus one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Internal = 0,
    Server = 1,
    Client = 2,
    Producer = 3,
    Consumer = 4,
}

impl Kind {
    // must match tracing.py: SpanKind values
    pub const NAMES: [&'static str; 5] = ["internal", "server", "client", "producer", "consumer"];

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "internal" | "INTERNAL" => Kind::Internal,
            "server" | "SERVER" => Kind::Server,
            "client" | "CLIENT" => Kind::Client,
            "producer" | "PRODUCER" => Kind::Producer,
            "consumer" | "CONSUMER" => Kind::Consumer,
            _ => return None,
        })
    }

    pub fn from_index(i: i64) -> Option<Kind> {
        [
            Kind::Internal,
            Kind::Server,
            Kind::Client,
            Kind::Producer,
            Kind::Consumer,
        ]
        .get(usize::try_from(i).ok()?)
        .copied()
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StatusCode {
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    // must match tracing.py: StatusCode values
    pub fn name(self) -> &'static str {
        ["unset", "ok", "error"][self as usize]
    }

    pub fn parse(s: &str) -> Option<StatusCode> {
        Some(match s.to_ascii_lowercase().as_str() {
            "unset" => StatusCode::Unset,
            "ok" => StatusCode::Ok,
            "error" => StatusCode::Error,
            _ => return None,
        })
    }
}

/// The instrumentation scope a span was made under (the tracer's name, or an OpenTelemetry library's).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    pub name: String,
    pub version: Option<String>,
}

/// A finished span: immutable, shared by the in-memory buffer and the export queue.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: u128,
    pub span_id: u64,
    /// 0 for a root span.
    pub parent_span_id: u64,
    pub parent_remote: bool,
    pub flags: u8,
    pub tracestate: Option<Arc<str>>,
    pub name: String,
    pub kind: Kind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Attributes,
    pub dropped_attributes: u32,
    pub events: Vec<Event>,
    pub dropped_events: u32,
    pub links: Vec<Link>,
    pub dropped_links: u32,
    pub status: StatusCode,
    pub status_message: String,
    pub scope: Arc<Scope>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_limit_counts_drops() {
        let mut attrs = Attributes::new();
        let mut dropped = 0;
        for i in 0..5 {
            set_attribute(&mut attrs, &mut dropped, 3, format!("k{i}"), AttrValue::Int(i));
        }
        set_attribute(&mut attrs, &mut dropped, 3, "k0".into(), AttrValue::Bool(true));
        assert_eq!(attrs.len(), 3);
        assert_eq!(dropped, 2);
        assert_eq!(attrs[0].1, AttrValue::Bool(true));
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let l = Limits {
            max_value_len: 3,
            ..Limits::default()
        };
        assert_eq!(l.clip(AttrValue::Str("héllo".into())), AttrValue::Str("hé".into()));
        assert_eq!(l.clip(AttrValue::Int(5)), AttrValue::Int(5));
    }

    #[test]
    fn kinds() {
        assert_eq!(Kind::parse("server"), Some(Kind::Server));
        assert_eq!(Kind::from_index(4), Some(Kind::Consumer));
        assert_eq!(Kind::from_index(5), None);
        assert_eq!(Kind::Client.name(), "client");
        assert_eq!(StatusCode::parse("ERROR"), Some(StatusCode::Error));
    }
}
