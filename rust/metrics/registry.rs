//! The registry: families in registration order, and the two internal families every registry has.

use super::family::{Family, FamilySpec, Kind};
use super::value::Invalid;
use crate::error::{Error, Result};
use parking_lot::RwLock;
use std::sync::Arc;

#[derive(Debug)]
pub struct Registry {
    // Fork safety: as the family series map (family.rs), held only for a push or a clone, never across a GIL
    // release or a Python call, so a fork never finds it held.
    families: RwLock<Vec<Arc<Family>>>,
    /// `<prefix>_invalid_samples_total{metric,reason}`: samples the record path dropped.
    pub invalid: Arc<Family>,
    /// `<prefix>_metric_series_overflow_total{metric}`: label sets folded into `__overflow__`.
    pub overflow: Arc<Family>,
}

/// The sample names a family writes, for collision checks (as prometheus-client's registry does).
fn sample_names(f: &Family) -> Vec<String> {
    let n = &f.name;
    match f.kind {
        Kind::Counter => vec![n.clone(), format!("{n}_total"), format!("{n}_created")],
        Kind::Gauge => vec![n.clone()],
        Kind::Histogram => {
            vec![
                n.clone(),
                format!("{n}_bucket"),
                format!("{n}_count"),
                format!("{n}_sum"),
                format!("{n}_created"),
            ]
        }
    }
}

impl Registry {
    /// A registry whose internal families are named `<prefix>_invalid_samples_total` and
    /// `<prefix>_metric_series_overflow_total`.
    pub fn new(prefix: &str) -> Result<Self> {
        let p = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}_")
        };
        let overflow = Family::new(
            FamilySpec::new(
                &format!("{p}metric_series_overflow_total"),
                "Label sets folded into the __overflow__ series after a family reached its series cap.",
                Kind::Counter,
                &["metric"],
            ),
            None,
        )?
        .hidden();
        let invalid = Family::new(
            FamilySpec::new(
                &format!("{p}invalid_samples_total"),
                "Samples dropped by the record path because their value was NaN, infinite or negative.",
                Kind::Counter,
                &["metric", "reason"],
            ),
            None,
        )?
        .hidden();
        Ok(Registry {
            families: RwLock::new(Vec::new()),
            invalid,
            overflow,
        })
    }

    /// Builds and registers a family; the registry's overflow counter is wired in.
    pub fn create(&self, spec: FamilySpec) -> Result<Arc<Family>> {
        let f = Family::new(spec, Some(self.overflow.clone()))?;
        self.register(f.clone())?;
        Ok(f)
    }

    pub fn register(&self, f: Arc<Family>) -> Result<()> {
        let mut families = self.families.write();
        let names = sample_names(&f);
        for other in families.iter().chain([&self.invalid, &self.overflow]) {
            if sample_names(other).iter().any(|n| names.contains(n)) {
                return Err(Error::value(
                    &f.name,
                    format!("duplicated timeseries in registry (clashes with {:?})", other.name),
                ));
            }
        }
        families.push(f);
        Ok(())
    }

    pub fn unregister(&self, name: &str) -> bool {
        let mut families = self.families.write();
        let before = families.len();
        families.retain(|f| f.name != name);
        families.len() != before
    }

    /// Families in registration order, the internal ones last.
    pub fn families(&self) -> Vec<Arc<Family>> {
        let mut v = self.families.read().clone();
        v.push(self.invalid.clone());
        v.push(self.overflow.clone());
        v
    }

    pub fn get(&self, name: &str) -> Option<Arc<Family>> {
        self.families().into_iter().find(|f| f.name == name)
    }

    /// Zeroes every series of every family (a test fixture's reset; series stay registered).
    pub fn reset(&self) {
        self.families().iter().for_each(|f| f.reset());
    }

    /// Counts one dropped sample of `metric`.
    #[cold]
    pub fn count_invalid(&self, metric: &str, why: Invalid) {
        self.invalid.lookup(&[metric, why.as_str()]).series.inc_int(1);
    }

    /// Counts one dropped sample for a reason other than its value (e.g. a bad extra label name).
    #[cold]
    pub fn count_invalid_reason(&self, metric: &str, reason: &str) {
        self.invalid.lookup(&[metric, reason]).series.inc_int(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_names_are_refused() {
        let r = Registry::new("victor").unwrap();
        r.create(FamilySpec::new("a_total", "", Kind::Counter, &[])).unwrap();
        let e = r.create(FamilySpec::new("a", "", Kind::Gauge, &[])).unwrap_err();
        assert!(e.to_string().contains("duplicated"));
        assert!(r.create(FamilySpec::new("a_total", "", Kind::Gauge, &[])).is_err());
        assert!(r
            .create(FamilySpec::new("victor_invalid_samples_total", "", Kind::Counter, &[]))
            .is_err());
    }

    #[test]
    fn invalid_samples_are_counted_by_metric_and_reason() {
        let r = Registry::new("victor").unwrap();
        r.count_invalid("x", Invalid::Nan);
        r.count_invalid("x", Invalid::Nan);
        assert_eq!(r.invalid.lookup(&["x", "nan"]).series.get(), 2.0);
        assert_eq!(r.invalid.name, "victor_invalid_samples");
    }
}
