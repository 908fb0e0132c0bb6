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

mod resident;
mod share;
mod store;

use store::{Page, PageStore};

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
    /// frames were shared, like the state bytes.
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

    /// True if every byte of frame `pfn` is zero. A never-written frame is answered without
    /// reading it.
    pub fn page_is_zero(&self, pfn: u64) -> Result<bool, PhysMemError> {
        let p = self.page_ptr(pfn)?;
        if self.is_shared(pfn) {
            // the store never holds an all-zero page (`write_page` clears the frame instead)
            return Ok(false);
        }
        if !self.is_dirty(pfn) {
            return Ok(true);
        }
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
}

#[cfg(test)]
mod tests;
