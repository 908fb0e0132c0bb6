//! Memory zones: DMA, Normal and HighMem, their layout for a [`Config`], their watermarks, and
//! allocation along a GFP request's zonelist.
//!
//! # Layout
//!
//! DMA is the RAM below 16 MB; Normal the rest of low memory, up to min(usable RAM, 896 MB)
//! (`MAXMEM`); HighMem everything above, up to the usable RAM (already clamped by the variant and
//! by `highmem=` in [`Config::usable_ram`]). An absent zone is empty (start == end).
//!
//! # Watermarks
//!
//! As 2.4/2.5's `free_area_init_core` with `zone_balance_ratio` 128, `zone_balance_min` 20 and
//! `zone_balance_max` 255: `min = clamp(present_pages / 128, 20, 255)`, `low = 2 * min`,
//! `high = 3 * min` (all 0 for an empty zone). A zone passes a watermark `w` for an order-`o`
//! request if at least `w` pages stay free after taking the 2^o pages; along a zonelist the
//! zones fallen back to also keep the watermarks of the zones before them
//! ([`alloc_from_zonelist`]).

use super::buddy::{BuddyError, FreeArea, MAX_ORDER};
use super::gfp::{zonelist, GfpFlags};
use super::mem_map::{MemMap, PageFlags};
use core::fmt;
use highpte_arch::{Config, Pfn, PAGE_SIZE};

/// End of the DMA zone: ISA DMA reaches the first 16 MB.
pub const DMA_ZONE_BYTES: u64 = 16 << 20;
/// `zone_balance_ratio`: the minimum watermark is 1/128 of the zone...
pub const ZONE_BALANCE_RATIO: u64 = 128;
/// `zone_balance_min`: ...but at least 20 pages...
pub const ZONE_BALANCE_MIN: u64 = 20;
/// `zone_balance_max`: ...and at most 255 pages.
pub const ZONE_BALANCE_MAX: u64 = 255;

/// The three zones, in address order (the discriminant is the index into zone arrays).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[repr(u8)]
pub enum ZoneType {
    /// Below 16 MB (`ZONE_DMA`).
    Dma = 0,
    /// The rest of low memory, directly mapped (`ZONE_NORMAL`).
    Normal = 1,
    /// Above 896 MB, mapped only on demand (`ZONE_HIGHMEM`).
    HighMem = 2,
}

impl ZoneType {
    /// Number of zone types.
    pub const COUNT: usize = 3;
    /// All zones in address order.
    pub const ALL: [ZoneType; 3] = [ZoneType::Dma, ZoneType::Normal, ZoneType::HighMem];
    /// The name Linux prints: "DMA", "Normal", "HighMem".
    pub const fn name(self) -> &'static str {
        match self {
            ZoneType::Dma => "DMA",
            ZoneType::Normal => "Normal",
            ZoneType::HighMem => "HighMem",
        }
    }
    /// Index into zone arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
    /// True for the zones in low (directly mapped) memory.
    pub const fn is_lowmem(self) -> bool {
        !matches!(self, ZoneType::HighMem)
    }
}

impl fmt::Display for ZoneType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The pfn range `[start_pfn, end_pfn)` of one zone.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ZoneLayout {
    /// First page.
    pub start_pfn: Pfn,
    /// One past the last page.
    pub end_pfn: Pfn,
}

impl ZoneLayout {
    /// Number of pages.
    pub const fn pages(&self) -> u64 {
        self.end_pfn.0 - self.start_pfn.0
    }
    /// True if the zone has no pages.
    pub const fn is_empty(&self) -> bool {
        self.end_pfn.0 == self.start_pfn.0
    }
    /// True if `pfn` is in the zone.
    pub const fn contains(&self, pfn: Pfn) -> bool {
        pfn.0 >= self.start_pfn.0 && pfn.0 < self.end_pfn.0
    }
}

