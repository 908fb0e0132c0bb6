//! The machine configurations of the seed's matrix, parsed from and printed as their names.

use crate::layout::MAXMEM;
use crate::profile::{KernelProfile, RamMap};
use crate::size::{DisplaySize, GB, MB};
use core::fmt;
use core::str::FromStr;

/// Most CPUs a simulated machine may have.
pub const MAX_CPUS: u32 = 32;
/// Least RAM a machine may have (the DMA zone alone is 16 MB).
pub const MIN_RAM: u64 = 16 * MB;
/// Most RAM a machine may have (36-bit physical addresses).
pub const MAX_RAM: u64 = 64 * GB;

/// The five memory configurations of 2.5.5 (`CONFIG_NOHIGHMEM` ... `CONFIG_HIGHMEM64G` with
/// `CONFIG_HIGHPTE`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum MemoryVariant {
    /// No highmem: RAM above 896 MB is ignored; 2-level paging.
    NoHighmem,
    /// Highmem up to 4 GB, 2-level paging, pte pages in low memory.
    Highmem4g,
    /// Highmem up to 4 GB, 2-level paging, user pte pages in highmem.
    Highmem4gHighpte,
    /// Highmem up to 64 GB with PAE, pte pages in low memory.
    Highmem64g,
    /// Highmem up to 64 GB with PAE, user pte pages in highmem.
    Highmem64gHighpte,
}

impl MemoryVariant {
    /// All five, in the seed's column order.
    pub const ALL: [MemoryVariant; 5] = [
        MemoryVariant::NoHighmem,
        MemoryVariant::Highmem4g,
        MemoryVariant::Highmem4gHighpte,
        MemoryVariant::Highmem64g,
        MemoryVariant::Highmem64gHighpte,
    ];
    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            MemoryVariant::NoHighmem => "nohighmem",
            MemoryVariant::Highmem4g => "4g",
            MemoryVariant::Highmem4gHighpte => "4g-highpte",
            MemoryVariant::Highmem64g => "64g",
            MemoryVariant::Highmem64gHighpte => "64g-highpte",
        }
    }
    /// True if PAE paging is used (HIGHMEM64G).
    pub const fn pae(self) -> bool {
        matches!(
            self,
            MemoryVariant::Highmem64g | MemoryVariant::Highmem64gHighpte
        )
    }
    /// True if RAM above low memory becomes the HighMem zone.
    pub const fn highmem(self) -> bool {
        !matches!(self, MemoryVariant::NoHighmem)
    }
    /// True if user pte pages may come from highmem (`CONFIG_HIGHPTE`).
    pub const fn highpte(self) -> bool {
        matches!(
            self,
            MemoryVariant::Highmem4gHighpte | MemoryVariant::Highmem64gHighpte
        )
    }
    /// The most RAM this configuration can use: 896 MB, 4 GB or 64 GB.
    pub const fn max_usable_ram(self) -> u64 {
        match self {
            MemoryVariant::NoHighmem => MAXMEM,
            MemoryVariant::Highmem4g | MemoryVariant::Highmem4gHighpte => 4 * GB,
            MemoryVariant::Highmem64g | MemoryVariant::Highmem64gHighpte => 64 * GB,
        }
    }
}

impl fmt::Display for MemoryVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A configuration name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariant;

impl fmt::Display for UnknownVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown memory configuration; expected one of: nohighmem, 4g, 4g-highpte, 64g, 64g-highpte")
    }
}

impl FromStr for MemoryVariant {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim();
        MemoryVariant::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(lower))
            .ok_or(UnknownVariant)
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// RAM below 16 MB or above 64 GB.
    Ram(u64),
    /// 0 CPUs or more than 32.
    Cpus(u32),
    /// RAM not a multiple of 4 KB.
    RamAlignment(u64),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Ram(r) => write!(
                f,
                "RAM of {} is out of range: a machine has between 16M and 64G of RAM",
                DisplaySize(*r)
            ),
            ConfigError::Cpus(c) => {
                write!(
                    f,
                    "{c} CPUs is out of range: a machine has 1 (UP) to {MAX_CPUS} CPUs"
                )
            }
            ConfigError::RamAlignment(r) => {
                write!(f, "RAM of {r} bytes is not a whole number of 4K pages")
            }
        }
    }
}

