//! The bare-metal side of the differential MMU test (`cargo xtask mmu-diff`).
//!
//! Runs before any kernel boots, from the temporary 2-level tables. It builds its own page
//! tables (2-level with PSE, or PAE; `mode=2level|pae`) for a seeded random set of user
//! mappings, switches to them, probes a seeded random set of user virtual addresses with real
//! 8-byte loads and stores, half at CPL 0 (CR0.WP set, so R/W matters, U/S does not) and half
//! at CPL 3 (ring 3 through a user code segment, a TSS for the way back and an `iret`; U/S and
//! R/W both matter; the kernel half's large pages are made user-accessible so the ring-3 probe
//! code can run from the image), with EFER.NXE clear (the `qemu32` CPU has no NX, so bit 63
//! of a PAE entry is a reserved bit), and prints everything on serial as `@mmu` lines:
//!
//! - `@mmu cfg mode=.. seed=.. cr3=.. wp=1 pse=1 nxe=0`: the control registers;
//! - `@mmu pg <pa> <index>=<entry> ...`: the nonzero entries of every page-table page as built
//!   (before any probe; several lines may share a page);
//! - `@mmu p <n> <va> <l|s|x> <cpl> <result> <ad>`: probe `n`, a load or store of 8 bytes or
//!   an instruction fetch at `va`, at CPL 0 or 3;
//!   `result` is `f<error code>` for a page fault (with `@<cr2>` if CR2 is not `va`), the
//!   physical address the access reached, or `?<value>` if that could not be established;
//!   `ad` is a hex nibble: bit 0/1 the A/D flags of the PDE on the path after the access,
//!   bit 2/3 those of the PTE (0 where the path has no such entry);
//! - `@mmu fin <pa> <hash>`: an FNV-1a hash of each table page after all probes (user entries
//!   only: the kernel half's A flags are set by this code running), and `@mmu pdpt-fin` with
//!   the four PDPTEs (QEMU sets bit 5 of PAE PDPTEs it walks through, a reserved bit);
//! - `@mmu end probes=<n>`.
//!
//! The path of a probe is found by following the tables' pointers as raw bits (PDPTE if PAE,
//! PDE, and the PTE if the PDE is present without PS), no access rights involved; before each
//! probe the A and D flags of those entries are cleared and the address is flushed with
//! `invlpg`, so every probe walks afresh from the same state (the replay does the same).
//!
//! How the physical address is established without trusting any model of the walk: the
//! entries' raw bits name where a successful access would land (the "intended" address); that
//! 8-byte location is stamped beforehand, through a kernel window, with the value
//! `STAMP | pa`, which names its own physical address. A load that succeeds reports the
//! address its value names (so it is where the CPU really read). A fetch probe jumps to `va`,
//! where the intended location holds the code `mov eax, lo; mov edx, hi; ud2` loading the
//! same stamp (the #UD ends the probe). A store writes a token
//! unique to the probe; the intended location is then read back: if it holds the token the
//! store landed there, otherwise the result is unknown (`?`), a mismatch for the replay.
//!
//! Physical memory (QEMU's PC with 8 GB: RAM at 0..3 GB and 4..9 GB): table pages come from
//! 256..512 MB and, for half the PAE pte pages, from 4..4.5 GB; mapped frames lie in
//! 1..2.98 GB and, with PAE, 4.5..9 GB. None of these overlaps the image (16 MB), and the
//! probes' stores touch only mapped frames.

mod dump;
mod probe;
mod tables;

use crate::multiboot::Info;
use crate::{cpu, println};
use tables::Build;

const LOW_POOL: (u64, u64) = (0x1000_0000, 0x2000_0000);
const HIGH_POOL: (u64, u64) = (0x1_0000_0000, 0x1_2000_0000);
const LOW_TARGET: (u64, u64) = (0x4000_0000, 0xbf00_0000);
const HIGH_TARGET: (u64, u64) = (0x1_2000_0000, 0x2_4000_0000);
/// The top bits of a stamp: the rest is the physical address of the stamp itself.
const STAMP: u64 = 0x5ea7 << 48;
/// The top bits of a store's token: the rest is the probe number.
const TOKEN: u64 = 0x570e << 48;
/// A, D.
const AD: u64 = 0x60;
const PS: u64 = 0x80;
const ADDR_PAE: u64 = 0x0000_000f_ffff_f000;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `pct` percent.
    fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    /// A random `align`-aligned address in `[lo, hi)`.
    fn addr(&mut self, (lo, hi): (u64, u64), align: u64) -> u64 {
        lo + self.below((hi - lo) / align) * align
    }
}

fn arg_u64(info: &Info, key: &str, default: u64) -> Option<u64> {
    match info.arg(key) {
        None => Some(default),
        Some(v) => v.parse().ok(),
    }
}

/// The run's parameters, from the kernel command line.
struct Config {
    /// PAE, else 2-level with PSE (`mode=pae|2level`).
    pae: bool,
    seed: u64,
    /// Probes to make (`probes=`).
    nprobes: u64,
    /// Page-directory slots of the user half to fill (`mappings=`).
    nslots: u64,
}

/// Read the parameters and check that the pools and the target ranges are RAM; print why
/// not and return `None` if the run cannot go ahead.
fn config(info: &Info) -> Option<Config> {
    let pae = match info.arg("mode").unwrap_or("pae") {
        "pae" => true,
        "2level" => false,
        m => {
            println!("mmu-diff: unknown mode {m} (2level or pae)");
            return None;
        }
    };
    let (Some(seed), Some(nprobes), Some(nslots)) = (
        arg_u64(info, "seed", 1),
        arg_u64(info, "probes", 4000),
        arg_u64(info, "mappings", 96),
    ) else {
        println!("mmu-diff: seed, probes and mappings take decimal numbers");
        return None;
    };
    for (lo, hi) in [LOW_POOL, LOW_TARGET].into_iter().chain(
        pae.then_some([HIGH_POOL, HIGH_TARGET])
            .into_iter()
            .flatten(),
    ) {
        if !info.is_ram(lo, hi) {
            println!("mmu-diff: {lo:#x}..{hi:#x} is not RAM (boot with -m 8G)");
            return None;
        }
    }
    Some(Config {
        pae,
        seed,
        nprobes,
        nslots,
    })
}

/// Build the seeded page tables, probe them with real accesses, dump the results.
pub fn run(info: &Info) -> bool {
    let Some(cfg) = config(info) else {
        return false;
    };
    let mut b = Build::new(cfg.pae, cfg.seed);

    // The kernel half first (mapping phys 0..1 GB at 0xC0000000 as the temporary tables do,
    // the last large page being the window), then the switch, then the user half through
    // the window.
    let (cr3, pds) = b.kernel_half();
    // ring 3 uses the segments and the TSS `cpu::init` loaded (user code 0x1b, data 0x23)
    cpu::set_raw_hook(Some(probe::hook));
    let slots = b.user_half(cr3, &pds, cfg.nslots);
    if cfg.pae {
        // reload the PDPTE registers
        // SAFETY: the same tables, now complete.
        unsafe { core::arch::asm!("mov cr3, {}", in(reg) cr3 as u32, options(nostack)) };
    }

    dump::tables(&b, cfg.seed, cr3, slots);
    let t0 = cpu::rdtsc();
    let faults = probe::probe_all(&mut b, cr3, cfg.nprobes);
    let cycles = cpu::rdtsc() - t0;
    cpu::set_raw_hook(None);
    dump::fin(&b);
    let nprobes = cfg.nprobes;
    println!("@mmu end probes={nprobes} faults={faults} cycles={cycles}");
    true
}
