//! OpenMetrics exemplars: the latest (trace, span) or explicit label set per histogram bucket.

use super::atomic::Slots;
use std::cell::UnsafeCell;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// OpenMetrics (and prometheus-client) cap an exemplar's label set, names and values together, at 128 characters.
pub const MAX_EXEMPLAR_CHARS: usize = 128;

/// What an exemplar points at: a span (the common case, stored without allocating) or labels the caller gave.
#[derive(Debug, Clone, PartialEq)]
pub enum ExemplarLabels {
    Span {
        trace_id: u128,
        span_id: u64,
    },
    /// Sorted by name, validated by the caller (see `check_labels`).
    Custom(Arc<[(Box<str>, Box<str>)]>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: ExemplarLabels,
    pub value: f64,
    /// Seconds since the Unix epoch, when the observation was made.
    pub timestamp: f64,
}

/// One slot per bucket, allocated with a series' first exemplar (most series never get one).
///
/// Fork safety: every slot is only ever tried, never waited for, and held only to move a plain value in or out,
/// never across a GIL release or a Python call. A writer that finds its slot busy drops its exemplar (another one,
/// just as recent, is being written), and a reader skips the slot for that scrape; so even a slot left busy in
/// a forked child by a thread that does not exist there costs that bucket its exemplar, never a deadlock.
#[derive(Debug)]
pub enum Exemplars {
    /// Single-process mode: on the heap, beside the series.
    Local(Box<[Slot]>),
    /// Multi-process mode: in the process's store file, where every process's scrape reads them.
    Shared(SharedExemplars),
}

impl Exemplars {
    pub fn new(buckets: usize) -> Self {
        Exemplars::Local((0..buckets).map(|_| Slot::default()).collect())
    }

    /// Already filled (a merged multi-process view carries its exemplars this way).
    pub fn filled(exemplars: Vec<Option<Exemplar>>) -> Self {
        Exemplars::Local(exemplars.into_iter().map(Slot::filled).collect())
    }

    /// Makes `exemplar` the latest of bucket `index`. `alloc` gives a shared series its region in the store file
    /// the first time it needs one of that kind (None: the exemplar is dropped); local slots never call it.
    #[inline]
    pub fn set(&self, index: usize, exemplar: Exemplar, alloc: impl FnOnce(SlotKind) -> Option<Slots>) {
        match self {
            Exemplars::Local(slots) => {
                let Some(slot) = slots.get(index) else { return };
                // A custom label set is freed after the slot is released.
                drop(slot.try_with(|e| e.replace(exemplar)));
            }
            Exemplars::Shared(shared) => shared.set(index, exemplar, alloc),
        }
    }

    /// A copy of every bucket's exemplar (None where there is none, or its slot is busy this instant).
    pub fn get_all(&self) -> Vec<Option<Exemplar>> {
        match self {
            Exemplars::Local(slots) => slots.iter().map(|s| s.try_with(|e| e.clone()).flatten()).collect(),
            Exemplars::Shared(shared) => shared.get_all(),
        }
    }
}

/// A try-only lock around one local exemplar. Not a Mutex: with nothing ever waiting, taking it is one atomic swap
/// and giving it back a plain release store, where a mutex's unlock is a second locked instruction. That one was
/// most of an exemplar's cost (interleaved, same build: observe with one 1.31-1.32x a plain observe under
/// parking_lot's Mutex, 1.19x with this).
#[derive(Debug, Default)]
pub struct Slot {
    busy: AtomicBool,
    exemplar: UnsafeCell<Option<Exemplar>>,
}

// SAFETY: `exemplar` is only touched by the one thread that turned `busy` from false to true.
unsafe impl Sync for Slot {}

impl Slot {
    fn filled(exemplar: Option<Exemplar>) -> Slot {
        Slot {
            busy: AtomicBool::new(false),
            exemplar: UnsafeCell::new(exemplar),
        }
    }

