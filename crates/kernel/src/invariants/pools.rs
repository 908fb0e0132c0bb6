//! The allocator pools against the census: reverse-map chain pages, kernel-object pages,
//! kernel and user page-table pages, and each zone's free lists and page owners.

use super::Census;
use crate::kernel::Kernel;
use crate::page_alloc::{PageOwner, ZoneType};
use crate::platform::Platform;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use highpte_arch::layout::PAGE_OFFSET;
use highpte_arch::{PagingMode, VirtAddr};

impl<M: PagingMode> Kernel<M> {
    /// Reverse-map chains exist only for mapped pages, and the chain pool's pages are the
    /// pages owned by pte chains.
    pub(super) fn check_rmap_pool(&self, census: &Census, bad: &mut Vec<String>) {
        let maps = &census.maps;
        let (_, _, chain_pages, chained) = self.rmap_usage();
        let mapped = maps.len() as u64 - u64::from(maps.contains_key(&self.zero_page.0));
        if chained > mapped {
            bad.push(format!(
                "{} pages have reverse-map chains but only {} are mapped",
                chained, mapped
            ));
        }
        let chain_owned = self.pages_owned_by(PageOwner::PteChain);
        if chain_owned != chain_pages {
            bad.push(format!(
                "{} pages owned by pte chains but the chain pool holds {}",
                chain_owned, chain_pages
            ));
        }
    }

    /// Kernel-object pages: the slab pages, the pgd cache's pages and an 8 KB stack per task.
    pub(super) fn check_kernel_objects(&self, bad: &mut Vec<String>) {
        let kobj_owned = self.pages_owned_by(PageOwner::KernelObject);
        let pgd_cache = self.pt_alloc.pgd_cache.pages();
        let kobj_want =
            self.kobj.pages.borrow().len() as u64 + pgd_cache + 2 * self.tasks.len() as u64;
        if kobj_owned != kobj_want {
            bad.push(format!(
                "{} kernel-object pages allocated but {} slab pages, {} pgd-cache pages and {} task stacks exist",
                kobj_owned,
                self.kobj.pages.borrow().len(),
                pgd_cache,
                self.tasks.len()
            ));
        }
    }

    /// Count the kernel pte pages allocated after boot (`pte_alloc_kernel`) into `pt_pages`:
    /// they live in the kernel tables, above `PAGE_OFFSET`.
    pub(super) fn count_kernel_pte_pages<P: Platform>(&self, p: &P, pt_pages: &mut [u64; 3]) {
        let mut ka = PAGE_OFFSET as u64;
        while ka < 1 << 32 {
            if let Some(ptp) = self.kernel_pte_page(p, VirtAddr::new(ka as u32)) {
                if self.mem_map.desc(ptp).owner() == PageOwner::PageTable {
                    pt_pages[self.page_zone(ptp) as usize] += 1;
                }
            }
            ka += M::PTE_PAGE_SPAN as u64;
        }
    }

    /// Each zone: its free lists are consistent, its pages by owner plus its free pages are
    /// its present pages, and its page-table pages are those found in live page tables.
    pub(super) fn check_zones<P: Platform>(
        &self,
        p: &P,
        pt_pages: &[u64; 3],
        bad: &mut Vec<String>,
    ) {
        for z in ZoneType::ALL {
            let (checked, free, present) = self.page_alloc.with_zone(p, z, |g| {
                (g.check(&self.mem_map), g.free_pages(), g.present_pages())
            });
            if let Err(e) = checked {
                bad.push(format!("zone {}: {}", z.name(), e));
            }
            let owned: u64 = PageOwner::ALL
                .iter()
                .filter(|o| **o != PageOwner::Free)
                .map(|o| self.owner_pages(z, *o))
                .sum();
            if owned + free != present {
                bad.push(format!(
                    "zone {}: {} pages owned + {} free != {} present",
                    z.name(),
                    owned,
                    free,
                    present
                ));
            }
            let pt = self.owner_pages(z, PageOwner::PageTable);
            if pt != pt_pages[z as usize] {
                bad.push(format!(
                    "zone {}: {} page-table pages accounted but {} exist in live page tables",
                    z.name(),
                    pt,
                    pt_pages[z as usize]
                ));
            }
        }
    }
}
