//! Tests of the MMU: translations and faults in both paging modes, accessed and dirty bits,
//! the TLB; `model` checks random page tables against a reference model.

mod model;

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
