//! The hardware page walk of 32-bit x86, as Intel SDM vol. 3 ch. 4 describes it.
//!
//! Two modes: 32-bit paging (SDM 4.3: page directory, page table, 4 MB pages with CR4.PSE) and
//! PAE paging (SDM 4.4: four PDPTE registers loaded on a CR3 write, page directory with 2 MB
//! pages, page table). [`translate`] is what a CPU does on every memory access: consult the
//! TLB, walk the tables in simulated RAM on a miss, check the access rights combined over all
//! levels (SDM 4.6), set the accessed and dirty flags (SDM 4.8), fill the TLB, or raise a page
//! fault with the exact error code (SDM 4.7). [`walk`] is the same walk without side effects,
//! for debugging and invariant checks.
//!
//! The walk is generic over [`PagingMode`] and monomorphised; [`translate`] picks the mode once
//! from `regs.pae`.

use highpte_arch::mode::Level;
use highpte_arch::PAGE_SHIFT;
use highpte_arch::{Entry, EntryFlags, Pae, PageFaultErrorCode, PagingMode, TwoLevel, VirtAddr};

use crate::phys::{PhysMem, PhysMemError};
use crate::tlb::{fast, Tlb, TlbEntry};

/// The paging-related control registers of one CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuRegs {
    /// CR0.PG: paging enabled. Without it linear addresses are physical.
    pub paging: bool,
    /// CR0.WP: supervisor writes honour R/W (SDM 4.6).
    pub wp: bool,
    /// CR4.PAE: PAE paging instead of 32-bit paging.
    pub pae: bool,
    /// CR4.PSE: 4 MB pages in 32-bit paging (PAE always allows 2 MB pages).
    pub pse: bool,
    /// CR4.PGE: global pages survive CR3 loads.
    pub pge: bool,
    /// IA32_EFER.NXE: bit 63 of PAE entries is XD instead of reserved.
    pub nxe: bool,
    /// CR3: page-directory base (32-bit paging) or PDPT base (PAE, 32-byte aligned).
    pub cr3: u64,
    /// The PDPTE registers (PAE only), loaded from the PDPT by [`load_cr3`] (SDM 4.4.1).
    pub pdptes: [u64; 4],
}

/// Why a control-register load was refused (a #GP on real hardware).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MmuError {
    /// CR3 is a 32-bit register in these modes; the value given is wider.
    Cr3TooWide {
        /// The value given.
        cr3: u64,
    },
    /// A present PDPTE sets a reserved bit (SDM 4.4.1: #GP(0), not a page fault).
    ReservedPdpte {
        /// Which of the four PDPTEs.
        index: usize,
        /// Its raw value.
        value: u64,
    },
    /// The PDPT lies (partly) beyond the end of RAM.
    Phys(PhysMemError),
}

impl core::fmt::Display for MmuError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MmuError::Cr3TooWide { cr3 } => write!(f, "CR3 value {cr3:#x} does not fit in 32 bits"),
            MmuError::ReservedPdpte { index, value } => write!(
                f,
                "PDPTE {index} = {value:#018x} is present with reserved bits set (#GP on CR3 load)"
            ),
            MmuError::Phys(e) => write!(f, "PDPT unreadable: {e}"),
        }
    }
}

impl std::error::Error for MmuError {}

impl From<PhysMemError> for MmuError {
    fn from(e: PhysMemError) -> Self {
        MmuError::Phys(e)
    }
}

/// Load CR3. With `regs.pae` set it also loads the four PDPTE registers from the 32-byte
/// aligned PDPT at `cr3 & 0xffff_ffe0` and refuses present PDPTEs with reserved bits (SDM
/// 4.4.1); on error `regs` is unchanged.
///
/// This does not touch any TLB: flushing the non-global entries, as the hardware does on a CR3
/// write (SDM 4.10.4.1), is the caller's job ([`Tlb::flush_nonglobal`]).
pub fn load_cr3(phys: &PhysMem, regs: &mut MmuRegs, cr3: u64) -> Result<(), MmuError> {
    if cr3 >> 32 != 0 {
        return Err(MmuError::Cr3TooWide { cr3 });
    }
    if regs.pae {
        let base = cr3 & 0xffff_ffe0;
        let mut pdptes = [0u64; 4];
        let rsvd = Pae::reserved_mask(Level::Pdpte, false, regs.nxe);
        for (index, slot) in pdptes.iter_mut().enumerate() {
            let value = phys.read_u64(base + 8 * index as u64)?;
            if value & EntryFlags::PRESENT.bits() != 0 && value & rsvd != 0 {
                return Err(MmuError::ReservedPdpte { index, value });
            }
            *slot = value;
        }
        regs.pdptes = pdptes;
    }
    regs.cr3 = cr3;
    Ok(())
}

/// The kind of memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Fetch,
}

/// A page-fault exception (#PF): the faulting linear address (CR2) and the error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault {
    /// The linear address that faulted (what CR2 would hold).
    pub addr: VirtAddr,
    /// The error code pushed by the processor (SDM 4.7).
    pub code: PageFaultErrorCode,
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address.
    pub pa: u64,
    /// True if the TLB supplied the translation with no walk. A write through a cached entry
    /// whose dirty flag is clear re-walks to set D and reports `false`.
    pub tlb_hit: bool,
    /// Paging-structure entries read from memory by the walk (PDPTEs come from registers and
    /// are not counted): 0 on a hit, 1 for a large page, 2 for a 4 KB page.
    pub levels_walked: u8,
}

/// One paging-structure entry on the path of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkStep {
    /// Which structure the entry belongs to.
    pub level: Level,
    /// Physical address of the entry, or `None` for a PDPTE (read from its register).
    pub entry_pa: Option<u64>,
    /// The entry as read (a 2-level entry is zero-extended).
    pub entry: Entry,
}

/// How a walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkOutcome {
    /// CR0.PG is clear: the linear address is the physical address.
    PagingDisabled,
    /// A valid translation (access rights not yet checked).
    Mapped {
        /// The physical address.
        pa: u64,
        /// log2 of the page size: 12, 21 or 22.
        page_shift: u32,
    },
    /// The entry at this level has P clear.
    NotPresent(Level),
    /// The entry at this level sets a reserved bit.
    Reserved(Level),
}

/// The result of a side-effect-free walk: every entry on the path, the outcome, and the access
/// rights combined over the levels walked (SDM 4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkResult {
    steps: [WalkStep; 3],
    nsteps: u8,
    /// How the walk ended.
    pub outcome: WalkOutcome,
    /// R/W set at every level (PDPTEs have no R/W).
    pub writable: bool,
    /// U/S set at every level (PDPTEs have no U/S).
    pub user: bool,
    /// XD set at some level, with PAE and EFER.NXE.
    pub nx: bool,
}

impl WalkResult {
    const EMPTY_STEP: WalkStep = WalkStep {
        level: Level::Pte,
        entry_pa: None,
        entry: Entry::NONE,
    };

