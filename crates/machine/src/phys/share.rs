//! The frame state and the sharing of identical frames: the parts of [`PhysMem`] the
//! accessors in the parent module build on (see its docs).

use super::store::{page_hash, Page};
use super::{PhysMem, CANDIDATES, COMMITTED, DIRTY, SHARED};
use core::ptr;
use highpte_arch::{PAGE_SHIFT, PAGE_SIZE};

impl PhysMem {
    /// The state byte of frame `pfn` (inside RAM: every caller checked it).
    #[inline(always)]
    pub(super) fn state(&self, pfn: u64) -> u8 {
        debug_assert!(pfn < self.nr_pages());
        // SAFETY: `state` has one byte per frame and `pfn` is inside RAM (callers check).
        unsafe { self.state.get_unchecked(pfn as usize) }.get()
    }

    /// True if frame `pfn`'s content is in the store.
    #[inline(always)]
    pub(super) fn is_shared(&self, pfn: u64) -> bool {
        self.state(pfn) & SHARED != 0
    }

    /// True if frame `pfn`'s host page may hold a non-zero byte.
    #[inline(always)]
    pub(super) fn is_dirty(&self, pfn: u64) -> bool {
        self.state(pfn) & DIRTY != 0
    }

    /// Set or clear `flag` of frame `pfn` (inside RAM).
    #[inline(always)]
    pub(super) fn set_flag(&self, flag: u8, pfn: u64, on: bool) {
        let c = &self.state[pfn as usize];
        c.set(if on { c.get() | flag } else { c.get() & !flag });
    }

    /// True if the `len` bytes at `pa` (inside RAM) lie in one frame whose content is in the
    /// host mapping: a read can go straight there.
    #[inline(always)]
    pub(super) fn direct_read(&self, pa: u64, len: u64) -> bool {
        pa & (PAGE_SIZE - 1) <= PAGE_SIZE - len && !self.is_shared(pa >> PAGE_SHIFT)
    }

    /// True if the `len` bytes at `pa` (inside RAM) lie in one frame that is dirty and not
    /// shared: a write can go straight to the host mapping with nothing to record.
    #[inline(always)]
    pub(super) fn direct_write(&self, pa: u64, len: u64) -> bool {
        pa & (PAGE_SIZE - 1) <= PAGE_SIZE - len
            && self.state(pa >> PAGE_SHIFT) & (DIRTY | SHARED) == DIRTY
    }

    /// Give shared frame `pfn` its own copy of its content again, in its host page.
    #[cold]
    #[inline(never)]
    pub(super) fn unshare(&self, pfn: u64) {
        let id = self.ids[pfn as usize].replace(0);
        self.set_flag(SHARED, pfn, false);
        let mut store = self.store.borrow_mut();
        // SAFETY: frame `pfn` is inside RAM (every caller checked it); the store's page is a
        // distinct host allocation, so the ranges do not overlap.
        unsafe {
            ptr::copy_nonoverlapping(
                store.get(id).as_ptr(),
                self.base.add((pfn << PAGE_SHIFT) as usize),
                PAGE_SIZE as usize,
            )
        };
        store.release(id);
        self.set_flag(DIRTY | COMMITTED, pfn, true);
    }

    /// Drop frame `pfn`'s reference to the store, if it has one; its content is then
    /// whatever its host page holds.
    #[inline]
    pub(super) fn drop_shared(&self, pfn: u64) {
        if self.is_shared(pfn) {
            self.set_flag(SHARED, pfn, false);
            let id = self.ids[pfn as usize].replace(0);
            self.store.borrow_mut().release(id);
        }
    }

    /// Make the frames of the `len` bytes at `pa` (inside RAM, at most one page) ready for a
    /// write into the host mapping: own copies, marked dirty.
    #[inline(never)]
    pub(super) fn prepare_write(&self, pa: u64, len: u64) {
        let (first, last) = (pa >> PAGE_SHIFT, (pa + len - 1) >> PAGE_SHIFT);
        for pfn in [first, last] {
            if self.is_shared(pfn) {
                self.unshare(pfn);
            }
            self.set_flag(DIRTY | COMMITTED, pfn, true);
        }
    }

    /// Read `buf.len()` bytes at `pa` (inside RAM) frame by frame: block reads, and the
    /// general case of the small ones (a shared frame, or bytes across two frames).
    #[inline(never)]
    pub(super) fn read_frames(&self, pa: u64, buf: &mut [u8]) {
        let mut done = 0usize;
        while done < buf.len() {
            let at = pa + done as u64;
            let (pfn, off) = (at >> PAGE_SHIFT, (at & (PAGE_SIZE - 1)) as usize);
            let n = (PAGE_SIZE as usize - off).min(buf.len() - done);
            self.read_frame(pfn, off, &mut buf[done..done + n]);
            done += n;
        }
    }

