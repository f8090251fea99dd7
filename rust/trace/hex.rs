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

/// `value` as 16 lowercase hex digits, most significant first, computed eight at a time in a u64 (no table).
#[inline]
pub fn hex16(value: u64) -> [u8; 16] {
    // Each nibble of a u32 to its own byte, most significant in the highest byte.
    fn spread(x: u32) -> u64 {
        let x = u64::from(x);
        let x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
        let x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
        (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f
    }
    fn ascii(n: u64) -> u64 {
        // 1 in each byte whose nibble is 10 or more (nibble + 6 carries into bit 4; no carry crosses a byte).
        let letters = ((n + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
        n + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10)
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&ascii(spread((value >> 32) as u32)).to_be_bytes());
    out[8..].copy_from_slice(&ascii(spread(value as u32)).to_be_bytes());
    out
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
    fn hex16_is_the_digit_by_digit_encoding() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for v in [0, 1, 9, 10, 15, 16, 0xabcd_ef01_2345_6789, u64::MAX]
            .into_iter()
            .chain((0..10_000).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            }))
        {
            let mut want = [0u8; 16];
            encode_into(u128::from(v), 16, &mut want);
            assert_eq!(hex16(v), want, "{v:x}");
        }
    }

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
