//! A metric family: name, help, type, label names, and its labelled series under a series cap.

use super::exemplar::{Exemplar, ExemplarLabels, Exemplars, SharedExemplars};
use super::hdr::{HdrHome, HdrRecorder};
use super::histogram::{Bounds, HistogramValue};
use super::labels::LabelMap;
use super::validate;
use super::value::{CounterValue, GaugeValue};
use crate::error::{Error, Result};
use crate::multiproc::{self, Mode};
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The label value of every label of the series that new label sets fold into past the cap.
pub const OVERFLOW_VALUE: &str = "__overflow__";
pub const DEFAULT_SERIES_CAP: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

#[derive(Debug)]
pub enum Value {
    Counter(CounterValue),
    Gauge(GaugeValue),
    Histogram(HistogramValue),
}

/// One labelled time series. Its labels are kept sorted by name, the order both text formats use.
#[derive(Debug)]
pub struct Series {
    /// The family's exposed name, shared by all its series.
    pub family_name: Arc<str>,
    pub labels: Box<[(Arc<str>, Box<str>)]>,
    pub value: Value,
    hdr: Option<Arc<HdrRecorder>>,
    /// Histograms: the latest exemplar per bucket, allocated with the first (beside the value, not in it).
    exemplars: OnceLock<Box<Exemplars>>,
}

impl Series {
    /// Counter increment; the caller has checked `v` is finite and non-negative. False when
    /// refused because the total would overflow to infinity.
    #[inline]
    pub fn inc(&self, v: f64) -> bool {
        match &self.value {
            Value::Counter(c) => c.inc(v),
            Value::Gauge(g) => {
                g.add(v);
                true
            }
            Value::Histogram(_) => true,
        }
    }

    #[inline]
    pub fn inc_int(&self, n: u64) {
        match &self.value {
            Value::Counter(c) => c.inc_int(n),
            Value::Gauge(g) => g.add(n as f64),
            Value::Histogram(_) => {}
        }
    }

    #[inline]
    pub fn set(&self, v: f64) {
        if let Value::Gauge(g) = &self.value {
            g.set(v)
        }
    }

    #[inline]
    pub fn add(&self, v: f64) {
        if let Value::Gauge(g) = &self.value {
            g.add(v)
        }
    }

    /// Histogram observation; also feeds the family's percentile recorder when it has one.
    /// False when refused because the sum would overflow to infinity.
    #[inline]
    pub fn observe(&self, v: f64) -> bool {
        self.observe_bucket(v).is_some()
    }

    /// `observe` for a histogram's own handle, returning the bucket `v` landed in for its exemplar (None: refused;
    /// a series of another kind observes nothing and answers bucket 0).
    #[inline]
    pub fn observe_bucket(&self, v: f64) -> Option<usize> {
        let Value::Histogram(h) = &self.value else {
            return Some(0);
        };
        let index = h.observe_bucket(v)?;
        if let Some(hdr) = &self.hdr {
            if v >= 0.0 && v.is_finite() {
                hdr.record(v);
            }
        }
        Some(index)
    }

    /// Makes `labels` the exemplar of the bucket `v` lands in (histograms only; the caller observed `v`).
    #[inline]
    pub fn set_exemplar(&self, v: f64, labels: ExemplarLabels, timestamp: f64) {
        if let Value::Histogram(h) = &self.value {
            self.set_exemplar_at(h.bucket_of(v), v, labels, timestamp);
        }
    }

    /// `set_exemplar` for a bucket the caller knows (from `observe_bucket`).
    #[inline]
    pub fn set_exemplar_at(&self, index: usize, v: f64, labels: ExemplarLabels, timestamp: f64) {
        if let Value::Histogram(h) = &self.value {
            let slots = self.exemplars.get_or_init(|| {
                // A series whose counts live in a store file keeps its exemplars there too, for every scrape to see.
                Box::new(if h.is_shared() {
                    Exemplars::Shared(SharedExemplars::new(h.bounds().len()))
                } else {
                    Exemplars::new(h.bounds().len())
                })
            });
            slots.set(
                index,
                Exemplar {
                    labels,
                    value: v,
                    timestamp,
                },
                |kind| multiproc::alloc_exemplars(&self.family_name, h.bounds(), &self.labels, kind),
            );
        }
    }

