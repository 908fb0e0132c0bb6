//! The kernel's page allocator entry points: `alloc_pages` / `__free_pages` over the zones,
//! with owner accounting and the fault-injection hook ([`crate::fault_inject`]).

use crate::counters::Counter;
use crate::ctx::{Ctx, SleepCtx};
use crate::fault_inject::{FailAlloc, SiteStats};
use crate::kernel::Kernel;
use crate::mm::reclaim::ZoneMask;
use crate::page_alloc::{zonelist, GfpFlags, PageOwner, ZoneType};
use crate::platform::{BugReport, KernelEvent, Platform};
use alloc::format;
use highpte_arch::{PagingMode, Pfn};

pub use crate::fault_inject::FailInjection;

impl<M: PagingMode> Kernel<M> {
    /// Fault injection: let `after` more page allocations succeed, then fail every one until
    /// called again with `None` (the policy [`FailAlloc::After`], or [`FailAlloc::Off`]). For
    /// tests of the error paths (every caller must fail cleanly: ENOMEM, SIGBUS or an OOM
    /// kill, and leak nothing).
    pub fn inject_alloc_failures(&self, after: Option<u64>) {
        self.set_fail_alloc(after.map_or(FailAlloc::Off, FailAlloc::After));
    }

    /// Set the fault-injection policy for page allocations (any time after boot; counts for
    /// the `n`-th policies start again). See [`crate::fault_inject`].
    pub fn set_fail_alloc(&self, policy: FailAlloc) {
        self.page_alloc.fail_injection().set(policy);
    }

    /// The fault-injection policy in force.
    pub fn fail_alloc(&self) -> FailAlloc {
        self.page_alloc.fail_injection().policy()
    }

    /// Page allocations failed on purpose since boot.
    pub fn fail_alloc_injected(&self) -> u64 {
        self.page_alloc.fail_injection().injected()
    }

    /// Allocation requests and injected failures per site since boot, in
    /// [`ALLOC_SITES`](crate::fault_inject::ALLOC_SITES) order.
    pub fn alloc_site_stats(&self) -> alloc::vec::Vec<(&'static str, SiteStats)> {
        self.page_alloc.fail_injection().site_stats()
    }

