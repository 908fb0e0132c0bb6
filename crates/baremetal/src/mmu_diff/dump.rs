//! The dump of the tables: the `cfg` and `pg` lines before the probes, the `pdpt-fin` and
//! `fin` lines after them.

use super::tables::{Build, PageKind};
use crate::println;

/// Print the `cfg` line and the nonzero entries of every table page as built (`pg` lines of
/// at most 64 entries each, at least one line per page).
pub(super) fn tables(b: &Build, seed: u64, cr3: u64, slots: usize) {
    let pae = b.phys.pae;
    println!(
        "@mmu cfg mode={} seed={seed} cr3={cr3:x} wp=1 pse=1 nxe=0 slots={} leaves={} pages={}",
        if pae { "pae" } else { "2level" },
        slots,
        b.leaves.len(),
        b.pages.len()
    );
    let esz = if pae { 8 } else { 4 };
    for &(pa, _) in &b.pages {
        let mut line = alloc::string::String::new();
        let mut n = 0;
        for i in 0..4096 / esz {
            let v = b.phys.entry(pa + i * esz);
            if v != 0 {
                use core::fmt::Write as _;
                let _ = write!(line, " {i:x}={v:x}");
                n += 1;
                if n == 64 {
                    println!("@mmu pg {pa:x}{line}");
                    line.clear();
                    n = 0;
                }
            }
        }
        if n > 0 || line.is_empty() {
            println!("@mmu pg {pa:x}{line}");
        }
    }
}

/// Print the PDPTEs (`pdpt-fin`) and a hash of every other table page but the PAE kernel
/// page directory (`fin`), after all probes.
pub(super) fn fin(b: &Build) {
    let esz = if b.phys.pae { 8 } else { 4 };
    for &(pa, kind) in &b.pages {
        let entries = match kind {
            PageKind::KernelPd => continue,
            PageKind::Pd2 => 768,
            PageKind::Pdpt => {
                let e: [u64; 4] = core::array::from_fn(|i| b.phys.rd64(pa + 8 * i as u64));
                println!("@mmu pdpt-fin {:x} {:x} {:x} {:x}", e[0], e[1], e[2], e[3]);
                continue;
            }
            PageKind::Table => 4096 / esz,
        };
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for i in 0..entries {
            h = (h ^ b.phys.entry(pa + i * esz)).wrapping_mul(0x0100_0000_01b3);
        }
        println!("@mmu fin {pa:x} {h:x}");
    }
}