    /// Each bucket's latest exemplar; empty when the series never had one.
    pub fn exemplars(&self) -> Vec<Option<Exemplar>> {
        self.exemplars.get().map(|e| e.get_all()).unwrap_or_default()
    }

    /// Counter or gauge value; a histogram's count.
    pub fn get(&self) -> f64 {
        match &self.value {
            Value::Counter(c) => c.get(),
            Value::Gauge(g) => g.get(),
            Value::Histogram(h) => h.count() as f64,
        }
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| &**n == name).map(|(_, v)| &**v)
    }

    /// A series outside any family's map (the merged multi-process view builds these).
    pub fn detached(family_name: Arc<str>, labels: Vec<(Arc<str>, Box<str>)>, value: Value) -> Arc<Series> {
        Self::detached_with(family_name, labels, value, Vec::new())
    }

    /// A detached series carrying the exemplars merged from every process (none when `exemplars` is empty).
    pub fn detached_with(
        family_name: Arc<str>,
        labels: Vec<(Arc<str>, Box<str>)>,
        value: Value,
        exemplars: Vec<Option<Exemplar>>,
    ) -> Arc<Series> {
        let cell = OnceLock::new();
        if exemplars.iter().any(Option::is_some) {
            let _ = cell.set(Box::new(Exemplars::filled(exemplars)));
        }
        Arc::new(Series {
            family_name,
            labels: labels.into(),
            value,
            hdr: None,
            exemplars: cell,
        })
    }

    /// Back to zero, as if just created.
    pub fn reset(&self) {
        match &self.value {
            Value::Counter(c) => c.reset(),
            Value::Gauge(g) => g.set(0.0),
            Value::Histogram(h) => h.reset(),
        }
    }
}

/// Tells families apart in a process's multi-process store (names may repeat across registries).
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

/// What a label lookup found; `first_overflow` is true once per family, so the caller can warn.
pub struct Lookup {
    pub series: Arc<Series>,
    pub first_overflow: bool,
}

#[derive(Debug)]
pub struct Family {
    /// The family name: for counters without the `_total` suffix, as prometheus-client does.
    pub name: String,
    exposed: Arc<str>,
    pub help: String,
    pub kind: Kind,
    pub labelnames: Arc<[Arc<str>]>,
    /// Series may carry extra `name=value` pairs after the fixed label values.
    pub extra_labels: bool,
    /// Internal families (invalid samples, overflow) are exposed only once they have a series.
    pub hide_when_empty: bool,
    bounds: Option<Bounds>,
    hdr: Option<Arc<HdrRecorder>>,
    // Fork safety: held only for a map lookup or insert, never across a GIL release or a Python call (the
    // extension snapshots under the GIL and encodes outside the lock). A fork is taken by a thread holding the
    // GIL, so no other thread holds this lock at that moment and the child inherits it unlocked and unparked.
    series: RwLock<LabelMap<Arc<Series>>>,
    cap: usize,
    overflow: OnceLock<Arc<Series>>,
    warned: AtomicBool,
    /// The registry's `<prefix>_metric_series_overflow_total` family, counted on overflow.
    overflow_counter: Option<Arc<Family>>,
    /// How a gauge's values from several processes combine (multi-process mode only).
    pub mode: Mode,
    pub serial: u64,
    /// A merged view's shell: its values live on the heap, never in the multi-process store.
    detached: bool,
}

/// Everything needed to define a family; `Family::new` validates it.
#[derive(Debug, Clone)]
pub struct FamilySpec {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub labelnames: Vec<String>,
    pub buckets: Option<Vec<f64>>,
    pub percentiles: bool,
    pub extra_labels: bool,
    pub cap: usize,
    pub mode: Mode,
}

impl FamilySpec {
    pub fn new(name: &str, help: &str, kind: Kind, labelnames: &[&str]) -> Self {
        FamilySpec {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            labelnames: labelnames.iter().map(|s| s.to_string()).collect(),
            buckets: None,
            percentiles: false,
            extra_labels: false,
            cap: DEFAULT_SERIES_CAP,
            mode: Mode::default(),
        }
    }
}

