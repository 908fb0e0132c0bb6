//! GFP ("get free pages") request flags and the zone fallback lists they select.
//!
//! The zone modifiers pick the zonelist ([`zonelist`]); the action modifiers say what the
//! allocator may do to satisfy the request (sleep, dip into reserves). What the watermark
//! passes do with them is documented on
//! [`alloc_from_zonelist`](super::zone::alloc_from_zonelist).

use super::zone::ZoneType;

bitflags::bitflags! {
    /// A page allocation request's flags (`gfp_mask`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct GfpFlags: u32 {
        /// Zone modifier: the page must be in the DMA zone (below 16 MB).
        #[doc(alias = "__GFP_DMA")]
        const DMA = 1 << 0;
        /// Zone modifier: the page may come from HighMem (the caller maps it to touch it).
        #[doc(alias = "__GFP_HIGHMEM")]
        const HIGHMEM = 1 << 1;
        /// The caller may sleep (so it may reclaim and retry).
        #[doc(alias = "__GFP_WAIT")]
        const WAIT = 1 << 4;
        /// High priority: may dip below the minimum watermark (emergency reserve).
        #[doc(alias = "__GFP_HIGH")]
        const HIGH = 1 << 5;
        /// The caller may start I/O to free memory.
        #[doc(alias = "__GFP_IO")]
        const IO = 1 << 6;
        /// The caller may call into the file system to free memory.
        #[doc(alias = "__GFP_FS")]
        const FS = 1 << 7;
        /// The caller wants the page zeroed (done by the caller of the allocator, which owns
        /// the simulated memory; the allocator's data structures never touch page contents).
        #[doc(alias = "__GFP_ZERO")]
        const ZERO = 1 << 8;
        /// The caller is freeing memory itself (Linux's `PF_MEMALLOC` task flag, as a request
        /// flag): it may use every free page, ignoring watermarks.
        #[doc(alias = "PF_MEMALLOC")]
        const MEMALLOC = 1 << 9;

        /// `GFP_ATOMIC`: cannot sleep, high priority (interrupts, under spinlocks).
        #[doc(alias = "GFP_ATOMIC")]
        const ATOMIC = Self::HIGH.bits();
        /// `GFP_NOIO`: may sleep but not start I/O.
        #[doc(alias = "GFP_NOIO")]
        const NOIO = Self::WAIT.bits();
        /// `GFP_NOFS`: may sleep and do I/O, but not re-enter the file system.
        #[doc(alias = "GFP_NOFS")]
        const NOFS = Self::WAIT.bits() | Self::IO.bits();
        /// `GFP_KERNEL`: ordinary kernel allocation from low memory; may sleep.
        #[doc(alias = "GFP_KERNEL")]
        const KERNEL = Self::WAIT.bits() | Self::IO.bits() | Self::FS.bits();
        /// `GFP_USER`: user page that must be in low memory.
        #[doc(alias = "GFP_USER")]
        const USER = Self::KERNEL.bits();
        /// `GFP_HIGHUSER`: user page, preferably from HighMem.
        #[doc(alias = "GFP_HIGHUSER")]
        const HIGHUSER = Self::KERNEL.bits() | Self::HIGHMEM.bits();
    }
}

impl GfpFlags {
    /// The zone modifier bits (`GFP_ZONEMASK`).
    pub const ZONEMASK: GfpFlags = GfpFlags::DMA.union(GfpFlags::HIGHMEM);

    /// True if the caller may sleep.
    pub const fn can_sleep(self) -> bool {
        self.contains(GfpFlags::WAIT)
    }
}

