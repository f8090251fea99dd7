//! Dead processes fold into one archive: their counters, histograms and HDR counts are summed
//! into `archive.db`, their gauges kept or dropped by mode, and their files deleted, so the
//! directory stays bounded however many workers come and go. Their exemplars fold in too, the latest per bucket
//! (against the archive's own), so a trace a dead worker recorded stays one click away until a newer one replaces it.

use super::merge::{add_exemplars, Acc, ExemplarAccs, HdrAcc, LabelKey};
use super::read::{parse_exemplars, parse_family, parse_series, Cursor, FamilyRec, FileView};
use super::store::{
    exemplars_body, family_record, round8, COMMITTED_AT, ENTRY_HEAD, HEADER_LEN, MAGIC, TAG_EXEMPLARS, TAG_FAMILY,
    TAG_HDR_BLOCK, TAG_HDR_HEAD, TAG_SERIES,
};
use super::{sys, Mode, ARCHIVE};
use crate::metrics::exemplar::{encode_region, SlotKind};
use crate::metrics::family::Kind;
use crate::metrics::hdr::{HEAD_SLOTS, SUB_BUCKETS};
use hashbrown::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

struct FamAcc {
    rec: FamilyRec,
    index: HashMap<LabelKey, usize>,
    series: Vec<(LabelKey, Acc)>,
    hdr: HdrAcc,
}

/// Everything the archive will hold, by family (name, kind, buckets).
#[derive(Default)]
struct Folded {
    by_key: HashMap<(String, u8, Vec<u64>), usize>,
    families: Vec<FamAcc>,
    /// Exemplars by series name and bounds, apart from the families: a dead fork child's exemplars may belong to a
    /// series whose counts sit in its parent's (live) file.
    exemplar_index: HashMap<(String, Vec<u64>), usize>,
    exemplars: Vec<(String, Vec<f64>, ExemplarAccs)>,
}

fn kind_code(k: Kind) -> u8 {
    match k {
        Kind::Counter => 0,
        Kind::Gauge => 1,
        Kind::Histogram => 2,
    }
}

impl Folded {
    fn family(&mut self, rec: &FamilyRec) -> usize {
        let key = (
            rec.name.clone(),
            kind_code(rec.kind),
            rec.bounds.iter().map(|b| b.to_bits()).collect(),
        );
        let n = self.families.len();
        let i = *self.by_key.entry(key).or_insert(n);
        if i == n {
            self.families.push(FamAcc {
                rec: rec.clone(),
                index: HashMap::new(),
                series: Vec::new(),
                hdr: HdrAcc::default(),
            });
        }
        i
    }

    fn fold(&mut self, view: &FileView) {
        let mut fids: HashMap<u32, usize> = HashMap::new();
        for e in view.entries() {
            match e.tag {
                TAG_FAMILY => {
                    if let Some((fid, rec)) = parse_family(e.body) {
                        let i = self.family(&rec);
                        fids.insert(fid, i);
                    }
                }
                TAG_SERIES => {
                    let Some((fid, labels)) = parse_series(e.body) else {
                        continue;
                    };
                    let Some(&i) = fids.get(&fid) else { continue };
                    let f = &mut self.families[i];
                    let mode = f.rec.mode;
                    // Gauges of the dead count only in modes that keep them (sum, max, min, mostrecent).
                    if f.rec.kind == Kind::Gauge && (mode.is_live() || mode.base() == Mode::All) {
                        continue;
                    }
                    let nb = f.rec.bounds.len();
                    if e.slots.len() < super::merge::min_slots(f.rec.kind, nb) {
                        continue;
                    }
                    let key: LabelKey = labels.iter().map(|(k, v)| (Box::from(*k), Box::from(*v))).collect();
                    let kind = f.rec.kind;
                    let j = *f.index.entry(key.clone()).or_insert_with(|| {
                        f.series.push((key, Acc::empty(kind, nb)));
                        f.series.len() - 1
                    });
                    f.series[j].1.add(mode, e.slots);
                }
                TAG_HDR_HEAD | TAG_HDR_BLOCK => {
                    let mut c = Cursor::new(e.body);
                    if let Some(&i) = c.u32().and_then(|fid| fids.get(&fid)) {
                        self.families[i].hdr.add(e.tag, c.u32(), e.slots);
                    }
                }
                TAG_EXEMPLARS => {
                    let Some(rec) = parse_exemplars(e.body) else { continue };
                    let key = (rec.name.to_owned(), rec.bounds.iter().map(|b| b.to_bits()).collect());
                    let n = self.exemplars.len();
                    let i = *self.exemplar_index.entry(key).or_insert(n);
                    if i == n {
                        self.exemplars
                            .push((rec.name.to_owned(), rec.bounds.clone(), HashMap::new()));
                    }
                    let (_, bounds, accs) = &mut self.exemplars[i];
                    add_exemplars(accs, &rec, e.slots, bounds);
                }
                _ => {}
            }
        }
    }

