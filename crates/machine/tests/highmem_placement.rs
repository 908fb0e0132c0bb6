//! Where page-table pages live: user pte pages in HighMem exactly in the highpte
//! configurations (and with a highmem strategy), in low memory otherwise; pgd, pmd and every
//! kernel page table always in low memory.

mod highmem_common;

use highmem_common::*;
use highpte_arch::{MemoryVariant, Pae, PagingMode, TwoLevel, VirtAddr};
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use highpte_kernel::page_alloc::ZoneType;
use highpte_kernel::pgtable::pte_alloc_kernel;
use highpte_kernel::{Counter, PteStrategy};
use std::cell::RefCell;
use std::rc::Rc;

/// Pte pages touched by [`touch_spans`].
const SPANS: u32 = 3;
/// A user address aligned to every pte page span.
const BASE: u32 = 0x4000_0000;

/// What one process saw: the zone of each of its pte pages, of its pgd page, and the change
/// of the low/high pte-page counters while it touched the spans.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Seen {
    pte_zones: Vec<ZoneType>,
    pgd_zone: Option<ZoneType>,
    alloc_low: u64,
    alloc_high: u64,
    meminfo_pt_high_kb: u64,
}

/// A process maps `SPANS` pte-page spans at `BASE` and touches one word in each, so exactly
/// `SPANS` pte pages are allocated.
fn touch_spans<M: PagingMode>(s: Setup) -> Seen {
    let mut sys = s.boot::<M>();
    let seen: Rc<RefCell<Seen>> = Rc::default();
    let out = seen.clone();
    let span = M::PTE_PAGE_SPAN;
    let r = run_process(&mut sys, 0, move |u| {
        let k = u.kernel();
        let h = u.handle();
        let a = u
            .mmap(
                BASE,
                u64::from(SPANS) * u64::from(span),
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            )
            .unwrap();
        assert_eq!(a, BASE);
        let low0 = k.counters().get(Counter::PtePagesAllocLow);
        let high0 = k.counters().get(Counter::PtePagesAllocHigh);
        for i in 0..SPANS {
            u.store_u32(BASE + i * span, i).unwrap();
        }
        let mm = k.mm_of(u.pid()).unwrap();
        let mut s = out.borrow_mut();
        for i in 0..SPANS {
            let pfn = k
                .user_pte_page(h, &mm, VirtAddr::new(BASE + i * span))
                .unwrap();
            s.pte_zones.push(k.page_zone(pfn));
        }
        s.pgd_zone = Some(k.page_zone(mm.pgd().pgd_pfn()));
        s.alloc_low = k.counters().get(Counter::PtePagesAllocLow) - low0;
        s.alloc_high = k.counters().get(Counter::PtePagesAllocHigh) - high0;
        s.meminfo_pt_high_kb = k.meminfo(h).page_tables_high;
        0
    });
    assert!(r.is_completed(), "{r}");
    let v = seen.borrow().clone();
    v
}

fn expect<M: PagingMode>(s: Setup, high: bool) {
    let seen = touch_spans::<M>(s);
    let zone = if high {
        ZoneType::HighMem
    } else {
        ZoneType::Normal
    };
    assert_eq!(seen.pte_zones, vec![zone; SPANS as usize], "{s:?}");
    assert_ne!(seen.pgd_zone, Some(ZoneType::HighMem), "{s:?}");
    let (lo, hi) = if high { (0, SPANS) } else { (SPANS, 0) };
    assert_eq!(
        (seen.alloc_low, seen.alloc_high),
        (u64::from(lo), u64::from(hi)),
        "{s:?}"
    );
    // meminfo's PageTables in HighMem: exactly the pte pages (4 kB each), nothing else
    assert_eq!(seen.meminfo_pt_high_kb, 4 * u64::from(hi), "{s:?}");
}

#[test]
fn nohighmem_pte_pages_are_low() {
    expect::<TwoLevel>(Setup::new(MemoryVariant::NoHighmem), false);
}
#[test]
fn highmem4g_pte_pages_are_low() {
    expect::<TwoLevel>(Setup::new(MemoryVariant::Highmem4g), false);
}
#[test]
fn highmem4g_highpte_pte_pages_are_high() {
    expect::<TwoLevel>(Setup::new(MemoryVariant::Highmem4gHighpte), true);
}
#[test]
fn highmem64g_pte_pages_are_low() {
    expect::<Pae>(Setup::new(MemoryVariant::Highmem64g), false);
}
#[test]
fn highmem64g_highpte_pte_pages_are_high() {
    expect::<Pae>(Setup::new(MemoryVariant::Highmem64gHighpte), true);
}
#[test]
fn strategy_overrides_the_variant() {
    // persistent and atomic put pte pages high even in a non-highpte config; lowmem keeps
    // them low in a highpte config
    expect::<TwoLevel>(
        Setup::new(MemoryVariant::Highmem4g).strategy(PteStrategy::Persistent),
        true,
    );
    expect::<Pae>(
        Setup::new(MemoryVariant::Highmem64g).strategy(PteStrategy::Atomic),
        true,
    );
    expect::<Pae>(
        Setup::new(MemoryVariant::Highmem64gHighpte).strategy(PteStrategy::Lowmem),
        false,
    );
}

/// Kernel page tables never go high, even in highpte configs: `pte_alloc_kernel` for a
/// vmalloc address, and the fixmap and pkmap pte pages set up at boot.
fn kernel_tables_low<M: PagingMode>(v: MemoryVariant) {
    let mut sys = Setup::new(v).boot::<M>();
    let zones = run_raw(&mut sys, 1, |h, k, cx| {
        let l = *k.layout();
        let va = VirtAddr::new(l.vmalloc_start().as_u32() + (16 << 20));
        let before = k.counters().get(Counter::PtePagesAllocHigh);
        let pte = pte_alloc_kernel(k, cx, va).unwrap();
        assert!(pte.get(h).is_none());
        assert_eq!(k.counters().get(Counter::PtePagesAllocHigh), before);
        [va, l.pkmap_base(), l.fixaddr_start()]
            .map(|a| k.page_zone(k.kernel_pte_page(h, a).unwrap()))
    });
    for z in zones {
        assert_ne!(z, ZoneType::HighMem, "{v:?}");
    }
}

#[test]
fn kernel_page_tables_are_always_low() {
    kernel_tables_low::<TwoLevel>(MemoryVariant::Highmem4gHighpte);
    kernel_tables_low::<Pae>(MemoryVariant::Highmem64gHighpte);
}
