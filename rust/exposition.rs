//! Prometheus text 0.0.4 and OpenMetrics 1.0.0 encoders, byte-for-byte with prometheus-client 0.26.

use crate::metrics::exemplar::{Exemplar, ExemplarLabels};
use crate::metrics::family::{Family, Kind, Series, Value};
use crate::trace::hex::encode_into;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One element of an Accept or Accept-Encoding list (RFC 9110 section 12.4.2): the value, its
/// parameters other than q, and its weight. Names compare case-insensitively.
struct Element<'a> {
    value: &'a str,
    params: Vec<(&'a str, &'a str)>,
    q: f32,
}

/// The elements of a header list; one with an unreadable weight is skipped, as it cannot be honoured.
fn elements(header: &str) -> impl Iterator<Item = Element<'_>> {
    header.split(',').filter_map(|part| {
        let mut fields = part.split(';').map(str::trim);
        let value = fields.next().filter(|v| !v.is_empty())?;
        let mut params = Vec::new();
        let mut q = 1.0;
        for f in fields {
            let (k, v) = f.split_once('=').unwrap_or((f, ""));
            let (k, v) = (k.trim(), v.trim().trim_matches('"'));
            if k.eq_ignore_ascii_case("q") {
                q = v.parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q))?;
            } else if !k.is_empty() {
                params.push((k, v));
            }
        }
        Some(Element { value, params, q })
    })
}

/// The weight an Accept header gives `type/subtype` at `version`: that of the most specific range
/// matching it (with parameters > `type/subtype` > `type/*` > `*/*`), with its specificity; None
/// when nothing matches. A range naming another `version` does not match.
fn media_quality(accept: &str, ty: &str, subtype: &str, version: &str) -> Option<(u8, f32)> {
    let mut best: Option<(u8, f32)> = None;
    for e in elements(accept) {
        let (t, s) = e.value.split_once('/').unwrap_or((e.value, ""));
        let (t, s) = (t.trim(), s.trim());
        let specificity = match (t, s) {
            ("*", "*") => 0,
            (t, "*") if t.eq_ignore_ascii_case(ty) => 1,
            (t, s) if t.eq_ignore_ascii_case(ty) && s.eq_ignore_ascii_case(subtype) => {
                2 + u8::from(!e.params.is_empty())
            }
            _ => continue,
        };
        let other_version = e
            .params
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("version") && *v != version);
        if other_version {
            continue;
        }
        best = match best {
            Some((sp, q)) if sp > specificity || (sp == specificity && q >= e.q) => Some((sp, q)),
            _ => Some((specificity, e.q)),
        };
    }
    best
}

/// Picks the format a scraper asked for in its Accept header, weighing q-values as RFC 9110 says.
/// OpenMetrics when it weighs more than the text format, or as much and named (as
/// prometheus-client's `choose_encoder` picks it whenever it is named); the text format otherwise,
/// also when the header accepts neither (a scrape is better answered than refused with 406).
pub fn negotiate(accept: &str) -> Format {
    let om = media_quality(accept, "application", "openmetrics-text", "1.0.0");
    let text = media_quality(accept, "text", "plain", "0.0.4").map_or(0.0, |(_, q)| q);
    match om {
        Some((sp, q)) if q > 0.0 && (q > text || (q == text && sp >= 2)) => Format::OpenMetrics,
        _ => Format::Text,
    }
}

/// Whether to gzip for this Accept-Encoding (RFC 9110 section 12.5.3): gzip must be acceptable
/// (q > 0, by name or through `*`) and, when the header weighs `identity` (by name or through `*`),
/// weigh at least as much. Unweighed, no coding is merely acceptable: `br, gzip;q=0.8` gets gzip.
pub fn wants_gzip(accept_encoding: &str) -> bool {
    let (mut gzip, mut identity, mut any) = (None, None, None);
    for e in elements(accept_encoding) {
        let slot = if e.value.eq_ignore_ascii_case("gzip") || e.value.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if e.value.eq_ignore_ascii_case("identity") {
            &mut identity
        } else if e.value == "*" {
            &mut any
        } else {
            continue;
        };
        *slot = Some(slot.map_or(e.q, |q: f32| q.max(e.q)));
    }
    let gzip = gzip.or(any).unwrap_or(0.0);
    gzip > 0.0 && identity.or(any).is_none_or(|identity| gzip >= identity)
}