impl Family {
    pub fn new(spec: FamilySpec, overflow_counter: Option<Arc<Family>>) -> Result<Arc<Family>> {
        validate::check_metric_name(&spec.name)?;
        let reserved: &[&str] = if spec.kind == Kind::Histogram { &["le"] } else { &[] };
        validate::check_label_names(&spec.name, &spec.labelnames, reserved)?;
        if spec.cap == 0 {
            return Err(Error::value(&spec.name, "series cap must be at least 1"));
        }
        let name = match spec.kind {
            Kind::Counter => spec.name.strip_suffix("_total").unwrap_or(&spec.name).to_owned(),
            _ => spec.name.clone(),
        };
        if name.is_empty() {
            return Err(Error::value(
                &spec.name,
                "invalid metric name: nothing left before _total",
            ));
        }
        let bounds = match (spec.kind, &spec.buckets) {
            (Kind::Histogram, Some(b)) => Some(Bounds::new(&spec.name, b)?),
            (Kind::Histogram, None) => return Err(Error::value(&spec.name, "histogram needs buckets")),
            (_, Some(_)) => return Err(Error::value(&spec.name, "only histograms take buckets")),
            _ => None,
        };
        let exposed: Arc<str> = match spec.kind {
            Kind::Counter => format!("{name}_total").into(),
            _ => name.as_str().into(),
        };
        let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
        let hdr = (spec.kind == Kind::Histogram && spec.percentiles).then(|| {
            let record = multiproc::store::family_record(
                &exposed,
                &spec.help,
                spec.kind,
                spec.mode,
                true,
                bounds.as_ref().map_or(&[], |b| b.as_slice()),
            );
            Arc::new(HdrRecorder::homed(HdrHome {
                serial,
                family_record: record.into(),
            }))
        });
        let family = Arc::new(Family {
            exposed,
            name,
            help: spec.help,
            kind: spec.kind,
            labelnames: spec.labelnames.iter().map(|s| Arc::from(s.as_str())).collect(),
            extra_labels: spec.extra_labels,
            hide_when_empty: false,
            bounds,
            hdr,
            series: RwLock::new(LabelMap::default()),
            cap: spec.cap,
            overflow: OnceLock::new(),
            warned: AtomicBool::new(false),
            overflow_counter,
            mode: spec.mode,
            serial,
            detached: false,
        });
        if family.labelnames.is_empty() && !family.extra_labels {
            family.lookup(&[]);
        }
        Ok(family)
    }

    pub(crate) fn hidden(mut self: Arc<Self>) -> Arc<Self> {
        if let Some(f) = Arc::get_mut(&mut self) {
            f.hide_when_empty = true;
        }
        self
    }

    /// The name as the text format writes it and users define it: counters end in `_total`.
    pub fn exposed_name(&self) -> String {
        self.exposed.to_string()
    }

    pub fn hdr(&self) -> Option<&HdrRecorder> {
        self.hdr.as_deref()
    }

    pub fn bounds(&self) -> Option<&[f64]> {
        self.bounds.as_ref().map(|b| b.as_slice())
    }

    /// A copy of this family's definition with no series, whose values stay on the heap: the
    /// merged multi-process view encodes through it.
    pub fn shell(&self) -> Arc<Family> {
        Arc::new(Family {
            name: self.name.clone(),
            exposed: self.exposed.clone(),
            help: self.help.clone(),
            kind: self.kind,
            labelnames: self.labelnames.clone(),
            extra_labels: self.extra_labels,
            hide_when_empty: self.hide_when_empty,
            bounds: self.bounds.clone(),
            hdr: self.hdr.as_ref().map(|_| Arc::new(HdrRecorder::default())),
            series: RwLock::new(LabelMap::default()),
            cap: self.cap,
            overflow: OnceLock::new(),
            warned: AtomicBool::new(false),
            overflow_counter: None,
            mode: self.mode,
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            detached: true,
        })
    }

