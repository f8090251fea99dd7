//! The cursor and the scalars of Python's `json` module: its separators, `ensure_ascii` strings and `repr` floats.
//!
//! A cursor writes into capacity its caller reserved for an upper bound of what it writes, and checks nothing per
//! byte (in debug builds, the tests, it asserts the bound): a capacity check on every push was most of the
//! encoding time.

use crate::trace::hex::hex16;

/// The separators of `json.dumps`: compact `(",", ":")` (the JSON lines file) or the default `(", ", ": ")`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub(super) spaced: bool,
}

impl Style {
    pub const COMPACT: Style = Style { spaced: false };
    pub const DEFAULT: Style = Style { spaced: true };
}

/// Writes into reserved capacity without a check per byte; see `with_cursor` for why that is sound.
pub(super) struct Cursor {
    p: *mut u8,
    #[cfg(debug_assertions)]
    end: *mut u8,
}

impl Cursor {
    #[inline(always)]
    fn room(&self, _n: usize) {
        #[cfg(debug_assertions)]
        assert!(
            self.p as usize + _n <= self.end as usize,
            "json: write past the reserved bound"
        );
    }

    #[inline(always)]
    pub(super) fn byte(&mut self, b: u8) {
        self.room(1);
        // SAFETY: within the reserved bound (see `with_cursor`).
        unsafe {
            self.p.write(b);
            self.p = self.p.add(1);
        }
    }

    #[inline(always)]
    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.room(b.len());
        // SAFETY: within the reserved bound; the source is another allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(b.as_ptr(), self.p, b.len());
            self.p = self.p.add(b.len());
        }
    }

    /// Eight bytes at once (a run of a string that needs no escape).
    #[inline(always)]
    fn word(&mut self, w: u64) {
        self.room(8);
        // SAFETY: within the reserved bound; unaligned store.
        unsafe {
            self.p.cast::<u64>().write_unaligned(w.to_le());
            self.p = self.p.add(8);
        }
    }

    #[inline(always)]
    pub(super) fn item(&mut self, style: Style) {
        self.byte(b',');
        if style.spaced {
            self.byte(b' ');
        }
    }

    /// A fixed field name, known to need no escape, and the separator after it.
    #[inline(always)]
    pub(super) fn name<const N: usize>(&mut self, key: &[u8; N], style: Style) {
        self.byte(b'"');
        self.bytes(key);
        self.byte(b'"');
        self.byte(b':');
        if style.spaced {
            self.byte(b' ');
        }
    }

    #[inline(always)]
    pub(super) fn field<const N: usize>(&mut self, key: &[u8; N], style: Style) {
        self.item(style);
        self.name(key, style);
    }

    pub(super) fn str(&mut self, s: &str) {
        write_str_to(self, s);
    }
}

/// Any number: the longest float repr ("-1.7976931348623157e+308") is 24 bytes, an i64 20.
pub(super) const NUMBER: usize = 24;

#[inline]
pub(super) fn str_bound(s: &str) -> usize {
    // A character escapes to at most six bytes per byte of its UTF-8 (`\u00XX` for one, a surrogate pair for four).
    2 + 6 * s.len()
}

pub(super) fn write_hex(w: &mut Cursor, id: u128, width: usize) {
    w.byte(b'"');
    if width == 32 {
        w.bytes(&hex16((id >> 64) as u64));
    }
    w.bytes(&hex16(id as u64));
    w.byte(b'"');
}

pub(super) fn write_bool(w: &mut Cursor, b: bool) {
    if b {
        w.bytes(b"true");
    } else {
        w.bytes(b"false");
    }
}

const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819202122232425262728293031323334353637383940414243444546474849\
                            5051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

/// Decimal digits of `v` (at least one).
#[inline]
fn digits(v: u64) -> usize {
    let mut n = 1;
    let mut x = v;
    while x >= 10_000 {
        x /= 10_000;
        n += 4;
    }
    while x >= 10 {
        x /= 10;
        n += 1;
    }
    n
}