/// The DMA, Normal and HighMem ranges of a configuration (indexed by [`ZoneType::index`]).
pub fn zone_layouts(cfg: &Config) -> [ZoneLayout; 3] {
    let usable = cfg.phys_end() / PAGE_SIZE;
    let lowmem = cfg.lowmem_bytes() / PAGE_SIZE;
    let dma = (DMA_ZONE_BYTES / PAGE_SIZE).min(lowmem);
    [
        ZoneLayout {
            start_pfn: Pfn(0),
            end_pfn: Pfn(dma),
        },
        ZoneLayout {
            start_pfn: Pfn(dma),
            end_pfn: Pfn(lowmem),
        },
        ZoneLayout {
            start_pfn: Pfn(lowmem),
            end_pfn: Pfn(usable.max(lowmem)),
        },
    ]
}

/// The zone holding `pfn`, if any.
pub fn zone_type_of(layouts: &[ZoneLayout; 3], pfn: Pfn) -> Option<ZoneType> {
    ZoneType::ALL
        .into_iter()
        .find(|t| layouts[t.index()].contains(pfn))
}

/// A zone's free-page thresholds (`pages_min`, `pages_low`, `pages_high`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Watermarks {
    /// Below this only atomic and memalloc requests succeed.
    pub min: u64,
    /// Below this the allocator's first pass skips the zone (kswapd would be woken).
    pub low: u64,
    /// Reclaim stops once this many pages are free.
    pub high: u64,
}

impl Watermarks {
    /// The 2.4/2.5 watermarks of a zone of `present_pages` (see the module docs).
    pub fn for_present_pages(present_pages: u64) -> Self {
        if present_pages == 0 {
            return Self::default();
        }
        let min = (present_pages / ZONE_BALANCE_RATIO).clamp(ZONE_BALANCE_MIN, ZONE_BALANCE_MAX);
        Self {
            min,
            low: 2 * min,
            high: 3 * min,
        }
    }
}

/// Which watermark an allocation must respect.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Watermark {
    /// Take any free page (memalloc / boot).
    Ignore,
    /// A quarter of `min`: for requests that cannot sleep (they cannot wait for reclaim).
    AtomicMin,
    /// 6.1's floor for `GFP_ATOMIC`: half of `min` (`__GFP_HIGH`), less a quarter of that
    /// (`ALLOC_HARDER`): three eighths.
    AtomicMin61,
    /// `pages_min`.
    Min,
    /// `pages_low`.
    Low,
    /// `pages_high`.
    High,
}

impl Watermark {
    /// The number of pages that must stay free in a zone with watermarks `wm`.
    pub const fn pages(self, wm: &Watermarks) -> u64 {
        match self {
            Watermark::Ignore => 0,
            Watermark::AtomicMin => wm.min / 4,
            Watermark::AtomicMin61 => {
                let high = wm.min - wm.min / 2;
                high - high / 4
            }
            Watermark::Min => wm.min,
            Watermark::Low => wm.low,
            Watermark::High => wm.high,
        }
    }
}

/// Why an allocation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AllocFailure {
    /// The order is not below [`MAX_ORDER`].
    InvalidOrder {
        /// The order asked for.
        order: u32,
    },
    /// A zone had a large enough free block, but taking it would cross the watermark this
    /// request must respect: reclaim (or a more privileged request) would succeed.
    BelowWatermark {
        /// The order asked for.
        order: u32,
    },
    /// No zone the request may use has a free block of that order.
    NoFreeBlock {
        /// The order asked for.
        order: u32,
    },
}

impl fmt::Display for AllocFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AllocFailure::InvalidOrder { order } => {
                write!(
                    f,
                    "order {order} is out of range (orders are 0..{})",
                    MAX_ORDER - 1
                )
            }
            AllocFailure::BelowWatermark { order } => {
                write!(
                    f,
                    "order-{order} allocation refused: free memory is below the zone watermarks"
                )
            }
            AllocFailure::NoFreeBlock { order } => {
                write!(f, "order-{order} allocation failed: no free block that large in the allowed zones")
            }
        }
    }
}

