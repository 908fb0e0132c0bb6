//! Command-line arguments shared by the commands, with checked parsers that say what is
//! wrong and what is accepted.

use clap::Args;
use highpte_arch::size::{parse_size, DisplaySize, GB, MB};
use highpte_arch::{Config, KernelProfile, MemoryVariant, MAX_CPUS};
use highpte_kernel::mm::reclaim::ReclaimKind;
use highpte_kernel::{KernelOptions, PtAllocKind, PteStrategy};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Print a usage error as one line (plus clap's help/version output untouched) and exit 2.
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        // `highpte` alone, or a command without its arguments: the help, on stderr, as a
        // usage error.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{}", e.render());
            ExitCode::from(crate::EXIT_USAGE)
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
            // clap's possible values or tip, unless the first paragraph already says it; a tip
            // to pass a value with `--` is wrong for our options (none takes a leading '-').
            let extra = text
                .lines()
                .map(str::trim)
                .find(|l| {
                    (l.starts_with("[possible values") || l.starts_with("tip:"))
                        && !l.contains("'--")
                        && !joined.contains(*l)
                })
                .map(|l| format!(" {l}"))
                .unwrap_or_default();
            eprintln!(
                "highpte: {}{} (see 'highpte --help')",
                crate::text::display_message(first.trim_start_matches("error: ").trim()),
                extra
            );
            ExitCode::from(crate::EXIT_USAGE)
        }
    }
}

/// `WHAT 'S' is not a size: ...` without saying "not a size" twice.
pub fn size_error(what: &str, s: &str, e: highpte_arch::size::SizeError) -> String {
    use highpte_arch::size::SizeError;
    match e {
        SizeError::Empty => format!("{what} is empty: give a number of bytes with an optional K, M, G or T suffix (e.g. 512M, 32G)"),
        SizeError::NotASize => format!("{what} '{s}' is not a size: give a number of bytes with an optional K, M, G or T suffix (e.g. 512M, 32G)"),
        SizeError::Overflow => format!("{what} '{s}' is too large to be a size"),
    }
}

/// A memory configuration name.
pub fn parse_variant(s: &str) -> Result<MemoryVariant, String> {
    s.parse::<MemoryVariant>().map_err(|_| format!("unknown configuration '{s}': expected one of nohighmem, 4g, 4g-highpte, 64g, 64g-highpte"))
}

/// A kernel profile name: `2.5` or `linux-6.1`.
pub fn parse_kernel(s: &str) -> Result<KernelProfile, String> {
    s.parse::<KernelProfile>()
        .map_err(|_| format!("unknown kernel profile '{s}': expected 2.5 or linux-6.1"))
}

fn parse_ram(s: &str) -> Result<u64, String> {
    let v = parse_size(s).map_err(|e| size_error("RAM", s, e))?;
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
    let v = parse_size(s).map_err(|e| size_error("swap size", s, e))?;
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
    parse_size(s).map_err(|e| size_error("highmem size", s, e))
}

/// `on` or `off` (also `yes`/`no`, `true`/`false`, `1`/`0`).
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" | "1" => Ok(true),
        "off" | "no" | "false" | "0" => Ok(false),
        _ => Err(format!("'{s}' is not on or off")),
    }
}

/// A seed: any whole number from 0 to 2^64-1 (a leading '-' reaches this parser, so that
/// `--seed -1` gets this message rather than a suggestion to write `-- -1`).
pub fn parse_seed(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("seed '{s}' is not a whole number from 0 to {}", u64::MAX))
}

/// `--fail-alloc`: see [`FailAlloc::parse`](highpte_kernel::FailAlloc::parse).
pub fn parse_fail_alloc(s: &str) -> Result<highpte_kernel::FailAlloc, String> {
    highpte_kernel::FailAlloc::parse(s)
}

/// A number of persistent kmap entries: a power of two from 2 to 1024 (LAST_PKMAP without
/// PAE; the PAE limit of 512 is checked with the configuration).
pub fn parse_pkmap_entries(s: &str) -> Result<u32, String> {
    let accepted = "accepted a power of two from 2 to 1024 (LAST_PKMAP; 512 with PAE)";
    let v: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of kmap entries: {accepted}"))?;
    if !(2..=1024).contains(&v) || !v.is_power_of_two() {
        return Err(format!("{v} kmap entries: {accepted}"));
    }
    Ok(v)
}

/// A number of processes: 1 to 32767 (the pids Linux 2.5 has).
pub fn parse_processes(s: &str) -> Result<u32, String> {
    let max = highpte_workload::spec::MAX_PROCESSES;
    match s.trim().parse::<u64>() {
        Ok(v) if (1..=u64::from(max)).contains(&v) => Ok(v as u32),
        Ok(v) => Err(format!(
            "{v} processes is out of range: accepted 1 to {max} (the pids Linux 2.5 has)"
        )),
        Err(_) => Err(format!(
            "'{s}' is not a number of processes: accepted 1 to {max}"
        )),
    }
}

/// Host threads for the commands that run several machines: 1 to 256.
pub fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.trim().parse::<u64>() {
        Ok(v) if (1..=256).contains(&v) => Ok(v as usize),
        _ => Err(format!(
            "'{s}' is not a number of jobs: accepted 1 to 256 host threads"
        )),
    }
}

