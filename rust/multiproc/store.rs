//! A process's store file: a header, then an append-only log of catalog entries whose value
//! slots the process updates in place with atomics while other processes read them.
//!
//! Layout (little-endian, every entry 16-aligned):
//! - header (64 bytes): magic, the committed length (an AtomicU64 stored with Release after an
//!   entry is complete, so a reader never sees half an entry), pid, creation time;
//! - entries: `tag u32, total_len u32, body_len u32, nslots u32`, a body padded to 8, then
//!   `nslots` u64 slots. A family entry names its family once; a series entry holds its family
//!   id, its sorted label pairs and its value slots (the layouts of rust/metrics/value.rs). An exemplars entry,
//!   appended on a histogram series' first exemplar of a kind (span ids or custom labels), names its series in
//!   full (family name, bounds, labels: it may sit in another file than the series' counts, see `alloc_exemplars`)
//!   and holds one seqlocked slot per bucket (the layouts of rust/metrics/exemplar.rs).
//!
//! The file grows in chunks, each mapped on its own and never moved or unmapped, so a pointer
//! handed to a series stays valid for the life of the process.

use super::sys;
use super::Mode;
use crate::metrics::atomic::Slots;
use crate::metrics::exemplar::SlotKind;
use crate::metrics::family::{Family, Kind, Value};
use crate::metrics::hdr::{HdrHome, HEAD_SLOTS, SUB_BUCKETS};
use crate::metrics::histogram::{histogram_slots, HistogramValue};
use crate::metrics::value::{CounterValue, GaugeValue, COUNTER_SLOTS, GAUGE_SLOTS, GAUGE_SLOTS_TIMESTAMPED};
use hashbrown::HashMap;
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const MAGIC: [u8; 8] = *b"VICTMP01";
pub const HEADER_LEN: usize = 64;
pub const COMMITTED_AT: usize = 8;
pub const ENTRY_HEAD: usize = 16;
const CHUNK: usize = 1 << 20;

pub const TAG_PAD: u32 = 1;
pub const TAG_FAMILY: u32 = 2;
pub const TAG_SERIES: u32 = 3;
pub const TAG_HDR_HEAD: u32 = 4;
pub const TAG_HDR_BLOCK: u32 = 5;
pub const TAG_EXEMPLARS: u32 = 6;

pub fn round8(n: usize) -> usize {
    (n + 7) & !7
}

struct Chunk {
    ptr: NonNull<u8>,
    len: usize,
}

struct Inner {
    file: File,
    chunks: Vec<Chunk>,
    /// Bytes used in the last chunk.
    used: usize,
    file_len: u64,
    /// Family serial -> id in this file.
    families: HashMap<u64, u32>,
}

// SAFETY: the raw pointers are to shared mappings that live as long as the process.
unsafe impl Send for Inner {}

/// One process's store file, appended to under a lock only when a series is created.
pub struct Store {
    path: PathBuf,
    pid: u32,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("pid", &self.pid)
            .finish()
    }
}

/// A family's catalog record without its per-file id: what every file says about it.
pub fn family_record(name: &str, help: &str, kind: Kind, mode: Mode, percentiles: bool, bounds: &[f64]) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + help.len());
    let kind = match kind {
        Kind::Counter => 0u8,
        Kind::Gauge => 1,
        Kind::Histogram => 2,
    };
    b.extend_from_slice(&[kind, mode as u8, u8::from(percentiles), 0]);
    b.extend_from_slice(&(name.len() as u32).to_le_bytes());
    b.extend_from_slice(&(help.len() as u32).to_le_bytes());
    b.extend_from_slice(&(bounds.len() as u32).to_le_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(help.as_bytes());
    for x in bounds {
        b.extend_from_slice(&x.to_le_bytes());
    }
    b
}

fn of_family(f: &Family) -> Vec<u8> {
    family_record(
        &f.exposed_name(),
        &f.help,
        f.kind,
        f.mode,
        f.hdr().is_some(),
        f.bounds().unwrap_or(&[]),
    )
}

/// Encodes the body of a series entry: family id, then its sorted label pairs.
pub(crate) fn series_body<K: AsRef<str>, V: AsRef<str>>(fid: u32, labels: &[(K, V)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + labels.len() * 24);
    b.extend_from_slice(&fid.to_le_bytes());
    b.extend_from_slice(&(labels.len() as u32).to_le_bytes());
    for (k, v) in labels {
        for s in [k.as_ref(), v.as_ref()] {
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        }
    }
    b
}