/// Writes `v` as exactly `n` digits, zero-padded on the left (`n` at least its digit count).
#[inline]
fn write_digits(w: &mut Cursor, mut v: u64, n: usize) {
    w.room(n);
    // SAFETY: within the reserved bound (20 digits at most, counted as a number in the bounds).
    unsafe {
        let mut end = w.p.add(n);
        w.p = end;
        let start = end.sub(n);
        while v >= 100 {
            let pair = (v % 100) as usize * 2;
            v /= 100;
            end = end.sub(2);
            std::ptr::copy_nonoverlapping(PAIRS.as_ptr().add(pair), end, 2);
        }
        if v >= 10 {
            end = end.sub(2);
            std::ptr::copy_nonoverlapping(PAIRS.as_ptr().add(v as usize * 2), end, 2);
        } else {
            end = end.sub(1);
            end.write(b'0' + v as u8);
        }
        while end > start {
            end = end.sub(1);
            end.write(b'0');
        }
    }
}

pub(super) fn write_u64(w: &mut Cursor, v: u64) {
    // Nanosecond timestamps have 19 digits: in blocks of eight, each block four independent pairs (the digit by
    // digit loop was one long chain of dependent divisions).
    const E8: u64 = 100_000_000;
    if v < E8 {
        write_digits(w, v, digits(v));
    } else if v < E8 * E8 {
        write_digits(w, v / E8, digits(v / E8));
        write_eight(w, (v % E8) as u32);
    } else {
        let high = v / E8;
        write_digits(w, high / E8, digits(high / E8));
        write_eight(w, (high % E8) as u32);
        write_eight(w, (v % E8) as u32);
    }
}

/// `x` (below 10^8) as exactly eight digits.
#[inline]
fn write_eight(w: &mut Cursor, x: u32) {
    let (a, b) = (x / 10_000, x % 10_000);
    let pair = |p: u32| {
        let i = p as usize * 2;
        [PAIRS[i], PAIRS[i + 1]]
    };
    let (p0, p1, p2, p3) = (pair(a / 100), pair(a % 100), pair(b / 100), pair(b % 100));
    w.bytes(&[p0[0], p0[1], p1[0], p1[1], p2[0], p2[1], p3[0], p3[1]]);
}

pub(super) fn write_i64(w: &mut Cursor, v: i64) {
    if v < 0 {
        w.byte(b'-');
    }
    write_u64(w, v.unsigned_abs());
}

/// `duration_ms`, `ns / 1e6` as Python's repr writes it. For 100 <= ns < 1e15 that is the exact decimal of
/// ns / 10^6 (trailing zeros cut, at least one fractional digit): the quotient is the double nearest that decimal,
/// and a decimal of at most 15 significant digits is the only one of that length or shorter to round to its
/// double (DBL_DIG), so it is the shortest repr; in that range repr uses fixed notation. Else: the general path.
pub(super) fn write_duration_ms(w: &mut Cursor, ns: u64) {
    if !(100..1_000_000_000_000_000).contains(&ns) {
        write_float_to(w, ns as f64 / 1e6);
        return;
    }
    let (int, mut frac) = (ns / 1_000_000, ns % 1_000_000);
    write_u64(w, int);
    w.byte(b'.');
    if frac == 0 {
        w.byte(b'0');
        return;
    }
    let mut n = 6;
    while frac % 10 == 0 {
        frac /= 10;
        n -= 1;
    }
    write_digits(w, frac, n);
}

/// False only if no byte of `w` is a control character, `"`, `\\`, DEL or non-ASCII (SWAR "has less than").
#[inline]
fn may_need_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    // DEL (0x7f) + 1 sets the high bit; so do bytes >= 0x80 themselves. A carry can only add false alarms.
    let high = (w | w.wrapping_add(ONES)) & HIGH;
    (control | high | has_zero(w ^ (ONES * u64::from(b'"'))) | has_zero(w ^ (ONES * u64::from(b'\\')))) != 0
}

/// Python's `float.__repr__` (and so `json.dumps`) into a Vec: see `write_float_to`.
pub fn write_float(out: &mut Vec<u8>, f: f64) {
    with_cursor(out, NUMBER, |w| write_float_to(w, f));
}

/// A JSON string as `json.dumps(..., ensure_ascii=True)` writes it, into a Vec.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    with_cursor(out, str_bound(s), |w| w.str(s));
}

/// Runs `f` on a cursor over `bound` bytes reserved at the end of `out`, then keeps what it wrote.
#[inline]
pub(super) fn with_cursor(out: &mut Vec<u8>, bound: usize, f: impl FnOnce(&mut Cursor)) {
    out.reserve(bound);
    // SAFETY: `reserve` made room for `bound` bytes past `len`; the caller's bound holds for what `f` writes (the
    // cursor asserts it in debug builds), and the length is checked against it before it is set.
    unsafe {
        let len = out.len();
        let start = out.as_mut_ptr().add(len);
        let mut w = Cursor {
            p: start,
            #[cfg(debug_assertions)]
            end: start.add(bound),
        };
        f(&mut w);
        let written = w.p.offset_from(start) as usize;
        assert!(written <= bound, "json: value past its bound");
        out.set_len(len + written);
    }
}