    #[inline]
    fn try_with<R>(&self, f: impl FnOnce(&mut Option<Exemplar>) -> R) -> Option<R> {
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        // SAFETY: this thread set `busy`, so it alone holds the slot until the store below.
        let r = f(unsafe { &mut *self.exemplar.get() });
        self.busy.store(false, Ordering::Release);
        Some(r)
    }
}

// Shared exemplars: one region per series and kind in the store file, one seqlocked slot per bucket.
//
// A slot's first word is its sequence: 0 never written, odd while a write is in progress, even once complete. A
// writer takes an even sequence to odd with a compare-exchange, so two writers (threads, or processes sharing an
// inherited series) never interleave: the loser drops its exemplar, as the local slots do. A reader copies the
// slot between two loads of the sequence and keeps the copy only if both are the same even number: a torn slot
// (a write in progress, or a writer killed mid-write) is skipped for that scrape, never waited for. Every word is
// an atomic, so concurrent access across processes is defined behaviour, not a data race.
//
// Layouts (u64 words; must match what rust/multiproc writes and reads):
// - span:   `[seq, timestamp (f64 bits), value (f64 bits), trace_id low, trace_id high, span_id]`;
// - custom: `[seq, timestamp, value, payload bytes, payload (CUSTOM_BYTES)]`, the payload being per label
//   `name length u8, value length u16 LE, name, value`. Names are ASCII ([a-zA-Z_][a-zA-Z0-9_]*) and values at
//   most 4 bytes a character, so 128 characters in n pairs take at most N + 4(128 - N) + 3n <= 512 bytes (N name
//   characters, n <= N): prometheus-client's limit always fits, so a custom exemplar is never cut.

const SEQ: usize = 0;
const TS: usize = 1;
const VALUE: usize = 2;
pub const SPAN_WORDS: usize = 6;
pub const CUSTOM_BYTES: usize = 512;
pub const CUSTOM_WORDS: usize = 4 + CUSTOM_BYTES / 8;

/// What a shared region's slots hold; the number is written in the store file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    Span = 0,
    Custom = 1,
}

impl SlotKind {
    pub const fn words(self) -> usize {
        match self {
            SlotKind::Span => SPAN_WORDS,
            SlotKind::Custom => CUSTOM_WORDS,
        }
    }

    pub fn from_u32(v: u32) -> Option<SlotKind> {
        match v {
            0 => Some(SlotKind::Span),
            1 => Some(SlotKind::Custom),
            _ => None,
        }
    }

    pub fn of(labels: &ExemplarLabels) -> SlotKind {
        match labels {
            ExemplarLabels::Span { .. } => SlotKind::Span,
            ExemplarLabels::Custom(_) => SlotKind::Custom,
        }
    }
}

/// A series' exemplars in the store file: each kind's region is appended on its first exemplar.
#[derive(Debug)]
pub struct SharedExemplars {
    buckets: usize,
    span: OnceLock<Option<Slots>>,
    custom: OnceLock<Option<Slots>>,
}

impl SharedExemplars {
    pub fn new(buckets: usize) -> Self {
        SharedExemplars {
            buckets,
            span: OnceLock::new(),
            custom: OnceLock::new(),
        }
    }

    // Out of line: the single-process path inlines only the local arm, and costs what it did before this one existed.
    #[inline(never)]
    fn set(&self, index: usize, e: Exemplar, alloc: impl FnOnce(SlotKind) -> Option<Slots>) {
        let (cell, kind) = match e.labels {
            ExemplarLabels::Span { .. } => (&self.span, SlotKind::Span),
            ExemplarLabels::Custom(_) => (&self.custom, SlotKind::Custom),
        };
        let region = match cell.get() {
            Some(region) => region,
            None => cell.get_or_init(|| alloc(kind).filter(|s| s.len() >= self.buckets * kind.words())),
        };
        let words = kind.words();
        if let Some(slot) = region.as_ref().and_then(|r| r.get(index * words..(index + 1) * words)) {
            write_slot(slot, &e);
        }
    }

    fn get_all(&self) -> Vec<Option<Exemplar>> {
        let mut out = vec![None; self.buckets];
        for (kind, cell) in [(SlotKind::Span, &self.span), (SlotKind::Custom, &self.custom)] {
            if let Some(Some(region)) = cell.get() {
                latest_of(&mut out, read_region(kind, region, self.buckets));
            }
        }
        out
    }
}

/// Writes `e` into one slot of its kind; false, writing nothing, when another writer holds the slot (or a custom
/// label set does not fit, which check_labels' limit rules out).
#[inline]
pub fn write_slot(slot: &[AtomicU64], e: &Exemplar) -> bool {
    match &e.labels {
        ExemplarLabels::Span { trace_id, span_id } => seq_write(slot, e, |w| {
            w[3].store(*trace_id as u64, Ordering::Relaxed);
            w[4].store((*trace_id >> 64) as u64, Ordering::Relaxed);
            w[5].store(*span_id, Ordering::Relaxed);
        }),
        ExemplarLabels::Custom(pairs) => write_custom(slot, e, pairs),
    }
}

