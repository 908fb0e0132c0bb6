//! The seeded page tables: physical memory access (the direct map and the window), the
//! kernel half, the random user half, and the path of an address by the tables' raw bits.

use super::{Rng, ADDR_PAE, HIGH_POOL, HIGH_TARGET, LOW_POOL, LOW_TARGET, PS};
use crate::boot;
use alloc::vec::Vec;
use core::cell::Cell;

/// Physical memory access: the kernel's direct map for low memory, a large-page window (the
/// last kernel PDE) for the rest.
pub(super) struct Phys {
    pub(super) pae: bool,
    /// Kernel virtual address of the window PDE.
    window_pde: u32,
    window_base: Cell<u64>,
}

impl Phys {
    fn large(&self) -> u64 {
        if self.pae {
            2 << 20
        } else {
            4 << 20
        }
    }
    fn window_va(&self) -> u32 {
        (0x1_0000_0000 - self.large()) as u32
    }
    fn ptr(&self, pa: u64) -> *mut u64 {
        let direct_end = 0x4000_0000 - self.large();
        if pa + 8 <= direct_end {
            return (boot::KERNEL_VMA as u64 + pa) as u32 as *mut u64;
        }
        let base = pa & !(self.large() - 1);
        if base != self.window_base.get() {
            // SAFETY: the window PDE is this module's (the last kernel PDE of its tables),
            // pointing at RAM this module owns; flushed before use.
            unsafe {
                if self.pae {
                    core::ptr::write_volatile(self.window_pde as *mut u64, base | 0x83);
                } else {
                    core::ptr::write_volatile(self.window_pde as *mut u32, base as u32 | 0x83);
                }
                core::arch::asm!("invlpg [{}]", in(reg) self.window_va(), options(nostack));
            }
            self.window_base.set(base);
        }
        (self.window_va() as u64 + (pa - base)) as u32 as *mut u64
    }
    pub(super) fn rd64(&self, pa: u64) -> u64 {
        // SAFETY: `ptr` maps `pa`, RAM owned by this module (8-byte aligned).
        unsafe { core::ptr::read_volatile(self.ptr(pa)) }
    }
    pub(super) fn wr64(&self, pa: u64, v: u64) {
        // SAFETY: as `rd64`.
        unsafe { core::ptr::write_volatile(self.ptr(pa), v) }
    }
    fn rd32(&self, pa: u64) -> u32 {
        // SAFETY: as `rd64`.
        unsafe { core::ptr::read_volatile(self.ptr(pa) as *const u32) }
    }
    fn wr32(&self, pa: u64, v: u32) {
        // SAFETY: as `rd64`.
        unsafe { core::ptr::write_volatile(self.ptr(pa) as *mut u32, v) }
    }
    /// A paging-structure entry of this mode (zero-extended in 2-level mode).
    pub(super) fn entry(&self, pa: u64) -> u64 {
        if self.pae {
            self.rd64(pa)
        } else {
            u64::from(self.rd32(pa))
        }
    }
    pub(super) fn set_entry(&self, pa: u64, v: u64) {
        if self.pae {
            self.wr64(pa, v);
        } else {
            self.wr32(pa, v as u32);
        }
    }
}

/// What a page-table page is, for the final hash.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum PageKind {
    Pdpt,
    /// The 2-level page directory: user entries 0..768 only are hashed.
    Pd2,
    /// The PAE kernel page directory: not hashed.
    KernelPd,
    Table,
}

/// The tables being built, and what the probes need to know of them.
pub(super) struct Build {
    pub(super) rng: Rng,
    pub(super) phys: Phys,
    low_next: u64,
    high_next: u64,
    pub(super) pages: Vec<(u64, PageKind)>,
    /// Probe targets: (va, bytes) of every leaf entry written and every pte page's span.
    pub(super) leaves: Vec<(u32, u32)>,
    pub(super) spans: Vec<(u32, u32)>,
}

