//! Virtual memory areas and the ordered set of them (`vm_area_struct`, `mm->mmap`).

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;

use super::shm::ShmObject;
use highpte_arch::PAGE_SHIFT;

/// What backs a VMA's pages.
#[derive(Clone)]
pub enum Backing {
    /// Private anonymous memory (demand-zero, copy-on-write after fork).
    Anon,
    /// A shared memory object (a SysV segment or a shared anonymous mapping); `pgoff` is
    /// the page index of the VMA's start in the object.
    Shared {
        /// The object.
        obj: Rc<ShmObject>,
        /// Page index of `start` in the object.
        pgoff: u32,
        /// The SysV segment id, if this VMA is a `shmat` attachment.
        shmid: Option<u32>,
    },
    /// A file mapping (`vm_file`); `pgoff` is the file page at the VMA's start.
    File {
        /// The file.
        file: Rc<crate::fs::Inode>,
        /// File page index of `start`.
        pgoff: u32,
        /// `MAP_SHARED` (writes reach the file) rather than `MAP_PRIVATE` (copy on write).
        shared: bool,
    },
}

impl Backing {
    /// True for shared mappings (shared memory objects and `MAP_SHARED` files).
    pub fn is_shared(&self) -> bool {
        matches!(
            self,
            Backing::Shared { .. } | Backing::File { shared: true, .. }
        )
    }
    /// True where private anonymous pages may live (and so swap entries): anonymous memory
    /// and the copy-on-write copies of a private file mapping.
    pub fn has_anon_pages(&self) -> bool {
        matches!(self, Backing::Anon | Backing::File { shared: false, .. })
    }
}

/// One VMA: `[start, end)` with its protection and backing.
#[derive(Clone)]
pub struct Vma {
    /// First address (page aligned).
    pub start: u32,
    /// End, exclusive (page aligned).
    pub end: u32,
    /// PROT_* bits.
    pub prot: u32,
    /// The backing.
    pub backing: Backing,
    /// True for the brk heap.
    pub heap: bool,
    /// `VM_MAYWRITE`: mprotect may add PROT_WRITE (false for a `SHM_RDONLY` attachment).
    pub may_write: bool,
}

impl Vma {
    /// Readable.
    pub fn readable(&self) -> bool {
        self.prot & (super::PROT_READ | super::PROT_EXEC | super::PROT_WRITE) != 0
    }
    /// Writable.
    pub fn writable(&self) -> bool {
        self.prot & super::PROT_WRITE != 0
    }
    /// Length in bytes.
    pub fn len(&self) -> u32 {
        self.end - self.start
    }
    /// Never true: VMAs are not empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
    /// The part of this VMA from `at` on, with the backing offset moved accordingly.
    pub(crate) fn split_off(&self, at: u32) -> Vma {
        let mut v = self.clone();
        v.start = at;
        match &mut v.backing {
            Backing::Shared { pgoff, .. } | Backing::File { pgoff, .. } => {
                *pgoff += (at - self.start) >> PAGE_SHIFT;
            }
            Backing::Anon => {}
        }
        v
    }
    /// True if `next` directly follows this VMA and could be merged with it.
    pub(crate) fn can_merge(&self, next: &Vma) -> bool {
        if self.end != next.start
            || self.prot != next.prot
            || self.heap != next.heap
            || self.may_write != next.may_write
        {
            return false;
        }
        match (&self.backing, &next.backing) {
            (Backing::Anon, Backing::Anon) => true,
            (
                Backing::Shared {
                    obj: a,
                    pgoff: pa,
                    shmid: sa,
                },
                Backing::Shared {
                    obj: b,
                    pgoff: pb,
                    shmid: sb,
                },
            ) => Rc::ptr_eq(a, b) && sa == sb && *pa + (self.len() >> PAGE_SHIFT) == *pb,
            (
                Backing::File {
                    file: a,
                    pgoff: pa,
                    shared: sa,
                },
                Backing::File {
                    file: b,
                    pgoff: pb,
                    shared: sb,
                },
            ) => Rc::ptr_eq(a, b) && sa == sb && *pa + (self.len() >> PAGE_SHIFT) == *pb,
            _ => false,
        }
    }
}

/// The VMAs of an mm, ordered by start address, plus the brk state.
#[derive(Clone, Default)]
pub struct VmaSet {
    map: BTreeMap<u32, Vma>,
    /// Start of the heap.
    pub start_brk: u32,
    /// Current break.
    pub brk: u32,
}