/// Python's `float.__repr__` (and so `json.dumps`): the shortest digits that round-trip, fixed notation for
/// decimal exponents in [-4, 16), else `d.ddde+XX`; `json` spells the non-finite values NaN and Infinity.
pub(super) fn write_float_to(w: &mut Cursor, f: f64) {
    if f.is_nan() {
        w.bytes(b"NaN");
        return;
    }
    if f.is_infinite() {
        w.bytes(if f > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    // ryu prints the shortest round-trip digits, as Python's repr picks them, in one of its own shapes ("1e16",
    // "1.5e-5", "0.0001", "123.456", "-0.0"): read back the digits and the decimal point's place.
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(f);
    let negative = text.starts_with('-');
    let text = text.trim_start_matches('-');
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = [0u8; 40];
    let mut n = 0;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        if n < digits.len() {
            digits[n] = b;
            n += 1;
        }
    }
    let mut decpt_all = int_part.len() as i32 + exp;
    let mut start = 0;
    while start < n && digits[start] == b'0' {
        start += 1;
        decpt_all -= 1;
    }
    while n > start && digits[n - 1] == b'0' {
        n -= 1;
    }
    let (digits, decpt_all) = if start == n {
        (&b"0"[..], 1)
    } else {
        (&digits[start..n], decpt_all)
    };
    let n = digits.len();
    let exp = decpt_all - 1;
    // Python's `decpt`: the value is 0.DIGITS times ten to this.
    let decpt = decpt_all;
    if negative {
        w.byte(b'-');
    }
    let n = n as i32;
    // At most 17 digits: fixed notation pads with zeros only within [-4, 16), so 24 bytes bound every shape.
    if decpt <= -4 || decpt > 16 {
        w.byte(digits[0]);
        if n > 1 {
            w.byte(b'.');
            w.bytes(&digits[1..]);
        }
        w.byte(b'e');
        w.byte(if exp < 0 { b'-' } else { b'+' });
        if exp.abs() < 10 {
            w.byte(b'0');
        }
        write_u64(w, exp.unsigned_abs().into());
    } else if decpt <= 0 {
        w.bytes(b"0.");
        for _ in 0..-decpt {
            w.byte(b'0');
        }
        w.bytes(digits);
    } else if decpt >= n {
        w.bytes(digits);
        for _ in 0..decpt - n {
            w.byte(b'0');
        }
        w.bytes(b".0");
    } else {
        w.bytes(&digits[..decpt as usize]);
        w.byte(b'.');
        w.bytes(&digits[decpt as usize..]);
    }
}

/// A JSON string as `json.dumps(..., ensure_ascii=True)` writes it: runs of printable ASCII are copied eight
/// bytes at a time.
fn write_str_to(w: &mut Cursor, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    fn unit(w: &mut Cursor, u: u16) {
        w.bytes(&[
            b'\\',
            b'u',
            HEX[usize::from(u >> 12)],
            HEX[usize::from((u >> 8) & 0xf)],
            HEX[usize::from((u >> 4) & 0xf)],
            HEX[usize::from(u & 0xf)],
        ]);
    }
    let bytes = s.as_bytes();
    w.byte(b'"');
    let mut i = 0;
    while i < bytes.len() {
        if let Some(eight) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(eight.try_into().unwrap_or([0; 8]));
            if !may_need_escape(word) {
                w.word(word);
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\' {
            w.byte(b);
            i += 1;
            continue;
        }
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => b"",
        };
        if !escape.is_empty() {
            w.bytes(escape);
            i += 1;
        } else {
            // A control character, DEL, or the first byte of a non-ASCII character: \uXXXX, astral ones as a
            // surrogate pair.
            let c = s[i..].chars().next().unwrap_or('\u{fffd}');
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                unit(w, *u);
            }
            i += c.len_utf8();
        }
    }
    w.byte(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(f: f64) -> String {
        let mut out = Vec::new();
        write_float(&mut out, f);
        String::from_utf8(out).unwrap()
    }

    fn string(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_are_python_reprs() {
        // Expected values are Python 3's repr() of the same floats.
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345678901234567e16, "1.2345678901234568e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-2.5e-5, "-2.5e-05"),
            (0.001234, "0.001234"),
            // Exactly ...562.25: a tie at 17 digits, which repr rounds to even.
            (1658206780088562.2, "1658206780088562.2"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (f, want) in cases {
            assert_eq!(float(f), want, "{f:e}");
        }
    }

    #[test]
    fn integers() {
        let mut more = vec![
            0u64,
            7,
            10,
            99,
            100,
            101,
            12345,
            u64::MAX,
            99_999_999,
            100_000_000,
            100_000_001,
        ];
        more.extend([
            10_000_000_000_000_000,
            9_999_999_999_999_999,
            1_764_547_200_000_000_123,
            1_000_000_000_000_000_000,
        ]);
        for v in more {
            let mut out = Vec::new();
            with_cursor(&mut out, NUMBER, |w| write_u64(w, v));
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
        let mut out = Vec::new();
        with_cursor(&mut out, NUMBER, |w| write_i64(w, i64::MIN));
        assert_eq!(String::from_utf8(out).unwrap(), i64::MIN.to_string());
    }

    #[test]
    fn every_byte_position_of_a_long_string() {
        // Each special character at each offset of a string longer than the eight-byte fast path.
        for special in ['"', '\\', '\n', '\u{1}', '\u{7f}', '\u{e9}', '\u{1f600}'] {
            for at in 0..20 {
                let s: String = (0..20).map(|i| if i == at { special } else { 'a' }).collect();
                let mut want = String::from("\"");
                for c in s.chars() {
                    match c {
                        'a' => want.push('a'),
                        '"' => want.push_str("\\\""),
                        '\\' => want.push_str("\\\\"),
                        '\n' => want.push_str("\\n"),
                        c => {
                            let mut units = [0u16; 2];
                            for u in c.encode_utf16(&mut units) {
                                want.push_str(&format!("\\u{u:04x}"));
                            }
                        }
                    }
                }
                want.push('"');
                assert_eq!(string(&s), want, "{special:?} at {at}");
            }
        }
    }

    #[test]
    fn floats_round_trip_with_the_shortest_digits() {
        // Random bit patterns: ours parses back to the same value and has the digits of Rust's own shortest `{:e}`.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if !f.is_finite() {
                continue;
            }
            let ours = float(f);
            assert_eq!(ours.parse::<f64>().unwrap(), f, "{ours}");
            let digits = |s: &str| -> String {
                let m = s.split(['e', 'E']).next().unwrap();
                m.chars()
                    .filter(char::is_ascii_digit)
                    .collect::<String>()
                    .trim_matches('0')
                    .to_owned()
            };
            // As many digits as the shortest (Rust's `{:e}` rounds a tie up where Python and ryu round to even).
            assert_eq!(digits(&ours).len(), digits(&format!("{f:e}")).len(), "{f:e}");
        }
    }

    #[test]
    fn strings_are_ascii_escaped() {
        assert_eq!(string("plain"), r#""plain""#);
        assert_eq!(string("q\"b\\n\nt\tc\u{1}d\u{7f}"), r#""q\"b\\n\nt\tc\u0001d\u007f""#);
        assert_eq!(string("h\u{e9}llo \u{4e16}"), r#""h\u00e9llo \u4e16""#);
        assert_eq!(string("\u{1f600}"), r#""\ud83d\ude00""#);
        assert_eq!(string("\u{8}\u{c}\r"), r#""\b\f\r""#);
    }

    #[test]
    fn durations_are_the_general_float_repr() {
        let duration = |ns: u64| {
            let mut out = Vec::new();
            with_cursor(&mut out, NUMBER, |w| write_duration_ms(w, ns));
            String::from_utf8(out).unwrap()
        };
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut cases: Vec<u64> = vec![0, 1, 99, 100, 101, 999_999, 1_000_000, 1_000_001, 2_499_000, 10_000_000];
        cases.extend([
            999_999_999_999_999,
            1_000_000_000_000_000,
            u64::MAX,
            123_456_789_012_345,
        ]);
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Every magnitude, from nanoseconds to years.
            cases.push(x >> (x % 64));
        }
        for ns in cases {
            assert_eq!(duration(ns), float(ns as f64 / 1e6), "{ns}");
        }
    }
}
