//! The replay: the kernel's tables in the simulator's memory, every probe translated by the
//! simulator's MMU from the same state, and the table pages compared at the end.

use super::{Dump, Outcome, Probe, Stats, AD, ADDR_PAE, PS, SIM_PHYS};
use anyhow::{Context, Result};
use highpte_arch::{PageFaultErrorCode, VirtAddr};
use highpte_machine::mmu::{self, Access, MmuRegs};
use highpte_machine::phys::PhysMem;
use highpte_machine::tlb::Tlb;

fn entry(phys: &PhysMem, pae: bool, pa: u64) -> Result<u64> {
    Ok(if pae {
        phys.read_u64(pa)?
    } else {
        u64::from(phys.read_u32(pa)?)
    })
}

fn set_entry(phys: &PhysMem, pae: bool, pa: u64, v: u64) -> Result<()> {
    if pae {
        phys.write_u64(pa, v)?;
    } else {
        phys.write_u32(pa, v as u32)?;
    }
    Ok(())
}

/// The path of `va` by the tables' raw bits, as the kernel finds it: (PDE address, PTE
/// address, true if the PDE maps a large page).
fn path(phys: &PhysMem, pae: bool, cr3: u64, va: u32) -> Result<(Option<u64>, Option<u64>, bool)> {
    let va = u64::from(va);
    let pde_pa = if pae {
        let pdpte = phys.read_u64(cr3 + 8 * (va >> 30))?;
        if pdpte & 1 == 0 {
            return Ok((None, None, false));
        }
        (pdpte & ADDR_PAE) + 8 * ((va >> 21) & 511)
    } else {
        cr3 + 4 * (va >> 22)
    };
    let pde = entry(phys, pae, pde_pa)?;
    if pde & 1 == 0 {
        return Ok((Some(pde_pa), None, false));
    }
    if pde & PS != 0 {
        return Ok((Some(pde_pa), None, true));
    }
    let pte_pa = if pae {
        (pde & ADDR_PAE) + 8 * ((va >> 12) & 511)
    } else {
        (pde & 0xffff_f000) + 4 * ((va >> 12) & 1023)
    };
    Ok((Some(pde_pa), Some(pte_pa), false))
}

fn ad_of(phys: &PhysMem, pae: bool, pde: Option<u64>, pte: Option<u64>) -> Result<u8> {
    let mut ad = 0;
    if let Some(e) = pde {
        ad |= ((entry(phys, pae, e)? & AD) >> 5) as u8;
    }
    if let Some(e) = pte {
        ad |= ((entry(phys, pae, e)? & AD) >> 3) as u8;
    }
    Ok(ad)
}

/// The simulator with the kernel's tables loaded, as the kernel had the CPU.
pub(super) struct Sim {
    phys: PhysMem,
    pae: bool,
    cr3: u64,
    regs: MmuRegs,
    tlb: Tlb,
}

impl Sim {
    /// Load the dumped entries into the simulator's memory (without QEMU's A in the PDPTEs,
    /// counted in `stats`) and CR3, with the control bits the kernel set.
    pub(super) fn load(d: &Dump, stats: &mut Stats) -> Result<Sim> {
        let pae = d.pae;
        let phys = PhysMem::new(SIM_PHYS).context("the simulator's physical memory")?;
        for &(pa, v) in &d.entries {
            let v = if pae && pa & !31 == d.cr3 && v & 0x21 == 0x21 {
                // QEMU's A in a PDPTE (see the module docs)
                stats.qemu_pdpte_a += 1;
                v & !0x20
            } else {
                v
            };
            set_entry(&phys, pae, pa, v)?;
        }
        let mut regs = MmuRegs {
            paging: true,
            wp: true,
            pae,
            pse: true,
            pge: true,
            nxe: false,
            ..MmuRegs::default()
        };
        mmu::load_cr3(&phys, &mut regs, d.cr3).context("the simulator's CR3 load")?;
        let tlb = Tlb::new(if pae { 21 } else { 22 });
        Ok(Sim {
            phys,
            pae,
            cr3: d.cr3,
            regs,
            tlb,
        })
    }

    /// Replay probe `p` from the kernel's state (the A/D flags of its path cleared, its
    /// address flushed), compare it with QEMU's outcome and count it.
    pub(super) fn replay(&mut self, p: &Probe, stats: &mut Stats) -> Result<()> {
        let (phys, pae) = (&self.phys, self.pae);
        match p.access {
            Access::Read => stats.loads += 1,
            Access::Write => stats.stores += 1,
            Access::Fetch => stats.fetches += 1,
        }
        let (pde, pte, is_large) = path(phys, pae, self.cr3, p.va)?;
        for e in [pde, pte].into_iter().flatten() {
            set_entry(phys, pae, e, entry(phys, pae, e)? & !AD)?;
        }
        let va = VirtAddr::new(p.va);
        self.tlb.invlpg(va);
        let sim = match mmu::translate(phys, &self.regs, &mut self.tlb, va, p.access, p.user) {
            Ok(t) => Outcome::Phys(t.pa),
            Err(f) => Outcome::Fault(f.code.bits(), f.addr.as_u32()),
        };
        let sim_ad = ad_of(phys, pae, pde, pte)?;
        let kind = format!(
            "{} at CPL {}",
            match p.access {
                Access::Read => "load",
                Access::Write => "store",
                Access::Fetch => "fetch",
            },
            if p.user { 3 } else { 0 }
        );
        if p.user {
            stats.user += 1;
        }
        let mut bad = Vec::new();
        bad.extend(compare_outcome(p.outcome, sim, stats));
        bad.extend(self.compare_ad(p, sim_ad, pde, pte, stats)?);
        count_outcome(p, is_large, stats);
        if !bad.is_empty() {
            stats.mismatches.push(format!(
                "probe {} ({kind} at {:#010x}): {}",
                p.n,
                p.va,
                bad.join("; ")
            ));
        }
        Ok(())
    }