    pub fn exposed_arc(&self) -> Arc<str> {
        self.exposed.clone()
    }

    pub fn bounds_spec(&self) -> Option<&Bounds> {
        self.bounds.as_ref()
    }

    pub fn is_detached(&self) -> bool {
        self.detached
    }

    /// A zeroed value of this family's kind on the heap.
    pub fn heap_value(&self) -> Value {
        match self.kind {
            Kind::Counter => Value::Counter(CounterValue::default()),
            Kind::Gauge => Value::Gauge(GaugeValue::default()),
            Kind::Histogram => Value::Histogram(HistogramValue::new(self.bounds.clone().expect("validated"))),
        }
    }

    fn new_series(&self, labels: Vec<(Arc<str>, Box<str>)>) -> Arc<Series> {
        let mut labels = labels;
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        // In multi-process mode the values live in this process's store file, where scrapes of
        // any process read them; if the store cannot take them the series still records locally.
        let shared = if self.detached {
            None
        } else {
            multiproc::alloc_value(self, &labels)
        };
        let value = shared.unwrap_or_else(|| self.heap_value());
        Arc::new(Series {
            family_name: self.exposed.clone(),
            labels: labels.into(),
            value,
            hdr: self.hdr.clone(),
            exemplars: OnceLock::new(),
        })
    }