/// `--preempt [on|off]` and `--no-preempt`, the same on every command.
#[derive(Args, Clone, Debug, Default)]
pub struct PreemptArgs {
    /// Kernel preemption (CONFIG_PREEMPT): on or off; `--preempt` alone means on.
    #[arg(long, value_name = "on|off", num_args = 0..=1, default_missing_value = "on", value_parser = parse_on_off)]
    pub preempt: Option<bool>,
    /// Kernel preemption off (the same as --preempt off).
    #[arg(long = "no-preempt", conflicts_with = "preempt")]
    pub no_preempt: bool,
}

impl PreemptArgs {
    /// The choice on the command line, if any.
    pub fn value(&self) -> Option<bool> {
        if self.no_preempt {
            Some(false)
        } else {
            self.preempt
        }
    }
}

/// A note when RAM is more than `variant` addresses: the kernel uses what it addresses and
/// ignores the rest, as Linux did (the same words on every command).
pub fn ram_note(variant: MemoryVariant, ram: u64) -> Option<String> {
    let max = variant.max_usable_ram();
    (ram > max).then(|| {
        format!(
            "a {} kernel addresses at most {} of RAM, so it uses {} of the {} and ignores the rest, as Linux did",
            variant.name(),
            DisplaySize(max),
            DisplaySize(max),
            DisplaySize(ram)
        )
    })
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
    /// Use the --swap-file path even if a file is already there: its contents are lost and
    /// it is removed at the end. Without this, an existing file is refused and left alone.
    #[arg(long = "swap-file-overwrite", requires = "swap_file")]
    pub overwrite: bool,
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

    /// Refuse `path` if something is already there, unless `--swap-file-overwrite`: the run
    /// empties its swap file and removes it at the end, which must never happen to a file the
    /// run did not create.
    fn refuse_existing(&self, path: &Path) -> Result<(), crate::workload_args::InputError> {
        // A directory (or nothing) is left to the swap file's own check, which names it.
        if self.overwrite || std::fs::symlink_metadata(path).map_or(true, |m| m.is_dir()) {
            return Ok(());
        }
        Err(crate::workload_args::InputError(format!(
            "--swap-file: {} already exists; a swap file is emptied at the start and removed at the end, so highpte leaves existing files alone: choose a path where nothing is, or add --swap-file-overwrite to use it anyway",
            path.display()
        )))
    }

    /// The swap file of a command that runs one machine: PATH itself, refused if it exists
    /// (see [`Self::refuse_existing`]).
    pub fn single(&self) -> Result<Option<PathBuf>, crate::workload_args::InputError> {
        if let Some(p) = &self.swap_file {
            self.refuse_existing(p)?;
            ignore_file_size_signal();
        }
        Ok(self.swap_file.clone())
    }

    /// The swap files of a command that runs `runs` machines: PATH.0 to PATH.(runs-1), each
    /// refused if it exists. Creates and removes the first one now (it was not there), so
    /// that a path the host refuses is reported once, before any run starts.
    pub fn numbered(
        &self,
        runs: usize,
    ) -> Result<Option<NumberedSwapFiles>, crate::workload_args::InputError> {
        let Some(base) = &self.swap_file else {
            return Ok(None);
        };
        let files = NumberedSwapFiles { base: base.clone() };
        for i in 0..runs {
            self.refuse_existing(&files.path(i))?;
        }
        ignore_file_size_signal();
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
    /// The Linux the kernel follows where versions differ: 2.5 (the seed's kernel, the
    /// default) or linux-6.1 (Debian 12's 686-pae kernel; see docs/fidelity.md).
    #[arg(long, value_name = "2.5|linux-6.1", value_parser = parse_kernel)]
    pub kernel: Option<KernelProfile>,
    /// Installed RAM (e.g. 512M, 32G): 16M to 64G.
    #[arg(long, value_parser = parse_ram)]
    pub ram: Option<u64>,
    /// Number of CPUs: 1 (UP) to 32.
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<u32>,
    #[command(flatten)]
    pub preempt: PreemptArgs,
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
    /// Use only this many persistent kmap entries: a power of two from 2 to LAST_PKMAP (1024,
    /// or 512 with PAE).
    #[arg(long = "pkmap-entries", value_parser = parse_pkmap_entries)]
    pub pkmap_entries: Option<u32>,
    /// Cost model: a TOML file naming a base table and the cycle costs it overrides
    /// (docs/cost-model.md); the default is the 2002 Pentium 4 Xeon table.
    #[arg(long, value_name = "FILE")]
    pub cost: Option<std::path::PathBuf>,
}

impl MachineArgs {
    /// The cost model `--cost FILE` gives, read and checked before anything is simulated;
    /// `None` without the flag (the default table).
    pub fn cost_model(
        &self,
    ) -> Result<Option<highpte_machine::cost::CostModel>, crate::workload_args::InputError> {
        self.cost
            .as_ref()
            .map(|p| {
                highpte_machine::cost::CostModel::from_file(p)
                    .map_err(|e| crate::workload_args::InputError(format!("--cost: {e}")))
            })
            .transpose()
    }
    /// The configuration, with these defaults where a flag is absent.
    pub fn config(
        &self,
        variant: MemoryVariant,
        ram: u64,
        cpus: u32,
        preempt: bool,
    ) -> anyhow::Result<Config> {
        let preempt = self.preempt.value().unwrap_or(preempt);
        let mut cfg = Config::new(
            self.config.unwrap_or(variant),
            self.ram.unwrap_or(ram),
            self.cpus.unwrap_or(cpus),
            preempt,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        cfg.highmem_limit = self.highmem;
        cfg.kernel = self.kernel.unwrap_or_default();
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
    /// No progress output (a boot takes under a second and shows none).
    #[arg(long, short)]
    pub quiet: bool,
}
