//! The merged view: the series of every process file (and the archive of dead ones), combined by
//! family name and sorted label set into one snapshot the single-process encoders write. A histogram bucket's
//! exemplar is the one with the latest timestamp over every file's exemplar slots for that series.

use super::read::{parse_exemplars, parse_series, Cursor, ExemplarsRec, FamilyRec, FileView, SERIES};
use super::store::{TAG_EXEMPLARS, TAG_HDR_BLOCK, TAG_HDR_HEAD};
use super::Mode;
use crate::metrics::atomic::AtomicF64;
use crate::metrics::exemplar::{latest_of, read_region, Exemplar};
use crate::metrics::family::{Family, Kind, Series, Value};
use crate::metrics::hdr::{SLOTS as HDR_SLOTS, SUB_BUCKETS};
use crate::metrics::value::CounterValue;
use hashbrown::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Families with the series to encode, in exposition order.
pub type View = Vec<(Arc<Family>, Vec<Arc<Series>>)>;

/// One file to merge: a live or dead process's file, or the archive of dead ones.
pub struct Source {
    pub view: FileView,
    pub live: bool,
    pub archive: bool,
}

pub(crate) type LabelKey = Vec<(Box<str>, Box<str>)>;
/// Per family: label set -> position, and the merged series in first-seen order.
type FamilyAccs = (HashMap<LabelKey, usize>, Vec<(LabelKey, Acc)>);
/// Per family: label set -> each bucket's latest exemplar so far.
pub(crate) type ExemplarAccs = HashMap<LabelKey, Vec<Option<Exemplar>>>;

/// Folds an exemplars entry into `accs` (latest per bucket) when it names a histogram series of `bounds`.
pub(crate) fn add_exemplars(accs: &mut ExemplarAccs, rec: &ExemplarsRec<'_>, slots: &[AtomicU64], bounds: &[f64]) {
    if rec.bounds != bounds {
        return;
    }
    let key: LabelKey = rec.labels.iter().map(|(k, v)| (Box::from(*k), Box::from(*v))).collect();
    latest_of(
        accs.entry(key).or_default(),
        read_region(rec.kind, slots, rec.bounds.len()),
    );
}

#[derive(Debug, Clone)]
pub(crate) enum Acc {
    Counter(u64, f64),
    Histogram(Vec<u64>, f64),
    /// value, time of the last change (0 when not kept), whether any process contributed yet.
    Gauge(f64, u64, bool),
}

impl Acc {
    pub(crate) fn empty(kind: Kind, nbounds: usize) -> Acc {
        match kind {
            Kind::Counter => Acc::Counter(0, 0.0),
            Kind::Histogram => Acc::Histogram(vec![0; nbounds], 0.0),
            Kind::Gauge => Acc::Gauge(0.0, 0, false),
        }
    }

    /// Folds one process's slots in (layouts of rust/metrics/value.rs and histogram.rs).
    pub(crate) fn add(&mut self, mode: Mode, slots: &[std::sync::atomic::AtomicU64]) {
        let load = |i: usize| slots.get(i).map_or(0, |s| s.load(Ordering::Relaxed));
        match self {
            Acc::Counter(ints, floats) => {
                *ints += load(0);
                *floats += AtomicF64::view(&slots[1]).get();
            }
            Acc::Histogram(counts, sum) => {
                *sum += f64::from_bits(load(0));
                for (c, s) in counts.iter_mut().zip(&slots[1..]) {
                    *c += s.load(Ordering::Relaxed);
                }
            }
            Acc::Gauge(v, ts, seen) => {
                let (x, t) = (f64::from_bits(load(0)), load(1));
                let first = !*seen;
                *seen = true;
                match mode.base() {
                    Mode::All | Mode::Sum => *v += x,
                    Mode::Max => *v = if first { x } else { v.max(x) },
                    Mode::Min => *v = if first { x } else { v.min(x) },
                    _ => {
                        if first || t >= *ts {
                            *v = x;
                            *ts = t;
                        }
                    }
                }
            }
        }
    }

    pub(crate) fn into_value(self, f: &Family) -> Value {
        match (self, f.heap_value()) {
            (Acc::Counter(ints, floats), Value::Counter(c)) => {
                c.inc_int(ints);
                add_float(&c, floats);
                Value::Counter(c)
            }
            (Acc::Histogram(counts, sum), Value::Histogram(h)) => {
                h.add_raw(&counts, sum);
                Value::Histogram(h)
            }
            (Acc::Gauge(v, _, _), Value::Gauge(g)) => {
                g.set(v);
                Value::Gauge(g)
            }
            (_, v) => v,
        }
    }
}

fn add_float(c: &CounterValue, v: f64) {
    if v != 0.0 {
        c.inc_float(v);
    }
}

/// Merges `sources` (this process's file first, so a lone process keeps its series order) for
/// the given families: counters and histograms summed, gauges combined by their family's mode.
pub fn merge(sources: &[Source], families: &[Arc<Family>]) -> View {
    merge_with(sources, families, true)
}

