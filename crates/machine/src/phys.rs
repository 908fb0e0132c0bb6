//! Simulated physical memory: one sparse host mapping of the whole RAM.
//!
//! The whole simulated RAM (up to 64 GB, the PAE limit of 36 physical address bits) is one
//! private anonymous host mapping made with `MAP_NORESERVE`, so the host commits memory only for
//! frames that are written; a frame never written reads as zero. Page tables live here in their
//! real x86 format, little-endian, and user data too.
//!
//! Frames are also shared on the host. When a whole frame is written at once (a pte page the
//! kernel fills or clears in one block walk, a page read from disk) with the same bytes as
//! another frame written that way, the content moves into a store and both frames refer to it;
//! the first smaller write gives a frame its own copy back. Two thousand processes attaching
//! one shared segment build two thousand identical sets of pte pages; the host holds about two
//! (the store's and the first process's own). A frame that was never written reads as zero
//! without being read, and clearing it writes nothing. None of this is visible to the
//! simulated machine: every frame reads back exactly the bytes last written to it.
//!
//! Every checked accessor refuses an access that reaches past the end of RAM with
//! [`PhysMemError::OutOfRange`]; none of them can touch host memory outside the mapping.
//!
//! # Threading
//!
//! [`PhysMem`] hands out no references into the simulated RAM: every access copies bytes in or
//! out through a raw pointer, which is what lets all methods take `&self` (the simulated machine
//! writes page tables while the MMU reads them, as real hardware does). That interior mutability
//! is sound only while one host thread at a time uses the value, so `PhysMem` is `Send` but not
//! `Sync` (the raw pointer field makes it `!Sync`; `Send` is asserted below).

use core::fmt;
use core::marker::PhantomData;
use core::ptr;
use std::cell::{Cell, RefCell};

use crate::phys_store::{page_hash, Page, PageStore};

use highpte_arch::{PAGE_SHIFT, PAGE_SIZE};
use memmap2::{MmapMut, MmapOptions};

/// Largest simulated RAM: 64 GB, all that 36 physical address bits can reach (SDM 4.4).
pub const MAX_PHYS_MEM: u64 = 64 << 30;

/// Why a physical-memory operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhysMemError {
    /// The requested RAM size is zero, not a multiple of 4096 or larger than 64 GB.
    BadSize {
        /// The size asked for, in bytes.
        size: u64,
    },
    /// The host refused the mapping (address space or overcommit limits).
    Map {
        /// The size asked for, in bytes.
        size: u64,
        /// The host's error, as text.
        reason: String,
    },
    /// An access of `len` bytes at `addr` reaches past the end of RAM.
    OutOfRange {
        /// First physical byte of the access.
        addr: u64,
        /// Length of the access in bytes.
        len: u64,
    },
}

impl fmt::Display for PhysMemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhysMemError::BadSize { size } => write!(
                f,
                "physical memory size {size:#x} is invalid: it must be a non-zero multiple of \
                 4096 bytes and at most 64 GiB"
            ),
            PhysMemError::Map { size, reason } => {
                write!(
                    f,
                    "cannot map {size:#x} bytes of simulated RAM on the host: {reason}"
                )
            }
            PhysMemError::OutOfRange { addr, len } => write!(
                f,
                "physical access of {len} bytes at {addr:#x} reaches beyond the end of RAM"
            ),
        }
    }
}

impl std::error::Error for PhysMemError {}

/// The simulated machine's physical memory (RAM), sparse on the host.
///
/// All accessors take `&self` and copy through a raw pointer (see the module docs); the type is
/// `Send` but not `Sync`.
pub struct PhysMem {
    /// Owns the host mapping (RAM plus a guard page on each side); only used again by `Drop`
    /// (munmap).
    _map: MmapMut,
    /// Start of the mapping, taken once from `map`; every access goes through it.
    base: *mut u8,
    /// Bytes of simulated RAM (the mapping's length).
    size: u64,
    /// Per frame, [`DIRTY`], [`SHARED`] and [`COMMITTED`]. `DIRTY`: the frame's own host page may hold a
    /// non-zero byte (it was written since the mapping was made, or since it was last zeroed
    /// or released); a frame without it reads as zero without being read, and is cleared
    /// without being written, so a frame the simulated machine never writes costs the host
    /// nothing. `SHARED`: the frame's content lives in `store` (under the id in `ids`), not in
    /// its own host page; whole-page writes put it there, the first smaller write copies it
    /// back (`unshare`). One byte per frame, so an access tests one byte; allocated zeroed,
    /// the host commits it only where frames are written.
    state: Box<[Cell<u8>]>,
    /// The store id of each shared frame (0 for the others). Committed by the host only where
    /// frames were shared, like the bitmaps.
    ids: Box<[Cell<u32>]>,
    /// The distinct contents of the shared frames.
    store: RefCell<PageStore>,
    /// Frames written whole with a content not in the store, by content hash (modulo
    /// [`CANDIDATES`]; pfn + 1, 0 for none): when a second frame is written with the same
    /// bytes, the content moves into the store and both share it. A later write may have
    /// changed the remembered frame; the bytes are compared before sharing.
    cands: Box<[Cell<u64>]>,
    /// Interior mutability through `base` must stay on one thread at a time.
    _not_sync: PhantomData<Cell<u8>>,
}

