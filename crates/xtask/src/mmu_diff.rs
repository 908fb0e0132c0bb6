//! The differential MMU test: the same page tables walked by QEMU's MMU and the simulator's.
//!
//! The bare-metal kernel (`scenario=mmu-diff`, crates/baremetal/src/mmu_diff.rs) builds
//! seeded random page tables, 2-level with PSE or PAE, probes seeded random user addresses
//! with real 8-byte loads and stores and instruction fetches at CPL 0 and CPL 3 with CR0.WP
//! set, and prints the tables as built,
//! every probe's outcome (physical address reached or page-fault error code, and the A/D
//! flags of the PDE and PTE on its path afterwards) and a hash of every table page at the end.
//!
//! This side loads the tables into a simulator [`PhysMem`], sets up [`MmuRegs`] as the
//! kernel had the CPU (PG, WP, PSE, PGE, PAE per mode, NXE clear), and replays every probe
//! with [`mmu::translate`] from the same state: the A/D flags of the path's entries cleared
//! and the address flushed from the TLB first. Physical address, fault and error code, CR2 and
//! the A/D flags must be identical, and so must the table pages' hashes at the end.
//!
//! One difference is allowed and counted: when a walk that went through a PDE down to a page
//! table faults, QEMU has already set that PDE's accessed flag, while the simulator sets A/D
//! only for accesses that succeed. Both are what SDM vol. 3 4.8 permits (the processor may
//! set accessed flags of entries it used even if the translation faults), so such a probe
//! agrees if it differs in exactly that flag; the replay then adopts QEMU's flag so the
//! final table images stay comparable.
//!
//! Two differences are QEMU's (7.2, TCG's `mmu_translate`) departures from the SDM, counted
//! and reported, not mismatches:
//! - a reserved-bit fault's error code has RSVD without P (0x8, 0xa), where SDM 4.7 says RSVD
//!   is set only with P ("bit 3 of the error code can be set only if bit 0 is also set"); the
//!   simulator reports 0x9, 0xb, and a probe agrees if the codes differ in exactly P that way;
//! - QEMU reads the PAE PDPT from memory on every walk and sets bit 5 (A) in the PDPTEs it
//!   walks through, a reserved bit of a PAE PDPTE (SDM table 4-8; a real CPU holds the PDPTEs
//!   in registers loaded with CR3 and never writes them, and would #GP on a later CR3 load).
//!   The replay clears bit 5 of the dumped PDPTEs before its CR3 load (the kernel wrote them
//!   without it), and compares the final PDPTEs except that bit.

use crate::qemu;
use anyhow::{bail, Context, Result};
use highpte_arch::{PageFaultErrorCode, VirtAddr};
use highpte_machine::mmu::{self, Access, MmuRegs};
use highpte_machine::phys::PhysMem;
use highpte_machine::tlb::Tlb;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// `cargo xtask mmu-diff` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Paging mode: 2level, pae or both.
    #[arg(long, default_value = "both", value_parser = ["2level", "pae", "both"])]
    pub mode: String,
    /// Seed of the random mappings and probes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Probes per mode.
    #[arg(long, default_value_t = 4000)]
    pub probes: u64,
    /// Page-directory slots the kernel fills (large pages, page tables, non-present).
    #[arg(long, default_value_t = 96)]
    pub mappings: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Stop QEMU after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// RAM of the emulated PC: 0..3 GB and 4..9 GB.
const RAM: u64 = 8 << 30;
/// The simulator's physical memory: up to 9 GB (sparse).
const SIM_PHYS: u64 = 9 << 30;
const AD: u64 = 0x60;
const PS: u64 = 0x80;
const ADDR_PAE: u64 = 0x0000_000f_ffff_f000;

/// One probe as the bare-metal kernel reported it.
struct Probe {
    n: u64,
    va: u32,
    access: Access,
    user: bool,
    outcome: Outcome,
    ad: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Page fault: error code, CR2.
    Fault(u32, u32),
    /// The physical address reached.
    Phys(u64),
    /// The access succeeded but where it landed is unknown (the raw value read).
    Unknown(u64),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Outcome::Fault(code, cr2) => write!(f, "#PF error {code:#x} cr2 {cr2:#x}"),
            Outcome::Phys(pa) => write!(f, "pa {pa:#x}"),
            Outcome::Unknown(v) => write!(f, "success at an unverified address (read {v:#x})"),
        }
    }
}