    fn new(outcome: WalkOutcome) -> Self {
        WalkResult {
            steps: [Self::EMPTY_STEP; 3],
            nsteps: 0,
            outcome,
            writable: true,
            user: true,
            nx: false,
        }
    }

    #[inline(always)]
    fn push(&mut self, level: Level, entry_pa: Option<u64>, entry: Entry) {
        if let Some(slot) = self.steps.get_mut(self.nsteps as usize) {
            *slot = WalkStep {
                level,
                entry_pa,
                entry,
            };
            self.nsteps += 1;
        }
    }

    /// The entries on the path, top level first; the last one is the leaf or the entry that
    /// stopped the walk.
    pub fn steps(&self) -> &[WalkStep] {
        &self.steps[..self.nsteps as usize]
    }

    /// The entry that maps the page (a PTE or a large-page PDE), if the walk succeeded.
    pub fn leaf(&self) -> Option<&WalkStep> {
        match self.outcome {
            WalkOutcome::Mapped { .. } => self.steps().last(),
            _ => None,
        }
    }
}

/// Read a paging-structure entry of mode `M` at `pa`. RAM that does not exist reads as all
/// ones, like a master-aborted bus read on a PC: such an entry is "present" with reserved bits
/// (PAE) or a large page with reserved bits (32-bit paging with PSE), so the walk faults or
/// translates to an address beyond RAM that the data access then refuses.
#[inline(always)]
fn read_entry<M: PagingMode>(phys: &PhysMem, pa: u64) -> Entry {
    if M::PAE {
        Entry(phys.read_u64(pa).unwrap_or(u64::MAX))
    } else {
        Entry(u64::from(phys.read_u32(pa).unwrap_or(u32::MAX)))
    }
}

/// Set `bits` (A, D: all in the low half of either entry width) in the entry at `pa`, by a
/// read-modify-write of its low 32 bits, writing only if some bit was clear. Writes beyond RAM
/// are dropped, as on a bus.
#[inline]
fn set_entry_bits(phys: &PhysMem, pa: u64, bits: u32) {
    if let Ok(v) = phys.read_u32(pa) {
        if v & bits != bits {
            let _ = phys.write_u32(pa, v | bits);
        }
    }
}

/// The walk shared by [`walk`] and [`translate`]: reads entries, never writes.
#[inline(always)]
fn walk_inner<M: PagingMode>(phys: &PhysMem, regs: &MmuRegs, va: VirtAddr) -> WalkResult {
    if !regs.paging {
        return WalkResult::new(WalkOutcome::PagingDisabled);
    }
    let mut r = WalkResult::new(WalkOutcome::NotPresent(Level::Pde));
    let nxe = M::PAE && regs.nxe;
    let entry_bytes = u64::from(M::ENTRY_BYTES);

    // The page directory: from a PDPTE register with PAE (SDM 4.4.2), from CR3 otherwise
    // (SDM 4.3).
    let (pd_base, pd_index) = if M::PAE {
        let pdpte = Entry(regs.pdptes[(M::pgd_index(va) & 3) as usize]);
        r.push(Level::Pdpte, None, pdpte);
        if !pdpte.is_present() {
            r.outcome = WalkOutcome::NotPresent(Level::Pdpte);
            return r;
        }
        // load_cr3 already refused these; checked again so a hand-set register is reported.
        if pdpte.bits() & M::reserved_mask(Level::Pdpte, false, regs.nxe) != 0 {
            r.outcome = WalkOutcome::Reserved(Level::Pdpte);
            return r;
        }
        (pdpte.bits() & Entry::ADDR_MASK_4K, M::pmd_index(va))
    } else {
        (regs.cr3 & 0xffff_f000, M::pgd_index(va))
    };

    let pde_pa = pd_base + u64::from(pd_index) * entry_bytes;
    let pde = read_entry::<M>(phys, pde_pa);
    r.push(Level::Pde, Some(pde_pa), pde);
    if !pde.is_present() {
        r.outcome = WalkOutcome::NotPresent(Level::Pde);
        return r;
    }
    // PS maps a large page with PAE always, in 32-bit paging only with CR4.PSE (SDM 4.3).
    let large = pde.has(EntryFlags::PS) && (M::PAE || regs.pse);
    if pde.bits() & M::reserved_mask(Level::Pde, large, regs.nxe) != 0 {
        r.outcome = WalkOutcome::Reserved(Level::Pde);
        return r;
    }
    r.writable = pde.has(EntryFlags::RW);
    r.user = pde.has(EntryFlags::USER);
    r.nx = nxe && pde.has(EntryFlags::NX);
    if large {
        let offset = u64::from(va.as_u32()) & (u64::from(M::LARGE_PAGE_SIZE) - 1);
        r.outcome = WalkOutcome::Mapped {
            pa: M::large_page_base(pde) | offset,
            page_shift: M::PMD_SHIFT,
        };
        return r;
    }

    let pte_pa = (pde.bits() & Entry::ADDR_MASK_4K) + u64::from(M::pte_index(va)) * entry_bytes;
    let pte = read_entry::<M>(phys, pte_pa);
    r.push(Level::Pte, Some(pte_pa), pte);
    if !pte.is_present() {
        r.outcome = WalkOutcome::NotPresent(Level::Pte);
        return r;
    }
    if pte.bits() & M::reserved_mask(Level::Pte, false, regs.nxe) != 0 {
        r.outcome = WalkOutcome::Reserved(Level::Pte);
        return r;
    }
    r.writable &= pte.has(EntryFlags::RW);
    r.user &= pte.has(EntryFlags::USER);
    r.nx |= nxe && pte.has(EntryFlags::NX);
    r.outcome = WalkOutcome::Mapped {
        pa: (pte.bits() & Entry::ADDR_MASK_4K) | u64::from(va.page_offset()),
        page_shift: PAGE_SHIFT,
    };
    r
}

/// Walk the page tables for `va` as the hardware would, without touching the TLB or the
/// accessed/dirty flags, and report every entry on the path. `regs.pae` should match `M`.
pub fn walk<M: PagingMode>(phys: &PhysMem, regs: &MmuRegs, va: VirtAddr) -> WalkResult {
    walk_inner::<M>(phys, regs, va)
}

/// True if an access is allowed by the combined rights (SDM 4.6; no SMEP/SMAP, as in 2002).
#[inline(always)]
fn access_allowed(
    regs: &MmuRegs,
    access: Access,
    user: bool,
    writable: bool,
    user_ok: bool,
    nx: bool,
) -> bool {
    if user && !user_ok {
        return false;
    }
    match access {
        Access::Read => true,
        // Supervisor writes ignore R/W unless CR0.WP is set.
        Access::Write => writable || (!user && !regs.wp),
        Access::Fetch => !nx,
    }
}