/// One simulated machine and kernel build: memory variant, RAM, CPUs, preemption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The memory configuration.
    pub variant: MemoryVariant,
    /// Installed RAM in bytes (the kernel may use less: see [`Config::usable_ram`]).
    pub ram_bytes: u64,
    /// Number of CPUs (1 = UP kernel).
    pub cpus: u32,
    /// `CONFIG_PREEMPT`.
    pub preempt: bool,
    /// `highmem=`: most bytes of HighMem the kernel will manage (None = all of it).
    pub highmem_limit: Option<u64>,
    /// The Linux the kernel follows where versions differ (boot, watermarks, fork, per-process
    /// costs) and the firmware's memory map that comes with it.
    pub kernel: KernelProfile,
}

impl Config {
    /// A checked configuration.
    pub fn new(
        variant: MemoryVariant,
        ram_bytes: u64,
        cpus: u32,
        preempt: bool,
    ) -> Result<Self, ConfigError> {
        if !(MIN_RAM..=MAX_RAM).contains(&ram_bytes) {
            return Err(ConfigError::Ram(ram_bytes));
        }
        if !ram_bytes.is_multiple_of(4096) {
            return Err(ConfigError::RamAlignment(ram_bytes));
        }
        if cpus == 0 || cpus > MAX_CPUS {
            return Err(ConfigError::Cpus(cpus));
        }
        Ok(Self {
            variant,
            ram_bytes,
            cpus,
            preempt,
            highmem_limit: None,
            kernel: KernelProfile::Linux25,
        })
    }
    /// True for an SMP kernel (more than one CPU).
    pub const fn smp(&self) -> bool {
        self.cpus > 1
    }
    /// The usable RAM ranges the kernel manages: the firmware's map for the kernel profile,
    /// clipped to what the memory configuration addresses and to `highmem=`.
    pub fn ram_map(&self) -> RamMap {
        let limit = match self.variant {
            MemoryVariant::NoHighmem => self.kernel.maxmem(),
            v => v.max_usable_ram(),
        };
        let map = self.kernel.ram_map(self.ram_bytes).clipped(limit);
        match self.highmem_limit {
            Some(h) => {
                // the address where `h` bytes of RAM above the low-memory top end
                let top = self.kernel.maxmem();
                let mut left = h;
                let mut end = top;
                for &(s, e) in map.ranges() {
                    let (s, e) = (s.max(top), e.max(top));
                    let take = (e - s).min(left);
                    if take > 0 {
                        end = s + take;
                        left -= take;
                    }
                }
                map.clipped(end)
            }
            None => map,
        }
    }
    /// Bytes of RAM the kernel uses (the sum of [`Config::ram_map`]'s ranges).
    pub fn usable_ram(&self) -> u64 {
        self.ram_map().total()
    }
    /// End of the last RAM range the kernel uses: `max_pfn` in bytes. Equal to
    /// [`Config::usable_ram`] when RAM is one range from 0 (the 2.5 profile).
    pub fn phys_end(&self) -> u64 {
        self.ram_map().end()
    }
    /// End of the machine's physical address space holding all installed RAM (the PCI hole
    /// included): what the simulated machine must map.
    pub fn phys_span(&self) -> u64 {
        self.kernel.ram_map(self.ram_bytes).end()
    }
    /// Top of low (directly mapped) memory: bytes from 0 up to it are low memory.
    pub fn lowmem_bytes(&self) -> u64 {
        self.phys_end().min(self.kernel.maxmem())
    }
    /// Bytes of high memory.
    pub fn highmem_bytes(&self) -> u64 {
        let top = self.lowmem_bytes();
        self.ram_map().bytes_in(top, u64::MAX)
    }
    /// Short kernel name as in the seed's matrix: `64g-highpte SMP preempt`.
    pub fn kernel_name(&self) -> KernelName {
        KernelName(*self)
    }
}

