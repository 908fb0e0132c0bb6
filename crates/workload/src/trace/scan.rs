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

/// Chunks a [`PageSet`] keeps at hand: accesses alternate between a few (text, data, stack).
const RECENT: usize = 4;

/// A set of page numbers anywhere in 64-bit space: 512-byte bitmaps of 4096 pages, so its
/// host memory follows the pages touched, not the trace's length or address range. The
/// chunks last used are found without a map lookup, and a chunk keeps its index once made.
pub struct PageSet {
    /// Chunk key (`page / CHUNK_PAGES`) -> index in `chunks`.
    index: BTreeMap<u64, usize>,
    chunks: Vec<[u64; CHUNK_WORDS]>,
    /// `(key, index)` of the chunks last used, most recent first (`u64::MAX`: empty).
    recent: [(u64, usize); RECENT],
    count: u64,
}

impl Default for PageSet {
    fn default() -> Self {
        PageSet {
            index: BTreeMap::new(),
            chunks: Vec::new(),
            recent: [(u64::MAX, 0); RECENT],
            count: 0,
        }
    }
}

impl PageSet {
    /// Add `page`; true if it was not there.
    #[inline]
    pub fn insert(&mut self, page: u64) -> bool {
        let key = page / CHUNK_PAGES;
        let idx = if self.recent[0].0 == key {
            self.recent[0].1
        } else if self.recent[1].0 == key {
            // two chunks in turn (text and data, data and stack) are the common case
            self.recent.swap(0, 1);
            self.recent[0].1
        } else {
            self.chunk_of(key)
        };
        let bit = page % CHUNK_PAGES;
        let Some(c) = self.chunks.get_mut(idx) else {
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

    /// The index of chunk `key` (made if new), moved to the front of `recent`.
    #[inline(never)]
    fn chunk_of(&mut self, key: u64) -> usize {
        let (pos, idx) = match self.recent.iter().position(|&(k, _)| k == key) {
            Some(i) => (i, self.recent[i].1),
            None => {
                let next = self.chunks.len();
                let idx = *self.index.entry(key).or_insert(next);
                if idx == next {
                    self.chunks.push([0; CHUNK_WORDS]);
                }
                (RECENT - 1, idx)
            }
        };
        move_to_front(&mut self.recent, pos, (key, idx));
        idx
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

/// Drop `recent[pos]`, shift the ones before it back by one, and put `x` first (an element
/// at a time: `copy_within` calls memmove, slower for 4 elements).
#[inline(always)]
fn move_to_front<T: Copy>(recent: &mut [T; RECENT], pos: usize, x: T) {
    let mut i = pos.min(RECENT - 1);
    while i > 0 {
        recent[i] = recent[i - 1];
        i -= 1;
    }
    recent[0] = x;
}

/// Pages closer than this (1 MB) belong to one cluster: the fold moves clusters whole.
pub const CLUSTER_GAP: u64 = 256;

/// Disjoint page ranges `[start, end)`, each grown to cover every page and range added near it.
#[derive(Default, Clone, Debug)]
pub struct Clusters {
    spans: BTreeMap<u64, u64>,
    /// Spans that held recent pages, most recent first. Spans only grow and merge, so a page
    /// inside one of these is inside the clusters even after a later merge.
    recent: [(u64, u64); RECENT],
}

impl Clusters {
    /// Add one page.
    #[inline]
    pub fn add_page(&mut self, page: u64) {
        let (s, e) = self.recent[0];
        if page >= s && page < e {
            return;
        }
        self.add_page_slow(page);
    }

    #[inline(never)]
    fn add_page_slow(&mut self, page: u64) {
        let hit = self.recent.iter().position(|&(s, e)| page >= s && page < e);
        let (pos, span) = match hit {
            Some(i) => (i, self.recent[i]),
            None => {
                let inside = self
                    .spans
                    .range(..=page)
                    .next_back()
                    .map(|(a, b)| (*a, *b))
                    .filter(|&(_, b)| page < b);
                match inside {
                    Some(span) => (RECENT - 1, span),
                    None => {
                        self.add(page, page + 1);
                        return;
                    }
                }
            }
        };
        move_to_front(&mut self.recent, pos, span);
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
        move_to_front(&mut self.recent, RECENT - 1, (s, e));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_set_counts_each_page_once_across_many_chunks() {
        let mut s = PageSet::default();
        // six chunks in turn (more than RECENT), each page twice
        let pages: Vec<u64> = (0..6u64)
            .flat_map(|c| [c * 1_000_000 + 1, c * CHUNK_PAGES * 7 + 4095])
            .collect();
        for _ in 0..2 {
            for &p in &pages {
                s.insert(p);
            }
        }
        let mut want = pages.clone();
        want.sort_unstable();
        want.dedup();
        assert_eq!(s.len(), want.len() as u64);
        assert!(!s.insert(1_000_001));
        assert!(s.insert((1 << 52) - 1));
        assert_eq!(s.len(), want.len() as u64 + 1);
        assert_eq!(s.chunks.len(), s.index.len());
    }
}