    /// Compare the A/D flags of the path after the probe; a fault where QEMU set the PDE's A
    /// flag is allowed and the replay adopts QEMU's flag. Returns the mismatch, if any.
    fn compare_ad(
        &self,
        p: &Probe,
        sim_ad: u8,
        pde: Option<u64>,
        pte: Option<u64>,
        stats: &mut Stats,
    ) -> Result<Option<String>> {
        let (phys, pae) = (&self.phys, self.pae);
        if sim_ad != p.ad {
            let faulted = matches!(p.outcome, Outcome::Fault(..));
            if faulted && pte.is_some() && p.ad == sim_ad | 1 {
                // QEMU set A in the PDE it walked through before the fault (see module docs)
                stats.tolerated += 1;
                if let Some(e) = pde {
                    set_entry(phys, pae, e, entry(phys, pae, e)? | 0x20)?;
                }
            } else {
                return Ok(Some(format!(
                    "A/D: QEMU {:#x}, simulator {sim_ad:#x}",
                    p.ad
                )));
            }
        }
        Ok(None)
    }

    /// Compare the table pages after all probes: the hash of every page the kernel hashed and,
    /// with PAE, the PDPTEs but for QEMU's bit 5. A difference is one mismatch.
    pub(super) fn compare_fin(&self, d: &Dump, stats: &mut Stats) -> Result<()> {
        let (phys, pae) = (&self.phys, self.pae);
        let esz = if pae { 8 } else { 4 };
        let mut fin_bad = Vec::new();
        for &(pa, hash) in &d.fin {
            let entries = if pa == d.cr3 {
                if pae {
                    4
                } else {
                    768
                }
            } else {
                4096 / esz
            };
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            for i in 0..entries {
                h = (h ^ entry(phys, pae, pa + i * esz)?).wrapping_mul(0x0100_0000_01b3);
            }
            if h != hash {
                fin_bad.push(format!("{pa:#x}"));
            }
        }
        if pae {
            let sim: Vec<u64> = (0..4)
                .map(|i| phys.read_u64(d.cr3 + 8 * i))
                .collect::<Result<_, _>>()?;
            let got: Vec<u64> = d.pdpt_fin.iter().map(|v| v & !0x20).collect();
            if got != sim {
                fin_bad.push(format!(
                    "PDPT {:x?} (QEMU, bit 5 aside) against {sim:x?}",
                    d.pdpt_fin
                ));
            }
            stats.qemu_pdpte_a_end =
                d.pdpt_fin.iter().filter(|&&v| v & 0x21 == 0x21).count() as u64;
        }
        if !fin_bad.is_empty() {
            stats.mismatches.push(format!(
                "table pages differ after all probes: {}",
                fin_bad.join(", ")
            ));
        }
        Ok(())
    }
}

/// Compare QEMU's outcome of a probe with the simulator's; QEMU's RSVD without P is counted,
/// not a mismatch. Returns the mismatch, if any.
fn compare_outcome(qemu: Outcome, sim: Outcome, stats: &mut Stats) -> Option<String> {
    let rsvd = PageFaultErrorCode::RSVD.bits();
    match (qemu, sim) {
        (a, b) if a == b => {}
        (Outcome::Fault(q, qa), Outcome::Fault(s, sa))
            if qa == sa && q & (rsvd | 1) == rsvd && s == q | 1 =>
        {
            // QEMU's RSVD without P (see the module docs)
            stats.qemu_rsvd_without_p += 1;
        }
        _ => return Some(format!("QEMU {qemu}, simulator {sim}")),
    }
    None
}

/// Count QEMU's outcome of probe `p` (`is_large`: its path ends in a large page).
fn count_outcome(p: &Probe, is_large: bool, stats: &mut Stats) {
    match p.outcome {
        Outcome::Fault(code, _) => {
            *stats.faults.entry(format!("{code:#x}")).or_default() += 1;
        }
        Outcome::Phys(pa) => {
            stats.translated += 1;
            if p.user {
                stats.user_translated += 1;
            }
            if p.access == Access::Fetch {
                stats.fetches_translated += 1;
            }
            if is_large {
                stats.large += 1;
            }
            if pa >= 1 << 32 {
                stats.above_4g += 1;
            }
        }
        Outcome::Unknown(_) => {}
    }
}