/// What the kernel dumped.
struct Dump {
    pae: bool,
    cr3: u64,
    entries: Vec<(u64, u64)>,
    pages: Vec<u64>,
    probes: Vec<Probe>,
    fin: Vec<(u64, u64)>,
    pdpt_fin: Vec<u64>,
    end: String,
}

fn hex(s: &str) -> Result<u64> {
    u64::from_str_radix(s, 16).with_context(|| format!("bad hex {s:?}"))
}

fn parse(run: &qemu::QemuRun) -> Result<Dump> {
    let mut d = Dump {
        pae: false,
        cr3: u64::MAX,
        entries: Vec::new(),
        pages: Vec::new(),
        probes: Vec::new(),
        fin: Vec::new(),
        pdpt_fin: Vec::new(),
        end: String::new(),
    };
    for line in run.tagged("mmu") {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("cfg") => {
                for kv in w {
                    match kv.split_once('=') {
                        Some(("mode", m)) => d.pae = m == "pae",
                        Some(("cr3", v)) => d.cr3 = hex(v)?,
                        Some(("wp", v)) | Some(("pse", v)) if v != "1" => {
                            bail!("unexpected {kv}")
                        }
                        Some(("nxe", v)) if v != "0" => {
                            bail!("unexpected {kv}")
                        }
                        _ => {}
                    }
                }
            }
            Some("pg") => {
                let pa = hex(w.next().context("pg without address")?)?;
                if d.pages.last() != Some(&pa) {
                    d.pages.push(pa);
                }
                let esz = if d.pae { 8 } else { 4 };
                for iv in w {
                    let (i, v) = iv.split_once('=').context("pg entry")?;
                    d.entries.push((pa + esz * hex(i)?, hex(v)?));
                }
            }
            Some("p") => {
                let f: Vec<&str> = w.collect();
                if f.len() != 6 {
                    bail!("bad probe line {line:?}");
                }
                let outcome = if let Some(code) = f[4].strip_prefix('f') {
                    let va = hex(f[1])? as u32;
                    match code.split_once('@') {
                        Some((c, cr2)) => Outcome::Fault(hex(c)? as u32, hex(cr2)? as u32),
                        None => Outcome::Fault(hex(code)? as u32, va),
                    }
                } else if let Some(v) = f[4].strip_prefix('?') {
                    Outcome::Unknown(hex(v)?)
                } else {
                    Outcome::Phys(hex(f[4])?)
                };
                d.probes.push(Probe {
                    n: f[0].parse()?,
                    va: hex(f[1])? as u32,
                    access: match f[2] {
                        "l" => Access::Read,
                        "s" => Access::Write,
                        "x" => Access::Fetch,
                        k => bail!("bad probe kind {k:?}"),
                    },
                    user: f[3] == "3",
                    outcome,
                    ad: hex(f[5])? as u8,
                });
            }
            Some("fin") => {
                let pa = hex(w.next().context("fin")?)?;
                d.fin.push((pa, hex(w.next().context("fin")?)?));
            }
            Some("pdpt-fin") => d.pdpt_fin = w.map(hex).collect::<Result<_>>()?,
            Some("end") => d.end = line.to_owned(),
            _ => bail!("unexpected line @mmu {line}"),
        }
    }
    if d.cr3 == u64::MAX || d.end.is_empty() {
        bail!("the kernel's dump is incomplete (no cfg or end line)");
    }
    Ok(d)
}

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

/// The result of one mode.
struct ModeReport {
    json: Value,
    mismatches: usize,
}