/// Encodes the body of an exemplars entry: slot kind, family name, bounds, sorted label pairs.
pub(crate) fn exemplars_body<K: AsRef<str>, V: AsRef<str>>(
    kind: SlotKind,
    name: &str,
    bounds: &[f64],
    labels: &[(K, V)],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + name.len() + bounds.len() * 8 + labels.len() * 24);
    b.extend_from_slice(&(kind as u32).to_le_bytes());
    b.extend_from_slice(&(name.len() as u32).to_le_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(bounds.len() as u32).to_le_bytes());
    for x in bounds {
        b.extend_from_slice(&x.to_le_bytes());
    }
    // The label part is a series body's without its family id.
    b.extend_from_slice(&series_body(0, labels)[4..]);
    b
}

impl Store {
    /// Creates this process's file in `dir` (created 0700 if missing), 0600, and takes its lock.
    pub fn create(dir: &Path) -> io::Result<Store> {
        super::ensure_dir(dir)?;
        let pid = std::process::id();
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
        let path = dir.join(format!("{pid}-{:016x}.db", u64::from_le_bytes(rnd)));
        Self::create_at(path, pid)
    }

    pub(crate) fn create_at(path: PathBuf, pid: u32) -> io::Result<Store> {
        // Made under a name no scrape looks at, and renamed once locked: a scrape must never see
        // an unlocked file of a live process and archive it away.
        let tmp = path.with_extension("new");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        if !sys::try_lock_exclusive(&file)? {
            return Err(io::Error::other("a fresh store file is locked by another process"));
        }
        let mut inner = Inner {
            file,
            chunks: Vec::new(),
            used: 0,
            file_len: 0,
            families: HashMap::new(),
        };
        inner.grow(CHUNK)?;
        let base = inner.chunks[0].ptr.as_ptr();
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // SAFETY: the first chunk is at least HEADER_LEN bytes, freshly mapped and ours alone.
        unsafe {
            std::ptr::copy_nonoverlapping(MAGIC.as_ptr(), base, 8);
            std::ptr::copy_nonoverlapping((pid as u64).to_le_bytes().as_ptr(), base.add(16), 8);
            std::ptr::copy_nonoverlapping(created.to_le_bytes().as_ptr(), base.add(24), 8);
        }
        inner.used = HEADER_LEN;
        inner.publish();
        std::fs::rename(&tmp, &path)?;
        Ok(Store {
            path,
            pid,
            inner: Mutex::new(inner),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Allocates the value of a new series of `family` in this file.
    pub fn alloc_value(&self, family: &Family, labels: &[(Arc<str>, Box<str>)]) -> io::Result<Value> {
        let mut inner = self.inner.lock();
        let fid = inner.family_id(family.serial, || of_family(family))?;
        let nslots = match family.kind {
            Kind::Counter => COUNTER_SLOTS,
            Kind::Gauge if family.mode.timestamped() => GAUGE_SLOTS_TIMESTAMPED,
            Kind::Gauge => GAUGE_SLOTS,
            Kind::Histogram => histogram_slots(family.bounds_spec().expect("histograms have bounds")),
        };
        let slots = inner.append(TAG_SERIES, &series_body(fid, labels), nslots, &[])?;
        // SAFETY: `append` returns nslots zeroed, aligned words in a mapping never unmapped.
        let slots = unsafe { Slots::external(slots, nslots) };
        Ok(match family.kind {
            Kind::Counter => Value::Counter(CounterValue::with_slots(slots)),
            Kind::Gauge => Value::Gauge(GaugeValue::with_slots(slots)),
            Kind::Histogram => Value::Histogram(HistogramValue::with_slots(
                family.bounds_spec().expect("histograms have bounds").clone(),
                slots,
            )),
        })
    }
}

impl Store {
    /// A histogram series' exemplar slots of one kind, one per bucket, all empty. Keyed by name and labels rather
    /// than by the series entry: a fork child records exemplars of series it inherited (whose counts stay in its
    /// parent's file, which it must not append to) into its own file, and the merge joins them by key.
    pub fn alloc_exemplars(
        &self,
        name: &str,
        bounds: &[f64],
        labels: &[(Arc<str>, Box<str>)],
        kind: SlotKind,
    ) -> io::Result<Slots> {
        let nslots = bounds.len() * kind.words();
        let mut inner = self.inner.lock();
        let p = inner.append(TAG_EXEMPLARS, &exemplars_body(kind, name, bounds, labels), nslots, &[])?;
        // SAFETY: as in alloc_value.
        Ok(unsafe { Slots::external(p, nslots) })
    }

    /// The head slots of a family's HDR recorder in this file (max/min start empty).
    pub fn hdr_head(&self, home: &HdrHome) -> io::Result<Slots> {
        let mut inner = self.inner.lock();
        let fid = inner.family_id(home.serial, || home.family_record.to_vec())?;
        let init = [(2, f64::INFINITY.to_bits())];
        let p = inner.append(TAG_HDR_HEAD, &fid.to_le_bytes(), HEAD_SLOTS, &init)?;
        // SAFETY: as in alloc_value.
        Ok(unsafe { Slots::external(p, HEAD_SLOTS) })
    }

    /// The sub-bucket counts of one binary exponent of a family's HDR recorder in this file.
    pub fn hdr_block(&self, home: &HdrHome, slot: usize) -> io::Result<Slots> {
        let mut inner = self.inner.lock();
        let fid = inner.family_id(home.serial, || home.family_record.to_vec())?;
        let mut body = fid.to_le_bytes().to_vec();
        body.extend_from_slice(&(slot as u32).to_le_bytes());
        let p = inner.append(TAG_HDR_BLOCK, &body, SUB_BUCKETS, &[])?;
        // SAFETY: as in alloc_value.
        Ok(unsafe { Slots::external(p, SUB_BUCKETS) })
    }
}

impl Inner {
    fn grow(&mut self, min: usize) -> io::Result<()> {
        let len = min.div_ceil(CHUNK) * CHUNK;
        let offset = self.file_len;
        self.file.set_len(offset + len as u64)?;
        let ptr = sys::map(&self.file, offset, len, true)?;
        self.chunks.push(Chunk { ptr, len });
        self.file_len = offset + len as u64;
        self.used = 0;
        Ok(())
    }

    /// File offset of the end of what has been written.
    fn end(&self) -> u64 {
        let last = self.chunks.last().expect("a store has a chunk");
        self.file_len - last.len as u64 + self.used as u64
    }

    fn publish(&self) {
        let end = self.end();
        // SAFETY: chunk 0 holds the header; the word is 8-aligned and only used atomically.
        let committed = unsafe { &*(self.chunks[0].ptr.as_ptr().add(COMMITTED_AT) as *const AtomicU64) };
        committed.store(end, Ordering::Release);
    }

    fn family_id(&mut self, serial: u64, record: impl FnOnce() -> Vec<u8>) -> io::Result<u32> {
        if let Some(&id) = self.families.get(&serial) {
            return Ok(id);
        }
        let id = self.families.len() as u32;
        let mut body = id.to_le_bytes().to_vec();
        body.extend_from_slice(&record());
        self.append(TAG_FAMILY, &body, 0, &[])?;
        self.families.insert(serial, id);
        Ok(id)
    }

    /// Appends an entry; `init` sets slots before the entry is published (all others are zero).
    fn append(
        &mut self,
        tag: u32,
        body: &[u8],
        nslots: usize,
        init: &[(usize, u64)],
    ) -> io::Result<NonNull<AtomicU64>> {
        let body_len = round8(body.len());
        // Entries are 16-aligned so the room left in a chunk always fits a padding entry's head.
        let total = (ENTRY_HEAD + body_len + nslots * 8 + 15) & !15;
        if total > u32::MAX as usize {
            return Err(io::Error::other("store entry too large"));
        }
        let room = self.chunks.last().map_or(0, |c| c.len - self.used);
        if total > room {
            if room >= ENTRY_HEAD {
                self.write_entry(TAG_PAD, &[], room, 0);
                self.used += room;
                self.publish();
            }
            self.grow(total)?;
        }
        let at = self.write_entry(tag, body, total, nslots);
        // SAFETY: `at` is the entry start inside the chunk; slots follow head and body.
        let slots = unsafe { at.add(ENTRY_HEAD + body_len) } as *mut AtomicU64;
        for &(i, v) in init.iter().filter(|(i, _)| *i < nslots) {
            // SAFETY: slot i of this entry, not yet visible to anyone.
            unsafe { (*slots.add(i)).store(v, Ordering::Relaxed) };
        }
        self.used += total;
        self.publish();
        Ok(NonNull::new(slots).expect("inside a mapping"))
    }

    fn write_entry(&mut self, tag: u32, body: &[u8], total: usize, nslots: usize) -> *mut u8 {
        let chunk = self.chunks.last().expect("a store has a chunk");
        debug_assert!(self.used + total <= chunk.len);
        // SAFETY: the range [used, used + total) lies inside the current chunk, which only this
        // process writes, under the store lock; slots stay zero as the file was extended with zeros.
        unsafe {
            let at = chunk.ptr.as_ptr().add(self.used);
            let head = [tag, total as u32, body.len() as u32, nslots as u32];
            for (i, w) in head.iter().enumerate() {
                std::ptr::copy_nonoverlapping(w.to_le_bytes().as_ptr(), at.add(i * 4), 4);
            }
            std::ptr::copy_nonoverlapping(body.as_ptr(), at.add(ENTRY_HEAD), body.len());
            at
        }
    }
}