    /// Copy `out.len()` bytes of frame `pfn` from byte `off` (inside the frame) into `out`.
    #[inline]
    pub(super) fn read_frame(&self, pfn: u64, off: usize, out: &mut [u8]) {
        if self.is_shared(pfn) {
            let store = self.store.borrow();
            let page = store.get(self.ids[pfn as usize].get());
            out.copy_from_slice(&page[off..off + out.len()]);
        } else if !self.is_dirty(pfn) {
            // Never written: zero, without making the host map anything.
            out.fill(0);
        } else {
            // SAFETY: the bytes lie inside frame `pfn`, inside the mapping; `out` is a distinct
            // host allocation (no reference into RAM is ever handed out).
            unsafe {
                ptr::copy_nonoverlapping(
                    self.base.add(((pfn << PAGE_SHIFT) as usize) + off),
                    out.as_mut_ptr(),
                    out.len(),
                )
            };
        }
    }

    /// Frame `pfn` (inside RAM) now holds `page`: shared through the store, written to its
    /// host page, or cleared.
    pub(super) fn write_page(&self, pfn: u64, page: &Page) {
        // 64 bytes at a time, without a branch per byte: a filled pte page stops at its first
        // line, a cleared one costs a few hundred instructions
        let zero = page.chunks_exact(64).all(|line| {
            line.chunks_exact(8).fold(0u64, |acc, w| {
                acc | u64::from_ne_bytes(w.try_into().unwrap_or([1; 8]))
            }) == 0
        });
        if zero {
            self.clear_frame(pfn);
            return;
        }
        let h = page_hash(page);
        let found = self.store.borrow_mut().find(h, page);
        let id = found.or_else(|| self.promote_candidate(pfn, h, page));
        self.drop_shared(pfn);
        match id {
            Some(id) => {
                self.ids[pfn as usize].set(id);
                self.set_flag(SHARED, pfn, true);
            }
            None => {
                // the first frame with this content keeps it in its own host page, as any
                // frame does, and is remembered in case an equal page is written next
                self.set_flag(DIRTY | COMMITTED, pfn, true);
                // SAFETY: frame `pfn` is inside the mapping; `page` is a distinct host
                // allocation, so the ranges do not overlap.
                unsafe {
                    ptr::copy_nonoverlapping(
                        page.as_ptr(),
                        self.base.add((pfn << PAGE_SHIFT) as usize),
                        PAGE_SIZE as usize,
                    )
                };
                self.cands[(h % CANDIDATES) as usize].set(pfn + 1);
            }
        }
    }

    /// The second frame written with a content: if the frame remembered for hash `h` still
    /// holds exactly `page` in its own host page, move that content into the store, make the
    /// remembered frame share it, and return its id with a reference for frame `pfn`.
    pub(super) fn promote_candidate(&self, pfn: u64, h: u64, page: &Page) -> Option<u32> {
        let slot = &self.cands[(h % CANDIDATES) as usize];
        let q = slot.get().checked_sub(1)?;
        if q == pfn || q >= self.nr_pages() || self.state(q) & (DIRTY | SHARED) != DIRTY {
            return None;
        }
        // SAFETY: frame `q` is inside the mapping (checked above) and not shared, so its
        // bytes are its own; no reference into RAM is ever handed out, so nothing aliases them.
        let held = unsafe {
            core::slice::from_raw_parts(
                self.base.add((q << PAGE_SHIFT) as usize),
                PAGE_SIZE as usize,
            )
        };
        if held != page.as_slice() {
            return None;
        }
        slot.set(0);
        let id = {
            let mut store = self.store.borrow_mut();
            let id = store.insert(h, page);
            store.retain(id);
            id
        };
        self.ids[q as usize].set(id);
        self.set_flag(SHARED, q, true);
        Some(id)
    }

    /// Frame `pfn` (inside RAM) reads as zero from now on.
    #[inline]
    pub(super) fn clear_frame(&self, pfn: u64) {
        self.drop_shared(pfn);
        if self.is_dirty(pfn) {
            // SAFETY: the frame lies inside the mapping; nothing aliases it.
            unsafe {
                ptr::write_bytes(
                    self.base.add((pfn << PAGE_SHIFT) as usize),
                    0,
                    PAGE_SIZE as usize,
                )
            };
            self.set_flag(DIRTY, pfn, false);
        }
    }
}
