//! Lowercase hex encoding and strict decoding of fixed-width ids.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `value` as `width` lowercase hex digits (most significant first) into `out`.
#[inline]
pub fn encode_into(value: u128, width: usize, out: &mut [u8]) {
    let mut v = value;
    for i in (0..width).rev() {
        out[i] = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

pub fn trace_id_hex(id: u128) -> String {
    let mut buf = [0u8; 32];
    encode_into(id, 32, &mut buf);
    // Only ASCII digits were written.
    String::from_utf8(buf.to_vec()).unwrap_or_default()
}

pub fn span_id_hex(id: u64) -> String {
    let mut buf = [0u8; 16];
    encode_into(id as u128, 16, &mut buf);
    String::from_utf8(buf.to_vec()).unwrap_or_default()
}

/// One lowercase hex digit; uppercase is refused (W3C Trace Context allows lowercase only).
#[inline]
fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Decodes up to 32 lowercase hex digits; `None` on any other byte or an empty input.
#[inline]
pub fn decode(s: &[u8]) -> Option<u128> {
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    let mut v: u128 = 0;
    for &c in s {
        v = (v << 4) | digit(c)? as u128;
    }
    Some(v)
}

/// Parses a 32-digit trace id (lowercase, non-zero).
pub fn parse_trace_id(s: &str) -> Option<u128> {
    if s.len() != 32 {
        return None;
    }
    decode(s.as_bytes()).filter(|&v| v != 0)
}

/// Parses a 16-digit span id (lowercase, non-zero).
pub fn parse_span_id(s: &str) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    decode(s.as_bytes()).map(|v| v as u64).filter(|&v| v != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let id = 0x0af7651916cd43dd8448eb211c80319c_u128;
        assert_eq!(trace_id_hex(id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(parse_trace_id(&trace_id_hex(id)), Some(id));
        assert_eq!(span_id_hex(0xb7ad6b7169203331), "b7ad6b7169203331");
        assert_eq!(span_id_hex(1), "0000000000000001");
    }

    #[test]
    fn strict() {
        assert_eq!(parse_trace_id("0AF7651916CD43DD8448EB211C80319C"), None);
        assert_eq!(parse_trace_id("00000000000000000000000000000000"), None);
        assert_eq!(parse_span_id("000000000000000"), None);
        assert_eq!(parse_span_id("00000000000000g1"), None);
        assert_eq!(parse_span_id("0000000000000000"), None);
    }
}
