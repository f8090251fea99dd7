//! Collector groups: families sharing one label schema, updated together after one label lookup, so
//! `record_request` is one crossing from Python and one hash. The families themselves are in schema.rs.

use super::family::{Family, Series};
use super::labels::LabelMap;
use super::registry::Registry;
use super::validate;
use parking_lot::RwLock;
use smallvec::SmallVec;
use std::sync::Arc;

pub type Parts<'a> = SmallVec<[&'a str; 8]>;

/// Families that share one label schema and are updated together, with one lookup for all.
#[derive(Debug)]
pub struct Group {
    pub families: Vec<Arc<Family>>,
    fixed: usize,
    // Fork safety: as the family series map (family.rs); `with_known`/`apply` callers pass closures that only
    // touch atomics, so the lock is never held across a GIL release or a Python call, and a fork never finds it held.
    map: RwLock<LabelMap<Arc<[Arc<Series>]>>>,
    cap: usize,
}

/// Series of a group for one label set, and the families that overflowed for the first time.
pub struct Resolved {
    pub series: Arc<[Arc<Series>]>,
    pub first_overflows: Vec<String>,
}

impl Group {
    pub fn new(families: Vec<Arc<Family>>, cap: usize) -> Self {
        let fixed = families[0].labelnames.len();
        Group {
            families,
            fixed,
            map: RwLock::new(LabelMap::default()),
            cap,
        }
    }

    pub fn name(&self) -> String {
        self.families[0].exposed_name()
    }

    /// Drops extra labels whose names are invalid, reserved or clash with a fixed label, then sorts
    /// the rest by name: `{"b": .., "a": ..}` and `{"a": .., "b": ..}` are one series.
    pub fn clean_extras<'a>(&self, registry: &Registry, extras: &mut SmallVec<[(&'a str, &'a str); 2]>) {
        let fixed = &self.families[0].labelnames;
        let before = extras.len();
        let mut seen: SmallVec<[&str; 4]> = SmallVec::new();
        extras.retain(|(k, _)| {
            let ok = validate::is_label_name(k)
                && !k.starts_with("__")
                && *k != "le"
                && !fixed.iter().any(|f| &**f == *k)
                && !seen.contains(k);
            seen.push(k);
            ok
        });
        if extras.len() != before {
            registry.count_invalid_reason(&self.name(), "invalid_label");
        }
        extras.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }

    /// Runs `f` on the series of a label set seen before, under the read lock (no reference
    /// counting on the hot path); None for a label set not seen yet.
    #[inline]
    pub fn with_known<R>(&self, parts: &[&str], f: impl FnOnce(&[Arc<Series>]) -> R) -> Option<R> {
        let map = self.map.read();
        map.get(map.hash(parts), parts).map(|s| f(s))
    }

    /// Runs `f` on the series of a label set, creating them (or folding into overflow) if new.
    /// Returns the families that overflowed for the first time, for the caller to warn about.
    #[inline]
    pub fn apply<R>(&self, parts: &[&str], f: impl FnOnce(&[Arc<Series>]) -> R) -> (R, Vec<String>) {
        let mut f = Some(f);
        if let Some(r) = self.with_known(parts, |s| (f.take().expect("called once"))(s)) {
            return (r, Vec::new());
        }
        let resolved = self.resolve(parts);
        (
            (f.take().expect("called once"))(&resolved.series),
            resolved.first_overflows,
        )
    }

    pub fn resolve(&self, parts: &[&str]) -> Resolved {
        let hash = {
            let map = self.map.read();
            let hash = map.hash(parts);
            if let Some(s) = map.get(hash, parts) {
                return Resolved {
                    series: s.clone(),
                    first_overflows: Vec::new(),
                };
            }
            hash
        };
        self.resolve_slow(hash, parts)
    }

    #[cold]
    fn resolve_slow(&self, hash: u64, parts: &[&str]) -> Resolved {
        let mut first_overflows = Vec::new();
        let series: Arc<[Arc<Series>]> = self
            .families
            .iter()
            .map(|f| {
                let l = f.lookup(parts);
                if l.first_overflow {
                    first_overflows.push(f.exposed_name());
                }
                l.series
            })
            .collect();
        let mut map = self.map.write();
        // Past the cap the families hand out their overflow series; do not remember each new key.
        if map.len() < self.cap && map.get(hash, parts).is_none() {
            map.insert(hash, parts, series.clone());
        }
        Resolved {
            series,
            first_overflows,
        }
    }

    pub fn fixed_labels(&self) -> usize {
        self.fixed
    }
}
