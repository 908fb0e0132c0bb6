//! The `linux-6.1` kernel profile boots as the real 6.1 686-pae kernel did under QEMU with
//! 8 GB (tools/realkernel; the figures in the comments are from its /proc/meminfo and
//! /proc/zoneinfo, docs/fidelity.md).

mod highmem_common;

use highmem_common::*;
use highpte_arch::{Config, KernelProfile, MemoryVariant, Pae, PagingMode};
use highpte_kernel::page_alloc::ZoneType;
use highpte_kernel::KernelOptions;
use highpte_machine::{MachineOptions, System};

const GB: u64 = 1 << 30;

fn boot61<M: PagingMode>(v: MemoryVariant, ram: u64) -> System<M> {
    let mut cfg = Config::new(v, ram, 1, false).unwrap();
    cfg.kernel = KernelProfile::Linux61;
    let ko = KernelOptions::defaults_for(&cfg);
    System::<M>::boot(cfg, ko, MachineOptions::default()).unwrap()
}

#[test]
fn linux61_on_8g_has_the_real_kernels_zones_and_totals() {
    let mut sys = boot61::<Pae>(MemoryVariant::Highmem64gHighpte, 8 * GB);
    let (m, zones, wm) = run_raw(&mut sys, 0, |h, k, _| {
        let wm = ZoneType::ALL.map(|z| k.zone_watermarks(h, z));
        (k.meminfo(h), k.zone_report(h), wm)
    });
    // present pages: real DMA 3,998, Normal 221,182, HighMem 1,871,842
    assert_eq!(
        [zones[0].3, zones[1].3, zones[2].3],
        [3_998, 221_182, 1_871_842]
    );
    // managed: real DMA 3,840 (the first megabyte reserved), HighMem 1,871,842 (all)
    assert_eq!(zones[0].4, 3_840);
    assert_eq!(zones[2].4, 1_871_842);
    eprintln!(
        "linux-6.1 8G: LowTotal {} kB, LowFree {} kB, zones {:?}, watermarks {:?}",
        m.low_total, m.low_free, zones, wm
    );
    assert_eq!(
        m.high_total, 7_487_368,
        "HighTotal as the real kernel reports it"
    );
    // real LowTotal: 725,668 to 725,988 kB over the four boots
    assert!(
        (725_000..727_000).contains(&m.low_total),
        "LowTotal {} kB",
        m.low_total
    );
    // real Normal watermarks min 8,799 low 10,998 high 13,197, DMA 190/237/284
    let w = wm.map(|(w, _)| (w.min, w.low, w.high));
    assert_eq!(w[0], (190, 237, 284));
    assert!((8_780..8_830).contains(&w[1].0), "Normal {:?}", w[1]);
    assert_eq!(w[2].0, 128);
    // real protection: DMA [0, 692, 8004], Normal [0, 0, 58495]
    assert_eq!(wm[1].1, [0, 0, 58_495]);
    assert!((690..=694).contains(&wm[0].1[1]), "{:?}", wm[0].1);
}

#[test]
fn the_seed_profile_is_unchanged_by_the_new_one() {
    let mut sys = Setup::new(MemoryVariant::Highmem64gHighpte)
        .ram(8 * GB)
        .cpus(1)
        .boot::<Pae>();
    let m = run_raw(&mut sys, 0, |h, k, _| k.meminfo(h));
    // the 2.5 profile's figures of docs/fidelity.md
    assert_eq!((m.low_total, m.high_total), (814_064, 7_471_104));
}

/// A parent maps 8 MB shared and writes it (4 PAE pte pages), then forks; the child records
/// PageTables (kB) right after the fork and again after writing every page.
fn fork_a_shared_region(profile: KernelProfile) -> [u64; 3] {
    let mut cfg = Config::new(MemoryVariant::Highmem64gHighpte, 2 * GB, 1, false).unwrap();
    cfg.kernel = profile;
    let mut ko = KernelOptions::defaults_for(&cfg);
    ko.debug = true;
    let mut sys = System::<Pae>::boot(cfg, ko, MachineOptions::default()).unwrap();
    let out = std::rc::Rc::new(std::cell::Cell::new([0u64; 3]));
    let o = out.clone();
    sys.spawn_process("parent", None, move |u| {
        use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_SHARED, PROT_READ, PROT_WRITE};
        let len = 8u32 << 20;
        let a = u
            .mmap(
                0,
                len.into(),
                PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS,
            )
            .unwrap();
        for i in (0..len).step_by(4096) {
            u.store_u32(a + i, i).unwrap();
        }
        let before = u.kernel().meminfo(u.handle()).page_tables;
        let o2 = o.clone();
        u.fork("child", false, move |c| {
            let forked = c.kernel().meminfo(c.handle()).page_tables;
            for i in (0..len).step_by(4096) {
                assert_eq!(c.load_u32(a + i).unwrap(), i);
                c.store_u32(a + i, !i).unwrap();
            }
            let touched = c.kernel().meminfo(c.handle()).page_tables;
            o2.set([before, forked, touched]);
            let bad = c
                .handle()
                .enter_kernel("check_invariants", |cx| c.kernel().check_invariants(cx));
            assert!(bad.is_empty(), "{bad:?}");
            0
        })
        .unwrap();
        u.wait().unwrap();
        0
    })
    .unwrap();
    assert!(matches!(sys.run(), highpte_machine::RunOutcome::Completed));
    out.get()
}

#[test]
fn fork_copies_shared_ptes_in_2_5_and_leaves_them_to_faults_in_6_1() {
    // 2.5: the child gets a pgd page, 3 pmd pages and copies of the 4 pte pages at fork
    let [before, forked, touched] = fork_a_shared_region(KernelProfile::Linux25);
    assert_eq!((forked - before, touched - forked), (32, 0));
    // 6.1: the child gets its 3 pmd pages (its root is a 32-byte pgd-cache object, not
    // counted) and faults the 4 pte pages in
    let [before, forked, touched] = fork_a_shared_region(KernelProfile::Linux61);
    assert_eq!((forked - before, touched - forked), (12, 16));
}
