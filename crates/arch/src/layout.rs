//! The i386 kernel virtual address space with the 3G/1G split, as 2.5.5 laid it out.
//!
//! From the top: `FIXADDR_TOP` (0xffffe000) with the fixmap growing down (including one
//! kmap_atomic slot per CPU and [`KmType`], optionally separated by never-mapped guard slots),
//! then the persistent-kmap window at `PKMAP_BASE` (0xfe000000, `LAST_PKMAP` pages), then the
//! vmalloc area ending two pages below it, which starts past an 8 MB gap above the end of the
//! direct map of low memory (`high_memory`). The direct map starts at `PAGE_OFFSET`.

use crate::addr::{VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::km::KmType;

/// Start of the kernel's direct map of low memory (the 3G/1G split).
pub const PAGE_OFFSET: u32 = 0xc000_0000;
/// Most physical memory the kernel maps directly: 1 GB minus the 128 MB vmalloc reserve.
pub const MAXMEM: u64 = 896 << 20;
/// The vmalloc reserve (`__VMALLOC_RESERVE`).
pub const VMALLOC_RESERVE: u64 = 128 << 20;
/// The gap between the direct map and the vmalloc area (`VMALLOC_OFFSET`).
pub const VMALLOC_OFFSET: u32 = 8 << 20;
/// Base of the persistent kmap window in 2.5.5.
pub const PKMAP_BASE: u32 = 0xfe00_0000;
/// The top of the fixmap (`FIXADDR_TOP`); index 0 maps here and indices grow downwards.
pub const FIXADDR_TOP: u32 = 0xffff_e000;
/// Fixmap index of the local APIC (reserved, never used by the simulator's kernel).
pub const FIX_APIC_BASE: u32 = 1;
/// Fixmap index of the first IO-APIC (reserved).
pub const FIX_IO_APIC_BASE_0: u32 = 2;
/// First fixmap index used by kmap_atomic slots (`FIX_KMAP_BEGIN`).
pub const FIX_KMAP_BEGIN: u32 = 3;

/// `fix_to_virt(x) = FIXADDR_TOP - x * PAGE_SIZE`.
pub const fn fix_to_virt(idx: u32) -> VirtAddr {
    VirtAddr::new(FIXADDR_TOP - (idx << PAGE_SHIFT))
}

/// `virt_to_fix`: the fixmap index of an address inside the fixmap.
pub const fn virt_to_fix(va: VirtAddr) -> u32 {
    (FIXADDR_TOP - (va.as_u32() & !(PAGE_SIZE as u32 - 1))) >> PAGE_SHIFT
}

/// The kernel virtual layout of one configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// Bytes of directly mapped low memory (at most [`MAXMEM`]).
    pub lowmem_bytes: u64,
    /// Number of CPUs (kmap_atomic slots are per CPU).
    pub cpus: u32,
    /// True if a never-mapped guard slot separates every kmap_atomic slot (debug builds).
    pub guard_slots: bool,
    /// Entries in the persistent kmap window (1024, or 512 with PAE).
    pub last_pkmap: u32,
}

