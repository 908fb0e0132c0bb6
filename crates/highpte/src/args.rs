//! Command-line arguments shared by the commands, with checked parsers that say what is
//! wrong and what is accepted.

use clap::Args;
use highpte_arch::size::{parse_size, DisplaySize, GB, MB};
use highpte_arch::{Config, MemoryVariant, MAX_CPUS};
use highpte_kernel::mm::reclaim::ReclaimKind;
use highpte_kernel::{KernelOptions, PtAllocKind, PteStrategy};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Print a usage error as one line (plus clap's help/version output untouched) and exit 2.
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let text = e.render().to_string();
            // the first paragraph (clap puts the missing argument names on the next lines)
            let para: Vec<&str> = text
                .lines()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(|l| l.trim())
                .collect();
            let joined = para.join(" ");
            let first = if joined.is_empty() {
                "invalid arguments"
            } else {
                joined.as_str()
            };
            let extra = text
                .lines()
                .find(|l| {
                    l.trim_start().starts_with("[possible values")
                        || l.trim_start().starts_with("tip:")
                })
                .map(|l| format!(" {}", l.trim()))
                .unwrap_or_default();
            eprintln!(
                "highpte: {}{} (see 'highpte --help')",
                first.trim_start_matches("error: ").trim(),
                extra
            );
            ExitCode::from(crate::EXIT_USAGE)
        }
    }
}

fn parse_variant(s: &str) -> Result<MemoryVariant, String> {
    s.parse::<MemoryVariant>().map_err(|_| format!("unknown configuration '{s}': expected one of nohighmem, 4g, 4g-highpte, 64g, 64g-highpte"))
}

fn parse_ram(s: &str) -> Result<u64, String> {
    let v = parse_size(s).map_err(|e| format!("RAM '{s}' is not a size ({e})"))?;
    if !(16 * MB..=64 * GB).contains(&v) {
        return Err(format!(
            "RAM of {} is out of range: accepted 16M to 64G",
            DisplaySize(v)
        ));
    }
    if v % 4096 != 0 {
        return Err(format!(
            "RAM of {v} bytes is not a whole number of 4K pages"
        ));
    }
    Ok(v)
}

fn parse_cpus(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of CPUs: accepted 1 (UP) to {MAX_CPUS}"))?;
    if v == 0 || v > MAX_CPUS {
        return Err(format!(
            "{v} CPUs is out of range: accepted 1 (UP) to {MAX_CPUS}"
        ));
    }
    Ok(v)
}

fn parse_strategy(s: &str) -> Result<PteStrategy, String> {
    PteStrategy::from_name(s)
        .ok_or_else(|| format!("unknown pte strategy '{s}': expected lowmem, atomic or persistent"))
}

fn parse_pt_alloc(s: &str) -> Result<PtAllocKind, String> {
    PtAllocKind::from_name(s).ok_or_else(|| {
        format!("unknown page-table allocator '{s}': expected pool, quicklist or buddy")
    })
}

fn parse_swap(s: &str) -> Result<u64, String> {
    let v = parse_size(s).map_err(|e| format!("swap size '{s}' is not a size ({e})"))?;
    if v > highpte_workload::spec::MAX_SWAP {
        return Err(format!(
            "swap size '{s}' is too big: at most 64G (2^24 slots of 4 KB)"
        ));
    }
    Ok(v)
}

fn parse_reclaim(s: &str) -> Result<ReclaimKind, String> {
    ReclaimKind::from_name(s)
        .ok_or_else(|| format!("unknown reclaim design '{s}': expected scan or rmap"))
}

fn parse_highmem(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| format!("highmem size '{s}' is not a size ({e})"))
}

/// `--swap-file PATH`: the swap device in a host file instead of host memory.
#[derive(Args, Clone, Debug, Default)]
pub struct SwapFileArgs {
    /// Keep the swap device in this host file instead of host memory, for swap bigger than
    /// the host can hold (needs swap). Created or emptied at the start, removed at the end.
    /// Commands that run several machines (compare, sweep, matrix) give each run its own
    /// file: PATH.0, PATH.1, ... in the order of the output.
    #[arg(long = "swap-file", value_name = "PATH")]
    pub swap_file: Option<PathBuf>,
}

impl SwapFileArgs {
    /// Refuse `--swap-file` on a machine without swap; `how` says how to get swap in this
    /// command.
    pub fn require_swap(
        &self,
        has_swap: bool,
        how: &str,
    ) -> Result<(), crate::workload_args::InputError> {
        match &self.swap_file {
            Some(p) if !has_swap => Err(crate::workload_args::InputError(format!(
                "--swap-file {} needs a swap device, and this machine has none: {how}",
                p.display()
            ))),
            _ => Ok(()),
        }
    }

    /// The swap file of a command that runs one machine: PATH itself.
    pub fn single(&self) -> Option<PathBuf> {
        if self.swap_file.is_some() {
            ignore_file_size_signal();
        }
        self.swap_file.clone()
    }