impl VmaSet {
    /// An empty set with the heap at `start_brk`.
    pub fn new(start_brk: u32) -> Self {
        Self {
            map: BTreeMap::new(),
            start_brk,
            brk: start_brk,
        }
    }
    /// Number of VMAs (`map_count`).
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// `find_vma`: the first VMA whose end is above `addr`, which may start above `addr`
    /// (also when no VMA starts at or below it: `find(0)` is the lowest VMA).
    pub fn find(&self, addr: u32) -> Option<&Vma> {
        if let Some((_, v)) = self.map.range(..=addr).next_back() {
            if v.end > addr {
                return Some(v);
            }
        }
        self.map.range(addr..).next().map(|(_, v)| v)
    }
    /// The VMA containing `addr`.
    pub fn containing(&self, addr: u32) -> Option<&Vma> {
        self.find(addr).filter(|v| v.start <= addr)
    }
    /// All VMAs overlapping `[start, end)`, in order.
    pub fn overlapping(&self, start: u32, end: u64) -> impl Iterator<Item = &Vma> {
        let first = self
            .map
            .range(..=start)
            .next_back()
            .filter(|(_, v)| v.end > start)
            .map(|(k, _)| *k)
            .unwrap_or(start);
        self.map
            .range(first..)
            .map(|(_, v)| v)
            .take_while(move |v| (v.start as u64) < end)
    }
    /// True if any VMA overlaps `[start, end)`.
    pub fn any_overlap(&self, start: u32, end: u64) -> bool {
        self.overlapping(start, end).next().is_some()
    }
    /// Every VMA, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Vma> {
        self.map.values()
    }
    /// Insert a VMA that overlaps nothing, merging with compatible neighbours.
    pub(crate) fn insert(&mut self, vma: Vma) {
        debug_assert!(!self.any_overlap(vma.start, vma.end as u64));
        let mut vma = vma;
        // merge with the previous one
        if let Some((&ps, prev)) = self.map.range(..vma.start).next_back() {
            if prev.can_merge(&vma) {
                let mut merged = prev.clone();
                merged.end = vma.end;
                self.map.remove(&ps);
                vma = merged;
            }
        }
        // and the next one
        if let Some((&ns, next)) = self.map.range(vma.end..).next() {
            if vma.can_merge(next) {
                vma.end = next.end;
                self.map.remove(&ns);
            }
        }
        self.map.insert(vma.start, vma);
    }
    /// Remove `[start, end)` from the set, splitting VMAs at the edges; returns the removed
    /// pieces.
    pub(crate) fn remove_range(&mut self, start: u32, end: u32) -> Vec<Vma> {
        let keys: Vec<u32> = self
            .overlapping(start, end as u64)
            .map(|v| v.start)
            .collect();
        let mut removed = Vec::new();
        for k in keys {
            let Some(v) = self.map.remove(&k) else {
                continue;
            };
            if v.start < start {
                let mut head = v.clone();
                head.end = start;
                self.map.insert(head.start, head);
            }
            if v.end > end {
                let tail = v.split_off(end);
                self.map.insert(tail.start, tail);
            }
            let lo = v.start.max(start);
            let mut mid = v.split_off(lo);
            mid.end = v.end.min(end);
            removed.push(mid);
        }
        removed
    }
    /// Find a free range of `len` bytes at or above `from`, below `limit`.
    pub(crate) fn free_area(&self, from: u32, len: u32, limit: u32) -> Option<u32> {
        let mut addr = from;
        loop {
            let end = addr as u64 + len as u64;
            if end > limit as u64 {
                return None;
            }
            match self.overlapping(addr, end).last() {
                None => return Some(addr),
                Some(v) => addr = v.end,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anon(start: u32, end: u32) -> Vma {
        Vma {
            start,
            end,
            prot: 0,
            backing: Backing::Anon,
            heap: false,
            may_write: true,
        }
    }

    /// `find_vma` answers the first VMA ending above the address, wherever it starts: below
    /// every VMA (no VMA at or below the address, issue 21), inside one, in a hole, above all.
    #[test]
    fn find_is_find_vma() {
        let mut s = VmaSet::new(0x0800_0000);
        assert!(s.find(0).is_none());
        s.insert(anon(0x4000_0000, 0x4000_1000));
        s.insert(anon(0x5000_0000, 0x5000_2000));
        let start = |a| s.find(a).map(|v| v.start);
        assert_eq!(start(0), Some(0x4000_0000));
        assert_eq!(start(0x3fff_f000), Some(0x4000_0000));
        assert_eq!(start(0x4000_0000), Some(0x4000_0000));
        assert_eq!(start(0x4000_0fff), Some(0x4000_0000));
        assert_eq!(start(0x4000_1000), Some(0x5000_0000));
        assert_eq!(start(0x5000_1000), Some(0x5000_0000));
        assert_eq!(start(0x5000_2000), None);
        // `containing` keeps its meaning: nothing for an address in a hole
        assert!(s.containing(0).is_none());
        assert!(s.containing(0x4000_1000).is_none());
        assert_eq!(
            s.containing(0x5000_1000).map(|v| v.start),
            Some(0x5000_0000)
        );
    }
}
