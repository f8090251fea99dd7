//! Reading a store file written by another (or this) process: a read-only mapping, walked up to
//! its committed length, every length checked so a damaged file is skipped, never trusted.

use super::store::{round8, COMMITTED_AT, ENTRY_HEAD, HEADER_LEN, MAGIC, TAG_FAMILY, TAG_SERIES};
use super::sys;
use super::Mode;
use crate::metrics::exemplar::SlotKind;
use crate::metrics::family::Kind;
use hashbrown::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// A family as a file describes it.
#[derive(Debug, Clone)]
pub struct FamilyRec {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub mode: Mode,
    pub percentiles: bool,
    pub bounds: Vec<f64>,
}

/// One raw entry: its tag, body and value slots.
pub struct Entry<'a> {
    pub tag: u32,
    pub body: &'a [u8],
    pub slots: &'a [AtomicU64],
}

/// A store file mapped read-only.
pub struct FileView {
    pub path: PathBuf,
    pub file: File,
    ptr: Option<NonNull<u8>>,
    len: usize,
    committed: usize,
}

impl Drop for FileView {
    fn drop(&mut self) {
        if let Some(p) = self.ptr {
            // SAFETY: our own mapping; the slices handed out borrow self.
            unsafe { sys::unmap(p, self.len) };
        }
    }
}

/// A little cursor over an entry body.
pub struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Cursor { b, at: 0 }
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    pub fn u8(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }

    pub fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    pub fn str(&mut self, n: usize) -> Option<&'a str> {
        std::str::from_utf8(self.bytes(n)?).ok()
    }

    pub fn lp_str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        self.str(n)
    }
}

pub fn parse_family(body: &[u8]) -> Option<(u32, FamilyRec)> {
    let mut c = Cursor::new(body);
    let fid = c.u32()?;
    let kind = match c.u8()? {
        0 => Kind::Counter,
        1 => Kind::Gauge,
        2 => Kind::Histogram,
        _ => return None,
    };
    let mode = Mode::from_u8(c.u8()?)?;
    let percentiles = c.u8()? != 0;
    c.u8()?;
    let (nl, hl, nb) = (c.u32()? as usize, c.u32()? as usize, c.u32()? as usize);
    let name = c.str(nl)?.to_owned();
    let help = c.str(hl)?.to_owned();
    let bounds = (0..nb).map(|_| c.f64()).collect::<Option<Vec<f64>>>()?;
    Some((
        fid,
        FamilyRec {
            name,
            help,
            kind,
            mode,
            percentiles,
            bounds,
        },
    ))
}

/// What an exemplars entry says about its slots: their kind and the series they belong to.
#[derive(Debug)]
pub struct ExemplarsRec<'a> {
    pub kind: SlotKind,
    pub name: &'a str,
    pub bounds: Vec<f64>,
    pub labels: Vec<(&'a str, &'a str)>,
}

pub fn parse_exemplars(body: &[u8]) -> Option<ExemplarsRec<'_>> {
    let mut c = Cursor::new(body);
    let kind = SlotKind::from_u32(c.u32()?)?;
    let name = c.lp_str()?;
    let nb = c.u32()? as usize;
    if nb > body.len() {
        return None;
    }
    let bounds = (0..nb).map(|_| c.f64()).collect::<Option<Vec<f64>>>()?;
    let n = c.u32()? as usize;
    if n > body.len() {
        return None;
    }
    let labels = (0..n)
        .map(|_| Some((c.lp_str()?, c.lp_str()?)))
        .collect::<Option<Vec<_>>>()?;
    Some(ExemplarsRec {
        kind,
        name,
        bounds,
        labels,
    })
}

/// A series entry's family id and label pairs.
pub fn parse_series(body: &[u8]) -> Option<(u32, Vec<(&str, &str)>)> {
    let mut c = Cursor::new(body);
    let fid = c.u32()?;
    let n = c.u32()? as usize;
    if n > body.len() {
        return None;
    }
    let labels = (0..n)
        .map(|_| Some((c.lp_str()?, c.lp_str()?)))
        .collect::<Option<Vec<_>>>()?;
    Some((fid, labels))
}