    /// The archive file's bytes: the store format, fully committed.
    fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[..8].copy_from_slice(&MAGIC);
        for (fid, f) in self.families.iter().enumerate() {
            let fid = fid as u32;
            let r = &f.rec;
            let mut body = fid.to_le_bytes().to_vec();
            body.extend(family_record(
                &r.name,
                &r.help,
                r.kind,
                r.mode,
                r.percentiles,
                &r.bounds,
            ));
            push(&mut b, TAG_FAMILY, &body, &[]);
            for (labels, acc) in &f.series {
                let body = super::store::series_body(fid, labels);
                let slots: Vec<u64> = match acc {
                    Acc::Counter(ints, floats) => vec![*ints, floats.to_bits()],
                    Acc::Histogram(counts, sum) => {
                        std::iter::once(sum.to_bits()).chain(counts.iter().copied()).collect()
                    }
                    Acc::Gauge(v, ts, _) if r.mode.timestamped() => vec![v.to_bits(), *ts],
                    Acc::Gauge(v, _, _) => vec![v.to_bits()],
                };
                push(&mut b, TAG_SERIES, &body, &slots);
            }
            if f.hdr.seen {
                let h = &f.hdr;
                let head: [u64; HEAD_SLOTS] = [h.zeros, h.max_bits, h.min_bits];
                push(&mut b, TAG_HDR_HEAD, &fid.to_le_bytes(), &head);
                let mut blocks: Vec<_> = h.blocks.iter().collect();
                blocks.sort_by_key(|(slot, _)| **slot);
                for (slot, counts) in blocks {
                    let mut body = fid.to_le_bytes().to_vec();
                    body.extend_from_slice(&(*slot as u32).to_le_bytes());
                    debug_assert_eq!(counts.len(), SUB_BUCKETS);
                    push(&mut b, TAG_HDR_BLOCK, &body, counts);
                }
            }
        }
        for (name, bounds, accs) in &self.exemplars {
            for (labels, latest) in accs {
                for kind in [SlotKind::Span, SlotKind::Custom] {
                    if latest.iter().flatten().any(|e| SlotKind::of(&e.labels) == kind) {
                        let body = exemplars_body(kind, name, bounds, labels);
                        push(&mut b, TAG_EXEMPLARS, &body, &encode_region(kind, latest));
                    }
                }
            }
        }
        let end = b.len() as u64;
        b[COMMITTED_AT..COMMITTED_AT + 8].copy_from_slice(&end.to_le_bytes());
        b
    }
}

fn push(b: &mut Vec<u8>, tag: u32, body: &[u8], slots: &[u64]) {
    let total = (ENTRY_HEAD + round8(body.len()) + slots.len() * 8 + 15) & !15;
    let start = b.len();
    for w in [tag, total as u32, body.len() as u32, slots.len() as u32] {
        b.extend_from_slice(&w.to_le_bytes());
    }
    b.extend_from_slice(body);
    b.resize(start + ENTRY_HEAD + round8(body.len()), 0);
    for s in slots {
        b.extend_from_slice(&s.to_le_bytes());
    }
    b.resize(start + total, 0);
}

/// Folds every dead process file of `dir` into the archive and deletes it; returns how many.
/// Runs under the directory lock, exclusive: readers (shared) never see a count twice or lose one.
pub fn archive_dead(dir: &Path) -> io::Result<usize> {
    let lock = super::open_dir_lock(dir)?;
    sys::flock(&lock, true, true)?;
    let result = archive_locked(dir);
    sys::unlock(&lock);
    result
}

fn archive_locked(dir: &Path) -> io::Result<usize> {
    let mut dead = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !super::read::is_process_file(&name) {
            continue;
        }
        // A file may be gone already (deleted by its owner's test harness, or an earlier archiver).
        let Ok(Some(view)) = FileView::open(&entry.path()) else {
            continue;
        };
        // Holding its lock proves no process can write it any more (and keeps anyone from retrying).
        if sys::try_lock_shared(&view.file)? {
            dead.push(view);
        }
    }
    if dead.is_empty() {
        return Ok(0);
    }
    let mut folded = Folded::default();
    let archive_path = dir.join(ARCHIVE);
    match FileView::open(&archive_path) {
        Ok(Some(old)) => folded.fold(&old),
        Ok(None) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    for v in &dead {
        folded.fold(v);
    }
    let tmp = dir.join(format!("{ARCHIVE}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&folded.encode())?;
    f.sync_all()?;
    // The rename swaps the archive in one step; only then do the dead files go.
    std::fs::rename(&tmp, &archive_path)?;
    for v in &dead {
        std::fs::remove_file(&v.path)?;
    }
    Ok(dead.len())
}
