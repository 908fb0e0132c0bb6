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