/// `GFP_KERNEL` (see [`GfpFlags::KERNEL`]).
pub const GFP_KERNEL: GfpFlags = GfpFlags::KERNEL;
/// `GFP_ATOMIC` (see [`GfpFlags::ATOMIC`]).
pub const GFP_ATOMIC: GfpFlags = GfpFlags::ATOMIC;
/// `GFP_USER` (see [`GfpFlags::USER`]).
pub const GFP_USER: GfpFlags = GfpFlags::USER;
/// `GFP_HIGHUSER` (see [`GfpFlags::HIGHUSER`]).
pub const GFP_HIGHUSER: GfpFlags = GfpFlags::HIGHUSER;
/// `GFP_NOIO` (see [`GfpFlags::NOIO`]).
pub const GFP_NOIO: GfpFlags = GfpFlags::NOIO;
/// `GFP_NOFS` (see [`GfpFlags::NOFS`]).
pub const GFP_NOFS: GfpFlags = GfpFlags::NOFS;
/// `GFP_DMA`: the zone modifier alone, combined with another request's flags.
pub const GFP_DMA: GfpFlags = GfpFlags::DMA;
/// `__GFP_DMA` (see [`GfpFlags::DMA`]).
pub const __GFP_DMA: GfpFlags = GfpFlags::DMA;
/// `__GFP_HIGHMEM` (see [`GfpFlags::HIGHMEM`]).
pub const __GFP_HIGHMEM: GfpFlags = GfpFlags::HIGHMEM;
/// `__GFP_WAIT` (see [`GfpFlags::WAIT`]).
pub const __GFP_WAIT: GfpFlags = GfpFlags::WAIT;
/// `__GFP_HIGH` (see [`GfpFlags::HIGH`]).
pub const __GFP_HIGH: GfpFlags = GfpFlags::HIGH;
/// `__GFP_IO` (see [`GfpFlags::IO`]).
pub const __GFP_IO: GfpFlags = GfpFlags::IO;
/// `__GFP_FS` (see [`GfpFlags::FS`]).
pub const __GFP_FS: GfpFlags = GfpFlags::FS;
/// `__GFP_ZERO` (see [`GfpFlags::ZERO`]).
pub const __GFP_ZERO: GfpFlags = GfpFlags::ZERO;

const ZONELIST_HIGHMEM: [ZoneType; 3] = [ZoneType::HighMem, ZoneType::Normal, ZoneType::Dma];
const ZONELIST_NORMAL: [ZoneType; 2] = [ZoneType::Normal, ZoneType::Dma];
const ZONELIST_DMA: [ZoneType; 1] = [ZoneType::Dma];

/// The zones a request may be served from, in order of preference (`zonelist`).
///
/// `__GFP_DMA`: DMA only. `__GFP_HIGHMEM`: HighMem, then Normal, then DMA. Otherwise Normal, then
/// DMA. If both zone modifiers are set, DMA wins (the stricter constraint).
pub fn zonelist(gfp: GfpFlags) -> &'static [ZoneType] {
    if gfp.contains(GfpFlags::DMA) {
        &ZONELIST_DMA
    } else if gfp.contains(GfpFlags::HIGHMEM) {
        &ZONELIST_HIGHMEM
    } else {
        &ZONELIST_NORMAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zonelists_fall_back_in_linux_order() {
        assert_eq!(
            zonelist(GFP_HIGHUSER),
            &[ZoneType::HighMem, ZoneType::Normal, ZoneType::Dma]
        );
        assert_eq!(
            zonelist(GFP_KERNEL | __GFP_HIGHMEM),
            &[ZoneType::HighMem, ZoneType::Normal, ZoneType::Dma]
        );
        assert_eq!(zonelist(GFP_KERNEL), &[ZoneType::Normal, ZoneType::Dma]);
        assert_eq!(zonelist(GFP_ATOMIC), &[ZoneType::Normal, ZoneType::Dma]);
        assert_eq!(zonelist(GFP_USER), &[ZoneType::Normal, ZoneType::Dma]);
        assert_eq!(zonelist(GFP_KERNEL | GFP_DMA), &[ZoneType::Dma]);
        assert_eq!(
            zonelist(GFP_ATOMIC | __GFP_DMA | __GFP_HIGHMEM),
            &[ZoneType::Dma]
        );
    }

    #[test]
    fn composite_flags() {
        assert!(GFP_KERNEL.can_sleep());
        assert!(GFP_HIGHUSER.can_sleep());
        assert!(!GFP_ATOMIC.can_sleep());
        assert!(GFP_ATOMIC.contains(__GFP_HIGH));
        assert_eq!(GFP_HIGHUSER & GfpFlags::ZONEMASK, __GFP_HIGHMEM);
        assert_eq!(GFP_KERNEL, __GFP_WAIT | __GFP_IO | __GFP_FS);
        assert_eq!(GFP_NOFS, __GFP_WAIT | __GFP_IO);
        assert_eq!(GFP_NOIO, __GFP_WAIT);
        assert!(!GFP_KERNEL.contains(__GFP_ZERO));
    }
}
