//! Property test: random page tables in both paging modes, and random accesses, against a
//! reference model of the translation and its fault codes.

use super::*;

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