    /// Site names passed to the allocator that are not in
    /// [`ALLOC_SITES`](crate::fault_inject::ALLOC_SITES) (should be none).
    pub fn unknown_alloc_sites(&self) -> alloc::vec::Vec<&'static str> {
        self.page_alloc.fail_injection().unknown_sites()
    }

    /// `alloc_pages(gfp, order)` for a caller that may sleep (`__GFP_WAIT` allowed).
    pub fn alloc_pages<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        gfp: GfpFlags,
        order: u32,
        owner: PageOwner,
        site: &'static str,
    ) -> Option<Pfn> {
        if !gfp.can_sleep() {
            return self.alloc_pages_inner(cx, gfp, order, owner, site);
        }
        let p = cx.p();
        p.might_sleep(site);
        if self.page_alloc.fail_injection().should_fail(p, site) {
            self.counters.inc(Counter::AllocFailures);
            return None;
        }
        // __alloc_pages's slow path: direct reclaim between attempts, while it frees pages
        // the request can use (in its classzone: a GFP_KERNEL request gains nothing from
        // high pages freed)
        let classzone = zonelist(gfp)[0];
        let mut fruitless = 0;
        loop {
            if let Some(pfn) = self.alloc_from_zones(p, gfp, order, owner) {
                return Some(pfn);
            }
            if fruitless >= 2 || !self.reclaim_can_help(p, ZoneMask::classzone(classzone)) {
                break;
            }
            let want = crate::mm::reclaim::SWAP_CLUSTER_MAX.max(1 << order);
            self.counters.inc(Counter::ReclaimRuns);
            if self.try_to_free_pages(cx, classzone, want) == 0 {
                fruitless += 1;
            }
        }
        self.counters.inc(Counter::AllocFailures);
        None
    }

    /// `alloc_pages(GFP_ATOMIC-like gfp, order)` for a caller that must not sleep. Asking for a
    /// sleeping allocation here is a bug report.
    pub fn alloc_pages_atomic<P: Platform>(
        &self,
        cx: &Ctx<'_, P>,
        gfp: GfpFlags,
        order: u32,
        owner: PageOwner,
        site: &'static str,
    ) -> Option<Pfn> {
        if gfp.can_sleep() {
            cx.p().bug(BugReport {
                kind: "sleeping allocation in atomic context",
                message: format!(
                    "alloc_pages with a sleeping gfp {:?} from atomic context at {}",
                    gfp, site
                ),
            });
        }
        self.alloc_pages_inner(cx, gfp, order, owner, site)
    }

    fn alloc_pages_inner<P: Platform>(
        &self,
        cx: &Ctx<'_, P>,
        gfp: GfpFlags,
        order: u32,
        owner: PageOwner,
        site: &'static str,
    ) -> Option<Pfn> {
        let p = cx.p();
        if self.page_alloc.fail_injection().should_fail(p, site) {
            self.counters.inc(Counter::AllocFailures);
            return None;
        }
        let got = self.alloc_from_zones(p, gfp, order, owner);
        if got.is_none() {
            self.counters.inc(Counter::AllocFailures);
        }
        got
    }

    /// One pass over the zonelist at the low watermark, then at the minimum; wakes kswapd
    /// when the zone the page came from fell under `pages_low`.
    fn alloc_from_zones<P: Platform>(
        &self,
        p: &P,
        gfp: GfpFlags,
        order: u32,
        owner: PageOwner,
    ) -> Option<Pfn> {
        let got = self
            .page_alloc
            .alloc_from_zones(p, &self.mem_map, gfp, order, owner)?;
        if got.zone_low {
            self.wakeup_kswapd(p);
        }
        Some(got.pfn)
    }

    /// `__free_pages(page, order)`: return a block to its zone. Freeing a page twice or a page
    /// the allocator does not own is a bug report.
    pub fn free_pages<P: Platform>(&self, cx: &Ctx<'_, P>, pfn: Pfn, order: u32) {
        let zone = self.page_zone(pfn);
        self.page_alloc
            .free_pages(cx.p(), &self.mem_map, pfn, order, zone)
    }

    /// Zero a page through a temporary mapping (`clear_highpage`: KM_USER0 for a high page).
    pub fn clear_highpage<P: Platform>(&self, cx: &mut Ctx<'_, P>, pfn: Pfn) {
        let map = self.kmap_atomic(cx, pfn, highpte_arch::KmType::User0, "clear_highpage");
        // SAFETY: `map` is our live KM_USER0 mapping of the page, which the caller owns.
        unsafe { map.cx().p().clear_page(map.addr()) };
        drop(map);
        self.counters.inc(Counter::PagesZeroed);
        let _ = KernelEvent::AtomicOp;
    }

    /// Copy a page through two temporary mappings (`copy_user_highpage`: KM_USER0/KM_USER1).
    pub fn copy_highpage<P: Platform>(&self, cx: &mut Ctx<'_, P>, dst: Pfn, src: Pfn) {
        use highpte_arch::KmType::{User0, User1};
        let maps = self.kmap_atomic_pair(cx, (src, User0), (dst, User1), "copy_user_highpage");
        let (s, d) = maps.addrs();
        // SAFETY: `maps` are our live KM_USER0/KM_USER1 mappings; the caller owns `dst` and
        // holds a reference to `src`.
        unsafe { maps.cx().p().copy_page(d, s) };
        drop(maps);
        self.counters.inc(Counter::PagesCopied);
    }

    /// Free pages in `zone`.
    pub fn zone_free_pages<P: Platform>(&self, p: &P, zone: ZoneType) -> u64 {
        self.page_alloc.with_zone(p, zone, |z| z.free_pages())
    }

    /// Pages `zone` manages (handed to its buddy allocator).
    pub fn zone_managed_pages<P: Platform>(&self, p: &P, zone: ZoneType) -> u64 {
        self.page_alloc.with_zone(p, zone, |z| z.managed_pages())
    }

    /// `zone`'s watermarks and the pages it keeps from requests whose highest zone is DMA,
    /// Normal or HighMem (`lowmem_reserve`, /proc/zoneinfo's "protection").
    pub fn zone_watermarks<P: Platform>(
        &self,
        p: &P,
        zone: ZoneType,
    ) -> (crate::page_alloc::Watermarks, [u64; 3]) {
        self.page_alloc.with_zone(p, zone, |z| {
            (z.watermarks(), ZoneType::ALL.map(|c| z.lowmem_reserve(c)))
        })
    }
}