/// Python's `repr(float)`: shortest round-trip digits, exponent outside 1e-4 <= |v| < 1e16.
pub fn python_float_repr(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("nan");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "inf" } else { "-inf" });
        return;
    }
    if v.is_sign_negative() {
        out.push('-');
    }
    let a = v.abs();
    if a == 0.0 {
        out.push_str("0.0");
        return;
    }
    // Whole numbers below 2^53 print as themselves: the common case (counts) without float formatting.
    if a.fract() == 0.0 && a < 1e16 {
        let mut buf = itoa_u64(a as u64);
        buf.push_str(".0");
        out.push_str(&buf);
        return;
    }
    let sci = format!("{a:e}");
    let (mant, exp) = sci.split_once('e').expect("LowerExp always has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let decpt = exp + 1;
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            (0..-decpt).for_each(|_| out.push('0'));
            out.push_str(&digits);
        } else if decpt as usize >= digits.len() {
            out.push_str(&digits);
            (0..decpt as usize - digits.len()).for_each(|_| out.push('0'));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if decpt - 1 < 0 { '-' } else { '+' });
        let e = (decpt - 1).abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(&itoa_u64(e as u64));
    }
}

fn itoa_u64(mut n: u64) -> String {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    String::from_utf8_lossy(&buf[i..]).into_owned()
}

/// prometheus-client's `floatToGoString`: Python's repr, with Go's earlier switch to exponents.
pub fn go_float(v: f64, out: &mut String) {
    if v == f64::INFINITY {
        out.push_str("+Inf");
        return;
    }
    if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
        return;
    }
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    let start = out.len();
    python_float_repr(v, out);
    let s = &out[start..];
    if v > 0.0 {
        if let Some(dot) = s.find('.') {
            if dot > 6 {
                let mut mantissa = String::with_capacity(s.len() + 1);
                mantissa.push_str(&s[..1]);
                mantissa.push('.');
                mantissa.push_str(&s[1..dot]);
                mantissa.push_str(&s[dot + 1..]);
                let mantissa = mantissa.trim_end_matches(['0', '.']).to_owned();
                out.truncate(start);
                out.push_str(&mantissa);
                out.push_str("e+");
                if dot - 1 < 10 {
                    out.push('0');
                }
                out.push_str(&itoa_u64((dot - 1) as u64));
            }
        }
    }
}

