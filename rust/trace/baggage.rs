//! W3C Baggage: parsing with percent-decoding and the spec's size limits, and formatting for propagation.

/// Headers longer than this are ignored whole (the spec's 8192-byte limit).
pub const MAX_BYTES: usize = 8192;
/// Members past this are dropped (the spec requires at least 64 be propagated).
pub const MAX_MEMBERS: usize = 180;

pub type Baggage = Vec<(String, String)>;

#[inline]
fn tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[inline]
fn baggage_octet(c: u8) -> bool {
    matches!(c, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&c| c != b' ' && c != b'\t').unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(start, |e| e + 1);
    &s[start..end]
}

fn percent_decode(s: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a baggage header; invalid members are skipped (never an error), properties are dropped.
pub fn parse(header: &[u8]) -> Baggage {
    let mut out = Baggage::new();
    if header.len() > MAX_BYTES {
        return out;
    }
    for raw in header.split(|&c| c == b',') {
        if out.len() >= MAX_MEMBERS {
            break;
        }
        let member = trim_ows(raw);
        let kv = member.split(|&c| c == b';').next().unwrap_or(&[]);
        let Some(eq) = kv.iter().position(|&c| c == b'=') else {
            continue;
        };
        let (key, value) = (trim_ows(&kv[..eq]), trim_ows(&kv[eq + 1..]));
        if key.is_empty() || !key.iter().all(|&c| tchar(c)) || !value.iter().all(|&c| baggage_octet(c)) {
            continue;
        }
        let (Ok(key), Some(value)) = (std::str::from_utf8(key), percent_decode(value)) else {
            continue;
        };
        match out.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value, // the last duplicate wins
            None => out.push((key.to_owned(), value)),
        }
    }
    out
}

/// Formats baggage as a header: values percent-encoded, invalid keys skipped, stopping before 8192 bytes.
pub fn format(baggage: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in baggage.iter().take(MAX_MEMBERS) {
        if k.is_empty() || !k.bytes().all(tchar) {
            continue;
        }
        let mut member = String::with_capacity(k.len() + v.len() + 1);
        member.push_str(k);
        member.push('=');
        for b in v.bytes() {
            if baggage_octet(b) && b != b'%' {
                member.push(b as char);
            } else {
                member.push_str(&format!("%{b:02X}"));
            }
        }
        if out.len() + member.len() + 1 > MAX_BYTES {
            break;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&member);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = parse(b"userId=alice, serverNode = DF%2028 ; prop=1,bad key=x,isProduction=false");
        assert_eq!(
            b,
            vec![
                ("userId".into(), "alice".into()),
                ("serverNode".into(), "DF 28".into()),
                ("isProduction".into(), "false".into())
            ]
        );
        assert_eq!(parse(format(&b).as_bytes()), b);
        let unicode = vec![("k".to_string(), "é,; %".to_string())];
        assert_eq!(parse(format(&unicode).as_bytes()), unicode);
    }

    #[test]
    fn limits() {
        assert!(parse(&vec![b'a'; MAX_BYTES + 1]).is_empty());
        assert!(parse(b"k=%zz").is_empty());
    }
}
