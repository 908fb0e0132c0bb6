//! Zone watermarks and `lowmem_reserve` as Linux 6.1 sets them at boot (6.1 profile).
//!
//! From 6.1's documented behaviour (`Documentation/admin-guide/sysctl/vm.rst`, the
//! `min_free_kbytes`, `watermark_scale_factor` and `lowmem_reserve_ratio` entries) and what its
//! /proc/zoneinfo showed under QEMU with 8 GB (docs/fidelity.md):
//!
//! 1. `min_free_kbytes` starts at `sqrt(16 x low memory in KB)` (clamped to 128 KB..256 MB),
//!    where low memory is what the low zones manage above their high watermarks (all of it
//!    before any watermark is set).
//! 2. Transparent hugepage support raises it when khugepaged starts: two pageblocks per low
//!    zone plus nine more (`MIGRATE_PCPTYPES` squared) per low zone, but at most a twentieth of
//!    low memory above the high watermarks. A pageblock is a huge page: 2 MB with PAE, 4 MB
//!    without. With 8 GB this gives the real kernel's Normal min of about 8,800 pages.
//! 3. From `min_free_kbytes / 4` pages each low zone's `min` is its share by managed pages;
//!    HighMem's `min` is a 1/1024 of it clamped to 32..128 pages. `low` and `high` add, twice,
//!    the larger of a quarter of the zone's share and `watermark_scale_factor` (10 = 0.1%) of
//!    its managed pages.
//! 4. `lowmem_reserve`: a zone keeps `(managed pages of the zones above it, up to the request's
//!    highest zone) / ratio` from requests that could have used those zones; the ratios are
//!    256 for DMA and 32 for Normal. So a request that may use HighMem cannot drain Normal
//!    below min + 1/32 of HighMem.

use super::zone::{Watermarks, Zone, ZoneType};

/// `watermark_scale_factor`'s default: 10 / 10,000 of a zone.
const WATERMARK_SCALE_FACTOR: u64 = 10;
/// `lowmem_reserve_ratio` of DMA, Normal and HighMem.
const LOWMEM_RESERVE_RATIO: [u64; 3] = [256, 32, 0];
/// `MIGRATE_PCPTYPES`: the migrate types with per-CPU lists.
const MIGRATE_PCPTYPES: u64 = 3;

/// Set 6.1's watermarks and `lowmem_reserve` on `zones` (after boot freed their memory).
/// Returns `min_free_kbytes`.
pub fn setup(zones: &mut [Zone; 3], pae: bool) -> u64 {
    for z in zones.iter_mut() {
        z.set_watermarks(Watermarks::default());
    }
    let lowmem_kb = free_buffer_pages(zones) * 4;
    let mut min_free_kbytes = isqrt(lowmem_kb * 16).clamp(128, 262_144);
    set_watermarks(zones, min_free_kbytes);
    // khugepaged's raise
    let pageblock_pages: u64 = if pae { 512 } else { 1024 };
    let low_zones = zones
        .iter()
        .filter(|z| z.ty().is_lowmem() && z.managed_pages() > 0)
        .count() as u64;
    let recommended = pageblock_pages * low_zones * 2
        + pageblock_pages * low_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES;
    let recommended_kb = recommended.min(free_buffer_pages(zones) / 20) * 4;
    if recommended_kb > min_free_kbytes {
        min_free_kbytes = recommended_kb;
        set_watermarks(zones, min_free_kbytes);
    }
    set_lowmem_reserve(zones);
    min_free_kbytes
}

/// Pages the low zones manage above their high watermarks (`nr_free_buffer_pages`).
fn free_buffer_pages(zones: &[Zone; 3]) -> u64 {
    zones
        .iter()
        .filter(|z| z.ty().is_lowmem())
        .map(|z| z.managed_pages().saturating_sub(z.watermarks().high))
        .sum()
}

