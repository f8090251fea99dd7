//! Multi-process mode: each process records into its own mmap'd store file in a shared
//! directory (atomics, no cross-process lock on the record path) and every export merges all
//! of them. Pure Rust; rust/py/multiproc.rs binds it.

mod archive;
mod leader;
pub mod merge;
mod mode;
pub mod read;
pub mod store;
mod sys;

pub use archive::archive_dead;
pub use leader::try_lead;
pub use merge::{merge, merge_with, Source, View};
pub use mode::Mode;
pub use store::Store;

use crate::metrics::atomic::Slots;
use crate::metrics::exemplar::SlotKind;
use crate::metrics::family::{Family, Value};
use crate::metrics::hdr::HdrHome;
use parking_lot::Mutex;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The archive of dead processes' counts: a store file no process holds.
pub const ARCHIVE: &str = "archive.db";
const DIR_LOCK: &str = ".lock";

static ENABLED: AtomicBool = AtomicBool::new(false);

struct State {
    dir: PathBuf,
    /// This process's store, created on its first series; a fork child makes its own.
    store: Option<Arc<Store>>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Creates `dir` owner-only if missing; refuses a path that exists and is not a directory.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if !dir.is_dir() {
        return Err(io::Error::other(format!("{} is not a directory", dir.display())));
    }
    Ok(())
}

/// Turns multi-process mode on for this process: series created from now on live in a store
/// file under `dir`, and exports merge the directory. Calling it again with the same directory
/// is a no-op; another directory is refused.
pub fn enable(dir: &Path) -> io::Result<()> {
    ensure_dir(dir)?;
    let dir = dir.canonicalize()?;
    let mut st = STATE.lock();
    if let Some(s) = st.as_ref() {
        if s.dir == dir {
            return Ok(());
        }
        return Err(io::Error::other(format!(
            "multi-process mode is already on with directory {}",
            s.dir.display()
        )));
    }
    *st = Some(State { dir, store: None });
    ENABLED.store(true, Ordering::Release);
    static AT_FORK: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a plain extern "C" function with no captured state.
    AT_FORK.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_in_child));
    });
    Ok(())
}

/// A fork child has one thread: a lock some other thread of the parent held at the fork would
/// never be released. The state it guards is still consistent for the child's use (it only reads
/// the directory and replaces the store, since the pid changed), so the lock is simply freed.
extern "C" fn after_fork_in_child() {
    if STATE.is_locked() {
        // SAFETY: the owning thread does not exist in this process; no guard will ever drop.
        unsafe { STATE.force_unlock() };
    }
    leader::after_fork_in_child();
}

#[inline]
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

pub fn dir() -> Option<PathBuf> {
    STATE.lock().as_ref().map(|s| s.dir.clone())
}

/// This process's store, made on first use and again after a fork (a child must not append to
/// its parent's file; the series it inherited keep writing to the parent's, which stays live
/// while any process holding it lives).
pub fn current_store() -> Option<Arc<Store>> {
    if !is_enabled() {
        return None;
    }
    let mut st = STATE.lock();
    let s = st.as_mut()?;
    let pid = std::process::id();
    if let Some(store) = s.store.as_ref().filter(|st| st.pid() == pid) {
        return Some(store.clone());
    }
    let store = Arc::new(Store::create(&s.dir).ok()?);
    s.store = Some(store.clone());
    Some(store)
}

/// The value of a new series in this process's store, or None in single-process mode.
pub fn alloc_value(family: &Family, labels: &[(Arc<str>, Box<str>)]) -> Option<Value> {
    current_store()?.alloc_value(family, labels).ok()
}

/// A histogram series' exemplar slots of `kind` in this process's store (see `Store::alloc_exemplars`).
pub fn alloc_exemplars(name: &str, bounds: &[f64], labels: &[(Arc<str>, Box<str>)], kind: SlotKind) -> Option<Slots> {
    current_store()?.alloc_exemplars(name, bounds, labels, kind).ok()
}