#[inline(never)]
fn write_custom(slot: &[AtomicU64], e: &Exemplar, pairs: &[(Box<str>, Box<str>)]) -> bool {
    let mut buf = [0u8; CUSTOM_BYTES];
    let Some(n) = encode_custom(pairs, &mut buf) else {
        return false;
    };
    seq_write(slot, e, |w| {
        w[3].store(n as u64, Ordering::Relaxed);
        for (w, chunk) in w[4..].iter().zip(buf[..n.div_ceil(8) * 8].chunks_exact(8)) {
            w.store(
                u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
                Ordering::Relaxed,
            );
        }
    })
}

#[inline]
fn seq_write(slot: &[AtomicU64], e: &Exemplar, labels: impl FnOnce(&[AtomicU64])) -> bool {
    let seq = &slot[SEQ];
    let s = seq.load(Ordering::Relaxed);
    if s & 1 != 0
        || seq
            .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return false;
    }
    // The odd sequence is visible before any word of the new content (crossbeam's seqlock writer).
    fence(Ordering::Release);
    slot[TS].store(e.timestamp.to_bits(), Ordering::Relaxed);
    slot[VALUE].store(e.value.to_bits(), Ordering::Relaxed);
    labels(slot);
    seq.store(s + 2, Ordering::Release);
    true
}

/// The payload of a custom label set; None when it does not fit (check_labels' limit always does).
fn encode_custom(pairs: &[(Box<str>, Box<str>)], buf: &mut [u8; CUSTOM_BYTES]) -> Option<usize> {
    let mut at = 0;
    for (k, v) in pairs {
        let (kl, vl) = (u8::try_from(k.len()).ok()?, u16::try_from(v.len()).ok()?);
        let end = at + 3 + k.len() + v.len();
        if end > CUSTOM_BYTES {
            return None;
        }
        buf[at] = kl;
        buf[at + 1..at + 3].copy_from_slice(&vl.to_le_bytes());
        buf[at + 3..at + 3 + k.len()].copy_from_slice(k.as_bytes());
        buf[at + 3 + k.len()..end].copy_from_slice(v.as_bytes());
        at = end;
    }
    Some(at)
}

fn decode_custom(b: &[u8]) -> Option<ExemplarLabels> {
    let mut pairs = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let kl = *b.get(at)? as usize;
        let vl = u16::from_le_bytes(b.get(at + 1..at + 3)?.try_into().ok()?) as usize;
        let k = std::str::from_utf8(b.get(at + 3..at + 3 + kl)?).ok()?;
        let v = std::str::from_utf8(b.get(at + 3 + kl..at + 3 + kl + vl)?).ok()?;
        pairs.push((k.to_owned(), v.to_owned()));
        at += 3 + kl + vl;
    }
    // A damaged file yields no exemplar rather than one that breaks the exposition.
    check_labels(pairs)
        .ok()
        .filter(|l| matches!(l, ExemplarLabels::Custom(p) if !p.is_empty()))
}

/// One slot's exemplar, if it holds a complete one.
pub fn read_slot(kind: SlotKind, slot: &[AtomicU64]) -> Option<Exemplar> {
    if slot.len() < kind.words() {
        return None;
    }
    let mut words = [0u64; CUSTOM_WORDS];
    let words = &mut words[..kind.words()];
    let s1 = slot[SEQ].load(Ordering::Acquire);
    if s1 == 0 || s1 & 1 != 0 {
        return None;
    }
    for (w, a) in words.iter_mut().zip(slot).skip(1) {
        *w = a.load(Ordering::Relaxed);
    }
    // No load above moves past this fence: a copy that saw any word of a later write sees its odd sequence next.
    fence(Ordering::Acquire);
    if slot[SEQ].load(Ordering::Relaxed) != s1 {
        return None;
    }
    let labels = match kind {
        SlotKind::Span => ExemplarLabels::Span {
            trace_id: u128::from(words[3]) | (u128::from(words[4]) << 64),
            span_id: words[5],
        },
        SlotKind::Custom => {
            let n = (words[3] as usize).min(CUSTOM_BYTES);
            let mut buf = [0u8; CUSTOM_BYTES];
            for (chunk, w) in buf.chunks_exact_mut(8).zip(&words[4..]) {
                chunk.copy_from_slice(&w.to_le_bytes());
            }
            decode_custom(&buf[..n])?
        }
    };
    Some(Exemplar {
        labels,
        value: f64::from_bits(words[VALUE]),
        timestamp: f64::from_bits(words[TS]),
    })
}

