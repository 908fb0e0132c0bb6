//! How much host memory the simulated RAM holds: [`PhysMem::resident_bytes`]'s sources.

use super::PhysMem;
use highpte_arch::PAGE_SHIFT;

impl PhysMem {
    pub(super) fn resident_bytes_smaps(&self) -> Option<u64> {
        let text = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let start = self.base as u64;
        let end = start + self.size;
        let mut inside = false;
        let mut found = false;
        let mut total_kb = 0u64;
        for line in text.lines() {
            if let Some(range) = line.split_whitespace().next().filter(|w| w.contains('-')) {
                // A mapping header: "start-end perms offset dev inode [path]".
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
                    {
                        inside = a >= start && b <= end;
                        if !inside && a < end && b > start {
                            // Merged with something else: cannot attribute its Rss.
                            return None;
                        }
                        found |= inside;
                        continue;
                    }
                }
            }
            if inside {
                if let Some(rest) = line.strip_prefix("Rss:") {
                    let kb = rest
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()?;
                    total_kb += kb;
                }
            }
        }
        found.then_some(total_kb * 1024)
    }

    pub(super) fn resident_bytes_mincore(&self) -> u64 {
        const CHUNK_PAGES: usize = 1 << 16;
        let mut vec = vec![0u8; CHUNK_PAGES];
        let mut resident = 0u64;
        let total_pages = self.nr_pages() as usize;
        let mut page = 0usize;
        while page < total_pages {
            let n = CHUNK_PAGES.min(total_pages - page);
            // SAFETY: the address range is inside our mapping and page aligned; `vec` has room
            // for one byte per page of the range.
            let rc = unsafe {
                libc::mincore(
                    self.base.add(page << PAGE_SHIFT).cast(),
                    n << PAGE_SHIFT,
                    vec.as_mut_ptr(),
                )
            };
            if rc == 0 {
                resident += vec[..n].iter().filter(|&&b| b & 1 != 0).count() as u64;
            }
            page += n;
        }
        resident << PAGE_SHIFT
    }
}