    /// Checks the label-value count of a generic (fixed-label) lookup.
    pub fn check_arity(&self, n: usize) -> Result<()> {
        if n != self.labelnames.len() {
            return Err(Error::value(
                &self.exposed_name(),
                format!(
                    "expected {} label values ({}), got {n}",
                    self.labelnames.len(),
                    self.labelnames.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Finds or creates the series for `parts`: the fixed label values, then (for families with
    /// extra labels) `name, value` pairs sorted by name, already validated by the caller.
    #[inline]
    pub fn lookup(&self, parts: &[&str]) -> Lookup {
        let hash = {
            let map = self.series.read();
            let hash = map.hash(parts);
            if let Some(s) = map.get(hash, parts) {
                return Lookup {
                    series: s.clone(),
                    first_overflow: false,
                };
            }
            hash
        };
        self.lookup_slow(hash, parts)
    }

    #[cold]
    fn lookup_slow(&self, hash: u64, parts: &[&str]) -> Lookup {
        let mut map = self.series.write();
        if let Some(s) = map.get(hash, parts) {
            return Lookup {
                series: s.clone(),
                first_overflow: false,
            };
        }
        if map.len() >= self.cap {
            drop(map);
            return self.overflowed();
        }
        let n = self.labelnames.len();
        let mut labels: Vec<(Arc<str>, Box<str>)> = self
            .labelnames
            .iter()
            .zip(&parts[..n])
            .map(|(k, v)| (k.clone(), Box::from(*v)))
            .collect();
        for pair in parts[n..].chunks_exact(2) {
            labels.push((Arc::from(pair[0]), Box::from(pair[1])));
        }
        let series = self.new_series(labels);
        map.insert(hash, parts, series.clone());
        Lookup {
            series,
            first_overflow: false,
        }
    }

    fn overflowed(&self) -> Lookup {
        let series = self
            .overflow
            .get_or_init(|| {
                self.new_series(
                    self.labelnames
                        .iter()
                        .map(|k| (k.clone(), Box::from(OVERFLOW_VALUE)))
                        .collect(),
                )
            })
            .clone();
        if let Some(counter) = &self.overflow_counter {
            counter.lookup(&[&self.exposed_name()]).series.inc_int(1);
        }
        let first_overflow = !self.warned.swap(true, Ordering::Relaxed);
        Lookup { series, first_overflow }
    }

    /// The series in exposition order: insertion order, the overflow series last.
    pub fn snapshot(&self) -> Vec<Arc<Series>> {
        let mut v: Vec<Arc<Series>> = self.series.read().values().cloned().collect();
        if let Some(o) = self.overflow.get() {
            v.push(o.clone());
        }
        v
    }

    pub fn series_count(&self) -> usize {
        self.series.read().len() + usize::from(self.overflow.get().is_some())
    }

    /// Sum over all series of their values (histograms: of their counts).
    pub fn total(&self) -> f64 {
        self.snapshot().iter().map(|s| s.get()).sum()
    }

    /// Drops every labelled series (prometheus-client's `clear()`); unlabelled families keep their one.
    pub fn clear(&self) {
        self.series.write().clear();
        if self.labelnames.is_empty() && !self.extra_labels {
            self.lookup(&[]);
        }
    }

    /// Zeroes every series and the percentile recording, keeping the series (callers hold them).
    pub fn reset(&self) {
        for s in self.snapshot() {
            s.reset();
        }
        if let Some(h) = &self.hdr {
            h.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(labels: &[&str], cap: usize) -> Arc<Family> {
        let mut spec = FamilySpec::new("c_total", "help", Kind::Counter, labels);
        spec.cap = cap;
        Family::new(spec, None).unwrap()
    }

    #[test]
    fn reset_zeroes_values_and_keeps_series() {
        let c = counter(&["a"], 10);
        let held = c.lookup(&["x"]).series;
        held.inc(3.0);
        let mut spec = FamilySpec::new("h", "help", Kind::Histogram, &[]);
        spec.buckets = Some(vec![1.0, 10.0]);
        spec.percentiles = true;
        let h = Family::new(spec, None).unwrap();
        let one = h.lookup(&[]).series;
        one.observe(5.0);
        c.reset();
        h.reset();
        assert_eq!(held.get(), 0.0);
        assert!(Arc::ptr_eq(&held, &c.lookup(&["x"]).series));
        assert_eq!(one.get(), 0.0);
        assert_eq!(h.hdr().unwrap().count(), 0);
        held.inc(1.0);
        assert_eq!(c.total(), 1.0);
    }

    #[test]
    fn strips_total_from_counter_names() {
        assert_eq!(counter(&[], 10).name, "c");
    }

    #[test]
    fn unlabelled_family_has_one_series() {
        assert_eq!(counter(&[], 10).snapshot().len(), 1);
        assert_eq!(counter(&["a"], 10).snapshot().len(), 0);
    }

    #[test]
    fn same_labels_same_series() {
        let f = counter(&["a", "b"], 10);
        f.lookup(&["x", "y"]).series.inc(1.0);
        f.lookup(&["x", "y"]).series.inc(2.0);
        assert_eq!(f.snapshot().len(), 1);
        assert_eq!(f.total(), 3.0);
    }

    #[test]
    fn cap_folds_into_overflow_once_warned() {
        let overflow = counter(&["metric"], 100);
        let mut spec = FamilySpec::new("c_total", "help", Kind::Counter, &["a"]);
        spec.cap = 2;
        let f = Family::new(spec, Some(overflow.clone())).unwrap();
        assert!(!f.lookup(&["1"]).first_overflow);
        assert!(!f.lookup(&["2"]).first_overflow);
        let l = f.lookup(&["3"]);
        assert!(l.first_overflow);
        assert_eq!(l.series.label("a"), Some(OVERFLOW_VALUE));
        assert!(!f.lookup(&["4"]).first_overflow);
        assert_eq!(f.series_count(), 3);
        assert_eq!(overflow.total(), 2.0);
    }

    #[test]
    fn extra_labels_are_sorted_with_fixed_ones() {
        let mut spec = FamilySpec::new("c_total", "help", Kind::Counter, &["m"]);
        spec.extra_labels = true;
        let f = Family::new(spec, None).unwrap();
        let s = f.lookup(&["v", "a", "1"]).series;
        let names: Vec<&str> = s.labels.iter().map(|(k, _)| &**k).collect();
        assert_eq!(names, vec!["a", "m"]);
    }

    #[test]
    fn definition_errors_name_the_metric() {
        let e = Family::new(FamilySpec::new("bad-name", "", Kind::Gauge, &[]), None).unwrap_err();
        assert!(e.to_string().contains("bad-name"));
        let e = Family::new(FamilySpec::new("h", "", Kind::Histogram, &["le"]), None).unwrap_err();
        assert!(e.to_string().contains("\"h\""));
    }
}
