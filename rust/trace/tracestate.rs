//! W3C Trace Context `tracestate`: list-member validation, member and size limits, truncation for propagation.

/// The spec's maximum number of list-members.
pub const MAX_MEMBERS: usize = 32;
/// Longest header we read at all: 32 members of the longest legal key (256) and value (256) plus separators.
pub const MAX_INPUT_LEN: usize = 32 * (256 + 1 + 256) + 31 * 3;
/// What we propagate at most; the spec asks every vendor to pass on at least 512 characters.
pub const MAX_OUTPUT_LEN: usize = 512;
/// Members longer than this go first when truncating (the spec's advice).
const LONG_MEMBER: usize = 128;

#[inline]
fn key_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@')
}

/// Level 2's `key = ( lcalpha / DIGIT ) 0*255( keychar )` with `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/"
/// / "@"`, at most 256 characters in all. `@` is an ordinary key character there (the level 1 tenant@system split
/// and its 241/14 limits are gone), so `foo@=1`, `t@vvvvvvvvvvvvvvv=1` and a 256-character `t...t@v` are keys.
pub fn valid_key(key: &[u8]) -> bool {
    match key.first() {
        Some(&first) if key.len() <= 256 && (first.is_ascii_lowercase() || first.is_ascii_digit()) => {
            key.iter().all(|&c| key_char(c))
        }
        _ => false,
    }
}

/// `value = 0*255(chr) nblk-chr` with `nblk-chr = %x21-2B / %x2D-3C / %x3E-7E` and `chr = %x20 / nblk-chr`.
pub fn valid_value(value: &[u8]) -> bool {
    let nblk = |c: u8| matches!(c, 0x21..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e);
    match value.last() {
        Some(&last) if value.len() <= 256 && nblk(last) => value.iter().all(|&c| c == b' ' || nblk(c)),
        _ => false,
    }
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&c| c != b' ' && c != b'\t').unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// Validates a tracestate header (several headers joined with `,`) and returns it in canonical form (members
/// separated by `,` without whitespace). `None` means the whole header is discarded, as the spec allows: an
/// invalid member, more than 32 members, or an input longer than any legal header. A key seen again keeps its
/// first member and drops the later ones (level 2 allows passing the list on or dropping the duplicates).
/// An empty or all-blank header yields `Some("")`.
pub fn parse(header: &[u8]) -> Option<String> {
    if header.len() > MAX_INPUT_LEN {
        return None;
    }
    let mut out = String::with_capacity(header.len());
    let mut keys: smallvec::SmallVec<[&[u8]; 8]> = smallvec::SmallVec::new();
    for raw in header.split(|&c| c == b',') {
        let member = trim_ows(raw);
        if member.is_empty() {
            continue; // the spec allows empty list-members
        }
        let eq = member.iter().position(|&c| c == b'=')?;
        let (key, value) = (&member[..eq], &member[eq + 1..]);
        if !valid_key(key) || !valid_value(value) {
            return None;
        }
        if keys.contains(&key) {
            continue;
        }
        keys.push(key);
        if keys.len() > MAX_MEMBERS {
            return None;
        }
        if !out.is_empty() {
            out.push(',');
        }
        // Validated as printable ASCII above.
        out.push_str(std::str::from_utf8(member).ok()?);
    }
    Some(out)
}

/// Cuts a canonical tracestate to at most `MAX_OUTPUT_LEN` characters for propagation: members longer than
/// 128 characters are removed first, then members from the end (the spec's truncation order).
pub fn truncate(canonical: &str) -> std::borrow::Cow<'_, str> {
    if canonical.len() <= MAX_OUTPUT_LEN {
        return std::borrow::Cow::Borrowed(canonical);
    }
    let mut members: Vec<&str> = canonical.split(',').collect();
    let total = |m: &[&str]| m.iter().map(|s| s.len()).sum::<usize>() + m.len().saturating_sub(1);
    while total(&members) > MAX_OUTPUT_LEN {
        match members.iter().rposition(|m| m.len() > LONG_MEMBER) {
            Some(i) => {
                members.remove(i);
            }
            None => {
                members.pop();
            }
        }
    }
    std::borrow::Cow::Owned(members.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical() {
        assert_eq!(
            parse(b"congo=t61rcWkgMzE, rojo=00f067aa0ba902b7").as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        assert_eq!(parse(b"  ,, ").as_deref(), Some(""));
        assert_eq!(parse(b"tenant1@vendor=x y").as_deref(), Some("tenant1@vendor=x y"));
        assert_eq!(parse(b"1tenant@vendor=x").as_deref(), Some("1tenant@vendor=x"));
    }

    #[test]
    fn level_2_keys() {
        for good in [
            "foo@=1".to_owned(),
            "foo@@bar=1".to_owned(),
            "foo@bar@baz=1".to_owned(),
            "1abc=x".to_owned(),
            format!("t@{}=1", "v".repeat(15)),
            format!("{}@v=1", "t".repeat(242)),
            format!("{}@v=1", "t".repeat(254)),
            format!("{}=1", "z".repeat(256)),
        ] {
            assert_eq!(parse(good.as_bytes()).as_deref(), Some(good.as_str()), "{good}");
        }
        for bad in [
            "@foo=1".to_owned(),
            format!("{}=1", "z".repeat(257)),
            format!("{}@v=1", "t".repeat(255)),
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn duplicate_keys_keep_the_first() {
        assert_eq!(parse(b"foo=1,foo=1").as_deref(), Some("foo=1"));
        assert_eq!(parse(b"foo=1,bar=2,foo=3").as_deref(), Some("foo=1,bar=2"));
        // 33 members, 2 of them duplicates: 31 distinct keys, within the limit.
        let mut members: Vec<String> = (0..31).map(|i| format!("k{i}=v")).collect();
        members.extend(["k0=w".to_owned(), "k1=w".to_owned()]);
        assert!(parse(members.join(",").as_bytes()).is_some());
    }

    #[test]
    fn rejects() {
        for bad in [
            &b"Congo=x"[..],
            b"congo",
            b"congo=",
            b"congo=x=",
            b"congo=x,=y",
            b"@b=x",
            b"congo=\x7f",
            b"congo=a,b=c\x01",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let long_key = format!("{}=x", "a".repeat(257));
        assert_eq!(parse(long_key.as_bytes()), None);
        let long_value = format!("a={}", "x".repeat(257));
        assert_eq!(parse(long_value.as_bytes()), None);
        let ok_value = format!("a={}", "x".repeat(256));
        assert!(parse(ok_value.as_bytes()).is_some());
    }

    #[test]
    fn member_limit() {
        let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(parse(members[..32].join(",").as_bytes()).is_some());
        assert_eq!(parse(members.join(",").as_bytes()), None);
    }

    #[test]
    fn truncation() {
        let long = format!("big={}", "x".repeat(200));
        let small: Vec<String> = (0..40).map(|i| format!("k{i:02}=vvvvvvv")).collect();
        let header = format!("{},{}", small[..30].join(","), long);
        let t = truncate(&header);
        assert!(t.len() <= MAX_OUTPUT_LEN);
        assert!(!t.contains("big="));
        assert!(t.starts_with("k00="));
    }
}