impl core::error::Error for AllocFailure {}

/// One memory zone: its range, its buddy allocator and its watermarks.
#[derive(Clone, Debug)]
pub struct Zone {
    ty: ZoneType,
    start_pfn: Pfn,
    end_pfn: Pfn,
    present_pages: u64,
    free_area: FreeArea,
    watermarks: Watermarks,
    /// Pages this zone keeps from requests that could have used a higher zone, by that
    /// zone's index (`lowmem_reserve`; 6.1 profile only, all 0 in 2.5's).
    lowmem_reserve: [u64; 3],
}

impl Zone {
    /// A zone of type `ty` over `layout`, with nothing free yet (boot hands pages with
    /// [`Zone::free_range_at_boot`]).
    pub fn new(ty: ZoneType, layout: ZoneLayout) -> Self {
        let end = Pfn(layout.end_pfn.0.max(layout.start_pfn.0));
        let present_pages = end.0 - layout.start_pfn.0;
        Self {
            ty,
            start_pfn: layout.start_pfn,
            end_pfn: end,
            present_pages,
            free_area: FreeArea::new(layout.start_pfn, end),
            watermarks: Watermarks::for_present_pages(present_pages),
            lowmem_reserve: [0; 3],
        }
    }
    /// The three zones of `cfg`, empty, indexed by [`ZoneType::index`]. A zone's present
    /// pages are the RAM in its span (the firmware's holes are not present).
    pub fn zones_for(cfg: &Config) -> [Zone; 3] {
        let l = zone_layouts(cfg);
        let ram = cfg.ram_map();
        ZoneType::ALL.map(|t| {
            let mut z = Zone::new(t, l[t.index()]);
            let (s, e) = (z.start_pfn.0 * PAGE_SIZE, z.end_pfn.0 * PAGE_SIZE);
            z.present_pages = ram.bytes_in(s, e) / PAGE_SIZE;
            z.watermarks = Watermarks::for_present_pages(z.present_pages);
            z
        })
    }
    /// Pages kept from a request whose highest usable zone is `class` (`lowmem_reserve`).
    pub fn lowmem_reserve(&self, class: ZoneType) -> u64 {
        self.lowmem_reserve[class.index()]
    }
    /// Set the pages kept from requests of each class (6.1 profile's boot).
    pub fn set_lowmem_reserve(&mut self, reserve: [u64; 3]) {
        self.lowmem_reserve = reserve;
    }
    /// The zone's type.
    pub fn ty(&self) -> ZoneType {
        self.ty
    }
    /// First pfn.
    pub fn start_pfn(&self) -> Pfn {
        self.start_pfn
    }
    /// End pfn (exclusive).
    pub fn end_pfn(&self) -> Pfn {
        self.end_pfn
    }
    /// The zone's range.
    pub fn layout(&self) -> ZoneLayout {
        ZoneLayout {
            start_pfn: self.start_pfn,
            end_pfn: self.end_pfn,
        }
    }
    /// True if `pfn` is in the zone.
    pub fn contains(&self, pfn: Pfn) -> bool {
        self.layout().contains(pfn)
    }
    /// Pages of RAM in the zone's span.
    pub fn present_pages(&self) -> u64 {
        self.present_pages
    }
    /// Pages handed to the buddy allocator (present minus boot reservations).
    pub fn managed_pages(&self) -> u64 {
        self.free_area.managed_pages()
    }
    /// Free pages.
    pub fn free_pages(&self) -> u64 {
        self.free_area.free_pages()
    }
    /// Free blocks of `order`.
    pub fn nr_free(&self, order: u32) -> u64 {
        self.free_area.nr_free(order)
    }
    /// The watermarks.
    pub fn watermarks(&self) -> Watermarks {
        self.watermarks
    }
    /// Replace the watermarks (tuning, tests).
    pub fn set_watermarks(&mut self, wm: Watermarks) {
        self.watermarks = wm;
    }
    /// The buddy allocator.
    pub fn free_area(&self) -> &FreeArea {
        &self.free_area
    }
    /// The buddy allocator, mutably (bypasses watermarks).
    pub fn free_area_mut(&mut self) -> &mut FreeArea {
        &mut self.free_area
    }
    /// True if an order-`order` allocation would leave at least `watermark` pages free
    /// (`zone_watermark_ok`, without the per-order refinement of later kernels).
    pub fn watermark_ok(&self, order: u32, watermark: Watermark) -> bool {
        self.watermark_ok_above(order, watermark, 0)
    }
    /// True if an order-`order` allocation would leave at least `watermark` pages plus
    /// `reserve` free (the reserve of the zones before this one in a zonelist, see
    /// [`alloc_from_zonelist`]).
    pub fn watermark_ok_above(&self, order: u32, watermark: Watermark, reserve: u64) -> bool {
        let need = watermark
            .pages(&self.watermarks)
            .saturating_add(reserve)
            .saturating_add(1u64 << order.min(63));
        self.free_pages() >= need
    }
    /// Hand `[start, end)` to the zone's buddy allocator at boot; returns the pages added.
    pub fn free_range_at_boot(
        &mut self,
        mm: &MemMap,
        start: Pfn,
        end: Pfn,
    ) -> Result<u64, BuddyError> {
        self.free_area.free_range_at_boot(mm, start, end)
    }
    /// Allocate 2^`order` pages if the zone passes `watermark`. HighMem pages get
    /// [`PageFlags::HIGHMEM`] on their head.
    pub fn alloc(
        &mut self,
        mm: &MemMap,
        order: u32,
        watermark: Watermark,
    ) -> Result<Pfn, AllocFailure> {
        self.alloc_above(mm, order, watermark, 0)
    }
    /// Allocate 2^`order` pages if the zone keeps `watermark` plus `reserve` pages free.
    pub fn alloc_above(
        &mut self,
        mm: &MemMap,
        order: u32,
        watermark: Watermark,
        reserve: u64,
    ) -> Result<Pfn, AllocFailure> {
        if order as usize >= MAX_ORDER {
            return Err(AllocFailure::InvalidOrder { order });
        }
        if !self.watermark_ok_above(order, watermark, reserve) {
            return Err(if self.has_block(order) {
                AllocFailure::BelowWatermark { order }
            } else {
                AllocFailure::NoFreeBlock { order }
            });
        }
        let extra = if self.ty == ZoneType::HighMem {
            PageFlags::HIGHMEM
        } else {
            PageFlags::empty()
        };
        self.free_area
            .alloc_with_flags(mm, order, extra)
            .ok_or(AllocFailure::NoFreeBlock { order })
    }
    /// Free a block allocated from this zone (see [`FreeArea::free`]).
    pub fn free(&mut self, mm: &MemMap, pfn: Pfn, order: u32) -> Result<(), BuddyError> {
        self.free_area.free(mm, pfn, order)
    }
    /// Debug check of the free lists (see [`FreeArea::check`]).
    pub fn check(&self, mm: &MemMap) -> Result<(), alloc::string::String> {
        self.free_area.check(mm)
    }
    /// True if some free block of at least `order` exists.
    fn has_block(&self, order: u32) -> bool {
        (order..MAX_ORDER as u32).any(|o| self.free_area.nr_free(o) > 0)
    }
}