impl Build {
    /// Nothing built yet: the PRNG seeded from `seed`, the pools empty.
    pub(super) fn new(pae: bool, seed: u64) -> Self {
        let phys = Phys {
            pae,
            window_pde: 0,
            window_base: Cell::new(u64::MAX),
        };
        Build {
            rng: Rng(seed ^ 0x6d6d_752d_6469_6666),
            phys,
            low_next: LOW_POOL.0,
            high_next: HIGH_POOL.0,
            pages: Vec::new(),
            leaves: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// Build the kernel half (and with PAE the PDPT with random user PDPTEs), switch to the
    /// new tables and point the window at its last large page; returns CR3 and the indices of
    /// the PDPTEs given a page directory (none in 2-level mode).
    pub(super) fn kernel_half(&mut self) -> (u64, Vec<u64>) {
        let cr3;
        let mut pds: Vec<u64> = Vec::new();
        if self.phys.pae {
            let pdpt = self.alloc(false, PageKind::Pdpt);
            let kpd = self.alloc(false, PageKind::KernelPd);
            for i in 0..512u64 {
                // U/S: the ring-3 probe code runs from the image
                self.phys.wr64(kpd + 8 * i, (i << 21) | 0x87);
            }
            self.phys.wr64(pdpt + 24, kpd | 1);
            self.phys.window_pde = boot::KERNEL_VMA + (kpd + 8 * 511) as u32;
            cr3 = pdpt;
            // SAFETY: the new tables map the kernel half as the temporary ones do.
            unsafe { boot::enable_paging(true, cr3 as u32) };
            self.phys.window_base.set(511 << 21);
            for i in 0..3u64 {
                let v = if self.rng.pct(90) {
                    let pd = self.alloc(false, PageKind::Table);
                    pds.push(i);
                    pd | 1 | (self.rng.next() & 0x18)
                } else if self.rng.pct(50) {
                    0
                } else {
                    self.rng.next() & !1 & !(1 << 63)
                };
                self.phys.wr64(pdpt + 8 * i, v);
            }
        } else {
            let pd = self.alloc(false, PageKind::Pd2);
            for i in 768..1024u64 {
                // U/S: the ring-3 probe code runs from the image
                self.phys
                    .wr32(pd + 4 * i, (((i - 768) << 22) | 0x87) as u32);
            }
            self.phys.window_pde = boot::KERNEL_VMA + (pd + 4 * 1023) as u32;
            cr3 = pd;
            // SAFETY: as above.
            unsafe { boot::enable_paging(false, cr3 as u32) };
            self.phys.window_base.set(255 << 22);
        }
        (cr3, pds)
    }

    /// The user half: `nslots` distinct random page-directory slots (in the page directories
    /// of the PDPTEs `pds` with PAE), filled through the window; returns how many were filled.
    pub(super) fn user_half(&mut self, cr3: u64, pds: &[u64], nslots: u64) -> usize {
        let pae = self.phys.pae;
        let mut used: Vec<u32> = Vec::new();
        // at most 9 in 10 of the user half's slots (768 in 2-level mode, 512 per present PDPTE)
        let nslots = nslots.min(if pae { pds.len() as u64 * 512 } else { 768 } * 9 / 10);
        while (used.len() as u64) < nslots {
            let slot = if pae {
                if pds.is_empty() {
                    break;
                }
                let p = pds[self.rng.below(pds.len() as u64) as usize];
                (p as u32) * 512 + self.rng.below(512) as u32
            } else {
                self.rng.below(768) as u32
            };
            if used.contains(&slot) {
                continue;
            }
            used.push(slot);
            let (pde_pa, va) = if pae {
                let pd = self.phys.rd64(cr3 + 8 * u64::from(slot / 512)) & ADDR_PAE;
                (pd + 8 * u64::from(slot % 512), slot << 21)
            } else {
                (cr3 + 4 * u64::from(slot), slot << 22)
            };
            self.pd_slot(pde_pa, va);
        }
        used.len()
    }

    fn alloc(&mut self, high: bool, kind: PageKind) -> u64 {
        let (next, end) = if high {
            (&mut self.high_next, HIGH_POOL.1)
        } else {
            (&mut self.low_next, LOW_POOL.1)
        };
        let pa = *next;
        assert!(pa < end, "mmu-diff: page-table pool exhausted");
        *next += 4096;
        for off in (0..4096).step_by(8) {
            self.phys.wr64(pa + off, 0);
        }
        self.pages.push((pa, kind));
        pa
    }

    /// Random flags of an entry: R/W and U/S (each 3 in 4), PWT, PCD, A, D, G, the available
    /// bits (no P, no PS).
    fn flags(&mut self) -> u64 {
        let r = self.rng.next();
        let rw = if r >> 32 & 3 != 0 { 2 } else { 0 };
        let us = if r >> 34 & 3 != 0 { 4 } else { 0 };
        (r & 0x78) | (r & 0xf00) | rw | us
    }

    /// A reserved bit of a PAE entry (EFER.NXE clear): bit 63 or one of 62:36 (above MAXPHYADDR).
    fn pae_reserved(&mut self) -> u64 {
        if self.rng.pct(40) {
            1 << 63
        } else {
            1 << (36 + self.rng.below(27))
        }
    }

    /// A PTE (or a non-present entry) for a 4 KB page.
    fn pte(&mut self) -> u64 {
        if self.rng.pct(15) {
            // not present: the other bits are the OS's
            return if self.rng.pct(50) {
                0
            } else {
                self.rng.next() & !1 & self.mask()
            };
        }
        let high = self.phys.pae && self.rng.pct(50);
        let frame = self
            .rng
            .addr(if high { HIGH_TARGET } else { LOW_TARGET }, 4096);
        let mut e = frame | 1 | self.flags();
        if self.rng.pct(5) {
            e |= PS; // the PAT bit of a PTE
        }
        if self.phys.pae && self.rng.pct(5) {
            e |= self.pae_reserved();
        }
        e
    }

    fn mask(&self) -> u64 {
        if self.phys.pae {
            u64::MAX
        } else {
            0xffff_ffff
        }
    }

    /// Fill the page-directory slot at `pde_pa` that maps `va` (4 or 2 MB).
    fn pd_slot(&mut self, pde_pa: u64, va: u32) {
        let pae = self.phys.pae;
        let large = self.phys.large();
        let roll = self.rng.below(100);
        if roll < 10 {
            let e = if self.rng.pct(50) {
                0
            } else {
                self.rng.next() & !1 & self.mask()
            };
            self.phys.set_entry(pde_pa, e);
            self.leaves.push((va, large as u32));
        } else if roll < 40 {
            let high = pae && self.rng.pct(50);
            let frame = self
                .rng
                .addr(if high { HIGH_TARGET } else { LOW_TARGET }, large);
            let mut e = frame | 1 | PS | self.flags();
            if self.rng.pct(20) {
                e |= 1 << 12; // PAT
            }
            if self.rng.pct(8) {
                e |= if !pae {
                    1 << 21
                } else if self.rng.pct(50) {
                    1 << (13 + self.rng.below(8))
                } else {
                    self.pae_reserved()
                };
            }
            self.phys.set_entry(pde_pa, e);
            self.leaves.push((va, large as u32));
        } else {
            let high = pae && self.rng.pct(50);
            let pt = self.alloc(high, PageKind::Table);
            let mut e = pt | 1 | (self.flags() & !0x80);
            if pae && self.rng.pct(4) {
                e |= self.pae_reserved();
            }
            self.phys.set_entry(pde_pa, e);
            self.spans.push((va, large as u32));
            let (esz, n) = if pae { (8, 512) } else { (4, 1024) };
            for _ in 0..1 + self.rng.below(4) {
                let start = self.rng.below(n);
                let len = (1 + self.rng.below(16)).min(n - start);
                for i in start..start + len {
                    let v = self.pte();
                    self.phys.set_entry(pt + i * esz, v);
                    self.leaves.push((va + (i as u32) * 4096, 4096));
                }
            }
        }
    }
}

/// The path of `va` by the tables' raw bits: (PDE address, PTE address, intended physical
/// address of a successful access).
pub(super) fn path(phys: &Phys, cr3: u64, va: u32) -> (Option<u64>, Option<u64>, Option<u64>) {
    let va64 = u64::from(va);
    let (pde_pa, pde) = if phys.pae {
        let pdpte = phys.rd64(cr3 + 8 * (va64 >> 30));
        if pdpte & 1 == 0 {
            return (None, None, None);
        }
        let pa = (pdpte & ADDR_PAE) + 8 * ((va64 >> 21) & 511);
        (pa, phys.rd64(pa))
    } else {
        let pa = cr3 + 4 * (va64 >> 22);
        (pa, u64::from(phys.rd32(pa)))
    };
    if pde & 1 == 0 {
        return (Some(pde_pa), None, None);
    }
    if pde & PS != 0 {
        let target = if phys.pae {
            (pde & 0x0000_000f_ffe0_0000) | (va64 & 0x1f_ffff)
        } else {
            (pde & 0xffc0_0000) | (va64 & 0x3f_ffff)
        };
        return (Some(pde_pa), None, Some(target));
    }
    let pte_pa = if phys.pae {
        (pde & ADDR_PAE) + 8 * ((va64 >> 12) & 511)
    } else {
        (pde & 0xffff_f000) + 4 * ((va64 >> 12) & 1023)
    };
    let pte = phys.entry(pte_pa);
    let target = (pte & 1 != 0).then_some((pte & ADDR_PAE) | (va64 & 0xfff));
    (Some(pde_pa), Some(pte_pa), target)
}

pub(super) fn is_target(pa: u64) -> bool {
    let inr = |(lo, hi): (u64, u64)| lo <= pa && pa + 8 <= hi;
    inr(LOW_TARGET) || inr(HIGH_TARGET)
}