/// The W/R, U/S and I/D bits of the error code, which describe the access (SDM 4.7). I/D is
/// set only for fetches with PAE and EFER.NXE (no SMEP in this machine).
#[inline(always)]
fn access_code<M: PagingMode>(regs: &MmuRegs, access: Access, user: bool) -> PageFaultErrorCode {
    let mut code = PageFaultErrorCode::empty();
    if access == Access::Write {
        code |= PageFaultErrorCode::WRITE;
    }
    if user {
        code |= PageFaultErrorCode::USER;
    }
    if access == Access::Fetch && M::PAE && regs.nxe {
        code |= PageFaultErrorCode::INSTR;
    }
    code
}

/// The [`fast`] bit of an access that a TLB hit completes with no further work; 0 (never
/// fast) for instruction fetches, which check NX.
#[inline(always)]
fn fast_need(access: Access, user: bool) -> u8 {
    match (access, user) {
        (Access::Read, true) => fast::USER_READ,
        (Access::Write, true) => fast::USER_WRITE,
        (Access::Read, false) => fast::KERNEL_READ,
        (Access::Write, false) => fast::KERNEL_WRITE,
        (Access::Fetch, _) => 0,
    }
}

/// The host-side fast path of [`translate`]: the physical address when the TLB's fast path
/// (see [`crate::tlb`]) completes the access with no further work, `None` otherwise. A `Some`
/// is exactly what [`translate`] would return (a TLB hit, counted as one), so a caller may try
/// this first and fall back to [`translate`] or [`translate_in`] on `None`.
#[inline(always)]
pub fn translate_fast(
    regs: &MmuRegs,
    tlb: &mut Tlb,
    va: VirtAddr,
    access: Access,
    user: bool,
) -> Option<u64> {
    if !regs.paging {
        return None;
    }
    let pfn = tlb.lookup_fast(va.vpn(), fast_need(access, user))?;
    Some((pfn << PAGE_SHIFT) | u64::from(va.page_offset()))
}

/// Translate `va` for an `access` in user (CPL 3) or supervisor mode, as the CPU does: see the
/// module docs. Picks the paging mode from `regs.pae` once and runs the monomorphised walk.
///
/// On a page fault every TLB entry for `va` is dropped (SDM 4.10.4.2), so retrying after the
/// handler fixed the tables walks again.
#[inline]
pub fn translate(
    phys: &PhysMem,
    regs: &MmuRegs,
    tlb: &mut Tlb,
    va: VirtAddr,
    access: Access,
    user: bool,
) -> Result<Translation, PageFault> {
    if regs.pae {
        translate_in::<Pae>(phys, regs, tlb, va, access, user)
    } else {
        translate_in::<TwoLevel>(phys, regs, tlb, va, access, user)
    }
}

/// [`translate`] for a paging mode known at compile time; `regs.pae` must equal `M::PAE`.
#[inline(always)]
pub fn translate_in<M: PagingMode>(
    phys: &PhysMem,
    regs: &MmuRegs,
    tlb: &mut Tlb,
    va: VirtAddr,
    access: Access,
    user: bool,
) -> Result<Translation, PageFault> {
    debug_assert_eq!(
        regs.pae,
        M::PAE,
        "translate_in::<{}> with CR4.PAE = {}",
        M::NAME,
        regs.pae
    );
    if let Some(pa) = translate_fast(regs, tlb, va, access, user) {
        return Ok(Translation {
            pa,
            tlb_hit: true,
            levels_walked: 0,
        });
    }
    if !regs.paging {
        return Ok(Translation {
            pa: va.as_u64(),
            tlb_hit: false,
            levels_walked: 0,
        });
    }
    let vpn = va.vpn();
    if let Some(e) = tlb.lookup(vpn) {
        // The TLB's cached rights are enforced, even if the tables changed since (SDM 4.6).
        if !access_allowed(regs, access, user, e.writable, e.user, e.nx) {
            tlb.invalidate(vpn);
            let code = access_code::<M>(regs, access, user) | PageFaultErrorCode::PRESENT;
            return Err(PageFault { addr: va, code });
        }
        if access != Access::Write || e.dirty {
            return Ok(Translation {
                pa: (e.pfn << PAGE_SHIFT) | u64::from(va.page_offset()),
                tlb_hit: true,
                levels_walked: 0,
            });
        }
        // A write through an entry cached clean: walk again to set D in memory (SDM 4.8).
    }
    translate_miss::<M>(phys, regs, tlb, va, access, user)
}