fn run_mode(image: &std::path::Path, a: &Args, mode: &str) -> Result<ModeReport> {
    let append = format!(
        "scenario=mmu-diff mode={mode} seed={} probes={} mappings={}",
        a.seed, a.probes, a.mappings
    );
    let run = qemu::boot(image, RAM, &append, Duration::from_secs(a.timeout))?;
    if !run.passed() {
        let tail: Vec<&str> = run.readable().collect();
        bail!(
            "mode {mode}: {}; its output:\n{}",
            run.failure(),
            tail.join("\n")
        );
    }
    let d = parse(&run).with_context(|| format!("mode {mode}: reading the dump"))?;
    if d.pae != (mode == "pae") {
        bail!("mode {mode}: the kernel ran in the other mode");
    }
    if d.probes.len() as u64 != a.probes {
        bail!(
            "mode {mode}: {} probes reported, {} asked",
            d.probes.len(),
            a.probes
        );
    }
    let pae = d.pae;
    let phys = PhysMem::new(SIM_PHYS).context("the simulator's physical memory")?;
    let (mut qemu_pdpte_a, mut qemu_pdpte_a_end) = (0u64, 0u64);
    for &(pa, v) in &d.entries {
        let v = if pae && pa & !31 == d.cr3 && v & 0x21 == 0x21 {
            // QEMU's A in a PDPTE (see the module docs)
            qemu_pdpte_a += 1;
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
    let mut tlb = Tlb::new(if pae { 21 } else { 22 });

    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    let (mut loads, mut stores, mut fetches, mut translated) = (0u64, 0u64, 0u64, 0u64);
    let (mut large, mut above_4g, mut tolerated) = (0u64, 0u64, 0u64);
    let mut qemu_rsvd_without_p = 0u64;
    let (mut user, mut user_translated, mut fetches_translated) = (0u64, 0u64, 0u64);
    let mut mismatches: Vec<String> = Vec::new();
    for p in &d.probes {
        match p.access {
            Access::Read => loads += 1,
            Access::Write => stores += 1,
            Access::Fetch => fetches += 1,
        }
        let (pde, pte, is_large) = path(&phys, pae, d.cr3, p.va)?;
        for e in [pde, pte].into_iter().flatten() {
            set_entry(&phys, pae, e, entry(&phys, pae, e)? & !AD)?;
        }
        let va = VirtAddr::new(p.va);
        tlb.invlpg(va);
        let sim = match mmu::translate(&phys, &regs, &mut tlb, va, p.access, p.user) {
            Ok(t) => Outcome::Phys(t.pa),
            Err(f) => Outcome::Fault(f.code.bits(), f.addr.as_u32()),
        };
        let sim_ad = ad_of(&phys, pae, pde, pte)?;
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
            user += 1;
        }
        let mut bad = Vec::new();
        let rsvd = PageFaultErrorCode::RSVD.bits();
        match (p.outcome, sim) {
            (a, b) if a == b => {}
            (Outcome::Fault(q, qa), Outcome::Fault(s, sa))
                if qa == sa && q & (rsvd | 1) == rsvd && s == q | 1 =>
            {
                // QEMU's RSVD without P (see the module docs)
                qemu_rsvd_without_p += 1;
            }
            _ => bad.push(format!("QEMU {}, simulator {sim}", p.outcome)),
        }
        if sim_ad != p.ad {
            let faulted = matches!(p.outcome, Outcome::Fault(..));
            if faulted && pte.is_some() && p.ad == sim_ad | 1 {
                // QEMU set A in the PDE it walked through before the fault (see module docs)
                tolerated += 1;
                if let Some(e) = pde {
                    set_entry(&phys, pae, e, entry(&phys, pae, e)? | 0x20)?;
                }
            } else {
                bad.push(format!("A/D: QEMU {:#x}, simulator {sim_ad:#x}", p.ad));
            }
        }
        match p.outcome {
            Outcome::Fault(code, _) => {
                *faults.entry(format!("{code:#x}")).or_default() += 1;
            }
            Outcome::Phys(pa) => {
                translated += 1;
                if p.user {
                    user_translated += 1;
                }
                if p.access == Access::Fetch {
                    fetches_translated += 1;
                }
                if is_large {
                    large += 1;
                }
                if pa >= 1 << 32 {
                    above_4g += 1;
                }
            }
            Outcome::Unknown(_) => {}
        }
        if !bad.is_empty() {
            mismatches.push(format!(
                "probe {} ({kind} at {:#010x}): {}",
                p.n,
                p.va,
                bad.join("; ")
            ));
        }
    }

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
            h = (h ^ entry(&phys, pae, pa + i * esz)?).wrapping_mul(0x0100_0000_01b3);
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
        qemu_pdpte_a_end = d.pdpt_fin.iter().filter(|&&v| v & 0x21 == 0x21).count() as u64;
    }
    if !fin_bad.is_empty() {
        mismatches.push(format!(
            "table pages differ after all probes: {}",
            fin_bad.join(", ")
        ));
    }
    let high_tables = d.pages.iter().filter(|&&pa| pa >= 1 << 32).count();
    let rsvd: u64 = faults
        .iter()
        .filter(|(k, _)| hex(&k[2..]).is_ok_and(|c| c & 8 != 0))
        .map(|(_, n)| n)
        .sum();
    let count = |code: &str| faults.get(code).copied().unwrap_or(0);
    let wp = count("0x3");
    let cpl3_protection = count("0x5") + count("0x7");
    let json = json!({
        "mode": mode,
        "seed": a.seed,
        "probes": d.probes.len(),
        "loads": loads,
        "stores": stores,
        "fetches": fetches,
        "fetches_translated": fetches_translated,
        "translated": translated,
        "faulted": d.probes.len() as u64 - translated,
        "faults": faults,
        "write_protect_faults": wp,
        "cpl3_protection_faults": cpl3_protection,
        "cpl3_probes": user,
        "cpl3_translated": user_translated,
        "reserved_bit_faults": rsvd,
        "large_page_translations": large,
        "above_4g_translations": above_4g,
        "table_pages": d.pages.len(),
        "table_pages_above_4g": high_tables,
        "table_entries": d.entries.len(),
        "pages_compared_at_end": d.fin.len(),
        "pde_accessed_on_fault_allowed": tolerated,
        "qemu_rsvd_without_p": qemu_rsvd_without_p,
        "qemu_pdptes_with_a_at_dump": qemu_pdpte_a,
        "qemu_pdptes_with_a_at_end": qemu_pdpte_a_end,
        "mismatches": mismatches.len(),
        "mismatch_details": mismatches.iter().take(50).collect::<Vec<_>>(),
        "qemu_seconds": (run.seconds * 100.0).round() / 100.0,
        "kernel": d.end,
    });
    Ok(ModeReport {
        json,
        mismatches: mismatches.len(),
    })
}