    /// The swap file of run `index` of a command that runs several machines: PATH.index.
    /// Creates and removes the first one now, so that a path the host refuses is reported
    /// once, before any run starts.
    pub fn numbered(&self) -> Result<Option<NumberedSwapFiles>, crate::workload_args::InputError> {
        let Some(base) = &self.swap_file else {
            return Ok(None);
        };
        ignore_file_size_signal();
        let files = NumberedSwapFiles { base: base.clone() };
        highpte_machine::blockdev::SwapFile::create(&files.path(0))
            .map(drop)
            .map_err(|e| crate::workload_args::InputError(e.to_string()))?;
        Ok(Some(files))
    }
}

/// Let a swap file that reaches the host's file-size limit (`ulimit -f`) fail its write with
/// EFBIG, which stops the run with a message naming the file, rather than have SIGXFSZ kill
/// the process without one.
fn ignore_file_size_signal() {
    // SAFETY: SIG_IGN installs no handler code, and nothing else in this program uses SIGXFSZ.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// One swap file per run: PATH.0, PATH.1, ...
#[derive(Clone, Debug)]
pub struct NumberedSwapFiles {
    base: PathBuf,
}

impl NumberedSwapFiles {
    /// The swap file of run `index`.
    pub fn path(&self, index: usize) -> PathBuf {
        numbered_path(&self.base, index)
    }
}

/// `base` with `.index` appended to its file name.
fn numbered_path(base: &Path, index: usize) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".{index}"));
    PathBuf::from(s)
}

/// The machine and kernel: configuration, RAM, CPUs, preemption, strategies, debug.
#[derive(Args, Clone, Debug)]
pub struct MachineArgs {
    /// Memory configuration: nohighmem, 4g, 4g-highpte, 64g, 64g-highpte.
    #[arg(long, value_parser = parse_variant)]
    pub config: Option<MemoryVariant>,
    /// Installed RAM (e.g. 512M, 32G): 16M to 64G.
    #[arg(long, value_parser = parse_ram)]
    pub ram: Option<u64>,
    /// Number of CPUs: 1 (UP) to 32.
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<u32>,
    /// Kernel preemption on (CONFIG_PREEMPT).
    #[arg(long, overrides_with = "no_preempt")]
    pub preempt: bool,
    /// Kernel preemption off.
    #[arg(long = "no-preempt")]
    pub no_preempt: bool,
    /// pte strategy: lowmem, atomic (the seed's highpte) or persistent (kmap()).
    #[arg(long, value_parser = parse_strategy)]
    pub strategy: Option<PteStrategy>,
    /// Page-table page allocator: pool (the seed's per-CPU pool), quicklist (2.4) or buddy.
    #[arg(long = "pt-alloc", value_parser = parse_pt_alloc)]
    pub pt_alloc: Option<PtAllocKind>,
    /// Limit HighMem to SIZE (the highmem= boot option).
    #[arg(long, value_parser = parse_highmem)]
    pub highmem: Option<u64>,
    /// Turn on the debugging helpers (CONFIG_DEBUG_HIGHMEM and more).
    #[arg(long)]
    pub debug: bool,
    /// Swap device size (e.g. 2G; 0 for none): reclaim may swap pages out.
    #[arg(long, value_parser = parse_swap)]
    pub swap: Option<u64>,
    #[command(flatten)]
    pub swap_file: SwapFileArgs,
    /// Reclaim design: scan (page-table scan, the 2.5.5 default) or rmap (reverse maps).
    #[arg(long, value_parser = parse_reclaim)]
    pub reclaim: Option<ReclaimKind>,
    /// Use only this many persistent kmap entries (a power of two up to LAST_PKMAP).
    #[arg(long = "pkmap-entries", value_parser = clap::value_parser!(u32).range(2..=1024))]
    pub pkmap_entries: Option<u32>,
}

impl MachineArgs {
    /// The configuration, with these defaults where a flag is absent.
    pub fn config(
        &self,
        variant: MemoryVariant,
        ram: u64,
        cpus: u32,
        preempt: bool,
    ) -> anyhow::Result<Config> {
        let preempt = if self.no_preempt {
            false
        } else if self.preempt {
            true
        } else {
            preempt
        };
        let mut cfg = Config::new(
            self.config.unwrap_or(variant),
            self.ram.unwrap_or(ram),
            self.cpus.unwrap_or(cpus),
            preempt,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        cfg.highmem_limit = self.highmem;
        Ok(cfg)
    }
    /// Kernel options for `cfg` with these flags applied.
    pub fn kernel_options(&self, cfg: &Config) -> KernelOptions {
        let mut k = KernelOptions::defaults_for(cfg);
        if let Some(s) = self.strategy {
            k.strategy = s;
        }
        if let Some(a) = self.pt_alloc {
            k.pt_alloc = a;
        }
        k.debug = self.debug;
        k.pkmap_entries = self.pkmap_entries;
        if let Some(s) = self.swap {
            k.swap_pages = s / 4096;
        }
        if let Some(r) = self.reclaim {
            k.reclaim = r;
        }
        k
    }
}

/// `highpte boot`.
#[derive(Args, Clone, Debug)]
pub struct BootArgs {
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Print one JSON object instead of the boot log.
    #[arg(long)]
    pub json: bool,
}