/// Allocate 2^`order` pages for a `gfp` request along its [`zonelist`] (`__alloc_pages`).
///
/// `zones` is indexed by [`ZoneType::index`] (as [`Zone::zones_for`] builds it). The passes:
/// 1. every zone of the list, in order, keeping `pages_low` free;
/// 2. again, keeping `pages_min` free, or only `pages_min / 4` if the request cannot sleep
///    (`GFP_ATOMIC` and other requests without `__GFP_WAIT`: they cannot wait for reclaim, so
///    they may dip into the reserve, as Linux lets atomic allocations do);
/// 3. only with [`GfpFlags::MEMALLOC`] (Linux's `PF_MEMALLOC`, set by the reclaimer itself):
///    again, ignoring watermarks.
///
/// In passes 1 and 2 the watermark adds up along the list, as 2.4/2.5's `__alloc_pages`
/// (`min += z->pages_low`): a zone reached by falling back also keeps free what the zones
/// before it would have kept. A `GFP_HIGHUSER` request that spills from HighMem into Normal
/// thus leaves Normal HighMem's watermark more than a `GFP_KERNEL` request does, a small
/// reserve of low memory that only requests which need it can take.
///
/// This function never reclaims or sleeps: on [`AllocFailure::BelowWatermark`] a caller that
/// may sleep reclaims (and wakes kswapd) and retries.
pub fn alloc_from_zonelist(
    zones: &mut [Zone; 3],
    mm: &MemMap,
    gfp: GfpFlags,
    order: u32,
) -> Result<(Pfn, ZoneType), AllocFailure> {
    if order as usize >= MAX_ORDER {
        return Err(AllocFailure::InvalidOrder { order });
    }
    let list = zonelist(gfp);
    let min = if gfp.can_sleep() {
        Watermark::Min
    } else {
        Watermark::AtomicMin
    };
    let mut passes = [Some(Watermark::Low), Some(min), None];
    if gfp.contains(GfpFlags::MEMALLOC) {
        passes[2] = Some(Watermark::Ignore);
    }
    let mut blocked = false;
    for wm in passes.into_iter().flatten() {
        let mut reserve = 0;
        for &ty in list {
            let zone = &mut zones[ty.index()];
            debug_assert_eq!(zone.ty(), ty, "zones must be indexed by ZoneType::index");
            match zone.alloc_above(mm, order, wm, reserve) {
                Ok(pfn) => return Ok((pfn, ty)),
                Err(AllocFailure::BelowWatermark { .. }) => blocked = true,
                Err(_) => {}
            }
            reserve += wm.pages(&zone.watermarks());
        }
    }
    Err(if blocked {
        AllocFailure::BelowWatermark { order }
    } else {
        AllocFailure::NoFreeBlock { order }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_alloc::gfp::{GFP_ATOMIC, GFP_DMA, GFP_HIGHUSER, GFP_KERNEL};
    use alloc::string::ToString;
    use highpte_arch::size::{GB, MB};
    use highpte_arch::MemoryVariant;

    fn pages(cfg: &Config) -> [u64; 3] {
        zone_layouts(cfg).map(|l| l.pages())
    }

    fn cfg(v: MemoryVariant, ram: u64) -> Config {
        Config::new(v, ram, 1, false).unwrap()
    }

    #[test]
    fn zone_sizes_for_the_matrix() {
        assert_eq!(
            pages(&cfg(MemoryVariant::NoHighmem, 512 * MB)),
            [4096, 126_976, 0]
        );
        assert_eq!(
            pages(&cfg(MemoryVariant::Highmem4g, 4 * GB)),
            [4096, 225_280, 819_200]
        );
        assert_eq!(
            pages(&cfg(MemoryVariant::Highmem4gHighpte, 8 * GB)),
            [4096, 225_280, 819_200]
        );
        assert_eq!(
            pages(&cfg(MemoryVariant::Highmem64g, 32 * GB)),
            [4096, 225_280, 8_159_232]
        );
        assert_eq!(
            pages(&cfg(MemoryVariant::Highmem64gHighpte, 64 * GB)),
            [4096, 225_280, 16_547_840]
        );
        assert_eq!(
            pages(&cfg(MemoryVariant::NoHighmem, 2 * GB)),
            [4096, 225_280, 0]
        );
        // A highmem machine with less than 896 MB has no HighMem.
        assert_eq!(
            pages(&cfg(MemoryVariant::Highmem64g, 512 * MB)),
            [4096, 126_976, 0]
        );
        assert_eq!(pages(&cfg(MemoryVariant::NoHighmem, 16 * MB)), [4096, 0, 0]);

        let l = zone_layouts(&cfg(MemoryVariant::Highmem64g, 32 * GB));
        assert_eq!(
            l[0],
            ZoneLayout {
                start_pfn: Pfn(0),
                end_pfn: Pfn(4096)
            }
        );
        assert_eq!(
            l[1],
            ZoneLayout {
                start_pfn: Pfn(4096),
                end_pfn: Pfn(229_376)
            }
        );
        assert_eq!(
            l[2],
            ZoneLayout {
                start_pfn: Pfn(229_376),
                end_pfn: Pfn(8_388_608)
            }
        );
        let l = zone_layouts(&cfg(MemoryVariant::NoHighmem, 2 * GB));
        assert!(l[2].is_empty());
        assert_eq!(l[2].start_pfn, Pfn(229_376));
        assert_eq!(zone_type_of(&l, Pfn(4095)), Some(ZoneType::Dma));
        assert_eq!(zone_type_of(&l, Pfn(4096)), Some(ZoneType::Normal));
        assert_eq!(zone_type_of(&l, Pfn(229_376)), None);
    }

    #[test]
    fn highmem_limit_trims_highmem_only() {
        let mut c = cfg(MemoryVariant::Highmem64g, 32 * GB);
        c.highmem_limit = Some(GB);
        assert_eq!(pages(&c), [4096, 225_280, 262_144]);
        c.highmem_limit = Some(0);
        assert_eq!(pages(&c), [4096, 225_280, 0]);
        let mut c = cfg(MemoryVariant::Highmem4g, 512 * MB);
        c.highmem_limit = Some(0);
        assert_eq!(pages(&c), [4096, 126_976, 0]);
    }

    #[test]
    fn watermarks_follow_the_formula() {
        assert_eq!(
            Watermarks::for_present_pages(4096),
            Watermarks {
                min: 32,
                low: 64,
                high: 96
            }
        );
        assert_eq!(
            Watermarks::for_present_pages(225_280),
            Watermarks {
                min: 255,
                low: 510,
                high: 765
            }
        );
        assert_eq!(
            Watermarks::for_present_pages(1000),
            Watermarks {
                min: 20,
                low: 40,
                high: 60
            }
        );
        assert_eq!(Watermarks::for_present_pages(0), Watermarks::default());
        assert_eq!(
            Watermark::AtomicMin.pages(&Watermarks::for_present_pages(4096)),
            8
        );
    }

    /// A small machine: DMA [0, 64), Normal [64, 256), HighMem [256, 512), all free.
    fn small_zones(mm: &MemMap) -> [Zone; 3] {
        let mut zones = [
            Zone::new(
                ZoneType::Dma,
                ZoneLayout {
                    start_pfn: Pfn(0),
                    end_pfn: Pfn(64),
                },
            ),
            Zone::new(
                ZoneType::Normal,
                ZoneLayout {
                    start_pfn: Pfn(64),
                    end_pfn: Pfn(256),
                },
            ),
            Zone::new(
                ZoneType::HighMem,
                ZoneLayout {
                    start_pfn: Pfn(256),
                    end_pfn: Pfn(512),
                },
            ),
        ];
        for z in &mut zones {
            let (s, e) = (z.start_pfn(), z.end_pfn());
            assert_eq!(z.free_range_at_boot(mm, s, e), Ok(e.0 - s.0));
            z.set_watermarks(Watermarks {
                min: 8,
                low: 16,
                high: 24,
            });
        }
        zones
    }

    #[test]
    fn zonelist_fallback_and_watermarks() {
        let mm = MemMap::new(512);
        let mut zones = small_zones(&mm);

        // HIGHUSER: HighMem until it reaches low (16 pages left), flagged HIGHMEM.
        for _ in 0..240 {
            let (p, t) = alloc_from_zonelist(&mut zones, &mm, GFP_HIGHUSER, 0).unwrap();
            assert_eq!(t, ZoneType::HighMem);
            assert!(mm.desc(p).test_flag(PageFlags::HIGHMEM));
        }
        assert_eq!(zones[2].free_pages(), 16);
        // Then Normal (first pass, Normal above its low plus HighMem's).
        let (p, t) = alloc_from_zonelist(&mut zones, &mm, GFP_HIGHUSER, 0).unwrap();
        assert_eq!(t, ZoneType::Normal);
        assert!(!mm.desc(p).test_flag(PageFlags::HIGHMEM));
        // Drain Normal to low: 192 - 1 - 175 = 16.
        for _ in 0..175 {
            assert_eq!(
                alloc_from_zonelist(&mut zones, &mm, GFP_KERNEL, 0)
                    .unwrap()
                    .1,
                ZoneType::Normal
            );
        }
        assert_eq!(zones[1].free_pages(), 16);
        // GFP_KERNEL now falls back to DMA (first pass), down to DMA's low plus Normal's:
        // 64 - 32 = 32.
        for _ in 0..32 {
            assert_eq!(
                alloc_from_zonelist(&mut zones, &mm, GFP_KERNEL, 0)
                    .unwrap()
                    .1,
                ZoneType::Dma
            );
        }
        assert_eq!(zones[0].free_pages(), 32);
        // The first pass fails: the second takes Normal down to min, then DMA down to its
        // min plus Normal's (16).
        for _ in 0..8 {
            assert_eq!(
                alloc_from_zonelist(&mut zones, &mm, GFP_KERNEL, 0)
                    .unwrap()
                    .1,
                ZoneType::Normal
            );
        }
        for _ in 0..16 {
            assert_eq!(
                alloc_from_zonelist(&mut zones, &mm, GFP_KERNEL, 0)
                    .unwrap()
                    .1,
                ZoneType::Dma
            );
        }
        assert_eq!(zones[0].free_pages(), 16);
        assert_eq!(
            alloc_from_zonelist(&mut zones, &mm, GFP_KERNEL, 0),
            Err(AllocFailure::BelowWatermark { order: 0 })
        );
        // Atomic may go down to min / 4 = 2 pages (DMA: 2 + Normal's 2).
        for _ in 0..6 {
            assert_eq!(
                alloc_from_zonelist(&mut zones, &mm, GFP_ATOMIC, 0)
                    .unwrap()
                    .1,
                ZoneType::Normal
            );
        }
        for _ in 0..12 {
            assert_eq!(
                alloc_from_zonelist(&mut zones, &mm, GFP_ATOMIC, 0)
                    .unwrap()
                    .1,
                ZoneType::Dma
            );
        }
        assert_eq!(zones[0].free_pages(), 4);
        assert_eq!(
            alloc_from_zonelist(&mut zones, &mm, GFP_ATOMIC, 0),
            Err(AllocFailure::BelowWatermark { order: 0 })
        );
        // HIGHUSER's second pass still had HighMem down to min.
        for _ in 0..8 {
            assert_eq!(
                alloc_from_zonelist(&mut zones, &mm, GFP_HIGHUSER, 0)
                    .unwrap()
                    .1,
                ZoneType::HighMem
            );
        }
        // Memalloc takes the last pages, HighMem first.
        let memalloc = GFP_HIGHUSER | GfpFlags::MEMALLOC;
        for _ in 0..8 {
            assert_eq!(
                alloc_from_zonelist(&mut zones, &mm, memalloc, 0).unwrap().1,
                ZoneType::HighMem
            );
        }
        let memalloc_dma = GFP_DMA | GfpFlags::MEMALLOC;
        for _ in 0..4 {
            assert_eq!(
                alloc_from_zonelist(&mut zones, &mm, memalloc_dma, 0)
                    .unwrap()
                    .1,
                ZoneType::Dma
            );
        }
        assert_eq!(zones[0].free_pages(), 0);
        assert_eq!(
            alloc_from_zonelist(&mut zones, &mm, memalloc_dma, 0),
            Err(AllocFailure::NoFreeBlock { order: 0 })
        );
        assert_eq!(
            alloc_from_zonelist(&mut zones, &mm, GFP_KERNEL, MAX_ORDER as u32),
            Err(AllocFailure::InvalidOrder { order: 11 })
        );
        for z in &zones {
            z.check(&mm).unwrap();
            z.free_area().check_descriptors(&mm).unwrap();
        }
    }

    #[test]
    fn highuser_fallback_leaves_low_memory_a_reserve() {
        let mm = MemMap::new(512);
        let mut zones = small_zones(&mm);
        // HIGHUSER until refused: HighMem down to min (8), Normal down to its min plus
        // HighMem's (16), DMA down to the three mins (24).
        let mut got = [0u64; 3];
        while let Ok((_, t)) = alloc_from_zonelist(&mut zones, &mm, GFP_HIGHUSER, 0) {
            got[t.index()] += 1;
        }
        assert_eq!(zones.each_ref().map(|z| z.free_pages()), [24, 16, 8]);
        assert_eq!(got, [40, 176, 248]);
        // GFP_KERNEL still gets Normal down to its own min, then DMA down to both mins.
        for (n, t) in [(8, ZoneType::Normal), (8, ZoneType::Dma)] {
            for _ in 0..n {
                assert_eq!(
                    alloc_from_zonelist(&mut zones, &mm, GFP_KERNEL, 0)
                        .unwrap()
                        .1,
                    t
                );
            }
        }
        assert_eq!(
            alloc_from_zonelist(&mut zones, &mm, GFP_KERNEL, 0),
            Err(AllocFailure::BelowWatermark { order: 0 })
        );
    }

    #[test]
    fn zone_free_checks_and_returns() {
        let mm = MemMap::new(512);
        let mut zones = small_zones(&mm);
        let boot: [u64; 3] = core::array::from_fn(|i| zones[i].free_pages());
        let (p, t) = alloc_from_zonelist(&mut zones, &mm, GFP_KERNEL, 3).unwrap();
        assert_eq!((p, t), (Pfn(64), ZoneType::Normal));
        assert!(zones[ZoneType::Dma.index()].free(&mm, p, 3).is_err());
        zones[t.index()].free(&mm, p, 3).unwrap();
        assert!(matches!(
            zones[t.index()].free(&mm, p, 3),
            Err(BuddyError::DoubleFree { .. })
        ));
        let now: [u64; 3] = core::array::from_fn(|i| zones[i].free_pages());
        assert_eq!(now, boot);
        assert_eq!(zones[1].managed_pages(), 192);
        assert_eq!(zones[1].present_pages(), 192);
    }

    #[test]
    fn zones_for_a_config() {
        let zones = Zone::zones_for(&cfg(MemoryVariant::Highmem4g, 4 * GB));
        assert_eq!(zones.each_ref().map(|z| z.ty()), ZoneType::ALL);
        assert_eq!(
            zones.each_ref().map(|z| z.present_pages()),
            [4096, 225_280, 819_200]
        );
        assert_eq!(
            zones[2].watermarks(),
            Watermarks {
                min: 255,
                low: 510,
                high: 765
            }
        );
        assert_eq!(zones[0].free_pages(), 0);
        assert_eq!(ZoneType::HighMem.to_string(), "HighMem");
        assert_eq!(
            ZoneType::ALL.map(ZoneType::name),
            ["DMA", "Normal", "HighMem"]
        );
    }
}