/// The TLB-miss half of [`translate_in`]: walk, check, set A/D, fill the TLB. Kept out of
/// line so the hit path stays small.
#[inline(never)]
fn translate_miss<M: PagingMode>(
    phys: &PhysMem,
    regs: &MmuRegs,
    tlb: &mut Tlb,
    va: VirtAddr,
    access: Access,
    user: bool,
) -> Result<Translation, PageFault> {
    let vpn = va.vpn();
    let w = walk_inner::<M>(phys, regs, va);
    let fault = |tlb: &mut Tlb, extra: PageFaultErrorCode| {
        tlb.invalidate(vpn);
        Err(PageFault {
            addr: va,
            code: access_code::<M>(regs, access, user) | extra,
        })
    };
    let (pa, page_shift) = match w.outcome {
        WalkOutcome::Mapped { pa, page_shift } => (pa, page_shift),
        WalkOutcome::PagingDisabled => {
            return Ok(Translation {
                pa: va.as_u64(),
                tlb_hit: false,
                levels_walked: 0,
            })
        }
        WalkOutcome::NotPresent(_) => return fault(tlb, PageFaultErrorCode::empty()),
        WalkOutcome::Reserved(_) => {
            return fault(tlb, PageFaultErrorCode::PRESENT | PageFaultErrorCode::RSVD)
        }
    };
    if !access_allowed(regs, access, user, w.writable, w.user, w.nx) {
        return fault(tlb, PageFaultErrorCode::PRESENT);
    }

    // A in every PDE/PTE used, D in the leaf on a write; only bits that are clear are written
    // (SDM 4.8). PDPTEs have no A flag in PAE paging. This machine sets them only for accesses
    // that succeed.
    let steps = w.steps();
    let mut levels_walked = 0u8;
    let mut leaf = Entry::NONE;
    for (i, step) in steps.iter().enumerate() {
        let Some(entry_pa) = step.entry_pa else {
            continue;
        };
        levels_walked += 1;
        let is_leaf = i + 1 == steps.len();
        let mut want = EntryFlags::ACCESSED.bits() as u32;
        if is_leaf {
            leaf = step.entry;
            if access == Access::Write {
                want |= EntryFlags::DIRTY.bits() as u32;
            }
        }
        if step.entry.low() & want != want {
            set_entry_bits(phys, entry_pa, want);
        }
    }

    let pfn = pa >> PAGE_SHIFT;
    let entry = TlbEntry {
        vpn,
        pfn,
        writable: w.writable,
        user: w.user,
        nx: w.nx,
        global: regs.pge && leaf.has(EntryFlags::GLOBAL),
        dirty: access == Access::Write || leaf.has(EntryFlags::DIRTY),
        // A TLB built for another large-page size caches the 4 KB piece (SDM 4.10.2.3 lets
        // the processor splinter large pages).
        large: page_shift != PAGE_SHIFT && page_shift == tlb.large_shift(),
    };
    tlb.insert(entry);
    Ok(Translation {
        pa,
        tlb_hit: false,
        levels_walked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use highpte_arch::Pfn;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const P: u64 = 0x001;
    const RW: u64 = 0x002;
    const US: u64 = 0x004;
    const A: u64 = 0x020;
    const D: u64 = 0x040;
    const PS: u64 = 0x080;
    const G: u64 = 0x100;
    const NX: u64 = 1 << 63;

    // 2-level layout: page directory at 0x1000, page table at 0x2000 (covers va 0x0040_0000).
    const PD2: u64 = 0x1000;
    const PT2: u64 = 0x2000;
    // PAE layout: PDPT at 0x1000, page directory at 0x2000 (covers 1 GB at 0x4000_0000), page
    // table at 0x3000 (covers 2 MB at 0x4060_0000).
    const PDPT: u64 = 0x1000;
    const PDP: u64 = 0x2000;
    const PTP: u64 = 0x3000;

    /// 2-level machine: va 0x0040_3000 -> frame 0x123 via a page table with the given PTE
    /// flags; a 4 MB page at va 0x0080_0000 -> pa 0x0200_0000.
    fn two_level(pte_flags: u64) -> (PhysMem, MmuRegs, Tlb) {
        let m = PhysMem::new(64 << 20).unwrap();
        m.write_u32(PD2 + 4, (PT2 | P | RW | US) as u32).unwrap();
        m.write_u32(PT2 + 3 * 4, (0x123_000 | pte_flags) as u32)
            .unwrap();
        m.write_u32(PD2 + 2 * 4, (0x0200_0000 | PS | P | RW | US) as u32)
            .unwrap();
        let mut regs = MmuRegs {
            paging: true,
            wp: true,
            pse: true,
            ..MmuRegs::default()
        };
        load_cr3(&m, &mut regs, PD2).unwrap();
        (m, regs, Tlb::new(22))
    }

    /// PAE machine: va 0x4060_5000 -> pa 0x9_8765_0000 (above 4 GB) with the given PTE flags; a
    /// 2 MB page at va 0x4080_0000 -> pa 0x1_0000_0000.
    fn pae(pte_flags: u64, nxe: bool) -> (PhysMem, MmuRegs, Tlb) {
        let m = PhysMem::new(64 << 20).unwrap();
        m.write_u64(PDPT + 8, PDP | P).unwrap();
        m.write_u64(PDP + 3 * 8, PTP | P | RW | US).unwrap();
        m.write_u64(PTP + 5 * 8, 0x9_8765_0000 | pte_flags).unwrap();
        m.write_u64(PDP + 4 * 8, 0x1_0000_0000 | PS | P | RW | US)
            .unwrap();
        let mut regs = MmuRegs {
            paging: true,
            wp: true,
            pae: true,
            nxe,
            ..MmuRegs::default()
        };
        load_cr3(&m, &mut regs, PDPT).unwrap();
        (m, regs, Tlb::new(21))
    }

    fn tr(
        m: &PhysMem,
        r: &MmuRegs,
        t: &mut Tlb,
        va: u32,
        a: Access,
        user: bool,
    ) -> Result<Translation, PageFault> {
        translate(m, r, t, VirtAddr::new(va), a, user)
    }

    fn err(m: &PhysMem, r: &MmuRegs, t: &mut Tlb, va: u32, a: Access, user: bool) -> u32 {
        match tr(m, r, t, va, a, user) {
            Err(f) => {
                assert_eq!(f.addr, VirtAddr::new(va));
                f.code.bits()
            }
            Ok(x) => panic!("expected a fault at {va:#x}, got {x:?}"),
        }
    }

    fn pa(m: &PhysMem, r: &MmuRegs, t: &mut Tlb, va: u32, a: Access, user: bool) -> u64 {
        match tr(m, r, t, va, a, user) {
            Ok(x) => x.pa,
            Err(f) => panic!("unexpected fault {f:?}"),
        }
    }

    #[test]
    fn paging_off_is_identity() {
        let m = PhysMem::new(1 << 20).unwrap();
        let mut t = Tlb::new(22);
        let r = MmuRegs::default();
        let x = tr(&m, &r, &mut t, 0xdead_beef, Access::Write, true).unwrap();
        assert_eq!(
            x,
            Translation {
                pa: 0xdead_beef,
                tlb_hit: false,
                levels_walked: 0
            }
        );
        assert_eq!(
            walk::<TwoLevel>(&m, &r, VirtAddr::new(5)).outcome,
            WalkOutcome::PagingDisabled
        );
    }

    #[test]
    fn two_level_4k_and_4m() {
        let (m, r, mut t) = two_level(P | RW | US);
        let x = tr(&m, &r, &mut t, 0x0040_3abc, Access::Read, true).unwrap();
        assert_eq!(
            x,
            Translation {
                pa: 0x123_abc,
                tlb_hit: false,
                levels_walked: 2
            }
        );
        let x = tr(&m, &r, &mut t, 0x0040_3ff8, Access::Read, true).unwrap();
        assert_eq!(
            x,
            Translation {
                pa: 0x123_ff8,
                tlb_hit: true,
                levels_walked: 0
            }
        );
        let x = tr(&m, &r, &mut t, 0x00b1_2345, Access::Read, false).unwrap();
        assert_eq!(
            x,
            Translation {
                pa: 0x0231_2345,
                tlb_hit: false,
                levels_walked: 1
            }
        );
        let x = tr(&m, &r, &mut t, 0x0080_0007, Access::Read, false).unwrap();
        assert_eq!(
            x,
            Translation {
                pa: 0x0200_0007,
                tlb_hit: true,
                levels_walked: 0
            }
        );
        assert!(t
            .entries()
            .any(|e| e.large && e.vpn == 0x800 && e.pfn == 0x2000));
        // Without CR4.PSE the PS bit is ignored: the PDE points at a page table at 0x0200_0000
        // whose entries are zero (not present).
        let r2 = MmuRegs { pse: false, ..r };
        let mut t2 = Tlb::new(22);
        assert_eq!(err(&m, &r2, &mut t2, 0x0080_0000, Access::Read, false), 0x0);
        let w = walk::<TwoLevel>(&m, &r2, VirtAddr::new(0x0080_0000));
        assert_eq!(w.outcome, WalkOutcome::NotPresent(Level::Pte));
        assert_eq!(w.steps()[1].entry_pa, Some(0x0200_0000));
    }

    #[test]
    fn pae_4k_and_2m() {
        let (m, r, mut t) = pae(P | RW | US, true);
        assert_eq!(r.pdptes, [0, PDP | P, 0, 0]);
        let x = tr(&m, &r, &mut t, 0x4060_5123, Access::Write, true).unwrap();
        assert_eq!(
            x,
            Translation {
                pa: 0x9_8765_0123,
                tlb_hit: false,
                levels_walked: 2
            }
        );
        let x = tr(&m, &r, &mut t, 0x409f_ffff, Access::Read, true).unwrap();
        assert_eq!(
            x,
            Translation {
                pa: 0x1_001f_ffff,
                tlb_hit: false,
                levels_walked: 1
            }
        );
        let x = tr(&m, &r, &mut t, 0x4080_1000, Access::Read, true).unwrap();
        assert_eq!(
            x,
            Translation {
                pa: 0x1_0000_1000,
                tlb_hit: true,
                levels_walked: 0
            }
        );
        // PDPTE 0 not present: supervisor read -> 0
        assert_eq!(err(&m, &r, &mut t, 0x0000_1000, Access::Read, false), 0x0);
        let w = walk::<Pae>(&m, &r, VirtAddr::new(0x4060_5123));
        assert_eq!(
            w.outcome,
            WalkOutcome::Mapped {
                pa: 0x9_8765_0123,
                page_shift: 12
            }
        );
        let levels: Vec<_> = w.steps().iter().map(|s| (s.level, s.entry_pa)).collect();
        assert_eq!(
            levels,
            vec![
                (Level::Pdpte, None),
                (Level::Pde, Some(PDP + 24)),
                (Level::Pte, Some(PTP + 40))
            ]
        );
        assert_eq!(w.leaf().map(|s| s.entry.pfn()), Some(Pfn(0x98_7650)));
    }

    #[test]
    fn not_present_codes() {
        for (m, r, mut t, va) in [
            {
                let (m, r, t) = two_level(RW | US);
                (m, r, t, 0x0040_3000)
            },
            {
                let (m, r, t) = pae(RW | US, true);
                (m, r, t, 0x4060_5000)
            },
        ] {
            assert_eq!(err(&m, &r, &mut t, va, Access::Read, true), 0x4);
            assert_eq!(err(&m, &r, &mut t, va, Access::Write, true), 0x6);
            assert_eq!(err(&m, &r, &mut t, va, Access::Read, false), 0x0);
            assert_eq!(err(&m, &r, &mut t, va, Access::Write, false), 0x2);
            // not-present PDE too
            assert_eq!(
                err(&m, &r, &mut t, va + 0x0100_0000, Access::Read, true),
                0x4
            );
            // nothing cached, no A bit set anywhere
            assert!(t.is_empty());
        }
        let (m, _, _) = pae(RW | US, true);
        assert_eq!(m.read_u64(PDP + 24).unwrap() & A, 0);
    }

    #[test]
    fn protection_codes() {
        for (m, r, mut t, va) in [
            {
                let (m, r, t) = two_level(P | US);
                (m, r, t, 0x0040_3000u32)
            },
            {
                let (m, r, t) = pae(P | US, true);
                (m, r, t, 0x4060_5000u32)
            },
        ] {
            // write to read-only: user 0x7, supervisor with WP=1 0x3, supervisor with WP=0 ok
            assert_eq!(err(&m, &r, &mut t, va, Access::Write, true), 0x7);
            assert_eq!(err(&m, &r, &mut t, va, Access::Write, false), 0x3);
            let no_wp = MmuRegs { wp: false, ..r };
            assert!(tr(&m, &no_wp, &mut t, va, Access::Write, false).is_ok());
            // reads fine for both
            assert!(tr(&m, &r, &mut t, va, Access::Read, true).is_ok());
        }
        // user access to a supervisor page: 0x5 (read), 0x7 (write); supervisor is fine
        let (m, r, mut t) = two_level(P | RW);
        assert_eq!(err(&m, &r, &mut t, 0x0040_3000, Access::Read, true), 0x5);
        assert_eq!(err(&m, &r, &mut t, 0x0040_3000, Access::Write, true), 0x7);
        assert_eq!(
            pa(&m, &r, &mut t, 0x0040_3000, Access::Write, false),
            0x123_000
        );
        // the U/S of the PDE counts too (combined over levels)
        let (m, r, mut t) = pae(P | RW | US, true);
        m.write_u64(PDP + 3 * 8, PTP | P | RW).unwrap();
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Read, true), 0x5);
        // and the R/W of the PDE
        m.write_u64(PDP + 3 * 8, PTP | P | US).unwrap();
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Write, true), 0x7);
        assert_eq!(
            pa(&m, &r, &mut t, 0x4060_5000, Access::Read, true),
            0x9_8765_0000
        );
    }

    #[test]
    fn reserved_bits() {
        // PAE PTE bit 40
        let (m, r, mut t) = pae(P | RW | US | (1 << 40), true);
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Read, false), 0x9);
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Write, false), 0xb);
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Read, true), 0xd);
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Write, true), 0xf);
        assert_eq!(
            walk::<Pae>(&m, &r, VirtAddr::new(0x4060_5000)).outcome,
            WalkOutcome::Reserved(Level::Pte)
        );
        // a reserved bit wins over a protection violation elsewhere (user PDE bit clear)
        m.write_u64(PDP + 3 * 8, PTP | P | RW).unwrap();
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Read, true), 0xd);
        // PAE 2 MB PDE bit 13
        m.write_u64(PDP + 4 * 8, 0x1_0000_0000 | PS | P | RW | US | (1 << 13))
            .unwrap();
        assert_eq!(err(&m, &r, &mut t, 0x4080_0000, Access::Read, true), 0xd);
        // 2-level 4 MB PDE bit 13
        let (m, r, mut t) = two_level(P | RW | US);
        m.write_u32(
            PD2 + 2 * 4,
            (0x0200_0000 | PS | P | RW | US | (1 << 13)) as u32,
        )
        .unwrap();
        assert_eq!(err(&m, &r, &mut t, 0x0080_0000, Access::Read, false), 0x9);
        assert_eq!(err(&m, &r, &mut t, 0x0080_0000, Access::Write, true), 0xf);
        assert_eq!(
            walk::<TwoLevel>(&m, &r, VirtAddr::new(0x0080_0000)).outcome,
            WalkOutcome::Reserved(Level::Pde)
        );
        // the same bit in a 4 KB PTE is an address bit, not reserved
        m.write_u32(PT2 + 3 * 4, (0x123_000 | (1 << 13) | P) as u32)
            .unwrap();
        assert_eq!(
            pa(&m, &r, &mut t, 0x0040_3000, Access::Read, false),
            0x123_000 | (1 << 13)
        );
    }

    #[test]
    fn nx_and_nxe() {
        let (m, r, mut t) = pae(P | RW | US | NX, true);
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Fetch, true), 0x15);
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Fetch, false), 0x11);
        assert!(tr(&m, &r, &mut t, 0x4060_5000, Access::Read, true).is_ok());
        // a cached NX entry faults the same way from the TLB
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Fetch, true), 0x15);
        // NX on the PDE alone forbids fetches below it
        let (m, r, mut t) = pae(P | RW | US, true);
        m.write_u64(PDP + 3 * 8, PTP | P | RW | US | NX).unwrap();
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Fetch, false), 0x11);
        // not-present fetch with NXE carries I/D
        assert_eq!(err(&m, &r, &mut t, 0x4060_0000, Access::Fetch, true), 0x14);
        // without NXE, bit 63 is reserved and I/D is never set
        let (m, r, mut t) = pae(P | RW | US | NX, false);
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Read, false), 0x9);
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Fetch, true), 0xd);
        // fetches from a normal page are fine; in 2-level mode I/D never appears
        let (m, r, mut t) = two_level(RW | US);
        let r = MmuRegs { nxe: true, ..r };
        assert_eq!(err(&m, &r, &mut t, 0x0040_3000, Access::Fetch, true), 0x4);
        m.write_u32(PT2 + 3 * 4, (0x123_000 | P) as u32).unwrap();
        assert_eq!(err(&m, &r, &mut t, 0x0040_3000, Access::Fetch, true), 0x5);
        assert_eq!(
            pa(&m, &r, &mut t, 0x0040_3000, Access::Fetch, false),
            0x123_000
        );
    }

    #[test]
    fn accessed_and_dirty_two_level() {
        let (m, r, mut t) = two_level(P | RW | US);
        let pte = PT2 + 12;
        let pde = PD2 + 4;
        tr(&m, &r, &mut t, 0x0040_3000, Access::Read, true).unwrap();
        assert_eq!(
            u64::from(m.read_u32(pte).unwrap()),
            0x123_000 | P | RW | US | A
        );
        assert_eq!(u64::from(m.read_u32(pde).unwrap()), PT2 | P | RW | US | A);
        // write through the clean cached entry: re-walk, D set
        let x = tr(&m, &r, &mut t, 0x0040_3000, Access::Write, true).unwrap();
        assert_eq!((x.tlb_hit, x.levels_walked), (false, 2));
        assert_eq!(
            u64::from(m.read_u32(pte).unwrap()),
            0x123_000 | P | RW | US | A | D
        );
        assert_eq!(
            u64::from(m.read_u32(pde).unwrap()) & D,
            0,
            "D is for leaves only"
        );
        // now cached dirty: a hit
        assert!(
            tr(&m, &r, &mut t, 0x0040_3000, Access::Write, true)
                .unwrap()
                .tlb_hit
        );
        // already-set bits are not rewritten: software clears A in memory, the TLB still holds
        // the entry, so the hardware does not set it again
        m.write_u32(pte, (0x123_000 | P | RW | US | D) as u32)
            .unwrap();
        tr(&m, &r, &mut t, 0x0040_3000, Access::Read, true).unwrap();
        assert_eq!(u64::from(m.read_u32(pte).unwrap()) & A, 0);
        // 4 MB page: A and D in the PDE
        tr(&m, &r, &mut t, 0x0080_0000, Access::Write, false).unwrap();
        assert_eq!(
            u64::from(m.read_u32(PD2 + 8).unwrap()),
            0x0200_0000 | PS | P | RW | US | A | D
        );
    }

    #[test]
    fn accessed_and_dirty_pae_high_half_untouched() {
        let (m, r, mut t) = pae(P | RW | US | NX, true);
        let pte = PTP + 40;
        tr(&m, &r, &mut t, 0x4060_5000, Access::Read, true).unwrap();
        assert_eq!(
            m.read_u64(pte).unwrap(),
            0x9_8765_0000 | P | RW | US | NX | A
        );
        assert_eq!(m.read_u64(PDP + 24).unwrap(), PTP | P | RW | US | A);
        assert_eq!(r.pdptes[1], PDP | P, "PDPTEs have no A flag");
        assert_eq!(m.read_u64(PDPT + 8).unwrap(), PDP | P);
        tr(&m, &r, &mut t, 0x4060_5000, Access::Write, true).unwrap();
        assert_eq!(
            m.read_u64(pte).unwrap(),
            0x9_8765_0000 | P | RW | US | NX | A | D
        );
        // a faulting access sets nothing
        let (m, r, mut t) = pae(P | US, true);
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Write, true), 0x7);
        assert_eq!(m.read_u64(PTP + 40).unwrap(), 0x9_8765_0000 | P | US);
        // a write to an already dirty page does not rewrite the entry
        let (m, r, mut t) = pae(P | RW | US | A | D, true);
        m.write_u64(PDP + 24, PTP | P | RW | US | A).unwrap();
        tr(&m, &r, &mut t, 0x4060_5000, Access::Write, true).unwrap();
        assert_eq!(
            m.read_u64(PTP + 40).unwrap(),
            0x9_8765_0000 | P | RW | US | A | D
        );
    }

    #[test]
    fn stale_tlb_entry_until_invlpg() {
        let (m, r, mut t) = two_level(P | RW | US);
        assert_eq!(
            pa(&m, &r, &mut t, 0x0040_3010, Access::Read, true),
            0x123_010
        );
        // the kernel remaps the page without flushing: the CPU keeps using the old frame
        m.write_u32(PT2 + 12, (0x456_000 | P | RW | US) as u32)
            .unwrap();
        let x = tr(&m, &r, &mut t, 0x0040_3010, Access::Read, true).unwrap();
        assert_eq!((x.pa, x.tlb_hit), (0x123_010, true));
        // even after unmapping
        m.write_u32(PT2 + 12, 0).unwrap();
        assert_eq!(
            pa(&m, &r, &mut t, 0x0040_3010, Access::Read, true),
            0x123_010
        );
        m.write_u32(PT2 + 12, (0x456_000 | P | RW | US) as u32)
            .unwrap();
        t.invlpg(VirtAddr::new(0x0040_3fff));
        assert_eq!(
            pa(&m, &r, &mut t, 0x0040_3010, Access::Read, true),
            0x456_010
        );
        assert_eq!(t.stats().invlpgs, 1);
    }

    #[test]
    fn fault_invalidates_the_tlb_entry() {
        // read caches a read-only entry; the kernel makes it writable without invlpg; the write
        // faults on the stale entry (0x7), which drops it; the retry walks and succeeds
        let (m, r, mut t) = pae(P | US, true);
        pa(&m, &r, &mut t, 0x4060_5000, Access::Read, true);
        m.write_u64(PTP + 40, 0x9_8765_0000 | P | RW | US | A)
            .unwrap();
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Write, true), 0x7);
        assert!(t.entries().all(|e| e.vpn != 0x40605));
        let x = tr(&m, &r, &mut t, 0x4060_5000, Access::Write, true).unwrap();
        assert_eq!((x.pa, x.tlb_hit), (0x9_8765_0000, false));
    }

    #[test]
    fn global_entries_survive_cr3_loads() {
        let (m, r, mut t) = two_level(P | RW | US | G);
        let r = MmuRegs { pge: true, ..r };
        pa(&m, &r, &mut t, 0x0040_3000, Access::Read, true);
        pa(&m, &r, &mut t, 0x0080_0000, Access::Read, true); // 4 MB page without G
        m.write_u32(PT2 + 12, 0).unwrap();
        m.write_u32(PD2 + 8, 0).unwrap();
        t.flush_nonglobal();
        assert_eq!(
            pa(&m, &r, &mut t, 0x0040_3000, Access::Read, true),
            0x123_000
        );
        assert_eq!(err(&m, &r, &mut t, 0x0080_0000, Access::Read, true), 0x4);
        t.flush_all();
        assert_eq!(err(&m, &r, &mut t, 0x0040_3000, Access::Read, true), 0x4);
        // without CR4.PGE the G bit is ignored
        let (m, r, mut t) = two_level(P | RW | US | G);
        pa(&m, &r, &mut t, 0x0040_3000, Access::Read, true);
        m.write_u32(PT2 + 12, 0).unwrap();
        t.flush_nonglobal();
        assert_eq!(err(&m, &r, &mut t, 0x0040_3000, Access::Read, true), 0x4);
    }

    #[test]
    fn load_cr3_checks_pdptes() {
        let m = PhysMem::new(1 << 20).unwrap();
        let mut r = MmuRegs {
            paging: true,
            pae: true,
            ..MmuRegs::default()
        };
        m.write_u64(0x1000, 0x2000 | P).unwrap();
        m.write_u64(0x1008, 0xdead_0000_0000_0ffe).unwrap(); // not present: anything goes
        m.write_u64(0x1010, 0x3000 | P | 0x18).unwrap(); // PWT | PCD are allowed
        load_cr3(&m, &mut r, 0x1000).unwrap();
        assert_eq!(r.pdptes, [0x2001, 0xdead_0000_0000_0ffe, 0x3019, 0]);
        for bad in [RW, US, A, D, PS, G, 1u64 << 40, NX] {
            m.write_u64(0x1018, 0x4000 | P | bad).unwrap();
            let mut r2 = MmuRegs {
                paging: true,
                pae: true,
                nxe: true,
                ..MmuRegs::default()
            };
            assert_eq!(
                load_cr3(&m, &mut r2, 0x1000),
                Err(MmuError::ReservedPdpte {
                    index: 3,
                    value: 0x4000 | P | bad
                })
            );
            assert_eq!(r2.cr3, 0, "registers unchanged on #GP");
        }
        // the PDPT base ignores bits 4:0; beyond RAM and wider than 32 bits are refused
        m.write_u64(0x1018, 0).unwrap();
        load_cr3(&m, &mut r, 0x1018).unwrap();
        assert_eq!(r.pdptes[0], 0x2001);
        assert_eq!(
            load_cr3(&m, &mut r, 1 << 32),
            Err(MmuError::Cr3TooWide { cr3: 1 << 32 })
        );
        assert!(matches!(
            load_cr3(&m, &mut r, 0x10_0000),
            Err(MmuError::Phys(_))
        ));
    }

    #[test]
    fn tables_beyond_ram_read_as_all_ones() {
        let (m, r, mut t) = pae(P | RW | US, true);
        // a PDE pointing at a page table beyond RAM: the PTE reads as all ones -> reserved
        m.write_u64(PDP + 3 * 8, 0x8000_0000 | P | RW | US).unwrap();
        assert_eq!(err(&m, &r, &mut t, 0x4060_5000, Access::Read, true), 0xd);
    }

    // ---- property test: random page tables against a reference model ----

    #[derive(Clone, Copy, Debug)]
    struct Fl {
        p: bool,
        rw: bool,
        us: bool,
        g: bool,
        nx: bool,
        rsvd: bool,
    }

    fn fl() -> impl Strategy<Value = Fl> {
        (
            prop::bool::weighted(0.9),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.05),
        )
            .prop_map(|(p, rw, us, g, nx, rsvd)| Fl {
                p,
                rw,
                us,
                g,
                nx,
                rsvd,
            })
    }

    #[derive(Clone, Debug)]
    struct Region {
        /// 0..16: in 2-level the pgd index; in PAE pgd = dir / 4, pmd = dir % 4.
        dir: u32,
        pde: Fl,
        /// Large page with this base frame (in large-page units), or a page table.
        large: Option<u64>,
        ptes: Vec<(u32, u64, Fl)>,
    }

    fn region() -> impl Strategy<Value = Region> {
        (
            0u32..16,
            fl(),
            prop::option::weighted(0.3, 0u64..16),
            prop::collection::vec((0u32..8, 0u64..(1 << 24), fl()), 0..6),
        )
            .prop_map(|(dir, pde, large, ptes)| Region {
                dir,
                pde,
                large,
                ptes,
            })
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Expect {
        NotPresent,
        Reserved,
        Page {
            pfn: u64,
            rw: bool,
            us: bool,
            nx: bool,
        },
    }

    struct Model {
        pae: bool,
        nxe: bool,
        wp: bool,
        map: BTreeMap<u32, Expect>,
    }

    impl Model {
        fn expect(&self, va: u32, access: Access, user: bool) -> Result<u64, u32> {
            let mut base = 0;
            if access == Access::Write {
                base |= 2;
            }
            if user {
                base |= 4;
            }
            if access == Access::Fetch && self.pae && self.nxe {
                base |= 0x10;
            }
            match self
                .map
                .get(&(va >> 12))
                .copied()
                .unwrap_or(Expect::NotPresent)
            {
                Expect::NotPresent => Err(base),
                Expect::Reserved => Err(base | 0x9),
                Expect::Page { pfn, rw, us, nx } => {
                    let ok = (!user || us)
                        && match access {
                            Access::Read => true,
                            Access::Write => rw || (!user && !self.wp),
                            Access::Fetch => !nx,
                        };
                    if ok {
                        Ok((pfn << 12) | u64::from(va & 0xfff))
                    } else {
                        Err(base | 1)
                    }
                }
            }
        }
    }

    fn entry_bits(pae: bool, f: Fl, large: bool) -> u64 {
        let mut b = 0;
        if f.p {
            b |= P;
        }
        if f.rw {
            b |= RW;
        }
        if f.us {
            b |= US;
        }
        if f.g {
            b |= G;
        }
        if pae && f.nx {
            b |= NX;
        }
        if f.rsvd {
            // a reserved bit of this mode and level (4 KB PTEs of 2-level paging have none)
            if pae {
                b |= 1 << 40;
            } else if large {
                b |= 1 << 13;
            }
        }
        b
    }

    /// Build the tables in RAM and the reference model for one random configuration.
    fn build(pae: bool, nxe: bool, wp: bool, regions: &[Region]) -> (PhysMem, MmuRegs, Model) {
        let m = PhysMem::new(16 << 20).unwrap();
        let mut model = Model {
            pae,
            nxe,
            wp,
            map: BTreeMap::new(),
        };
        let regions: BTreeMap<u32, &Region> = regions.iter().map(|r| (r.dir, r)).collect();
        let mut regs = MmuRegs {
            paging: true,
            wp,
            pae,
            pse: true,
            pge: true,
            nxe,
            ..MmuRegs::default()
        };
        // frames: 1 = pgd (PD or PDPT), 2..6 = PAE page directories, 16.. = page tables
        if pae {
            for i in 0..4u64 {
                m.write_u64(0x1000 + 8 * i, ((2 + i) << 12) | P).unwrap();
            }
        }
        let large_pages = if pae { 512u64 } else { 1024 };
        let reserved_nx = |f: Fl| pae && f.nx && !nxe;
        let rsvd_in = |f: Fl, large: bool| f.rsvd && (pae || large);
        for (i, r) in regions.values().enumerate() {
            let (pde_pa, va_base) = if pae {
                (
                    ((2 + u64::from(r.dir / 4)) << 12) + 8 * u64::from(r.dir % 4),
                    ((r.dir / 4) << 30) | ((r.dir % 4) << 21),
                )
            } else {
                (0x1000 + 4 * u64::from(r.dir), r.dir << 22)
            };
            let vpn_base = va_base >> 12;
            let write = |pa: u64, v: u64| {
                if pae {
                    m.write_u64(pa, v).unwrap()
                } else {
                    m.write_u32(pa, v as u32).unwrap()
                }
            };
            let pde_rsvd = r.pde.p && (reserved_nx(r.pde) || rsvd_in(r.pde, r.large.is_some()));
            if let Some(base) = r.large {
                let base_pfn = base * large_pages;
                write(pde_pa, (base_pfn << 12) | PS | entry_bits(pae, r.pde, true));
                for k in 0..large_pages as u32 {
                    let e = if !r.pde.p {
                        Expect::NotPresent
                    } else if pde_rsvd {
                        Expect::Reserved
                    } else {
                        Expect::Page {
                            pfn: base_pfn + u64::from(k),
                            rw: r.pde.rw,
                            us: r.pde.us,
                            nx: nxe && r.pde.nx,
                        }
                    };
                    model.map.insert(vpn_base + k, e);
                }
                continue;
            }
            let pt = (16 + i as u64) << 12;
            write(pde_pa, pt | entry_bits(pae, r.pde, false));
            let ptes: BTreeMap<u32, (u64, Fl)> =
                r.ptes.iter().map(|&(k, pfn, f)| (k, (pfn, f))).collect();
            let pfn_mask = if pae { (1 << 24) - 1 } else { (1 << 20) - 1 };
            for k in 0..large_pages as u32 {
                let e = if !r.pde.p {
                    Expect::NotPresent
                } else if pde_rsvd {
                    Expect::Reserved
                } else {
                    match ptes.get(&k) {
                        None => Expect::NotPresent,
                        Some(&(pfn, f)) => {
                            let pfn = pfn & pfn_mask;
                            write(
                                pt + u64::from(k) * if pae { 8 } else { 4 },
                                (pfn << 12) | entry_bits(pae, f, false),
                            );
                            if !f.p {
                                Expect::NotPresent
                            } else if reserved_nx(f) || rsvd_in(f, false) {
                                Expect::Reserved
                            } else {
                                Expect::Page {
                                    pfn,
                                    rw: r.pde.rw && f.rw,
                                    us: r.pde.us && f.us,
                                    nx: nxe && (r.pde.nx || f.nx),
                                }
                            }
                        }
                    }
                };
                if e != Expect::NotPresent {
                    model.map.insert(vpn_base + k, e);
                }
            }
        }
        load_cr3(&m, &mut regs, 0x1000).unwrap();
        (m, regs, model)
    }

    fn va_of(pae: bool, dir: u32, page: u32, off: u32) -> u32 {
        if pae {
            ((dir / 4) << 30) | ((dir % 4) << 21) | ((page % 512) << 12) | off
        } else {
            (dir << 22) | (page << 12) | off
        }
    }

    fn check_pae<M: PagingMode>(
        regions: &[Region],
        nxe: bool,
        wp: bool,
        accesses: &[(u32, u32, u32, u8, bool)],
    ) -> Result<(), TestCaseError> {
        let (m, regs, model) = build(M::PAE, nxe, wp, regions);
        // a tiny TLB so evictions happen
        let mut tlb = Tlb::with_geometry(2, 2, M::PMD_SHIFT);
        for round in 0..2 {
            for &(dir, page, off, a, user) in accesses {
                let va = va_of(M::PAE, dir, page, off);
                let access = [Access::Read, Access::Write, Access::Fetch][a as usize % 3];
                let want = model.expect(va, access, user);
                let got = translate_in::<M>(&m, &regs, &mut tlb, VirtAddr::new(va), access, user)
                    .map(|t| t.pa)
                    .map_err(|f| f.code.bits());
                prop_assert_eq!(
                    got,
                    want,
                    "round {} va {:#x} {:?} user {}",
                    round,
                    va,
                    access,
                    user
                );
                let w = walk::<M>(&m, &regs, VirtAddr::new(va));
                if let Ok(pa) = want {
                    prop_assert_eq!(
                        w.outcome,
                        WalkOutcome::Mapped {
                            pa,
                            page_shift: w.outcome_shift()
                        }
                    );
                    // A on every PDE/PTE of the path, D on the leaf after a write
                    for s in w.steps().iter().filter(|s| s.entry_pa.is_some()) {
                        prop_assert!(s.entry.has(EntryFlags::ACCESSED), "{:?}", s);
                    }
                    let leaf = w.leaf().map(|s| s.entry).unwrap_or_default();
                    if access == Access::Write {
                        prop_assert!(leaf.has(EntryFlags::DIRTY));
                    }
                }
            }
        }
        // every cached translation agrees with the model
        for e in tlb.entries() {
            match model.map.get(&e.vpn) {
                Some(Expect::Page { pfn, rw, us, nx }) => {
                    prop_assert_eq!((e.pfn, e.writable, e.user, e.nx), (*pfn, *rw, *us, *nx));
                }
                other => prop_assert!(false, "TLB caches {:?}, model says {:?}", e, other),
            }
        }
        Ok(())
    }

    impl WalkResult {
        fn outcome_shift(&self) -> u32 {
            match self.outcome {
                WalkOutcome::Mapped { page_shift, .. } => page_shift,
                _ => 0,
            }
        }
    }

    fn accesses() -> impl Strategy<Value = Vec<(u32, u32, u32, u8, bool)>> {
        prop::collection::vec(
            (
                0u32..16,
                prop_oneof![0u32..8, 0u32..1024],
                0u32..4096,
                0u8..3,
                any::<bool>(),
            ),
            1..64,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn two_level_agrees_with_model(
            regions in prop::collection::vec(region(), 0..8),
            wp in any::<bool>(),
            accesses in accesses(),
        ) {
            check_pae::<TwoLevel>(&regions, false, wp, &accesses)?;
        }

        #[test]
        fn pae_agrees_with_model(
            regions in prop::collection::vec(region(), 0..8),
            nxe in any::<bool>(),
            wp in any::<bool>(),
            accesses in accesses(),
        ) {
            check_pae::<Pae>(&regions, nxe, wp, &accesses)?;
        }
    }
}