/// The head slots of a family's HDR recorder in this process's store.
pub fn alloc_hdr_head(home: &HdrHome) -> Option<Slots> {
    current_store()?.hdr_head(home).ok()
}

/// One exponent's sub-bucket counts of a family's HDR recorder in this process's store.
pub fn alloc_hdr_block(home: &HdrHome, slot: usize) -> Option<Slots> {
    current_store()?.hdr_block(home, slot).ok()
}

pub(crate) fn open_dir_lock(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(DIR_LOCK))
}

/// This process's store file, if it has made one (in this process, not inherited from a parent).
pub fn own_path() -> Option<PathBuf> {
    let pid = std::process::id();
    STATE
        .lock()
        .as_ref()?
        .store
        .as_ref()
        .filter(|s| s.pid() == pid)
        .map(|s| s.path().to_owned())
}

/// Opens every store file of `dir` (this process's first, then by name, the archive last).
pub fn sources(dir: &Path, own: Option<&Path>) -> io::Result<Vec<Source>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| read::is_process_file(n))
        .collect();
    names.sort();
    let own_name = own
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .map(str::to_owned);
    if let Some(o) = &own_name {
        if let Some(i) = names.iter().position(|n| n == o) {
            let n = names.remove(i);
            names.insert(0, n);
        }
    }
    let mut out = Vec::with_capacity(names.len() + 1);
    for n in names {
        // A file may vanish (archived by another process) between listing and opening.
        if let Ok(Some(view)) = read::FileView::open(&dir.join(&n)) {
            let live = view.is_live();
            out.push(Source {
                view,
                live,
                archive: false,
            });
        }
    }
    if let Ok(Some(view)) = read::FileView::open(&dir.join(ARCHIVE)) {
        out.push(Source {
            view,
            live: false,
            archive: true,
        });
    }
    Ok(out)
}

/// The merged view of `families` over the whole directory; the local view when the mode is off.
pub fn view(families: &[Arc<Family>]) -> View {
    view_of(crate::exposition::snapshot(families), true)
}

/// The merged view over the whole directory of the families of `local`, a snapshot taken
/// beforehand; `local` itself when the mode is off. Takes no family lock (the extension runs it
/// with the GIL released: fork safety, see rust/metrics/family.rs). Histograms carry their
/// exemplars only with `exemplars` (what an OpenMetrics scrape shows; reading them costs).
pub fn view_of(local: View, exemplars: bool) -> View {
    let Some(dir) = dir() else { return local };
    let families: Vec<Arc<Family>> = local.iter().map(|(f, _)| f.clone()).collect();
    let own = own_path();
    // Shared with other readers, exclusive against the archiver, so no count is read twice or
    // missed while a dead file moves into the archive.
    let lock = open_dir_lock(&dir).ok();
    if let Some(l) = &lock {
        let _ = sys::flock(l, false, true);
    }
    let mut srcs = sources(&dir, own.as_deref());
    if srcs.as_ref().is_ok_and(|s| s.iter().any(|s| !s.live && !s.archive)) {
        // A process died: fold it into the archive first (exclusive), then read again.
        drop(srcs);
        if let Some(l) = &lock {
            sys::unlock(l);
        }
        let _ = archive_dead(&dir);
        if let Some(l) = &lock {
            let _ = sys::flock(l, false, true);
        }
        srcs = sources(&dir, own.as_deref());
    }
    let merged = match srcs {
        Ok(srcs) => merge_with(&srcs, &families, exemplars),
        Err(_) => local,
    };
    if let Some(l) = &lock {
        sys::unlock(l);
    }
    merged
}