/// [`PhysMem`]'s state bit: the frame's host page may hold a non-zero byte.
const DIRTY: u8 = 1;
/// [`PhysMem`]'s state bit: the frame's content is in the store.
const SHARED: u8 = 2;
/// [`PhysMem`]'s state bit: the frame's host page has been written (the host has committed
/// memory for it) since the mapping was made or the frame released. Set with every `DIRTY`,
/// kept when a frame is cleared.
const COMMITTED: u8 = 4;
/// Entries of [`PhysMem`]'s table of frames that may be shared next.
const CANDIDATES: u64 = 1 << 16;

/// `n` cells of zero, allocated zeroed so the host commits only the parts that are written.
fn zeroed_cells<T: Copy + Default>(n: usize) -> Box<[Cell<T>]> {
    let v: Box<[T]> = vec![T::default(); n].into_boxed_slice();
    // SAFETY: `Cell<T>` has the same in-memory representation as `T` (it is
    // `repr(transparent)`), so the allocation is a valid `[Cell<T>]` of the same length.
    unsafe { Box::from_raw(Box::into_raw(v) as *mut [Cell<T>]) }
}

// SAFETY: `PhysMem` exclusively owns its mapping and never shares the pointer; moving the whole
// value to another thread moves all access with it. It stays `!Sync` (raw pointer + `Cell`), so
// no two threads can hold `&PhysMem` at once.
unsafe impl Send for PhysMem {}

