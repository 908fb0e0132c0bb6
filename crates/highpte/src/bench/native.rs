//! Measurements of the host itself: anonymous first-touch faults through the host's Linux
//! kernel, and this process's memory (resident set, peak).

use std::time::Instant;

/// Host page size assumed by the fault loop (x86-64 Linux).
const HOST_PAGE: usize = 4096;

/// Result of the host fault loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostFaults {
    /// First-touch faults taken (pages written once after mmap).
    pub faults: u64,
    /// Host seconds for the whole loop (mmap, touch, munmap).
    pub seconds: f64,
}

impl HostFaults {
    /// Faults per host second.
    pub fn rate(&self) -> f64 {
        self.faults as f64 / self.seconds.max(1e-9)
    }
}

/// `rounds` times: mmap `pages` pages of private anonymous memory (4 KB host pages: THP
/// refused with `MADV_NOHUGEPAGE`), write one word in each page (one first-touch fault each),
/// munmap. The host kernel recycles the freed frames for the next round, as the simulator
/// does.
pub fn host_faults(pages: usize, rounds: u32) -> std::io::Result<HostFaults> {
    let len = pages * HOST_PAGE;
    let t = Instant::now();
    for r in 0..rounds {
        // SAFETY: a fresh private anonymous mapping; we write only inside it and unmap it
        // before the next round; no Rust reference to it outlives the round.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            // best effort: 4 KB faults like the simulated ones
            let _ = libc::madvise(p, len, libc::MADV_NOHUGEPAGE);
            let base = p.cast::<u8>();
            for i in 0..pages {
                std::ptr::write_volatile(base.add(i * HOST_PAGE).cast::<u32>(), r ^ i as u32);
            }
            if libc::munmap(p, len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(HostFaults {
        faults: pages as u64 * u64::from(rounds),
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Host CPU model name and count, for the report header.
pub fn host_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|x| x.1.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    format!("{model}, {cpus} host CPU(s), THP {thp}")
}