impl FileView {
    /// Maps a store file; None when it is not one (yet): too short or without the magic.
    pub fn open(path: &Path) -> io::Result<Option<FileView>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len() as usize;
        if len < HEADER_LEN {
            return Ok(None);
        }
        let ptr = sys::map(&file, 0, len, false)?;
        let mut v = FileView {
            path: path.to_owned(),
            file,
            ptr: Some(ptr),
            len,
            committed: 0,
        };
        // SAFETY: the mapping is at least HEADER_LEN bytes and page-aligned.
        let (magic, committed) = unsafe {
            let p = ptr.as_ptr();
            let magic = std::slice::from_raw_parts(p, 8);
            let committed = (*(p.add(COMMITTED_AT) as *const AtomicU64)).load(Ordering::Acquire);
            (magic == MAGIC, committed)
        };
        if !magic {
            return Ok(None);
        }
        // The writer extends the file before it publishes past the old end; a reader that mapped
        // before the growth reads the rest next time.
        v.committed = (committed as usize).min(len);
        Ok(Some(v))
    }

    pub fn pid(&self) -> u32 {
        u64::from_le_bytes(self.bytes()[16..24].try_into().expect("8 bytes")) as u32
    }

    fn bytes(&self) -> &[u8] {
        match self.ptr {
            // SAFETY: the mapping is `len` bytes and lives as long as self. Bytes other processes
            // write concurrently are only read through the atomics of `entries`.
            Some(p) => unsafe { std::slice::from_raw_parts(p.as_ptr(), self.len) },
            None => &[],
        }
    }

    /// Whether a live process holds this file's lock.
    pub fn is_live(&self) -> bool {
        sys::is_locked(&self.file).unwrap_or(true)
    }

    /// Every complete entry, in the order written.
    pub fn entries(&self) -> Vec<Entry<'_>> {
        let b = self.bytes();
        let mut out = Vec::new();
        let mut at = HEADER_LEN;
        while at + ENTRY_HEAD <= self.committed {
            let w = |i: usize| u32::from_le_bytes(b[at + i * 4..at + i * 4 + 4].try_into().expect("4 bytes")) as usize;
            let (tag, total, body_len, nslots) = (w(0) as u32, w(1), w(2), w(3));
            let body_end = at + ENTRY_HEAD + body_len;
            let slots_at = at + ENTRY_HEAD + round8(body_len);
            if total < ENTRY_HEAD
                || total % 8 != 0
                || at + total > self.committed
                || slots_at + nslots * 8 > at + total
                || body_end > at + total
            {
                break;
            }
            // SAFETY: in bounds (checked above), 8-aligned (entries and mapping are); atomic loads
            // of read-only memory are sound for lock-free 8-byte atomics.
            let slots = unsafe { std::slice::from_raw_parts(b.as_ptr().add(slots_at) as *const AtomicU64, nslots) };
            out.push(Entry {
                tag,
                body: &b[at + ENTRY_HEAD..body_end],
                slots,
            });
            at += total;
        }
        out
    }

    /// The families a file defines, by id.
    pub fn families(&self) -> HashMap<u32, FamilyRec> {
        self.entries()
            .iter()
            .filter(|e| e.tag == TAG_FAMILY)
            .filter_map(|e| parse_family(e.body))
            .collect()
    }
}

/// Whether a directory entry is a store file of some process (`<pid>-<random>.db`).
pub fn is_process_file(name: &str) -> bool {
    name.strip_suffix(".db")
        .and_then(|s| s.split_once('-'))
        .is_some_and(|(pid, rnd)| pid.parse::<u32>().is_ok() && !rnd.is_empty())
}

/// Kinds of entries a merge reads (re-exported for merge.rs).
pub const SERIES: u32 = TAG_SERIES;