/// Every bucket's exemplar of a region of `buckets` slots of `kind`.
pub fn read_region(kind: SlotKind, region: &[AtomicU64], buckets: usize) -> Vec<Option<Exemplar>> {
    let w = kind.words();
    (0..buckets)
        .map(|i| region.get(i * w..(i + 1) * w).and_then(|s| read_slot(kind, s)))
        .collect()
}

/// A region's words holding `exemplars` of `kind` (the others' slots empty), as an archive writes it.
pub fn encode_region(kind: SlotKind, exemplars: &[Option<Exemplar>]) -> Vec<u64> {
    let w = kind.words();
    let words: Vec<AtomicU64> = (0..exemplars.len() * w).map(|_| AtomicU64::new(0)).collect();
    for (slot, e) in words.chunks_exact(w).zip(exemplars) {
        if let Some(e) = e.as_ref().filter(|e| SlotKind::of(&e.labels) == kind) {
            write_slot(slot, e);
        }
    }
    words.into_iter().map(AtomicU64::into_inner).collect()
}

/// Folds `other` into `acc` bucket by bucket: the later timestamp wins, a tie keeps what `acc` has.
pub fn latest_of(acc: &mut Vec<Option<Exemplar>>, other: Vec<Option<Exemplar>>) {
    if acc.len() < other.len() {
        acc.resize(other.len(), None);
    }
    for (a, o) in acc.iter_mut().zip(other) {
        if let Some(o) = o {
            if a.as_ref().is_none_or(|a| o.timestamp > a.timestamp) {
                *a = Some(o);
            }
        }
    }
}

/// Checks an explicit exemplar's labels by prometheus-client's rules: valid label names, at most 128 characters
/// of names and values together. Returns them sorted by name.
pub fn check_labels(pairs: Vec<(String, String)>) -> Result<ExemplarLabels, &'static str> {
    let chars: usize = pairs.iter().map(|(k, v)| k.chars().count() + v.chars().count()).sum();
    if chars > MAX_EXEMPLAR_CHARS {
        return Err("exemplar labels exceed 128 characters");
    }
    if pairs.iter().any(|(k, _)| !super::validate::is_label_name(k)) {
        return Err("invalid exemplar label name");
    }
    let mut pairs: Vec<(Box<str>, Box<str>)> = pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err("duplicate exemplar label name");
    }
    Ok(ExemplarLabels::Custom(pairs.into()))
}

/// Seconds since the Unix epoch, now, to the clock tick (a few milliseconds): the coarse clock costs a quarter of
/// the precise one, which the exemplar's budget (1.3x the plain record) feels, and a scrape interval is seconds.
#[cfg(target_os = "linux")]
#[inline]
pub fn now_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_REALTIME_COARSE exists on every Linux since 2.6.32.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    } else {
        precise_now()
    }
}

#[cfg(not(target_os = "linux"))]
#[inline]
pub fn now_seconds() -> f64 {
    precise_now()
}

