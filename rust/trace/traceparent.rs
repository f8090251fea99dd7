//! W3C Trace Context `traceparent`: strict parsing (version 00 exact, future versions per spec) and formatting.

use super::hex::{decode, encode_into};

/// The sampled bit of trace-flags.
pub const FLAG_SAMPLED: u8 = 0x01;
/// Level 2's random bit: the trace id's right 7 bytes are random (ours always are).
pub const FLAG_RANDOM: u8 = 0x02;
/// The flags we understand and pass on; others are dropped, as level 2 asks of unknown flags.
pub const KNOWN_FLAGS: u8 = FLAG_SAMPLED | FLAG_RANDOM;
/// Length of a version-00 traceparent: `vv-<32>-<16>-ff`.
pub const LEN: usize = 55;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub version: u8,
    pub trace_id: u128,
    pub span_id: u64,
    pub flags: u8,
}

#[inline]
fn is_ows(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Parses a traceparent header value; `None` for anything the spec says to ignore.
///
/// Optional whitespace around the value is allowed (HTTP OWS). Hex must be lowercase; version `ff`, an all-zero
/// trace id or span id, and non-hex flags are invalid. Version 00 must be exactly 55 characters; a higher version
/// may be longer, but then the 56th character must be `-` (the spec's forward-compatibility rule), and only the
/// fields version 00 defines are read.
pub fn parse(value: &[u8]) -> Option<TraceParent> {
    let mut s = value;
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    if s.len() < LEN {
        return None;
    }
    let version = decode(&s[0..2])? as u8;
    if version == 0xff {
        return None;
    }
    if version == 0 {
        if s.len() != LEN {
            return None;
        }
    } else if s.len() > LEN && s[LEN] != b'-' {
        return None;
    }
    if s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
        return None;
    }
    let trace_id = decode(&s[3..35])?;
    let span_id = decode(&s[36..52])? as u64;
    let flags = decode(&s[53..55])? as u8;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(TraceParent {
        version,
        trace_id,
        span_id,
        flags,
    })
}

/// Formats a version-00 traceparent into a fixed buffer (no allocation).
#[inline]
pub fn format(trace_id: u128, span_id: u64, flags: u8) -> [u8; LEN] {
    let mut out = [b'-'; LEN];
    out[0] = b'0';
    out[1] = b'0';
    encode_into(trace_id, 32, &mut out[3..35]);
    encode_into(span_id as u128, 16, &mut out[36..52]);
    encode_into(flags as u128, 2, &mut out[53..55]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn parses_and_formats() {
        let tp = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(tp.trace_id, 0x0af7651916cd43dd8448eb211c80319c);
        assert_eq!(tp.span_id, 0xb7ad6b7169203331);
        assert_eq!(tp.flags, 1);
        assert_eq!(&format(tp.trace_id, tp.span_id, tp.flags), GOOD.as_bytes());
        assert!(parse(format!("  {GOOD}\t").as_bytes()).is_some());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-011",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-X1",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn future_versions() {
        let tp = parse(b"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-holds").unwrap();
        assert_eq!(tp.version, 0xcc);
        assert_eq!(tp.flags, 1);
        assert!(parse(b"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_some());
        assert!(parse(b"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01.x").is_none());
    }
}
