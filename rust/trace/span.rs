//! Finished-span records: attributes under OpenTelemetry's value rules and per-span limits, events, status.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Bytes a `Text` holds inline.
const INLINE: usize = 22;

/// An immutable string kept inline up to 22 bytes: span names, attribute keys and most string values then need no
/// allocation. A span is made on a request thread and freed on the export thread, and those cross-thread frees of
/// a String per name, key and value were the largest cost of exporting a span after encoding it.
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    // Invariant: `.1[..len]` is valid UTF-8 (copied from a str).
    Inline(u8, [u8; INLINE]),
    Heap(Box<str>),
}

impl Text {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: the inline bytes were copied from a str, whole (see `From<&str>`).
            Repr::Inline(len, bytes) => unsafe { std::str::from_utf8_unchecked(&bytes[..usize::from(*len)]) },
            Repr::Heap(s) => s,
        }
    }
}

impl From<&str> for Text {
    #[inline]
    fn from(s: &str) -> Text {
        if s.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Text(Repr::Inline(s.len() as u8, bytes))
        } else {
            Text(Repr::Heap(s.into()))
        }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        if s.len() <= INLINE {
            Text::from(s.as_str())
        } else {
            Text(Repr::Heap(s.into_boxed_str()))
        }
    }
}

impl Default for Text {
    fn default() -> Text {
        Text(Repr::Inline(0, [0; INLINE]))
    }
}

impl Deref for Text {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An attribute value as OpenTelemetry allows it: a scalar or a homogeneous array of scalars.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(Text),
    Bool(bool),
    Int(i64),
    Float(f64),
    StrArray(Vec<String>),
    BoolArray(Vec<bool>),
    IntArray(Vec<i64>),
    FloatArray(Vec<f64>),
}

pub type Attributes = Vec<(Text, AttrValue)>;

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
        let end = |s: &str| -> Option<usize> {
            if s.len() <= self.max_value_len {
                return None;
            }
            let mut end = self.max_value_len;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Some(end)
        };
        match value {
            AttrValue::Str(s) => match end(&s) {
                None => AttrValue::Str(s),
                Some(n) => AttrValue::Str(Text::from(&s[..n])),
            },
            AttrValue::StrArray(v) => AttrValue::StrArray(
                v.into_iter()
                    .map(|s| match end(&s) {
                        None => s,
                        Some(n) => s[..n].to_owned(),
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Sets `key` (replacing an existing value), or drops and counts it once the limit is reached.
pub fn set_attribute(attrs: &mut Attributes, dropped: &mut u32, limit: usize, key: Text, value: AttrValue) {
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
    pub name: Text,
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
            set_attribute(&mut attrs, &mut dropped, 3, format!("k{i}").into(), AttrValue::Int(i));
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
    fn text_inline_and_on_the_heap() {
        for s in [
            "",
            "a",
            "http.status_code",
            &"x".repeat(22),
            &"y".repeat(23),
            "h\u{e9}llo \u{1f600}",
            &"\u{e9}".repeat(40),
        ] {
            let t = Text::from(s);
            assert_eq!(t.as_str(), s);
            assert_eq!(Text::from(s.to_owned()), t);
            assert_eq!(t.clone(), s);
            assert_eq!(format!("{t}|{t:?}"), format!("{s}|{s:?}"));
        }
        assert!(matches!(Text::from("x".repeat(22)).0, Repr::Inline(22, _)));
        assert!(matches!(Text::from("x".repeat(23)).0, Repr::Heap(_)));
        assert_eq!(std::mem::size_of::<Text>(), 24, "as small as the String it replaces");
        let l = Limits {
            max_value_len: 25,
            ..Limits::default()
        };
        assert_eq!(
            l.clip(AttrValue::Str("\u{e9}".repeat(20).into())),
            AttrValue::Str("\u{e9}".repeat(12).into())
        );
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