fn precise_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace_id: u128) -> Exemplar {
        Exemplar {
            labels: ExemplarLabels::Span { trace_id, span_id: 7 },
            value: 1.0,
            timestamp: 2.0,
        }
    }

    #[test]
    fn the_coarse_clock_is_the_wall_clock() {
        assert!((now_seconds() - precise_now()).abs() < 1.0);
    }

    #[test]
    fn latest_per_bucket() {
        let e = Exemplars::new(3);
        e.set(1, span(1), |_| None);
        e.set(1, span(2), |_| None);
        e.set(9, span(3), |_| None);
        let all = e.get_all();
        assert_eq!(all.len(), 3);
        assert!(all[0].is_none() && all[2].is_none());
        assert_eq!(all[1].as_ref().unwrap().labels, span(2).labels);
    }

    #[test]
    fn busy_slot_drops_the_writer_and_skips_the_reader() {
        let e = Exemplars::new(1);
        e.set(0, span(1), |_| None);
        let Exemplars::Local(slots) = &e else { panic!() };
        slots[0].try_with(|_| {
            e.set(0, span(2), |_| None);
            assert_eq!(e.get_all(), vec![None]);
        });
        assert_eq!(e.get_all()[0].as_ref().unwrap().labels, span(1).labels);
    }

    #[test]
    fn custom_labels_follow_prometheus_client_rules() {
        let ok = check_labels(vec![("z".into(), "1".into()), ("a".into(), "2".into())]).unwrap();
        let ExemplarLabels::Custom(pairs) = ok else { panic!() };
        assert_eq!(&*pairs[0].0, "a");
        // 128 characters (not bytes) pass; 129 do not.
        assert!(check_labels(vec![("k".into(), "é".repeat(127))]).is_ok());
        assert!(check_labels(vec![("k".into(), "é".repeat(128))]).is_err());
        assert!(check_labels(vec![("bad-name".into(), "v".into())]).is_err());
        assert!(check_labels(vec![("a".into(), "1".into()), ("a".into(), "2".into())]).is_err());
    }

    fn at(trace_id: u128, timestamp: f64) -> Exemplar {
        Exemplar {
            labels: ExemplarLabels::Span {
                trace_id,
                span_id: trace_id as u64 ^ 0x5a5a,
            },
            value: trace_id as f64,
            timestamp,
        }
    }

    fn heap_region(kind: SlotKind, buckets: usize) -> Option<Slots> {
        Some(Slots::heap(buckets * kind.words()))
    }

    #[test]
    fn shared_slots_keep_the_latest_and_allocate_each_kind_once() {
        let e = Exemplars::Shared(SharedExemplars::new(3));
        let mut allocs = 0;
        let mut alloc = |k| {
            allocs += 1;
            heap_region(k, 3)
        };
        e.set(0, at(u128::MAX - 1, 5.0), &mut alloc);
        e.set(0, at(2, 6.0), &mut alloc);
        let custom = check_labels(vec![("user".into(), "é".repeat(100))]).unwrap();
        e.set(
            2,
            Exemplar {
                labels: custom.clone(),
                value: 9.5,
                timestamp: 1.0,
            },
            &mut alloc,
        );
        e.set(2, at(3, 0.5), &mut alloc);
        assert_eq!(allocs, 2);
        let all = e.get_all();
        assert_eq!(all[0], Some(at(2, 6.0)));
        assert_eq!(all[1], None);
        // Each kind keeps its latest; between the two kinds the later timestamp is the bucket's exemplar.
        assert_eq!(all[2].as_ref().unwrap().labels, custom);
        assert_eq!(all[2].as_ref().unwrap().value, 9.5);
        // A series whose region could not be made drops its exemplars.
        let none = Exemplars::Shared(SharedExemplars::new(1));
        none.set(0, at(1, 1.0), |_| None);
        assert_eq!(none.get_all(), vec![None]);
    }

    #[test]
    fn a_slot_mid_write_is_skipped_by_readers_and_refused_to_writers() {
        let region = Slots::heap(2 * SPAN_WORDS);
        assert!(write_slot(&region[..SPAN_WORDS], &at(1, 1.0)));
        assert!(write_slot(&region[SPAN_WORDS..], &at(2, 1.0)));
        // A writer that began and never finished (killed between its two sequence stores) leaves the slot odd.
        region[0].fetch_add(1, Ordering::Relaxed);
        region[3].store(0xdead, Ordering::Relaxed);
        assert_eq!(read_region(SlotKind::Span, &region, 2), vec![None, Some(at(2, 1.0))]);
        assert!(!write_slot(&region[..SPAN_WORDS], &at(3, 2.0)));
        // Never written: no exemplar.
        assert_eq!(read_slot(SlotKind::Span, &Slots::heap(SPAN_WORDS)), None);
    }

    #[test]
    fn concurrent_writers_never_show_a_torn_exemplar() {
        let region = Arc::new(Slots::heap(SPAN_WORDS));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        let writers: Vec<_> = (0..3u128)
            .map(|t| {
                let (region, stop, written) = (region.clone(), stop.clone(), written.clone());
                std::thread::spawn(move || {
                    let mut i = 0u128;
                    while !stop.load(Ordering::Relaxed) {
                        // Every word of an exemplar derives from one number: a mix of two writes shows.
                        let x = (t << 100) | (i << 64) | i;
                        if write_slot(&region, &at(x, x as f64)) {
                            written[t as usize].fetch_add(1, Ordering::Relaxed);
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        let least = || written.iter().map(|w| w.load(Ordering::Relaxed)).min().unwrap_or(0);
        let (mut seen, mut skipped) = (0u64, 0u64);
        // Reads while every writer writes; bounded, so a reader that never gets a clean copy fails instead of hanging.
        while (seen < 20_000 || least() < 20_000) && seen + skipped < 200_000_000 {
            match read_slot(SlotKind::Span, &region) {
                Some(e) => {
                    let ExemplarLabels::Span { trace_id, span_id } = e.labels else {
                        panic!()
                    };
                    assert_eq!(span_id, trace_id as u64 ^ 0x5a5a);
                    assert_eq!(e.value, trace_id as f64);
                    assert_eq!(e.timestamp, trace_id as f64);
                    assert_eq!(trace_id as u64, (trace_id >> 64) as u64 & ((1 << 36) - 1));
                    seen += 1;
                }
                None => skipped += 1,
            }
        }
        stop.store(true, Ordering::Relaxed);
        writers.into_iter().for_each(|w| w.join().unwrap());
        assert!(
            seen >= 20_000 && least() >= 20_000,
            "{seen} read, {skipped} skipped, {written:?} written"
        );
    }

    #[test]
    fn concurrent_writers_never_show_a_torn_custom_exemplar() {
        // A custom slot takes 64 stores to write: a reader that ignored the sequence would see halves of two writes.
        let region = Arc::new(Slots::heap(CUSTOM_WORDS));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let custom = |x: u64| Exemplar {
            labels: check_labels(vec![("n".into(), format!("{x:020}").repeat(6))]).unwrap(),
            value: x as f64,
            timestamp: 1.0,
        };
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let (region, stop) = (region.clone(), stop.clone());
                let exemplars: Vec<Exemplar> = (0..64).map(|i| custom(t * 1_000_000 + i)).collect();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += u64::from(write_slot(&region, &exemplars[(n % 64) as usize]));
                        // Room between writes, for readers to find the slot complete.
                        (0..64).for_each(|_| std::hint::spin_loop());
                    }
                    n
                })
            })
            .collect();
        let (mut seen, mut skipped) = (0u64, 0u64);
        while seen < 50_000 && seen + skipped < 100_000_000 {
            match read_slot(SlotKind::Custom, &region) {
                Some(e) => {
                    assert_eq!(e, custom(e.value as u64));
                    seen += 1;
                }
                None => skipped += 1,
            }
        }
        stop.store(true, Ordering::Relaxed);
        let writes: Vec<u64> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        assert!(
            seen >= 50_000 && writes.iter().all(|&n| n > 0),
            "{seen} read, {skipped} skipped, {writes:?}"
        );
    }

    #[test]
    fn custom_labels_at_the_limit_fit_a_slot() {
        // The largest payloads: one 1-character name with 127 four-byte characters, and 64 pairs of 1 + 1.
        let cases = [
            vec![("k".to_owned(), "𝄞".repeat(127))],
            (0..64)
                .map(|i| {
                    (
                        format!("{}", (b'a' + (i % 26) as u8) as char).repeat(1 + i / 26),
                        String::new(),
                    )
                })
                .collect::<Vec<_>>(),
            vec![("a".into(), "x\"\n\\".into()), ("b".into(), String::new())],
        ];
        for pairs in cases {
            let Ok(labels) = check_labels(pairs.clone()) else {
                continue;
            };
            let e = Exemplar {
                labels,
                value: 0.25,
                timestamp: 3.0,
            };
            let words = encode_region(SlotKind::Custom, &[None, Some(e.clone())]);
            let region: Vec<AtomicU64> = words.into_iter().map(AtomicU64::new).collect();
            assert_eq!(
                read_region(SlotKind::Custom, &region, 2),
                vec![None, Some(e)],
                "{pairs:?}"
            );
        }
        let mut buf = [0u8; CUSTOM_BYTES];
        let ExemplarLabels::Custom(big) = check_labels(vec![("k".into(), "𝄞".repeat(127))]).unwrap() else {
            panic!()
        };
        assert_eq!(encode_custom(&big, &mut buf), Some(CUSTOM_BYTES));
    }

    #[test]
    fn latest_of_prefers_the_later_timestamp_and_keeps_ties() {
        let mut acc = vec![Some(at(1, 5.0)), None, Some(at(3, 1.0))];
        latest_of(
            &mut acc,
            vec![Some(at(4, 5.0)), Some(at(5, 0.0)), Some(at(6, 2.0)), Some(at(7, 1.0))],
        );
        assert_eq!(
            acc,
            vec![Some(at(1, 5.0)), Some(at(5, 0.0)), Some(at(6, 2.0)), Some(at(7, 1.0))]
        );
    }
}