impl KernelLayout {
    /// The layout for `lowmem_bytes` of low memory, `cpus` CPUs and `last_pkmap` pkmap entries.
    pub const fn new(lowmem_bytes: u64, cpus: u32, last_pkmap: u32, guard_slots: bool) -> Self {
        let lowmem_bytes = if lowmem_bytes > MAXMEM {
            MAXMEM
        } else {
            lowmem_bytes
        };
        Self {
            lowmem_bytes,
            cpus,
            guard_slots,
            last_pkmap,
        }
    }
    /// `PAGE_OFFSET`.
    pub const fn page_offset(&self) -> VirtAddr {
        VirtAddr::new(PAGE_OFFSET)
    }
    /// `high_memory`: the end of the direct map.
    pub const fn high_memory(&self) -> VirtAddr {
        VirtAddr::new(PAGE_OFFSET + self.lowmem_bytes as u32)
    }
    /// `VMALLOC_START`: `high_memory` rounded up past an 8 MB gap.
    pub const fn vmalloc_start(&self) -> VirtAddr {
        let hm = self.high_memory().as_u32();
        VirtAddr::new((hm + 2 * VMALLOC_OFFSET - 1) & !(VMALLOC_OFFSET - 1))
    }
    /// `VMALLOC_END`: two pages below `PKMAP_BASE`.
    pub const fn vmalloc_end(&self) -> VirtAddr {
        VirtAddr::new(PKMAP_BASE - 2 * PAGE_SIZE as u32)
    }
    /// `PKMAP_BASE`.
    pub const fn pkmap_base(&self) -> VirtAddr {
        VirtAddr::new(PKMAP_BASE)
    }
    /// End (exclusive) of the persistent kmap window.
    pub const fn pkmap_end(&self) -> VirtAddr {
        VirtAddr::new(PKMAP_BASE + (self.last_pkmap << PAGE_SHIFT))
    }
    /// Virtual address of persistent kmap entry `nr` (`PKMAP_ADDR(nr)`).
    pub const fn pkmap_addr(&self, nr: u32) -> VirtAddr {
        VirtAddr::new(PKMAP_BASE + (nr << PAGE_SHIFT))
    }
    /// Fixmap indices taken by one CPU's kmap_atomic slots (and guards).
    pub const fn kmap_slots_per_cpu(&self) -> u32 {
        if self.guard_slots {
            2 * KmType::NR
        } else {
            KmType::NR
        }
    }
    /// `FIX_KMAP_END`: the last fixmap index of the kmap_atomic area (a trailing guard when
    /// guards are on).
    pub const fn fix_kmap_end(&self) -> u32 {
        let n = self.kmap_slots_per_cpu() * self.cpus;
        FIX_KMAP_BEGIN + n - 1 + if self.guard_slots { 1 } else { 0 }
    }
    /// `__end_of_fixed_addresses`.
    pub const fn end_of_fixed_addresses(&self) -> u32 {
        self.fix_kmap_end() + 1
    }
    /// `FIXADDR_START`: the lowest address of the fixmap.
    pub const fn fixaddr_start(&self) -> VirtAddr {
        VirtAddr::new(FIXADDR_TOP - (self.end_of_fixed_addresses() << PAGE_SHIFT))
    }
    /// `FIXADDR_TOP`.
    pub const fn fixaddr_top(&self) -> VirtAddr {
        VirtAddr::new(FIXADDR_TOP)
    }
    /// The fixmap index of the kmap_atomic slot of (`cpu`, `ty`): `FIX_KMAP_BEGIN + type +
    /// KM_TYPE_NR * cpu`, each real slot preceded by a guard when guards are on.
    pub const fn kmap_atomic_index(&self, cpu: u32, ty: KmType) -> u32 {
        let idx = ty.index() + KmType::NR * cpu;
        if self.guard_slots {
            FIX_KMAP_BEGIN + 2 * idx + 1
        } else {
            FIX_KMAP_BEGIN + idx
        }
    }
    /// The virtual address of the kmap_atomic slot of (`cpu`, `ty`).
    pub const fn kmap_atomic_addr(&self, cpu: u32, ty: KmType) -> VirtAddr {
        fix_to_virt(self.kmap_atomic_index(cpu, ty))
    }
    /// If `va` is inside the kmap_atomic area, which slot it is: `Some(Ok((cpu, type)))` for a
    /// real slot, `Some(Err(index))` for a guard slot.
    pub const fn kmap_atomic_slot_of(&self, va: VirtAddr) -> Option<Result<(u32, KmType), u32>> {
        if va.as_u32() < self.fixaddr_start().as_u32() || va.as_u32() > FIXADDR_TOP {
            return None;
        }
        let idx = virt_to_fix(va);
        if idx < FIX_KMAP_BEGIN || idx > self.fix_kmap_end() {
            return None;
        }
        let rel = idx - FIX_KMAP_BEGIN;
        let slot = if self.guard_slots {
            if rel.is_multiple_of(2) {
                return Some(Err(idx));
            }
            rel / 2
        } else {
            rel
        };
        let cpu = slot / KmType::NR;
        match KmType::from_index(slot % KmType::NR) {
            Some(t) => Some(Ok((cpu, t))),
            None => None,
        }
    }
    /// True if `va` is in the direct map of low memory.
    pub const fn is_direct_mapped(&self, va: VirtAddr) -> bool {
        va.as_u32() >= PAGE_OFFSET && va.as_u32() < self.high_memory().as_u32()
    }
    /// `__va`: the direct-map address of a low physical address (`None` if not low memory).
    pub const fn phys_to_virt(&self, pa: u64) -> Option<VirtAddr> {
        if pa < self.lowmem_bytes {
            Some(VirtAddr::new(PAGE_OFFSET + pa as u32))
        } else {
            None
        }
    }
    /// `__pa`: the physical address of a direct-map address (`None` outside the direct map).
    pub const fn virt_to_phys(&self, va: VirtAddr) -> Option<u64> {
        if self.is_direct_mapped(va) {
            Some((va.as_u32() - PAGE_OFFSET) as u64)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_lowmem_layout() {
        let l = KernelLayout::new(32 << 30, 4, 512, false);
        assert_eq!(l.lowmem_bytes, 896 << 20);
        assert_eq!(l.high_memory().as_u32(), 0xf800_0000);
        assert_eq!(l.vmalloc_start().as_u32(), 0xf880_0000);
        assert_eq!(l.vmalloc_end().as_u32(), 0xfdff_e000);
        assert_eq!(l.pkmap_end().as_u32(), 0xfe20_0000);
        assert_eq!(
            l.kmap_atomic_addr(0, KmType::BounceRead).as_u32(),
            FIXADDR_TOP - 3 * 4096
        );
        assert_eq!(
            l.kmap_atomic_addr(1, KmType::Pte0).as_u32(),
            FIXADDR_TOP - (3 + 6 + 13) * 4096
        );
        assert_eq!(l.fix_kmap_end(), 3 + 52 - 1);
        assert_eq!(l.fixaddr_start().as_u32(), FIXADDR_TOP - 55 * 4096);
    }

    #[test]
    fn small_lowmem_vmalloc_gap() {
        let l = KernelLayout::new(512 << 20, 1, 1024, false);
        assert_eq!(l.high_memory().as_u32(), 0xe000_0000);
        // rounded up past an 8 MB gap
        assert_eq!(l.vmalloc_start().as_u32(), 0xe080_0000);
        let l = KernelLayout::new((512 << 20) + 4096, 1, 1024, false);
        assert_eq!(l.vmalloc_start().as_u32(), 0xe100_0000);
    }

    #[test]
    fn guard_slots_alternate() {
        let l = KernelLayout::new(896 << 20, 2, 512, true);
        let a = l.kmap_atomic_addr(0, KmType::BounceRead);
        assert_eq!(a, fix_to_virt(FIX_KMAP_BEGIN + 1));
        assert_eq!(l.kmap_atomic_slot_of(a), Some(Ok((0, KmType::BounceRead))));
        assert_eq!(
            l.kmap_atomic_slot_of(fix_to_virt(FIX_KMAP_BEGIN)),
            Some(Err(FIX_KMAP_BEGIN))
        );
        let p = l.kmap_atomic_addr(1, KmType::Pte1);
        assert_eq!(l.kmap_atomic_slot_of(p), Some(Ok((1, KmType::Pte1))));
        assert_eq!(l.fix_kmap_end(), FIX_KMAP_BEGIN + 52);
        for cpu in 0..2 {
            for t in KmType::ALL {
                let va = l.kmap_atomic_addr(cpu, t);
                assert!(va.as_u32() >= l.fixaddr_start().as_u32());
                assert_eq!(l.kmap_atomic_slot_of(va), Some(Ok((cpu, t))));
            }
        }
    }

    #[test]
    fn direct_map_conversions() {
        let l = KernelLayout::new(896 << 20, 1, 1024, false);
        assert_eq!(l.phys_to_virt(0x1000).unwrap().as_u32(), 0xc000_1000);
        assert_eq!(l.phys_to_virt(896 << 20), None);
        assert_eq!(
            l.virt_to_phys(VirtAddr::new(0xf7ff_ffff)),
            Some((896 << 20) - 1)
        );
        assert_eq!(l.virt_to_phys(VirtAddr::new(0xf800_0000)), None);
    }

    #[test]
    fn worst_case_fixmap_fits_above_pkmap() {
        let l = KernelLayout::new(896 << 20, 32, 1024, true);
        assert!(l.fixaddr_start().as_u32() > l.pkmap_end().as_u32());
    }
}
