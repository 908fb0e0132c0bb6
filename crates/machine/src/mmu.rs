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
mod tests;