/// Display helper for [`Config::kernel_name`].
pub struct KernelName(Config);

impl fmt::Display for KernelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.0;
        write!(
            f,
            "{} {}-preempt {}",
            c.variant,
            if c.smp() { "SMP" } else { "UP" },
            if c.preempt { "on" } else { "off" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for v in MemoryVariant::ALL {
            assert_eq!(v.name().parse::<MemoryVariant>(), Ok(v));
        }
        assert_eq!(
            "64G-HIGHPTE".parse::<MemoryVariant>(),
            Ok(MemoryVariant::Highmem64gHighpte)
        );
        assert!("8g".parse::<MemoryVariant>().is_err());
    }

    #[test]
    fn usable_ram_is_clamped() {
        let c = Config::new(MemoryVariant::NoHighmem, 2 * GB, 1, false).unwrap();
        assert_eq!(c.usable_ram(), 896 * MB);
        assert_eq!(c.highmem_bytes(), 0);
        let c = Config::new(MemoryVariant::Highmem4g, 8 * GB, 2, true).unwrap();
        assert_eq!(c.usable_ram(), 4 * GB);
        assert_eq!(c.highmem_bytes(), 4 * GB - 896 * MB);
        let mut c = Config::new(MemoryVariant::Highmem64g, 32 * GB, 4, true).unwrap();
        assert_eq!(c.highmem_bytes(), 32 * GB - 896 * MB);
        c.highmem_limit = Some(GB);
        assert_eq!(c.usable_ram(), 896 * MB + GB);
    }

    #[test]
    fn the_linux61_profile_has_the_pc_hole_and_a_lower_lowmem_top() {
        let mut c = Config::new(MemoryVariant::Highmem64gHighpte, 8 * GB, 1, false).unwrap();
        c.kernel = KernelProfile::Linux61;
        assert_eq!(c.lowmem_bytes(), 0x36ff_e000);
        assert_eq!(c.highmem_bytes() / 4096, 1_871_842);
        assert_eq!(c.phys_end(), 9 * GB);
        assert_eq!(c.phys_span(), 9 * GB);
        // RAM less the BIOS's: the first megabyte's holes, page 0 and 128 KB below 3 GB
        assert_eq!(8 * GB - c.usable_ram(), 4096 + 0x61000 + 128 * 1024);
        c.variant = MemoryVariant::Highmem4g;
        assert_eq!(c.phys_end(), 0xbffe_0000);
        c.variant = MemoryVariant::NoHighmem;
        assert_eq!(c.phys_end(), 0x36ff_e000);
        assert_eq!(c.highmem_bytes(), 0);
        c.variant = MemoryVariant::Highmem64g;
        c.highmem_limit = Some(GB);
        assert_eq!(c.highmem_bytes(), GB);
        c.highmem_limit = Some(3 * GB);
        assert_eq!(c.highmem_bytes(), 3 * GB);
        assert_eq!(
            c.phys_end(),
            4 * GB + 3 * GB - (0xc000_0000 - 128 * 1024 - 0x36ff_e000)
        );
    }

    #[test]
    fn bad_configs() {
        assert_eq!(
            Config::new(MemoryVariant::Highmem4g, 8 * MB, 1, false),
            Err(ConfigError::Ram(8 * MB))
        );
        assert_eq!(
            Config::new(MemoryVariant::Highmem4g, 65 * GB, 1, false),
            Err(ConfigError::Ram(65 * GB))
        );
        assert_eq!(
            Config::new(MemoryVariant::Highmem4g, GB, 0, false),
            Err(ConfigError::Cpus(0))
        );
        assert_eq!(
            Config::new(MemoryVariant::Highmem4g, GB, 33, false),
            Err(ConfigError::Cpus(33))
        );
        assert!(Config::new(MemoryVariant::Highmem4g, GB + 1, 1, false).is_err());
    }
}
