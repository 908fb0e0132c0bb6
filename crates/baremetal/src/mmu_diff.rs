//! The bare-metal side of the differential MMU test (`cargo xtask mmu-diff`).

use crate::multiboot::Info;

/// Build the seeded page tables, probe them with real accesses, dump the results.
pub fn run(info: &Info) -> bool {
    crate::println!("mmu-diff is not built yet (seed {:?})", info.arg("seed"));
    false
}