/// Owner-only permissions check used by tests and the doctor: (dir mode, file modes).
pub fn permissions(dir: &Path) -> io::Result<(u32, Vec<u32>)> {
    let d = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    let files = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.permissions().mode() & 0o777)
        .collect();
    Ok((d, files))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::exposition::{encode, encode_snapshots, Format};
    use crate::metrics::exemplar::{check_labels, write_slot, Exemplar, ExemplarLabels};
    use crate::metrics::family::{FamilySpec, Kind, Series};
    use std::sync::atomic::AtomicUsize;

    pub(crate) fn temp_dir() -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "victor-mp-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(Arc<str>, Box<str>)> {
        pairs.iter().map(|(k, v)| (Arc::from(*k), Box::from(*v))).collect()
    }

    fn families() -> Vec<Arc<Family>> {
        let mut h = FamilySpec::new("lat_ms", "Latency.", Kind::Histogram, &["ep"]);
        h.buckets = Some(vec![10.0, 100.0]);
        vec![
            Family::new(FamilySpec::new("req_total", "Requests.", Kind::Counter, &["ep"]), None).unwrap(),
            Family::new(h, None).unwrap(),
        ]
    }

    fn record(series: &Series, i: usize) {
        series.inc(1.0);
        series.inc(0.25);
        series.observe((i % 200) as f64);
    }

    #[test]
    fn merged_exposition_equals_single_process_for_the_same_totals() {
        let dir = temp_dir();
        ensure_dir(&dir).unwrap();
        let fams = families();
        let stores: Vec<Store> = (0..3)
            .map(|i| Store::create_at(dir.join(format!("{}-{i}.db", 100 + i)), 100 + i).unwrap())
            .collect();
        let single = families();
        for (k, st) in stores.iter().enumerate() {
            for ep in ["/a", "/b"] {
                let l = labels(&[("ep", ep)]);
                let c = Series::detached("req_total".into(), l.clone(), st.alloc_value(&fams[0], &l).unwrap());
                let h = Series::detached("lat_ms".into(), l.clone(), st.alloc_value(&fams[1], &l).unwrap());
                for i in 0..(100 * (k + 1)) {
                    c.inc(1.0);
                    c.inc(0.25);
                    h.observe((i % 200) as f64);
                    record(&single[0].lookup(&[ep]).series, i);
                    single[1].lookup(&[ep]).series.observe((i % 200) as f64);
                }
            }
        }
        let view = merge(&sources(&dir, None).unwrap(), &fams);
        for format in [Format::Text, Format::OpenMetrics] {
            assert_eq!(encode_snapshots(&view, format), encode(&single, format));
        }
        let text = encode_snapshots(&view, Format::Text);
        assert!(text.contains("req_total{ep=\"/a\"} 750.0\n"), "{text}");
        assert!(text.contains("lat_ms_count{ep=\"/b\"} 600.0\n"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_are_owner_only_and_liveness_follows_the_lock() {
        let dir = temp_dir().join("nested");
        let st = Store::create(&dir).unwrap();
        let (d, files) = permissions(&dir).unwrap();
        assert_eq!(d, 0o700);
        assert_eq!(files, vec![0o600]);
        let path = st.path().to_owned();
        assert!(read::FileView::open(&path).unwrap().unwrap().is_live());
        // A reader in the same process closing its own fd must not drop the owner's lock.
        drop(read::FileView::open(&path).unwrap());
        assert!(read::FileView::open(&path).unwrap().unwrap().is_live());
        // A process that exits without a word (its mappings hold the lock until then) is seen dead.
        let child_path = dir.join("1-child.db");
        // SAFETY: the child only creates its store (malloc and syscalls) and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = Store::create_at(child_path.clone(), 1).is_ok();
            unsafe { libc::_exit(i32::from(!ok)) };
        }
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(status, 0);
        assert!(!read::FileView::open(&child_path).unwrap().unwrap().is_live());
        assert!(read::FileView::open(&path).unwrap().unwrap().is_live());
        drop(st);
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn concurrent_writers_in_several_stores_are_exact() {
        let dir = temp_dir();
        ensure_dir(&dir).unwrap();
        let fams = families();
        let stores: Vec<Arc<Store>> = (0..4)
            .map(|i| Arc::new(Store::create_at(dir.join(format!("{}-{i}.db", 200 + i)), 200 + i).unwrap()))
            .collect();
        let handles: Vec<_> = stores
            .iter()
            .flat_map(|st| (0..4).map(move |t| (st.clone(), t)))
            .map(|(st, t)| {
                let fams = fams.clone();
                std::thread::spawn(move || {
                    // Every thread creates its own label set too: catalog appends race with records.
                    let l = labels(&[("ep", &format!("/t{t}"))]);
                    let c = Series::detached("req_total".into(), l.clone(), st.alloc_value(&fams[0], &l).unwrap());
                    let h = Series::detached("lat_ms".into(), l.clone(), st.alloc_value(&fams[1], &l).unwrap());
                    for i in 0..20_000 {
                        c.inc_int(1);
                        h.observe((i % 150) as f64);
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        let view = merge(&sources(&dir, None).unwrap(), &fams);
        let total: f64 = view[0].1.iter().map(|s| s.get()).sum();
        assert_eq!(total, 16.0 * 20_000.0);
        assert_eq!(view[0].1.len(), 4);
        let count: f64 = view[1].1.iter().map(|s| s.get()).sum();
        assert_eq!(count, 16.0 * 20_000.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_store_spans_many_chunks() {
        let dir = temp_dir();
        ensure_dir(&dir).unwrap();
        let fams = families();
        let st = Store::create_at(dir.join("300-0.db"), 300).unwrap();
        let long = "x".repeat(3 << 20);
        for i in 0..20_000 {
            let l = labels(&[("ep", &format!("/{i}"))]);
            let v = st.alloc_value(&fams[1], &l).unwrap();
            Series::detached("lat_ms".into(), l, v).observe(1.0);
        }
        let l = labels(&[("ep", &long)]);
        Series::detached("req_total".into(), l.clone(), st.alloc_value(&fams[0], &l).unwrap()).inc_int(7);
        let view = merge(&sources(&dir, None).unwrap(), &fams);
        assert_eq!(view[1].1.len(), 20_000);
        assert_eq!(view[0].1[0].get(), 7.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dead_processes_fold_into_one_archive_and_keep_their_counts() {
        let dir = temp_dir();
        ensure_dir(&dir).unwrap();
        let mut fams = families();
        for (name, mode) in [("g_sum", Mode::Sum), ("g_livesum", Mode::LiveSum), ("g_all", Mode::All)] {
            let mut spec = FamilySpec::new(name, "g", Kind::Gauge, &[]);
            spec.mode = mode;
            fams.push(Family::new(spec, None).unwrap());
        }
        let write = |st: &Store, k: u64| {
            let l = labels(&[("ep", "/a")]);
            let c = Series::detached("req_total".into(), l.clone(), st.alloc_value(&fams[0], &l).unwrap());
            c.inc_int(k);
            let h = Series::detached("lat_ms".into(), l.clone(), st.alloc_value(&fams[1], &l).unwrap());
            h.observe(k as f64);
            for f in &fams[2..] {
                Series::detached(f.exposed_arc(), vec![], st.alloc_value(f, &[]).unwrap()).set(k as f64);
            }
        };
        for round in 0..2u64 {
            for k in 1..=3u64 {
                // SAFETY: the child writes its store and _exits.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    let st = Store::create_at(dir.join(format!("{}-{round}{k}.db", 10 * round + k)), k as u32);
                    if let Ok(st) = st {
                        write(&st, 10 * k);
                    }
                    unsafe { libc::_exit(0) };
                }
                let mut status = 0;
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            }
            let live = Store::create_at(dir.join(format!("99-{round}.db")), 99 + round as u32).unwrap();
            write(&live, 1);
            let before = merge(&sources(&dir, None).unwrap(), &fams);
            let text_before = encode_snapshots(&before, Format::Text);
            assert_eq!(archive_dead(&dir).unwrap(), 3);
            assert_eq!(archive_dead(&dir).unwrap(), 0);
            let after = merge(&sources(&dir, None).unwrap(), &fams);
            let total = |v: &View, i: usize| v[i].1.iter().map(|s| s.get()).sum::<f64>();
            let r = round as f64;
            assert_eq!(total(&after, 0), 61.0 + 61.0 * r, "{text_before}");
            assert_eq!(total(&before, 0), total(&after, 0));
            assert_eq!(total(&after, 1), 4.0 + 4.0 * r);
            assert_eq!(total(&after, 2), 61.0 + 61.0 * r);
            assert_eq!(total(&after, 3), 1.0 + r);
            assert_eq!(after[4].1.len(), 1 + round as usize);
            assert_eq!(before[4].1.len(), 4 + round as usize);
            let names: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert_eq!(names.len(), 3 + round as usize, "{names:?}");
            // The live store of the first round stays live (this process holds it) in the second.
            std::mem::forget(live);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn span_at(trace_id: u128, value: f64, timestamp: f64) -> Exemplar {
        Exemplar {
            labels: ExemplarLabels::Span {
                trace_id,
                span_id: trace_id as u64,
            },
            value,
            timestamp,
        }
    }

    /// Bucket i's exemplar of `labels` in a merged view's histogram family (index 1 of `families()`).
    fn merged_exemplars(view: &View, ep: &str) -> Vec<Option<Exemplar>> {
        view[1]
            .1
            .iter()
            .find(|s| s.label("ep") == Some(ep))
            .unwrap()
            .exemplars()
    }

    /// Runs `f` in a forked child that then exits: a process that wrote its file and died.
    fn in_dead_child(f: impl FnOnce() -> bool) {
        // SAFETY: the child only writes its store (malloc and syscalls) and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(false);
            unsafe { libc::_exit(i32::from(!ok)) };
        }
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(status, 0);
    }

    #[test]
    fn exemplars_merge_latest_per_bucket_skip_torn_slots_and_survive_the_archive() {
        let dir = temp_dir();
        ensure_dir(&dir).unwrap();
        let fams = families();
        let bounds = fams[1].bounds().unwrap().to_vec();
        assert_eq!(bounds.len(), 3);
        let l = labels(&[("ep", "/a")]);
        let (w, c) = (SlotKind::Span.words(), SlotKind::Custom.words());
        let region = |st: &Store, kind| st.alloc_exemplars("lat_ms", &bounds, &l, kind).unwrap();
        let observe = |st: &Store| {
            let h = Series::detached("lat_ms".into(), l.clone(), st.alloc_value(&fams[1], &l).unwrap());
            [5.0, 50.0, 500.0].iter().all(|&v| h.observe(v))
        };
        // Process a: counts and span exemplars, then dies.
        in_dead_child(|| {
            let a = Store::create_at(dir.join("100-a.db"), 100).unwrap();
            let r = region(&a, SlotKind::Span);
            observe(&a)
                && write_slot(&r[0..w], &span_at(0xa0, 5.0, 10.0))
                && write_slot(&r[w..2 * w], &span_at(0xa1, 50.0, 30.0))
                && write_slot(&r[2 * w..], &span_at(0xa2, 500.0, 1.0))
        });
        // Process b, alive: counts, span and custom exemplars.
        let b = Store::create_at(dir.join("101-b.db"), 101).unwrap();
        assert!(observe(&b));
        let (b_span, b_custom) = (region(&b, SlotKind::Span), region(&b, SlotKind::Custom));
        assert!(write_slot(&b_span[0..w], &span_at(0xb0, 6.0, 20.0)));
        assert!(write_slot(&b_span[w..2 * w], &span_at(0xb1, 51.0, 5.0)));
        let custom = check_labels(vec![("user".into(), "ü".repeat(120))]).unwrap();
        let custom_at = Exemplar {
            labels: custom.clone(),
            value: 600.0,
            timestamp: 2.0,
        };
        assert!(write_slot(&b_custom[2 * c..], &custom_at));
        // Process c: the series' exemplars in a file without its counts (a fork child's, for an inherited series).
        in_dead_child(|| {
            let child = Store::create_at(dir.join("102-c.db"), 102).unwrap();
            write_slot(&region(&child, SlotKind::Span)[w..2 * w], &span_at(0xc1, 52.0, 40.0))
        });

        // The same data without exemplars: one process's heap series.
        let single = families();
        for _ in 0..2 {
            [5.0, 50.0, 500.0]
                .iter()
                .for_each(|&v| assert!(single[1].lookup(&["/a"]).series.observe(v)));
        }
        let (text_before, om_before) = (encode(&single, Format::Text), encode(&single, Format::OpenMetrics));
        let view = merge(&sources(&dir, None).unwrap(), &fams);
        let got = merged_exemplars(&view, "/a");
        assert_eq!(
            got,
            vec![
                Some(span_at(0xb0, 6.0, 20.0)),
                Some(span_at(0xc1, 52.0, 40.0)),
                Some(custom_at.clone())
            ]
        );
        // Text 0.0.4 has no exemplars: byte for byte what it was before any was written; OpenMetrics only adds them.
        assert_eq!(encode_snapshots(&view, Format::Text), text_before);
        let om = encode_snapshots(&view, Format::OpenMetrics);
        assert_eq!(om.matches(" # {").count(), 3, "{om}");
        let stripped: String = om
            .lines()
            .map(|l| l.split(" # {").next().unwrap().to_owned() + "\n")
            .collect();
        assert_eq!(stripped, om_before);
        // A text scrape does not read them at all: the same counts, no exemplar, the same bytes.
        let text_view = merge_with(&sources(&dir, None).unwrap(), &fams, false);
        assert!(merged_exemplars(&text_view, "/a").iter().all(Option::is_none));
        assert_eq!(encode_snapshots(&text_view, Format::Text), text_before);

        // A write in progress in b's slot (odd sequence): the merge skips it and the next latest shows.
        b_span[0].fetch_add(1, Ordering::Relaxed);
        let got = merged_exemplars(&merge(&sources(&dir, None).unwrap(), &fams), "/a");
        assert_eq!(got[0], Some(span_at(0xa0, 5.0, 10.0)));
        b_span[0].fetch_sub(1, Ordering::Relaxed);

        // The dead fold into the archive with their exemplars, the latest per bucket.
        assert_eq!(archive_dead(&dir).unwrap(), 2);
        let got = merged_exemplars(&merge(&sources(&dir, None).unwrap(), &fams), "/a");
        assert_eq!(got[1], Some(span_at(0xc1, 52.0, 40.0)));
        assert_eq!(got[2], Some(custom_at.clone()));
        b_span[0].fetch_add(1, Ordering::Relaxed);
        let got = merged_exemplars(&merge(&sources(&dir, None).unwrap(), &fams), "/a");
        assert_eq!(got[0], Some(span_at(0xa0, 5.0, 10.0)), "the archive kept a's");
        b_span[0].fetch_sub(1, Ordering::Relaxed);
        // A later live exemplar beats the archive's; a later dead one replaces the archive's when it folds in.
        assert!(write_slot(&b_span[0..w], &span_at(0xb2, 7.0, 50.0)));
        in_dead_child(|| {
            let d = Store::create_at(dir.join("103-d.db"), 103).unwrap();
            let r = region(&d, SlotKind::Span);
            write_slot(&r[w..2 * w], &span_at(0xd1, 53.0, 60.0)) && write_slot(&r[2 * w..], &span_at(0xd2, 400.0, 0.5))
        });
        assert_eq!(archive_dead(&dir).unwrap(), 1);
        let view = merge(&sources(&dir, None).unwrap(), &fams);
        let got = merged_exemplars(&view, "/a");
        assert_eq!(
            got,
            vec![
                Some(span_at(0xb2, 7.0, 50.0)),
                Some(span_at(0xd1, 53.0, 60.0)),
                Some(custom_at)
            ]
        );
        assert_eq!(view[1].1[0].get(), 6.0);
        assert_eq!(encode_snapshots(&view, Format::Text), text_before);
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