/// Run the differential test; true if both MMUs agree on every probe.
pub fn run(a: &Args) -> Result<bool> {
    if a.probes == 0 || a.probes > 100_000 {
        bail!("--probes {}: 1 to 100000", a.probes);
    }
    let image = qemu::build_image(a.json)?;
    let modes: &[&str] = match a.mode.as_str() {
        "both" => &["2level", "pae"],
        "2level" => &["2level"],
        _ => &["pae"],
    };
    let mut reports = Vec::new();
    let mut total = 0;
    for mode in modes {
        let r = run_mode(&image, a, mode)?;
        total += r.mismatches;
        if !a.json {
            print_mode(&r.json);
        }
        reports.push(r.json);
    }
    if a.json {
        println!(
            "{}",
            json!({"modes": reports, "mismatches": total, "pass": total == 0})
        );
    } else {
        println!(
            "mmu-diff (seed {}): {}",
            a.seed,
            if total == 0 {
                "QEMU and the simulator agree on every probe".to_owned()
            } else {
                format!("{total} mismatches")
            }
        );
    }
    Ok(total == 0)
}

fn print_mode(j: &Value) {
    println!(
        "{}: {} probes ({} loads, {} stores, {} fetches; {} at CPL 3) in {} s of QEMU: {} translated ({} through large pages, {} above 4 GB), {} faulted",
        j["mode"].as_str().unwrap_or("?"),
        j["probes"],
        j["loads"],
        j["stores"],
        j["fetches"],
        j["cpl3_probes"],
        j["qemu_seconds"],
        j["translated"],
        j["large_page_translations"],
        j["above_4g_translations"],
        j["faulted"]
    );
    if let Some(f) = j["faults"].as_object() {
        for (code, n) in f {
            let c = hex(&code[2..]).unwrap_or_default() as u32;
            let name = PageFaultErrorCode::from_bits_retain(c);
            println!("  #PF error {code} {name:?}: {n}");
        }
    }
    println!(
        "  {} table pages ({} above 4 GB), {} entries; {} pages compared after the probes; {} faulting walks where QEMU set the PDE's A flag (allowed, SDM 4.8)",
        j["table_pages"],
        j["table_pages_above_4g"],
        j["table_entries"],
        j["pages_compared_at_end"],
        j["pde_accessed_on_fault_allowed"]
    );
    println!(
        "  QEMU's departures from the SDM: {} reserved-bit faults without P in the error code; PDPTEs with bit 5 (A) set: {} when dumped, {} at the end",
        j["qemu_rsvd_without_p"], j["qemu_pdptes_with_a_at_dump"], j["qemu_pdptes_with_a_at_end"]
    );
    println!("  mismatches: {}", j["mismatches"]);
    if let Some(m) = j["mismatch_details"].as_array() {
        for d in m {
            println!("    {}", d.as_str().unwrap_or_default());
        }
    }
}