/// Escapes a label value (both formats): backslash, newline, double quote.
fn escape_label_value(v: &str, out: &mut String) {
    if !v.contains(['\\', '\n', '"']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Escapes HELP text: backslash and newline in text 0.0.4; also double quote in OpenMetrics.
fn escape_help(v: &str, format: Format, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Writes `{a="x",le="1.0",z="y"}`: the series' sorted labels with `le` merged in its place.
fn write_labels(series: &Series, le: Option<&str>, out: &mut String) {
    if series.labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let mut le = le;
    let mut sep = |out: &mut String| {
        if !first {
            out.push(',');
        }
        first = false;
    };
    for (name, value) in series.labels.iter() {
        if let Some(l) = le {
            if "le" < &**name {
                sep(out);
                out.push_str("le=\"");
                out.push_str(l);
                out.push('"');
                le = None;
            }
        }
        sep(out);
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(value, out);
        out.push('"');
    }
    if let Some(l) = le {
        sep(out);
        out.push_str("le=\"");
        out.push_str(l);
        out.push('"');
    }
    out.push('}');
}

fn sample(out: &mut String, name: &str, suffix: &str, series: &Series, le: Option<&str>, value: f64) {
    out.push_str(name);
    out.push_str(suffix);
    write_labels(series, le, out);
    out.push(' ');
    go_float(value, out);
    out.push('\n');
}

/// Appends ` # {span_id="...",trace_id="..."} value timestamp` (OpenMetrics only), as prometheus-client writes it.
fn write_exemplar(e: &Exemplar, out: &mut String) {
    // The sample's newline is already written: the exemplar goes before it.
    out.pop();
    out.push_str(" # {");
    match &e.labels {
        ExemplarLabels::Span { trace_id, span_id } => {
            let mut buf = [0u8; 32];
            out.push_str("span_id=\"");
            encode_into(*span_id as u128, 16, &mut buf);
            out.push_str(std::str::from_utf8(&buf[..16]).unwrap_or_default());
            out.push_str("\",trace_id=\"");
            encode_into(*trace_id, 32, &mut buf);
            out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
            out.push('"');
        }
        ExemplarLabels::Custom(pairs) => {
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                escape_label_value(v, out);
                out.push('"');
            }
        }
    }
    out.push_str("} ");
    go_float(e.value, out);
    out.push(' ');
    python_float_repr(e.timestamp, out);
    out.push('\n');
}

fn encode_family(f: &Family, series: &[Arc<Series>], format: Format, out: &mut String) {
    let exposed = match (f.kind, format) {
        (Kind::Counter, Format::Text) => format!("{}_total", f.name),
        _ => f.name.clone(),
    };
    out.push_str("# HELP ");
    out.push_str(&exposed);
    out.push(' ');
    escape_help(&f.help, format, out);
    out.push_str("\n# TYPE ");
    out.push_str(&exposed);
    out.push(' ');
    out.push_str(f.kind.as_str());
    out.push('\n');
    let les: Vec<String> = f
        .bounds()
        .unwrap_or(&[])
        .iter()
        .map(|&b| {
            let mut s = String::new();
            go_float(b, &mut s);
            s
        })
        .collect();
    let has_sum = f.bounds().is_some_and(|b| b[0] >= 0.0);
    for s in series {
        match &s.value {
            Value::Counter(c) => sample(out, &f.name, "_total", s, None, c.get()),
            Value::Gauge(g) => sample(out, &f.name, "", s, None, g.get()),
            Value::Histogram(h) => {
                let cumulative = h.cumulative();
                // Exemplars exist in OpenMetrics only: the text format 0.0.4 has no syntax for them.
                let exemplars = if format == Format::OpenMetrics {
                    s.exemplars()
                } else {
                    Vec::new()
                };
                for (i, (le, &n)) in les.iter().zip(&cumulative).enumerate() {
                    sample(out, &f.name, "_bucket", s, Some(le), n as f64);
                    if let Some(Some(e)) = exemplars.get(i) {
                        write_exemplar(e, out);
                    }
                }
                sample(out, &f.name, "_count", s, None, *cumulative.last().unwrap_or(&0) as f64);
                if has_sum {
                    sample(out, &f.name, "_sum", s, None, h.sum());
                }
            }
        }
    }
}

/// Encodes families in the order given (the registry's registration order).
pub fn encode(families: &[Arc<Family>], format: Format) -> String {
    encode_snapshots(&snapshot(families), format)
}

/// Each family with its series, copied under the family locks; encoding it takes no lock.
pub type Snapshot = Vec<(Arc<Family>, Vec<Arc<Series>>)>;

pub fn snapshot(families: &[Arc<Family>]) -> Snapshot {
    families.iter().map(|f| (f.clone(), f.snapshot())).collect()
}

/// Encodes a snapshot: the extension runs this with the GIL released, so it must not lock a family
/// (a fork taken meanwhile would leave the child a lock held by a thread it does not have).
pub fn encode_snapshots(families: &[(Arc<Family>, Vec<Arc<Series>>)], format: Format) -> String {
    let mut out = String::with_capacity(4096);
    for (f, series) in families {
        if f.hide_when_empty && series.is_empty() {
            continue;
        }
        encode_family(f, series, format, &mut out);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::family::{Family, FamilySpec};

    fn repr(v: f64) -> String {
        let mut s = String::new();
        python_float_repr(v, &mut s);
        s
    }

    fn go(v: f64) -> String {
        let mut s = String::new();
        go_float(v, &mut s);
        s
    }

    #[test]
    fn floats_print_like_python() {
        assert_eq!(repr(1.0), "1.0");
        assert_eq!(repr(0.1), "0.1");
        assert_eq!(repr(123.4), "123.4");
        assert_eq!(repr(1e16), "1e+16");
        assert_eq!(repr(1234567890123456.0), "1234567890123456.0");
        assert_eq!(repr(0.0001), "0.0001");
        assert_eq!(repr(0.00001), "1e-05");
        assert_eq!(repr(-2.5), "-2.5");
        assert_eq!(repr(1.5e300), "1.5e+300");
        assert_eq!(repr(-0.0), "-0.0");
        assert_eq!(repr(2.5e-7), "2.5e-07");
    }

    #[test]
    fn floats_print_like_go() {
        assert_eq!(go(f64::INFINITY), "+Inf");
        assert_eq!(go(f64::NAN), "NaN");
        assert_eq!(go(1234567.0), "1.234567e+06");
        assert_eq!(go(10000000.0), "1e+07");
        assert_eq!(go(123456.0), "123456.0");
        assert_eq!(go(-12345678.0), "-12345678.0");
        assert_eq!(go(10.0), "10.0");
    }

    #[test]
    fn negotiates_openmetrics() {
        assert_eq!(
            negotiate("application/openmetrics-text; version=1.0.0,text/plain;q=0.5"),
            Format::OpenMetrics
        );
        assert_eq!(negotiate("application/openmetrics-text"), Format::OpenMetrics);
        assert_eq!(negotiate("application/openmetrics-text; version=0.0.1"), Format::Text);
        assert_eq!(negotiate("text/plain"), Format::Text);
        assert_eq!(negotiate(""), Format::Text);
    }

    #[test]
    fn negotiation_weighs_q_values_and_ignores_case() {
        use Format::*;
        assert_eq!(negotiate("application/openmetrics-text;q=0"), Text);
        assert_eq!(negotiate("application/openmetrics-text;q=0, */*"), Text);
        assert_eq!(negotiate("APPLICATION/OpenMetrics-Text; Version=1.0.0"), OpenMetrics);
        assert_eq!(negotiate("application/openmetrics-text;q=0.2, text/plain;q=0.9"), Text);
        assert_eq!(
            negotiate("text/plain;q=0.1, application/openmetrics-text;Q=0.5"),
            OpenMetrics
        );
        assert_eq!(negotiate("*/*"), Text);
        // Only OpenMetrics is acceptable here.
        assert_eq!(negotiate("application/*"), OpenMetrics);
        assert_eq!(negotiate("application/*;q=0.9, text/plain;q=0.5"), OpenMetrics);
        // A more specific range overrides a general one, whatever their order.
        assert_eq!(negotiate("application/openmetrics-text;q=0, application/*"), Text);
        assert_eq!(negotiate("application/openmetrics-text;q=abc"), Text);
        // What Prometheus 3 sends.
        let prom3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
                     application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,\
                     text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
        assert_eq!(negotiate(prom3), OpenMetrics);
    }

    #[test]
    fn gzip_only_when_accepted_and_wanted() {
        assert!(wants_gzip("gzip"));
        assert!(wants_gzip("GZip, deflate, br"));
        assert!(wants_gzip("*"));
        assert!(wants_gzip("identity;q=0.5, gzip"));
        assert!(wants_gzip("br, gzip;q=0.8"));
        assert!(!wants_gzip(""));
        assert!(!wants_gzip("identity"));
        assert!(!wants_gzip("gzip;q=0"));
        assert!(!wants_gzip("gzip;q=0, *"));
        assert!(!wants_gzip("deflate, br"));
        assert!(!wants_gzip("gzip;q=0.5, identity"));
        assert!(!wants_gzip("*;q=0"));
    }

    #[test]
    fn encodes_histogram_with_le_in_label_order() {
        let mut spec = FamilySpec::new("h", "a \"help\"\\\n", Kind::Histogram, &["a", "z"]);
        spec.buckets = Some(vec![1.0, 2.0]);
        let f = Family::new(spec, None).unwrap();
        f.lookup(&["x\"", "y\n"]).series.observe(1.5);
        let text = encode(std::slice::from_ref(&f), Format::Text);
        assert_eq!(
            text,
            "# HELP h a \"help\"\\\\\\n\n# TYPE h histogram\n\
             h_bucket{a=\"x\\\"\",le=\"1.0\",z=\"y\\n\"} 0.0\n\
             h_bucket{a=\"x\\\"\",le=\"2.0\",z=\"y\\n\"} 1.0\n\
             h_bucket{a=\"x\\\"\",le=\"+Inf\",z=\"y\\n\"} 1.0\n\
             h_count{a=\"x\\\"\",z=\"y\\n\"} 1.0\n\
             h_sum{a=\"x\\\"\",z=\"y\\n\"} 1.5\n"
        );
        let om = encode(&[f], Format::OpenMetrics);
        assert!(om.starts_with("# HELP h a \\\"help\\\"\\\\\\n\n"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn exemplars_in_openmetrics_only() {
        let mut spec = FamilySpec::new("h", "help", Kind::Histogram, &[]);
        spec.buckets = Some(vec![1.0, 2.0]);
        let f = Family::new(spec, None).unwrap();
        let s = f.lookup(&[]).series;
        s.observe(1.5);
        let text_before = encode(std::slice::from_ref(&f), Format::Text);
        let labels = ExemplarLabels::Span {
            trace_id: 0x0af7651916cd43dd8448eb211c80319c,
            span_id: 0xb7ad6b7169203331,
        };
        s.set_exemplar(1.5, labels, 1700000000.5);
        let custom = crate::metrics::exemplar::check_labels(vec![("user".into(), "a\"b".into())]).unwrap();
        s.set_exemplar(9.0, custom, 1.25);
        assert_eq!(encode(std::slice::from_ref(&f), Format::Text), text_before);
        assert_eq!(
            encode(&[f], Format::OpenMetrics),
            "# HELP h help\n# TYPE h histogram\n\
             h_bucket{le=\"1.0\"} 0.0\n\
             h_bucket{le=\"2.0\"} 1.0 # {span_id=\"b7ad6b7169203331\",trace_id=\"0af7651916cd43dd8448eb211c80319c\"} 1.5 1700000000.5\n\
             h_bucket{le=\"+Inf\"} 1.0 # {user=\"a\\\"b\"} 9.0 1.25\n\
             h_count 1.0\nh_sum 1.5\n# EOF\n"
        );
    }

    #[test]
    fn counters_carry_total_in_text_but_not_in_openmetrics_family() {
        let f = Family::new(FamilySpec::new("req_total", "h", Kind::Counter, &[]), None).unwrap();
        f.lookup(&[]).series.inc(2.0);
        assert_eq!(
            encode(std::slice::from_ref(&f), Format::Text),
            "# HELP req_total h\n# TYPE req_total counter\nreq_total 2.0\n"
        );
        assert_eq!(
            encode(&[f], Format::OpenMetrics),
            "# HELP req h\n# TYPE req counter\nreq_total 2.0\n# EOF\n"
        );
    }
}