impl fmt::Debug for PhysMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhysMem")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl PhysMem {
    /// Map `size_bytes` of simulated RAM (a non-zero multiple of 4096, at most 64 GiB).
    ///
    /// The mapping is made with `MAP_NORESERVE` and `MADV_NOHUGEPAGE`, so the host commits one
    /// 4 KB page per written frame; see [`PhysMem::set_huge_pages`] to trade that precision for
    /// fewer host TLB misses.
    pub fn new(size_bytes: u64) -> Result<PhysMem, PhysMemError> {
        if size_bytes == 0 || !size_bytes.is_multiple_of(PAGE_SIZE) || size_bytes > MAX_PHYS_MEM {
            return Err(PhysMemError::BadSize { size: size_bytes });
        }
        let len =
            usize::try_from(size_bytes).map_err(|_| PhysMemError::BadSize { size: size_bytes })?;
        let map_err = |e: std::io::Error| PhysMemError::Map {
            size: size_bytes,
            reason: e.to_string(),
        };
        // RAM plus one inaccessible guard page on each side: the guards keep the host from
        // merging RAM with a neighbouring anonymous mapping (so `resident_bytes` can find it in
        // /proc/self/smaps) and turn any stray host access just past RAM into a crash.
        let guard = PAGE_SIZE as usize;
        let mut map = MmapOptions::new()
            .len(len + 2 * guard)
            .no_reserve_swap()
            .map_anon()
            .map_err(map_err)?;
        let outer = map.as_mut_ptr();
        // SAFETY: `outer + guard` is inside the mapping of `len + 2 * guard` bytes.
        let base = unsafe { outer.add(guard) };
        for g in [outer, base.wrapping_add(len)] {
            // SAFETY: each guard is one page of our own fresh mapping, page aligned, and never
            // accessed through any pointer we hand out.
            if unsafe { libc::mprotect(g.cast(), guard, libc::PROT_NONE) } != 0 {
                return Err(map_err(std::io::Error::last_os_error()));
            }
        }
        let frames = (size_bytes >> PAGE_SHIFT) as usize;
        let mem = PhysMem {
            _map: map,
            base,
            size: size_bytes,
            state: zeroed_cells(frames),
            ids: zeroed_cells(frames),
            store: RefCell::new(PageStore::default()),
            cands: zeroed_cells(CANDIDATES as usize),
            _not_sync: PhantomData,
        };
        // Best effort: without it the host may back a 2 MB range on first touch, which only
        // costs memory, never correctness.
        let _ = mem.set_huge_pages(false);
        Ok(mem)
    }

    /// Ask the host to back RAM with transparent huge pages (`MADV_HUGEPAGE`) or not
    /// (`MADV_NOHUGEPAGE`, the default). Huge pages cut host TLB misses when page tables are
    /// spread over gigabytes, but one touched frame then commits up to 2 MB.
    pub fn set_huge_pages(&self, enable: bool) -> std::io::Result<()> {
        let advice = if enable {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        // SAFETY: the range is exactly our own live mapping; these advices change only how the
        // host backs it, never its contents.
        let rc = unsafe { libc::madvise(self.base.cast(), self.size as usize, advice) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Bytes of simulated RAM.
    #[inline]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of 4 KB frames of simulated RAM.
    #[inline]
    pub fn nr_pages(&self) -> u64 {
        self.size >> PAGE_SHIFT
    }

    /// Check that `[pa, pa + len)` lies inside RAM.
    #[inline(always)]
    fn check(&self, pa: u64, len: u64) -> Result<(), PhysMemError> {
        match pa.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(PhysMemError::OutOfRange { addr: pa, len }),
        }
    }

    /// Check that frames `[pfn, pfn + npages)` lie inside RAM; returns the first byte.
    #[inline]
    fn check_pages(&self, pfn: u64, npages: u64) -> Result<u64, PhysMemError> {
        let out = || PhysMemError::OutOfRange {
            addr: pfn.saturating_mul(PAGE_SIZE),
            len: npages.saturating_mul(PAGE_SIZE),
        };
        if pfn > self.nr_pages() || npages > self.nr_pages() - pfn {
            return Err(out());
        }
        Ok(pfn << PAGE_SHIFT)
    }

    /// The state byte of frame `pfn` (inside RAM: every caller checked it).
    #[inline(always)]
    fn state(&self, pfn: u64) -> u8 {
        debug_assert!(pfn < self.nr_pages());
        // SAFETY: `state` has one byte per frame and `pfn` is inside RAM (callers check).
        unsafe { self.state.get_unchecked(pfn as usize) }.get()
    }

    /// True if frame `pfn`'s content is in the store.
    #[inline(always)]
    fn is_shared(&self, pfn: u64) -> bool {
        self.state(pfn) & SHARED != 0
    }

    /// True if frame `pfn`'s host page may hold a non-zero byte.
    #[inline(always)]
    fn is_dirty(&self, pfn: u64) -> bool {
        self.state(pfn) & DIRTY != 0
    }

    /// Set or clear `flag` of frame `pfn` (inside RAM).
    #[inline(always)]
    fn set_flag(&self, flag: u8, pfn: u64, on: bool) {
        let c = &self.state[pfn as usize];
        c.set(if on { c.get() | flag } else { c.get() & !flag });
    }

    /// True if the `len` bytes at `pa` (inside RAM) lie in one frame whose content is in the
    /// host mapping: a read can go straight there.
    #[inline(always)]
    fn direct_read(&self, pa: u64, len: u64) -> bool {
        pa & (PAGE_SIZE - 1) <= PAGE_SIZE - len && !self.is_shared(pa >> PAGE_SHIFT)
    }

    /// True if the `len` bytes at `pa` (inside RAM) lie in one frame that is dirty and not
    /// shared: a write can go straight to the host mapping with nothing to record.
    #[inline(always)]
    fn direct_write(&self, pa: u64, len: u64) -> bool {
        pa & (PAGE_SIZE - 1) <= PAGE_SIZE - len
            && self.state(pa >> PAGE_SHIFT) & (DIRTY | SHARED) == DIRTY
    }

    /// Give shared frame `pfn` its own copy of its content again, in its host page.
    #[cold]
    #[inline(never)]
    fn unshare(&self, pfn: u64) {
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
    fn drop_shared(&self, pfn: u64) {
        if self.is_shared(pfn) {
            self.set_flag(SHARED, pfn, false);
            let id = self.ids[pfn as usize].replace(0);
            self.store.borrow_mut().release(id);
        }
    }

    /// Make the frames of the `len` bytes at `pa` (inside RAM, at most one page) ready for a
    /// write into the host mapping: own copies, marked dirty.
    #[inline(never)]
    fn prepare_write(&self, pa: u64, len: u64) {
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
    fn read_frames(&self, pa: u64, buf: &mut [u8]) {
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
    fn read_frame(&self, pfn: u64, off: usize, out: &mut [u8]) {
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

    /// Read a little-endian u32 at `pa` (any alignment).
    #[inline]
    pub fn read_u32(&self, pa: u64) -> Result<u32, PhysMemError> {
        self.check(pa, 4)?;
        // SAFETY: checked above that all 4 bytes lie inside RAM.
        Ok(unsafe { self.read_u32_unchecked(pa) })
    }

    /// Read a little-endian u64 at `pa` (any alignment).
    #[inline]
    pub fn read_u64(&self, pa: u64) -> Result<u64, PhysMemError> {
        self.check(pa, 8)?;
        // SAFETY: checked above that all 8 bytes lie inside RAM.
        Ok(unsafe { self.read_u64_unchecked(pa) })
    }

    /// Write a little-endian u32 at `pa` (any alignment).
    #[inline]
    pub fn write_u32(&self, pa: u64, value: u32) -> Result<(), PhysMemError> {
        self.check(pa, 4)?;
        // SAFETY: checked above that all 4 bytes lie inside RAM.
        unsafe { self.write_u32_unchecked(pa, value) };
        Ok(())
    }

    /// Write a little-endian u64 at `pa` (any alignment).
    #[inline]
    pub fn write_u64(&self, pa: u64, value: u64) -> Result<(), PhysMemError> {
        self.check(pa, 8)?;
        // SAFETY: checked above that all 8 bytes lie inside RAM.
        unsafe { self.write_u64_unchecked(pa, value) };
        Ok(())
    }

    /// Read a little-endian u32 at `pa` without a bounds check.
    ///
    /// # Safety
    /// `pa + 4 <= self.size()` must hold.
    #[inline(always)]
    pub unsafe fn read_u32_unchecked(&self, pa: u64) -> u32 {
        debug_assert!(pa + 4 <= self.size);
        if !self.direct_read(pa, 4) {
            let mut b = [0u8; 4];
            self.read_frames(pa, &mut b);
            return u32::from_le_bytes(b);
        }
        // SAFETY: the caller guarantees the 4 bytes are inside the live mapping; unaligned reads
        // are allowed by `read_unaligned`; no reference into RAM exists that could alias.
        u32::from_le(unsafe { ptr::read_unaligned(self.base.add(pa as usize).cast::<u32>()) })
    }

    /// Read a little-endian u64 at `pa` without a bounds check.
    ///
    /// # Safety
    /// `pa + 8 <= self.size()` must hold.
    #[inline(always)]
    pub unsafe fn read_u64_unchecked(&self, pa: u64) -> u64 {
        debug_assert!(pa + 8 <= self.size);
        if !self.direct_read(pa, 8) {
            let mut b = [0u8; 8];
            self.read_frames(pa, &mut b);
            return u64::from_le_bytes(b);
        }
        // SAFETY: as in `read_u32_unchecked`, for 8 bytes.
        u64::from_le(unsafe { ptr::read_unaligned(self.base.add(pa as usize).cast::<u64>()) })
    }

    /// Write a little-endian u32 at `pa` without a bounds check.
    ///
    /// # Safety
    /// `pa + 4 <= self.size()` must hold.
    #[inline(always)]
    pub unsafe fn write_u32_unchecked(&self, pa: u64, value: u32) {
        debug_assert!(pa + 4 <= self.size);
        if !self.direct_write(pa, 4) {
            self.prepare_write(pa, 4);
        }
        // SAFETY: the caller guarantees the bytes are inside the live, writable mapping; the
        // type is !Sync and hands out no references, so nothing else reads or writes them now.
        unsafe { ptr::write_unaligned(self.base.add(pa as usize).cast::<u32>(), value.to_le()) }
    }

    /// Write a little-endian u64 at `pa` without a bounds check.
    ///
    /// # Safety
    /// `pa + 8 <= self.size()` must hold.
    #[inline(always)]
    pub unsafe fn write_u64_unchecked(&self, pa: u64, value: u64) {
        debug_assert!(pa + 8 <= self.size);
        if !self.direct_write(pa, 8) {
            self.prepare_write(pa, 8);
        }
        // SAFETY: as in `write_u32_unchecked`, for 8 bytes.
        unsafe { ptr::write_unaligned(self.base.add(pa as usize).cast::<u64>(), value.to_le()) }
    }

    /// Copy `buf.len()` bytes of RAM starting at `pa` into `buf`.
    pub fn read_bytes(&self, pa: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        self.check(pa, buf.len() as u64)?;
        self.read_frames(pa, buf);
        Ok(())
    }

    /// Copy `buf` into RAM starting at `pa`. A whole frame written at once shares its host
    /// page with the frames written with the same bytes (see the module docs); an all-zero
    /// one is cleared.
    pub fn write_bytes(&self, pa: u64, buf: &[u8]) -> Result<(), PhysMemError> {
        self.check(pa, buf.len() as u64)?;
        let mut done = 0usize;
        while done < buf.len() {
            let at = pa + done as u64;
            let (pfn, off) = (at >> PAGE_SHIFT, (at & (PAGE_SIZE - 1)) as usize);
            let n = (PAGE_SIZE as usize - off).min(buf.len() - done);
            let chunk = &buf[done..done + n];
            if let Ok(page) = <&Page>::try_from(chunk) {
                self.write_page(pfn, page);
            } else {
                self.prepare_write(at, n as u64);
                // SAFETY: the chunk lies inside frame `pfn` (checked above) and cannot overlap
                // `buf`, a distinct host allocation.
                unsafe { ptr::copy_nonoverlapping(chunk.as_ptr(), self.base.add(at as usize), n) };
            }
            done += n;
        }
        Ok(())
    }

    /// Frame `pfn` (inside RAM) now holds `page`: shared through the store, written to its
    /// host page, or cleared.
    fn write_page(&self, pfn: u64, page: &Page) {
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
    fn promote_candidate(&self, pfn: u64, h: u64, page: &Page) -> Option<u32> {
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
    fn clear_frame(&self, pfn: u64) {
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

    /// True if every byte of frame `pfn` is zero. A never-written frame is answered without
    /// reading it.
    pub fn page_is_zero(&self, pfn: u64) -> Result<bool, PhysMemError> {
        self.check_pages(pfn, 1)?;
        if self.is_shared(pfn) {
            // the store never holds an all-zero page (`write_page` clears the frame instead)
            return Ok(false);
        }
        if !self.is_dirty(pfn) {
            return Ok(true);
        }
        let p = self.page_ptr(pfn)?;
        // SAFETY: `p` points at 4096 readable bytes of our mapping, 8-byte aligned (the mapping
        // is page aligned); no `&mut` into RAM exists while this shared slice lives, and this
        // thread writes nothing until it is dropped at the end of this function.
        let words =
            unsafe { core::slice::from_raw_parts(p.cast::<u64>(), (PAGE_SIZE / 8) as usize) };
        Ok(words.iter().all(|&w| w == 0))
    }

    /// The 4 KB frame `pfn` as a raw pointer, after checking it is inside RAM.
    #[inline]
    fn page_ptr(&self, pfn: u64) -> Result<*mut u8, PhysMemError> {
        let pa = self.check_pages(pfn, 1)?;
        // SAFETY: `pa + 4096 <= size` (checked), so the offset stays inside the mapping.
        Ok(unsafe { self.base.add(pa as usize) })
    }

    /// Fill frame `pfn` with zeros. A frame never written (or cleared since) is left alone:
    /// it already reads as zero, and the host commits nothing for it.
    pub fn zero_page(&self, pfn: u64) -> Result<(), PhysMemError> {
        self.check_pages(pfn, 1)?;
        self.clear_frame(pfn);
        Ok(())
    }

    /// Copy frame `src_pfn` to frame `dst_pfn` (copying a frame onto itself does nothing). A
    /// shared source is shared with the destination, not copied.
    pub fn copy_page(&self, dst_pfn: u64, src_pfn: u64) -> Result<(), PhysMemError> {
        let dst = self.page_ptr(dst_pfn)?;
        let src = self.page_ptr(src_pfn)?;
        if dst_pfn == src_pfn {
            return Ok(());
        }
        if self.is_shared(src_pfn) {
            let id = self.ids[src_pfn as usize].get();
            self.store.borrow_mut().retain(id);
            self.drop_shared(dst_pfn);
            self.ids[dst_pfn as usize].set(id);
            self.set_flag(SHARED, dst_pfn, true);
        } else if !self.is_dirty(src_pfn) {
            self.clear_frame(dst_pfn);
        } else {
            self.drop_shared(dst_pfn);
            self.set_flag(DIRTY | COMMITTED, dst_pfn, true);
            // SAFETY: two distinct page-aligned frames inside the mapping never overlap.
            unsafe { ptr::copy_nonoverlapping(src, dst, PAGE_SIZE as usize) };
        }
        Ok(())
    }

    /// Give the host memory behind frames `[pfn_start, pfn_start + npages)` back
    /// (`MADV_DONTNEED`); they read as zero afterwards. Cheaper than zeroing for large ranges.
    pub fn release_range(&self, pfn_start: u64, npages: u64) -> Result<(), PhysMemError> {
        let pa = self.check_pages(pfn_start, npages)?;
        if npages == 0 {
            return Ok(());
        }
        // SAFETY: the range is page aligned and inside our private anonymous mapping (checked);
        // MADV_DONTNEED on such a mapping only replaces its contents with zero-fill pages, and
        // no reference into RAM exists that could observe the change.
        let rc = unsafe {
            libc::madvise(
                self.base.add(pa as usize).cast(),
                (npages << PAGE_SHIFT) as usize,
                libc::MADV_DONTNEED,
            )
        };
        for pfn in pfn_start..pfn_start + npages {
            if rc == 0 {
                self.drop_shared(pfn);
                self.set_flag(DIRTY | COMMITTED, pfn, false);
            } else {
                // Cannot happen for a valid range of our own mapping; zero instead so the
                // documented "reads back as zero" still holds.
                self.clear_frame(pfn);
            }
        }
        Ok(())
    }

    /// Host memory actually committed for simulated RAM, in bytes.
    ///
    /// Sums the `Rss:` lines of `/proc/self/smaps` over the host mappings inside our range: that
    /// counts only pages the host allocated for us (the shared zero page, mapped by reads of
    /// never-written frames, is not counted). If `/proc` is unavailable it falls back to
    /// `mincore(2)`, which also counts zero-page mappings. Cost: proportional to the mapped
    /// part; meant for reports and tests, not hot paths.
    pub fn resident_bytes(&self) -> u64 {
        self.resident_bytes_smaps()
            .unwrap_or_else(|| self.resident_bytes_mincore())
            + self.shared_bytes()
    }

    /// Host bytes held by the content store: one page per distinct shared content.
    pub fn shared_bytes(&self) -> u64 {
        self.store.borrow().bytes()
    }

    fn resident_bytes_smaps(&self) -> Option<u64> {
        let text = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let start = self.base as u64;
        let end = start + self.size;
        let mut inside = false;
        let mut found = false;
        let mut total_kb = 0u64;
        for line in text.lines() {
            if let Some(range) = line.split_whitespace().next().filter(|w| w.contains('-')) {
                // A mapping header: "start-end perms offset dev inode [path]".
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
                    {
                        inside = a >= start && b <= end;
                        if !inside && a < end && b > start {
                            // Merged with something else: cannot attribute its Rss.
                            return None;
                        }
                        found |= inside;
                        continue;
                    }
                }
            }
            if inside {
                if let Some(rest) = line.strip_prefix("Rss:") {
                    let kb = rest
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()?;
                    total_kb += kb;
                }
            }
        }
        found.then_some(total_kb * 1024)
    }

    fn resident_bytes_mincore(&self) -> u64 {
        const CHUNK_PAGES: usize = 1 << 16;
        let mut vec = vec![0u8; CHUNK_PAGES];
        let mut resident = 0u64;
        let total_pages = self.nr_pages() as usize;
        let mut page = 0usize;
        while page < total_pages {
            let n = CHUNK_PAGES.min(total_pages - page);
            // SAFETY: the address range is inside our mapping and page aligned; `vec` has room
            // for one byte per page of the range.
            let rc = unsafe {
                libc::mincore(
                    self.base.add(page << PAGE_SHIFT).cast(),
                    n << PAGE_SHIFT,
                    vec.as_mut_ptr(),
                )
            };
            if rc == 0 {
                resident += vec[..n].iter().filter(|&&b| b & 1 != 0).count() as u64;
            }
            page += n;
        }
        resident << PAGE_SHIFT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked() {
        assert_eq!(
            PhysMem::new(0).unwrap_err(),
            PhysMemError::BadSize { size: 0 }
        );
        assert_eq!(
            PhysMem::new(4097).unwrap_err(),
            PhysMemError::BadSize { size: 4097 }
        );
        assert_eq!(
            PhysMem::new(MAX_PHYS_MEM + 4096).unwrap_err(),
            PhysMemError::BadSize {
                size: MAX_PHYS_MEM + 4096
            }
        );
        let m = PhysMem::new(16 * 4096).unwrap();
        assert_eq!(m.size(), 65536);
        assert_eq!(m.nr_pages(), 16);
    }

    #[test]
    fn little_endian_and_out_of_range() {
        let m = PhysMem::new(2 * 4096).unwrap();
        m.write_u64(0x10, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m.read_u32(0x10).unwrap(), 0x5566_7788);
        assert_eq!(m.read_u32(0x14).unwrap(), 0x1122_3344);
        let mut b = [0u8; 3];
        m.read_bytes(0x10, &mut b).unwrap();
        assert_eq!(b, [0x88, 0x77, 0x66]);
        // unaligned, straddling the page boundary
        m.write_u32(0xffe, 0xdead_beef).unwrap();
        assert_eq!(m.read_u32(0xffe).unwrap(), 0xdead_beef);
        // last bytes are fine, one more is not
        m.write_u64(8192 - 8, 7).unwrap();
        assert_eq!(m.read_u64(8192 - 8).unwrap(), 7);
        assert_eq!(
            m.read_u64(8192 - 7),
            Err(PhysMemError::OutOfRange { addr: 8185, len: 8 })
        );
        assert_eq!(
            m.write_u32(8192 - 3, 1),
            Err(PhysMemError::OutOfRange { addr: 8189, len: 4 })
        );
        assert_eq!(
            m.read_u32(u64::MAX - 1),
            Err(PhysMemError::OutOfRange {
                addr: u64::MAX - 1,
                len: 4
            })
        );
        assert!(m.write_bytes(8190, &[1, 2, 3]).is_err());
        assert!(m.read_bytes(8191, &mut [0u8; 1]).is_ok());
        assert!(m.zero_page(2).is_err());
        assert!(m.copy_page(0, 2).is_err());
        assert!(m.copy_page(2, 0).is_err());
        assert!(m.page_is_zero(u64::MAX).is_err());
        assert!(m.release_range(1, 2).is_err());
        assert!(m.release_range(u64::MAX, 2).is_err());
        assert!(m.release_range(2, 0).is_ok());
    }

    #[test]
    fn zero_copy_release() {
        let m = PhysMem::new(8 * 4096).unwrap();
        assert!(m.page_is_zero(3).unwrap());
        m.write_bytes(3 * 4096 + 100, &[9; 50]).unwrap();
        assert!(!m.page_is_zero(3).unwrap());
        m.copy_page(5, 3).unwrap();
        assert_eq!(m.read_u32(5 * 4096 + 100).unwrap(), 0x0909_0909);
        assert_eq!(m.read_u32(5 * 4096 + 96).unwrap(), 0);
        m.zero_page(3).unwrap();
        assert!(m.page_is_zero(3).unwrap());
        assert!(!m.page_is_zero(5).unwrap());
        m.write_u64(6 * 4096, u64::MAX).unwrap();
        m.release_range(5, 2).unwrap();
        assert!(m.page_is_zero(5).unwrap());
        assert!(m.page_is_zero(6).unwrap());
        assert_eq!(m.read_u64(6 * 4096).unwrap(), 0);
    }

    #[test]
    fn sixty_four_gigabytes_last_byte() {
        let m = PhysMem::new(MAX_PHYS_MEM).unwrap();
        assert_eq!(m.nr_pages(), 16 << 20);
        m.write_bytes(MAX_PHYS_MEM - 1, &[0xab]).unwrap();
        let mut b = [0u8];
        m.read_bytes(MAX_PHYS_MEM - 1, &mut b).unwrap();
        assert_eq!(b, [0xab]);
        assert!(m.write_bytes(MAX_PHYS_MEM, &[0]).is_err());
        // one page touched: far less than a megabyte committed
        assert!(m.resident_bytes() <= 64 * 1024, "{}", m.resident_bytes());
    }

    #[test]
    fn resident_bytes_follow_touched_pages() {
        let m = PhysMem::new(1 << 30).unwrap();
        assert_eq!(m.resident_bytes(), 0);
        // reads of never-written frames commit nothing
        for pfn in 0..64 {
            assert!(m.page_is_zero(pfn * 1000).unwrap());
        }
        assert_eq!(m.resident_bytes(), 0);
        for pfn in 0..10 {
            m.write_u32(pfn * 4096 * 1000, 1).unwrap();
        }
        assert_eq!(m.resident_bytes(), 10 * 4096);
        // clearing a never-written frame commits nothing: it already reads as zero
        m.zero_page(3).unwrap();
        assert_eq!(m.resident_bytes(), 10 * 4096);
        // a copy of such a frame commits nothing either
        m.copy_page(4, 3).unwrap();
        assert_eq!(m.resident_bytes(), 10 * 4096);
        // a written frame that is cleared stays committed and reads as zero
        m.write_u32(3 * 4096 + 4092, 7).unwrap();
        assert_eq!(m.resident_bytes(), 11 * 4096);
        m.zero_page(3).unwrap();
        assert_eq!(m.resident_bytes(), 11 * 4096);
        assert_eq!(m.read_u32(3 * 4096 + 4092).unwrap(), 0);
        assert!(m.page_is_zero(3).unwrap());
        m.release_range(3, 1).unwrap();
        assert_eq!(m.resident_bytes(), 10 * 4096);
        m.release_range(0, 5000).unwrap();
        assert_eq!(m.resident_bytes(), 5 * 4096);
        assert_eq!(m.read_u32(0).unwrap(), 0);
        assert_eq!(m.read_u32(5000 * 4096).unwrap(), 1);
    }

    #[test]
    fn whole_page_writes_are_shared_on_the_host() {
        let m = PhysMem::new(1 << 30).unwrap();
        let mut page = [0u8; 4096];
        for (i, b) in page.iter_mut().enumerate() {
            *b = (i % 251) as u8 + 1;
        }
        // the first frame written with a content keeps it in its own host page
        m.write_bytes(1000 * 4096, &page).unwrap();
        assert_eq!((m.shared_bytes(), m.resident_bytes()), (0, 4096));
        // 199 more with the same 4 KB: the content moves into the store at the second, and
        // the host holds two pages for all 200 (the store's and the first frame's, now stale)
        for pfn in 1001..1200 {
            m.write_bytes(pfn * 4096, &page).unwrap();
        }
        assert_eq!((m.shared_bytes(), m.resident_bytes()), (4096, 2 * 4096));
        assert_eq!(
            m.read_u32(1100 * 4096 + 8).unwrap(),
            u32::from_le_bytes([9, 10, 11, 12])
        );
        // a small write gives that frame its own copy; the others keep sharing
        m.write_u64(1100 * 4096 + 4088, 0).unwrap();
        assert_eq!(m.resident_bytes(), 3 * 4096);
        assert_eq!(m.read_u64(1100 * 4096 + 4088).unwrap(), 0);
        let mut last = [0u8; 1];
        m.read_bytes(1101 * 4096 + 4095, &mut last).unwrap();
        assert_eq!(last[0], page[4095]);
        // a copy of a shared frame shares too
        m.copy_page(5, 1000).unwrap();
        assert_eq!(m.resident_bytes(), 3 * 4096);
        assert!(!m.page_is_zero(5).unwrap());
        // a unique content stays in the frame's own page; a stored one is shared
        let mut other = page;
        other[0] = 0xee;
        m.write_bytes(7 * 4096, &other).unwrap();
        assert_eq!((m.shared_bytes(), m.resident_bytes()), (4096, 4 * 4096));
        assert_eq!(m.read_u32(7 * 4096).unwrap() & 0xff, 0xee);
        m.write_bytes(7 * 4096, &page).unwrap();
        assert_eq!((m.shared_bytes(), m.resident_bytes()), (4096, 4 * 4096));
        assert_eq!(m.read_u32(7 * 4096).unwrap() & 0xff, 1);
        // the remembered frame changed since: no sharing with its old content
        m.write_bytes(8 * 4096, &other).unwrap();
        assert_eq!(m.shared_bytes(), 4096);
        // an all-zero whole-page write clears: the store lets go with the last sharer
        for pfn in (1000..1200).chain([5, 7, 8]) {
            m.write_bytes(pfn * 4096, &[0u8; 4096]).unwrap();
        }
        assert_eq!(m.shared_bytes(), 0);
        assert!(m.page_is_zero(1000).unwrap());
        assert!(m.page_is_zero(1100).unwrap());
    }

    /// Sharing and the written-frame bits are host-side only: any mix of accessors reads
    /// back exactly what a plain byte array would hold.
    mod model {
        use super::*;
        use proptest::prelude::*;

        const PAGES: u64 = 6;

        #[derive(Debug, Clone)]
        enum Op {
            U32(u64, u32),
            U64(u64, u64),
            Bytes(u64, Vec<u8>),
            Page(u64, u8, u16),
            Zero(u64),
            Copy(u64, u64),
            Release(u64, u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            let pa = 0..PAGES * 4096 - 8;
            let pfn = 0..PAGES;
            prop_oneof![
                (pa.clone(), any::<u32>()).prop_map(|(a, v)| Op::U32(a, v)),
                (pa.clone(), any::<u64>()).prop_map(|(a, v)| Op::U64(a, v)),
                (pa, prop::collection::vec(any::<u8>(), 0..9000))
                    .prop_map(|(a, b)| Op::Bytes(a, b)),
                // whole pages from a few contents, so that frames share
                (pfn.clone(), 0..3u8, 0..4096u16).prop_map(|(p, v, at)| Op::Page(p, v, at)),
                pfn.clone().prop_map(Op::Zero),
                (pfn.clone(), pfn.clone()).prop_map(|(d, s)| Op::Copy(d, s)),
                (pfn, 0..3u64).prop_map(|(p, n)| Op::Release(p, n)),
            ]
        }

        fn frame(model: &mut [u8], p: u64) -> &mut [u8] {
            &mut model[(p * 4096) as usize..((p + 1) * 4096) as usize]
        }

        proptest! {
            #[test]
            fn reads_match_a_byte_array(ops in prop::collection::vec(op(), 1..60)) {
                let m = PhysMem::new(PAGES * 4096).unwrap();
                let mut model = vec![0u8; (PAGES * 4096) as usize];
                for op in ops {
                    match op {
                        Op::U32(a, v) => {
                            m.write_u32(a, v).unwrap();
                            model[a as usize..a as usize + 4].copy_from_slice(&v.to_le_bytes());
                        }
                        Op::U64(a, v) => {
                            m.write_u64(a, v).unwrap();
                            model[a as usize..a as usize + 8].copy_from_slice(&v.to_le_bytes());
                        }
                        Op::Bytes(a, b) => {
                            let n = b.len().min(model.len() - a as usize);
                            m.write_bytes(a, &b[..n]).unwrap();
                            model[a as usize..a as usize + n].copy_from_slice(&b[..n]);
                        }
                        Op::Page(p, v, at) => {
                            let mut page = [0u8; 4096];
                            page[at as usize % (64 * (v as usize + 1))] = v;
                            m.write_bytes(p * 4096, &page).unwrap();
                            frame(&mut model, p).copy_from_slice(&page);
                        }
                        Op::Zero(p) => {
                            m.zero_page(p).unwrap();
                            frame(&mut model, p).fill(0);
                        }
                        Op::Copy(d, s) => {
                            m.copy_page(d, s).unwrap();
                            let src = frame(&mut model, s).to_vec();
                            frame(&mut model, d).copy_from_slice(&src);
                        }
                        Op::Release(p, n) => {
                            let n = n.min(PAGES - p);
                            m.release_range(p, n).unwrap();
                            model[(p * 4096) as usize..((p + n) * 4096) as usize].fill(0);
                        }
                    }
                }
                let mut got = vec![0u8; model.len()];
                m.read_bytes(0, &mut got).unwrap();
                prop_assert_eq!(&got, &model);
                for a in (0..PAGES * 4096 - 8).step_by(4093) {
                    let want = u64::from_le_bytes(model[a as usize..a as usize + 8].try_into().unwrap());
                    prop_assert_eq!(m.read_u64(a).unwrap(), want);
                }
                for p in 0..PAGES {
                    let zero = frame(&mut model, p).iter().all(|&b| b == 0);
                    prop_assert_eq!(m.page_is_zero(p).unwrap(), zero);
                }
                // every store page is still referenced by some frame
                let shared = (0..PAGES).filter(|&p| m.is_shared(p)).count() as u64;
                prop_assert!(m.shared_bytes() <= shared * 4096);
            }
        }
    }
}
