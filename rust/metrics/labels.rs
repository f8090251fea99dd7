//! Label sets to values: one hash of the label values finds a series seen before, with no allocation.

use hashbrown::HashTable;
use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};

/// Bytes a label value may take by default: memory and scrape size stay within series cap x this.
pub const DEFAULT_LABEL_VALUE_CAP: usize = 256;
/// Ends a label value cut to its cap, so the cut is visible in the exposition.
pub const TRUNCATION_MARKER: &str = "\u{2026}";

/// A label value within `cap` bytes: as it is when it fits (no allocation), else cut on a UTF-8
/// boundary and ended with `TRUNCATION_MARKER` (the whole is at most `cap` bytes).
#[inline]
pub fn fit_label_value(value: &str, cap: usize) -> Cow<'_, str> {
    if value.len() <= cap {
        return Cow::Borrowed(value);
    }
    truncate(value, cap)
}

#[cold]
fn truncate(value: &str, cap: usize) -> Cow<'_, str> {
    let mut end = cap.saturating_sub(TRUNCATION_MARKER.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{TRUNCATION_MARKER}", &value[..end]))
}

/// UTF-8 from the "surrogatepass" encoding of a string that holds lone surrogates (Python's
/// `os.fsdecode` makes them of undecodable bytes): each surrogate becomes `\udXXX`, as Python's
/// "backslashreplace" writes it, so different values stay different series.
pub fn escape_surrogates(wtf8: &[u8]) -> String {
    let mut out = String::with_capacity(wtf8.len() + 8);
    let mut rest = wtf8;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).expect("checked by from_utf8"));
                // A surrogate is 0xED 0xA0..=0xBF 0x80..=0xBF; anything else invalid is replaced.
                if let [0xED, b1 @ 0xA0..=0xBF, b2 @ 0x80..=0xBF, ..] = *bad {
                    let cp = 0xD000 | (u32::from(b1 & 0x3F) << 6) | u32::from(b2 & 0x3F);
                    out.push_str(&format!("\\u{cp:04x}"));
                    rest = &bad[3..];
                } else {
                    out.push(char::REPLACEMENT_CHARACTER);
                    rest = &bad[e.error_len().unwrap_or(bad.len())..];
                }
            }
        }
    }
    out
}

/// The label values of one series, in the family's order (extra label pairs after, sorted by name).
pub type LabelKey = Box<[Box<str>]>;

/// An insertion-ordered map from label values to `V`. Insertion order is exposition order,
/// as in prometheus-client, so scrapes are stable.
#[derive(Debug)]
pub struct LabelMap<V> {
    table: HashTable<usize>,
    entries: Vec<(LabelKey, u64, V)>,
    hasher: ahash::RandomState,
}

impl<V> Default for LabelMap<V> {
    fn default() -> Self {
        LabelMap {
            table: HashTable::new(),
            entries: Vec::new(),
            hasher: ahash::RandomState::new(),
        }
    }
}

impl<V> LabelMap<V> {
    /// Hashes label parts; 0xff never occurs in UTF-8, so it separates parts unambiguously.
    #[inline]
    pub fn hash(&self, parts: &[&str]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for p in parts {
            h.write(p.as_bytes());
            h.write_u8(0xff);
        }
        h.finish()
    }

    #[inline]
    pub fn get(&self, hash: u64, parts: &[&str]) -> Option<&V> {
        self.table
            .find(hash, |&i| {
                let k = &self.entries[i].0;
                k.len() == parts.len() && k.iter().zip(parts).all(|(a, b)| &**a == *b)
            })
            .map(|&i| &self.entries[i].2)
    }

    /// Inserts a key known to be absent (callers `get` first under the same lock).
    pub fn insert(&mut self, hash: u64, parts: &[&str], value: V) -> &V {
        let i = self.entries.len();
        let key: LabelKey = parts.iter().map(|p| Box::<str>::from(*p)).collect();
        self.entries.push((key, hash, value));
        let entries = &self.entries;
        self.table.insert_unique(hash, i, |&j| entries[j].1);
        &self.entries[i].2
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|e| &e.2)
    }

    pub fn clear(&mut self) {
        self.table.clear();
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_inserted_and_keeps_order() {
        let mut m: LabelMap<u32> = LabelMap::default();
        for (i, parts) in [["a", "b"], ["ab", ""], ["", "ab"]].iter().enumerate() {
            let h = m.hash(parts);
            assert!(m.get(h, parts).is_none());
            m.insert(h, parts, i as u32);
        }
        let h = m.hash(&["ab", ""]);
        assert_eq!(m.get(h, &["ab", ""]), Some(&1));
        assert_eq!(m.values().copied().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_ne!(m.hash(&["ab", ""]), m.hash(&["a", "b"]));
    }

    #[test]
    fn long_values_are_cut_on_a_char_boundary_with_a_marker() {
        assert!(matches!(fit_label_value("short", 256), Cow::Borrowed("short")));
        let long = "x".repeat(1_000_000);
        let cut = fit_label_value(&long, 256);
        assert_eq!(cut.len(), 256);
        assert!(cut.ends_with(TRUNCATION_MARKER));
        // "é" is two bytes: a cut inside one steps back to the character before it.
        let accents = "é".repeat(200);
        let cut = fit_label_value(&accents, 16);
        assert_eq!(cut, format!("{}{TRUNCATION_MARKER}", "é".repeat(6)));
        assert!(cut.len() <= 16);
    }

    #[test]
    fn surrogates_are_escaped_and_stay_distinct() {
        // "/chat\ud800" and "\udcff" as Python's "surrogatepass" encodes them.
        assert_eq!(escape_surrogates(b"/chat\xed\xa0\x80"), "/chat\\ud800");
        assert_eq!(escape_surrogates(b"\xed\xb3\xbfx"), "\\udcffx");
        assert_eq!(escape_surrogates(b"ok"), "ok");
        assert_eq!(escape_surrogates(b"a\xffb"), "a\u{fffd}b");
    }
}