/// `merge`, reading the histograms' exemplars only when `exemplars` (an OpenMetrics scrape; the text format has none).
pub fn merge_with(sources: &[Source], families: &[Arc<Family>], exemplars: bool) -> View {
    let by_name: HashMap<String, usize> = families
        .iter()
        .enumerate()
        .map(|(i, f)| (f.exposed_name(), i))
        .collect();
    let mut hdrs: Vec<HdrAcc> = families.iter().map(|_| HdrAcc::default()).collect();
    let mut accs: Vec<FamilyAccs> = families.iter().map(|_| (HashMap::new(), Vec::new())).collect();
    let read_exemplars = exemplars;
    let mut exemplars: Vec<ExemplarAccs> = families.iter().map(|_| HashMap::new()).collect();
    for src in sources {
        let recs = src.view.families();
        let local: HashMap<u32, usize> = recs
            .iter()
            .filter_map(|(&fid, rec)| matching(rec, &by_name, families).map(|i| (fid, i)))
            .collect();
        let pid = src.view.pid().to_string();
        for e in src.view.entries() {
            if e.tag == TAG_HDR_HEAD || e.tag == TAG_HDR_BLOCK {
                let mut c = Cursor::new(e.body);
                if let Some(&i) = c.u32().and_then(|fid| local.get(&fid)) {
                    hdrs[i].add(e.tag, c.u32(), e.slots);
                }
                continue;
            }
            if e.tag == TAG_EXEMPLARS {
                if !read_exemplars {
                    continue;
                }
                // Keyed by name, not by this file's family ids: the series may live in another file.
                if let Some(rec) = parse_exemplars(e.body) {
                    let found = by_name.get(rec.name).copied();
                    if let Some(i) = found.filter(|&i| families[i].kind == Kind::Histogram) {
                        add_exemplars(&mut exemplars[i], &rec, e.slots, families[i].bounds().unwrap_or(&[]));
                    }
                }
                continue;
            }
            if e.tag != SERIES {
                continue;
            }
            let Some((fid, labels)) = parse_series(e.body) else {
                continue;
            };
            let Some(&i) = local.get(&fid) else { continue };
            let f = &families[i];
            let mut key: LabelKey = labels.iter().map(|(k, v)| (Box::from(*k), Box::from(*v))).collect();
            if f.kind == Kind::Gauge {
                if f.mode.is_live() && !src.live {
                    continue;
                }
                if f.mode.base() == Mode::All {
                    if src.archive {
                        continue;
                    }
                    let at = key.partition_point(|(k, _)| &**k < "pid");
                    key.insert(at, (Box::from("pid"), Box::from(pid.as_str())));
                }
            }
            let nbounds = f.bounds().map_or(0, |b| b.len());
            let (index, list) = &mut accs[i];
            let j = *index.entry(key.clone()).or_insert_with(|| {
                list.push((key, Acc::empty(f.kind, nbounds)));
                list.len() - 1
            });
            if e.slots.len() >= min_slots(f.kind, nbounds) {
                list[j].1.add(f.mode, e.slots);
            }
        }
    }
    families
        .iter()
        .zip(accs)
        .zip(hdrs)
        .zip(exemplars)
        .map(|(((f, (_, list)), hdr), mut exemplars)| {
            let shell = f.shell();
            if let Some(h) = shell.hdr() {
                let blocks: Vec<(usize, Vec<u64>)> = hdr.blocks.into_iter().collect();
                h.add_raw(hdr.zeros, hdr.max_bits, hdr.min_bits, &blocks);
            }
            let name = shell.exposed_arc();
            let series = list
                .into_iter()
                .map(|(labels, acc)| {
                    // Most families have no exemplar: skip hashing their label sets.
                    let ex = if exemplars.is_empty() {
                        Vec::new()
                    } else {
                        exemplars.remove(&labels).unwrap_or_default()
                    };
                    let labels = labels.into_iter().map(|(k, v)| (Arc::from(k), v)).collect();
                    Series::detached_with(name.clone(), labels, acc.into_value(&shell), ex)
                })
                .collect();
            (shell, series)
        })
        .collect()
}

/// One family's HDR counts summed over processes.
pub(crate) struct HdrAcc {
    pub(crate) zeros: u64,
    pub(crate) max_bits: u64,
    pub(crate) min_bits: u64,
    pub(crate) blocks: HashMap<usize, Vec<u64>>,
    pub(crate) seen: bool,
}

impl Default for HdrAcc {
    fn default() -> Self {
        HdrAcc {
            zeros: 0,
            max_bits: 0,
            min_bits: f64::INFINITY.to_bits(),
            blocks: HashMap::new(),
            seen: false,
        }
    }
}

impl HdrAcc {
    pub(crate) fn add(&mut self, tag: u32, slot: Option<u32>, slots: &[AtomicU64]) {
        self.seen = true;
        let load = |i: usize| slots.get(i).map(|s| s.load(Ordering::Relaxed));
        if tag == TAG_HDR_HEAD {
            let (Some(z), Some(max), Some(min)) = (load(0), load(1), load(2)) else {
                return;
            };
            self.zeros += z;
            self.max_bits = self.max_bits.max(max);
            self.min_bits = self.min_bits.min(min);
        } else if let Some(slot) = slot.map(|s| s as usize).filter(|&s| s < HDR_SLOTS) {
            let b = self.blocks.entry(slot).or_insert_with(|| vec![0; SUB_BUCKETS]);
            for (acc, s) in b.iter_mut().zip(slots) {
                *acc += s.load(Ordering::Relaxed);
            }
        }
    }
}

pub(crate) fn min_slots(kind: Kind, nbounds: usize) -> usize {
    match kind {
        Kind::Counter => 2,
        Kind::Gauge => 1,
        Kind::Histogram => 1 + nbounds,
    }
}

/// The local family a file's family record stands for: same exposed name, kind and buckets.
fn matching(rec: &FamilyRec, by_name: &HashMap<String, usize>, families: &[Arc<Family>]) -> Option<usize> {
    let &i = by_name.get(&rec.name)?;
    let f = &families[i];
    (f.kind == rec.kind && f.bounds().unwrap_or(&[]) == rec.bounds.as_slice()).then_some(i)
}