/// `setup_per_zone_wmarks` for `min_free_kbytes`.
fn set_watermarks(zones: &mut [Zone; 3], min_free_kbytes: u64) {
    let pages_min = min_free_kbytes / 4;
    let lowmem_pages: u64 = zones
        .iter()
        .filter(|z| z.ty().is_lowmem())
        .map(Zone::managed_pages)
        .sum();
    for z in zones.iter_mut() {
        let managed = z.managed_pages();
        let share = (pages_min * managed).checked_div(lowmem_pages).unwrap_or(0);
        let min = if z.ty() == ZoneType::HighMem {
            (managed / 1024).clamp(32, 128)
        } else {
            share
        };
        let step = (share / 4).max(managed * WATERMARK_SCALE_FACTOR / 10_000);
        z.set_watermarks(Watermarks {
            min,
            low: min + step,
            high: min + 2 * step,
        });
    }
}

/// `setup_per_zone_lowmem_reserve` with the default ratios.
fn set_lowmem_reserve(zones: &mut [Zone; 3]) {
    let managed: [u64; 3] = core::array::from_fn(|i| zones[i].managed_pages());
    for (i, z) in zones.iter_mut().enumerate() {
        let mut reserve = [0u64; 3];
        let ratio = LOWMEM_RESERVE_RATIO[i];
        let mut above = 0;
        for j in i + 1..3 {
            above += managed[j];
            if ratio > 0 && managed[i] > 0 {
                reserve[j] = above / ratio;
            }
        }
        z.set_lowmem_reserve(reserve);
    }
}

/// Integer square root (floor), by bisection (no floating point in the kernel).
fn isqrt(n: u64) -> u64 {
    let (mut lo, mut hi) = (0u64, n.min(u64::from(u32::MAX)) + 1);
    // invariant: lo * lo <= n < hi * hi
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if mid * mid <= n {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_alloc::{MemMap, ZoneLayout};
    use highpte_arch::Pfn;

    /// Zones managing the real kernel's pages (8 GB, its /proc/zoneinfo): DMA 3,840,
    /// Normal 177,577, HighMem 1,871,842.
    #[test]
    fn the_8g_machine_gets_the_real_kernels_watermarks() {
        let managed = [3_840u64, 177_577, 1_871_842];
        let mut start = 0;
        let mm = MemMap::new(2_060_000);
        let mut zones: [Zone; 3] = core::array::from_fn(|i| {
            let l = ZoneLayout {
                start_pfn: Pfn(start),
                end_pfn: Pfn(start + managed[i]),
            };
            start += managed[i];
            let mut z = Zone::new(ZoneType::ALL[i], l);
            assert_eq!(
                z.free_range_at_boot(&mm, l.start_pfn, l.end_pfn),
                Ok(managed[i])
            );
            z
        });
        let kb = setup(&mut zones, true);
        // sqrt(16 x 725,668) = 3,407 KB first; the THP raise to a twentieth of low memory
        // above the high watermarks wins
        assert_eq!(kb, 36_028);
        let wm = zones.each_ref().map(|z| z.watermarks());
        // real: DMA min 190 low 237 high 284; Normal 8,799 / 10,998 / 13,197;
        // HighMem 128 / 23,359 / 46,590 (its managed pages were some 350 fewer then)
        assert_eq!(
            wm,
            [
                Watermarks {
                    min: 190,
                    low: 237,
                    high: 284
                },
                Watermarks {
                    min: 8_816,
                    low: 11_020,
                    high: 13_224
                },
                Watermarks {
                    min: 128,
                    low: 23_361,
                    high: 46_594
                },
            ]
        );
        // real protection: DMA [0, 692, 8004], Normal [0, 0, 58495]
        assert_eq!(zones[0].lowmem_reserve(ZoneType::Normal), 693);
        assert_eq!(zones[0].lowmem_reserve(ZoneType::HighMem), 8_005);
        assert_eq!(zones[1].lowmem_reserve(ZoneType::HighMem), 58_495);
        assert_eq!(zones[1].lowmem_reserve(ZoneType::Normal), 0);
        assert_eq!(zones[2].lowmem_reserve(ZoneType::HighMem), 0);
    }

    #[test]
    fn isqrt_is_the_floor() {
        assert_eq!(
            [0, 1, 3, 4, 15, 16, 11_610_688].map(isqrt),
            [0, 1, 1, 2, 3, 4, 3_407]
        );
    }
}
