//! Label sets to values: one hash of the label values finds a series seen before, with no allocation.

use hashbrown::HashTable;
use std::hash::{BuildHasher, Hasher};

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
}
