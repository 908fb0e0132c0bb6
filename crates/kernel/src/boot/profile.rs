//! The boot reservations a kernel profile makes besides the image, the kernel page tables and
//! mem_map (which every profile has).
//!
//! The 2.5 profile has none. The 6.1 profile reserves, from its boot log on QEMU's PC with
//! 8 GB (tools/realkernel, docs/fidelity.md):
//! - the software IO TLB: 64 MB of bounce buffers, set up whenever RAM reaches above 4 GB
//!   (devices that address only 32 bits bounce through it);
//! - the dentry and inode hash tables, sized from low memory at boot (one 4-byte bucket per
//!   8 KB and per 16 KB of it, rounded up to a power of two: 512 KB and 256 KB with 8 GB);
//! - the per-CPU areas: 33 pages per CPU (`percpu: Embedded 33 pages/cpu`);
//! - the rest of the early reservations that the boot log does not itemize (early page tables
//!   beyond the simulator's own, ACPI tables, memblock's arrays, the initrd until it is freed):
//!   300 pages, what the measured LowTotal leaves once everything above is counted.

use highpte_arch::{Config, KernelProfile, PAGE_SIZE};

/// What the 6.1 kernel allocated during boot, after its page allocator was up and before its
/// first user process, in KB of low memory: the real boot's /proc/meminfo and /proc/zoneinfo
/// with `/init` just started (LowTotal - LowFree = 13,340 KB in all four runs). The
/// simulator takes these pages from the Normal zone at the end of its boot.
pub(crate) const LINUX61_BOOT_ALLOCATIONS_KB: [(&str, u64); 7] = [
    // Slab: 8,904-8,956 KB
    ("slab caches", 8_908),
    // KernelStack: 368-376 KB, the kernel threads' 8 KB stacks
    ("kernel threads' stacks", 376),
    // the pages on the per-CPU lists of DMA and Normal (zoneinfo `count`): not free
    ("per-CPU page lists", 2_420),
    // VmallocUsed
    ("vmalloc", 276),
    // mount, mountpoint, futex, dquot, IP idents, TCP, MPTCP, UDP hash tables (boot log)
    ("hash tables", 632),
    // "bounce: pool size: 64 pages"
    ("highmem bounce pool", 256),
    // what the measured 13,340 KB leaves
    ("other", 472),
];

/// KB of low memory the profile's kernel allocates during boot (0 for 2.5).
pub(crate) fn boot_allocations_kb(cfg: &Config) -> u64 {
    match cfg.kernel {
        KernelProfile::Linux25 => 0,
        KernelProfile::Linux61 => LINUX61_BOOT_ALLOCATIONS_KB.iter().map(|a| a.1).sum(),
    }
}

/// Most named reservations a profile makes.
const MAX_EXTRA: usize = 5;

/// A profile's other boot reservations: names and frames, in the order boot lays them out.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Extra {
    items: [(&'static str, u64); MAX_EXTRA],
    len: usize,
}

/// The 6.1 software IO TLB's default size.
const SWIOTLB_BYTES: u64 = 64 << 20;
/// 6.1's per-CPU first chunk on i386 (`Embedded 33 pages/cpu`).
const PERCPU_PAGES_PER_CPU: u64 = 33;
/// Early reservations the 6.1 boot log does not itemize (see the module docs).
const OTHER_EARLY_PAGES: u64 = 300;

impl Extra {
    /// The reservations of `cfg`'s kernel profile.
    pub(crate) fn for_config(cfg: &Config) -> Self {
        let mut x = Extra::default();
        if cfg.kernel != KernelProfile::Linux61 {
            return x;
        }
        if cfg.phys_end() > 4 << 30 {
            x.push("software IO TLB", SWIOTLB_BYTES / PAGE_SIZE);
        }
        let low = cfg.ram_map().bytes_in(0, cfg.lowmem_bytes());
        x.push("dentry hash table", hash_table_pages(low, 13));
        x.push("inode hash table", hash_table_pages(low, 14));
        x.push("per-CPU areas", PERCPU_PAGES_PER_CPU * u64::from(cfg.cpus));
        x.push("other early reservations", OTHER_EARLY_PAGES);
        x
    }

    fn push(&mut self, what: &'static str, pages: u64) {
        self.items[self.len] = (what, pages);
        self.len += 1;
    }

    /// The reservations: what and how many frames.
    pub(crate) fn items(&self) -> &[(&'static str, u64)] {
        &self.items[..self.len]
    }

    /// Frames in all.
    pub(crate) fn pages(&self) -> u64 {
        self.items().iter().map(|i| i.1).sum()
    }
}

/// Frames of a boot-time hash table of 4-byte buckets, one per `2^scale` bytes of `low`
/// memory, rounded up to a power of two (`alloc_large_system_hash`).
fn hash_table_pages(low: u64, scale: u32) -> u64 {
    ((low >> scale).next_power_of_two() * 4).div_ceil(PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use highpte_arch::MemoryVariant;

    #[test]
    fn linux61_boot_allocations_add_up_to_what_the_real_boot_used() {
        let mut cfg = Config::new(MemoryVariant::Highmem64g, 8 << 30, 1, false).unwrap();
        assert_eq!(boot_allocations_kb(&cfg), 0);
        cfg.kernel = KernelProfile::Linux61;
        assert_eq!(boot_allocations_kb(&cfg), 13_340);
    }

    #[test]
    fn linux61_on_8g_reserves_what_its_boot_log_says() {
        let mut cfg = Config::new(MemoryVariant::Highmem64gHighpte, 8 << 30, 1, false).unwrap();
        cfg.kernel = KernelProfile::Linux61;
        let x = Extra::for_config(&cfg);
        assert_eq!(
            x.items(),
            &[
                ("software IO TLB", 16_384),
                // "Dentry cache hash table entries: 131072 (order: 7, 524288 bytes)"
                ("dentry hash table", 128),
                // "Inode-cache hash table entries: 65536 (order: 6, 262144 bytes)"
                ("inode hash table", 64),
                ("per-CPU areas", 33),
                ("other early reservations", 300),
            ]
        );
        cfg.variant = MemoryVariant::Highmem4gHighpte;
        assert_eq!(Extra::for_config(&cfg).items()[0].0, "dentry hash table");
        cfg.kernel = KernelProfile::Linux25;
        assert_eq!(Extra::for_config(&cfg).pages(), 0);
    }
}
