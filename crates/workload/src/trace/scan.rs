//! One streaming pass over a trace: what `highpte trace info` prints (records, accesses by
//! kind, distinct pages, initial regions, system calls) and the address clusters the fold
//! ([`super::fold`]) moves into the i386 user space.

use super::reader::{open_trace, TraceError, TraceReader};
use super::record::{AccessKind, Record};
use std::collections::BTreeMap;
use std::path::Path;

/// Pages per chunk of a [`PageSet`].
const CHUNK_PAGES: u64 = 4096;
const CHUNK_WORDS: usize = (CHUNK_PAGES / 64) as usize;

/// A set of page numbers anywhere in 64-bit space: 512-byte bitmaps of 4096 pages, so its
/// host memory follows the pages touched, not the trace's length or address range.
#[derive(Default)]
pub struct PageSet {
    chunks: BTreeMap<u64, Box<[u64; CHUNK_WORDS]>>,
    /// The chunk last used, kept out of the map (most accesses stay in one chunk).
    cur_key: u64,
    cur: Option<Box<[u64; CHUNK_WORDS]>>,
    count: u64,
}

impl PageSet {
    /// Add `page`; true if it was not there.
    #[inline]
    pub fn insert(&mut self, page: u64) -> bool {
        let key = page / CHUNK_PAGES;
        if self.cur.is_none() || key != self.cur_key {
            self.switch(key);
        }
        let bit = page % CHUNK_PAGES;
        let Some(c) = self.cur.as_mut() else {
            return false;
        };
        let w = &mut c[(bit / 64) as usize];
        let m = 1u64 << (bit % 64);
        if *w & m == 0 {
            *w |= m;
            self.count += 1;
            true
        } else {
            false
        }
    }

    #[inline(never)]
    fn switch(&mut self, key: u64) {
        if let Some(c) = self.cur.take() {
            self.chunks.insert(self.cur_key, c);
        }
        self.cur = Some(
            self.chunks
                .remove(&key)
                .unwrap_or_else(|| Box::new([0; CHUNK_WORDS])),
        );
        self.cur_key = key;
    }

    /// Pages in the set.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True if the set is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Pages closer than this (1 MB) belong to one cluster: the fold moves clusters whole.
pub const CLUSTER_GAP: u64 = 256;

/// Disjoint page ranges `[start, end)`, each grown to cover every page and range added near it.
#[derive(Default, Clone, Debug)]
pub struct Clusters {
    spans: BTreeMap<u64, u64>,
    /// The span that took the last page (most accesses land in the same one).
    last: (u64, u64),
}

impl Clusters {
    /// Add one page.
    #[inline]
    pub fn add_page(&mut self, page: u64) {
        if page >= self.last.0 && page < self.last.1 {
            return;
        }
        self.add(page, page + 1);
    }

    /// Add the pages `[start, end)`.
    pub fn add(&mut self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        let mut s = start;
        let mut e = end;
        // merge every span within CLUSTER_GAP of [s, e)
        loop {
            let near = self
                .spans
                .range(..e.saturating_add(CLUSTER_GAP))
                .next_back()
                .map(|(a, b)| (*a, *b))
                .filter(|(_, b)| b.saturating_add(CLUSTER_GAP) > s);
            match near {
                Some((a, b)) => {
                    self.spans.remove(&a);
                    s = s.min(a);
                    e = e.max(b);
                }
                None => break,
            }
        }
        self.spans.insert(s, e);
        self.last = (s, e);
    }

    /// The spans, lowest first.
    pub fn spans(&self) -> Vec<(u64, u64)> {
        self.spans.iter().map(|(a, b)| (*a, *b)).collect()
    }
}

/// What one pass over a trace found.
#[derive(Default)]
pub struct TraceInfo {
    /// Records.
    pub records: u64,
    /// Accesses by kind (fetch, read, write, modify).
    pub accesses: [u64; 4],
    /// Distinct pages fetched from.
    pub pages_fetch: u64,
    /// Distinct pages read, written or modified.
    pub pages_data: u64,
    /// Distinct pages written or modified.
    pub pages_written: u64,
    /// Distinct pages touched at all (fetch or data): the trace's `distinct_pages`.
    pub distinct_pages: u64,
    /// Initial regions `[start, end)` (pages), in trace order.
    pub regions: Vec<(u64, u64)>,
    /// System-call records by name (`mmap`, `munmap`, `mprotect`, `brk`, `mremap`,
    /// `madvise`).
    pub syscalls: BTreeMap<&'static str, u64>,
    /// Of the `mmap`s, those of files.
    pub file_mmaps: u64,
    /// Address clusters (pages `[start, end)`), lowest first.
    pub clusters: Vec<(u64, u64)>,
    /// Whether the file was zstd-compressed.
    pub compressed: bool,
}

impl TraceInfo {
    /// Accesses of every kind.
    pub fn total_accesses(&self) -> u64 {
        self.accesses.iter().sum()
    }
}

/// Read the whole trace at `path` once (streaming).
pub fn scan_trace(path: &Path) -> Result<TraceInfo, TraceError> {
    let mut r = open_trace(path)?;
    let compressed = r.name().ends_with(".zst");
    let mut info = scan_reader(&mut r)?;
    info.compressed = compressed;
    Ok(info)
}

/// Read every record of `r`.
pub fn scan_reader(r: &mut TraceReader) -> Result<TraceInfo, TraceError> {
    let mut info = TraceInfo::default();
    let mut fetch = PageSet::default();
    let mut data = PageSet::default();
    let mut written = PageSet::default();
    let mut all = PageSet::default();
    let mut cl = Clusters::default();
    let mut last_break: Option<u64> = None;
    while let Some(rec) = r.next_record()? {
        match rec {
            Record::Access { kind, page } => {
                info.accesses[kind as usize] += 1;
                if kind == AccessKind::Fetch {
                    fetch.insert(page);
                } else {
                    data.insert(page);
                    if kind.writes() {
                        written.insert(page);
                    }
                }
                all.insert(page);
                cl.add_page(page);
            }
            Record::Region { start, npages } => {
                info.regions.push((start, start + npages));
                cl.add(start, start + npages);
            }
            other => {
                *info.syscalls.entry(other.name()).or_default() += 1;
                match other {
                    Record::Mmap {
                        start,
                        npages,
                        file,
                        ..
                    } => {
                        info.file_mmaps += u64::from(file);
                        cl.add(start, start + npages);
                    }
                    Record::Munmap { start, npages }
                    | Record::Mprotect { start, npages, .. }
                    | Record::Madvise { start, npages, .. } => cl.add(start, start + npages),
                    Record::Mremap {
                        old,
                        old_npages,
                        new,
                        new_npages,
                    } => {
                        cl.add(old, old + old_npages);
                        cl.add(new, new + new_npages);
                    }
                    Record::Brk { new_break } => {
                        // the heap between the previous break and this one is one range
                        let prev = last_break.unwrap_or(new_break);
                        cl.add(prev.min(new_break), prev.max(new_break) + 1);
                        last_break = Some(new_break);
                    }
                    _ => {}
                }
            }
        }
    }
    info.records = r.records();
    info.pages_fetch = fetch.len();
    info.pages_data = data.len();
    info.pages_written = written.len();
    info.distinct_pages = all.len();
    info.clusters = cl.spans();
    Ok(info)
}
