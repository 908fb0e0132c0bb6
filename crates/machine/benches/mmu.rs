//! Host cost of the simulated MMU: TLB-hit translations, misses with a full page walk (both
//! paging modes) and raw physical-memory accesses: words, and whole pages through the content
//! store that shares identical frames.
//!
//! Run with `cargo bench -p highpte-machine --bench mmu` (add `-- --quick` for a short run).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use highpte_arch::{Pae, PagingMode, TwoLevel, VirtAddr};
use highpte_machine::mmu::{load_cr3, translate, Access, MmuRegs};
use highpte_machine::phys::PhysMem;
use highpte_machine::tlb::Tlb;

const P: u64 = 0x1;
const RW: u64 = 0x2;
const US: u64 = 0x4;

/// Pages mapped in the benchmark address space, starting at va 0: enough that cycling over
/// them misses a 64-entry TLB every time.
const PAGES: u32 = 4096;

/// Build `PAGES` 4 KB user mappings (va page i -> frame 0x10000 + i) in mode `M`.
fn machine<M: PagingMode>() -> (PhysMem, MmuRegs) {
    let m = PhysMem::new(1 << 30).expect("1 GB of simulated RAM");
    let mut regs = MmuRegs {
        paging: true,
        wp: true,
        pae: M::PAE,
        pse: true,
        ..MmuRegs::default()
    };
    let entry = u64::from(M::ENTRY_BYTES);
    let write = |pa: u64, v: u64| {
        if M::PAE {
            m.write_u64(pa, v).expect("in RAM");
        } else {
            m.write_u32(pa, v as u32).expect("in RAM");
        }
    };
    // frame 1: pgd (PD or PDPT); frame 2: PAE page directory; frames 16..: page tables
    let pd = if M::PAE {
        write(0x1000, 0x2000 | P);
        0x2000
    } else {
        0x1000
    };
    for page in 0..PAGES {
        let va = VirtAddr::new(page << 12);
        let pt = (16 + u64::from(va.as_u32() >> M::PMD_SHIFT)) << 12;
        let pde_index = if M::PAE {
            M::pmd_index(va)
        } else {
            M::pgd_index(va)
        };
        write(pd + u64::from(pde_index) * entry, pt | P | RW | US);
        write(
            pt + u64::from(M::pte_index(va)) * entry,
            ((0x10000 + u64::from(page)) << 12) | P | RW | US,
        );
    }
    load_cr3(&m, &mut regs, 0x1000).expect("valid PDPT");
    (m, regs)
}

fn bench_mode<M: PagingMode>(c: &mut Criterion) {
    let (m, regs) = machine::<M>();
    let mut g = c.benchmark_group(format!("translate/{}", M::NAME));
    g.throughput(Throughput::Elements(1));

    let mut tlb = Tlb::new(M::PMD_SHIFT);
    translate(
        &m,
        &regs,
        &mut tlb,
        VirtAddr::new(0x5123),
        Access::Read,
        true,
    )
    .expect("mapped");
    g.bench_function("tlb_hit_same_page", |b| {
        b.iter(|| {
            translate(
                &m,
                &regs,
                &mut tlb,
                black_box(VirtAddr::new(0x5123)),
                Access::Read,
                true,
            )
        })
    });

    // 32 pages, two per set: every access hits, in different sets
    let mut tlb = Tlb::new(M::PMD_SHIFT);
    let mut i = 0u32;
    g.bench_function("tlb_hit_32_pages", |b| {
        b.iter(|| {
            i = (i + 1) & 31;
            translate(
                &m,
                &regs,
                &mut tlb,
                black_box(VirtAddr::new(i << 12)),
                Access::Read,
                true,
            )
        })
    });

    // cycling over 4096 pages misses a 64-entry TLB every time: a full 2-level walk
    let mut tlb = Tlb::new(M::PMD_SHIFT);
    let mut i = 0u32;
    g.bench_function("tlb_miss_walk", |b| {
        b.iter(|| {
            i = (i + 1) % PAGES;
            translate(
                &m,
                &regs,
                &mut tlb,
                black_box(VirtAddr::new(i << 12)),
                Access::Write,
                true,
            )
        })
    });
    g.finish();
    let s = tlb.stats();
    assert!(
        s.hits == 0 || s.misses > 100 * s.hits,
        "the miss benchmark must miss: {s:?}"
    );
}

fn bench_phys(c: &mut Criterion) {
    let m = PhysMem::new(1 << 30).expect("1 GB of simulated RAM");
    for pa in (0..(1u64 << 20)).step_by(4096) {
        m.write_u64(pa, pa).expect("in RAM");
    }
    let mut g = c.benchmark_group("phys");
    g.throughput(Throughput::Elements(1));
    let mut pa = 0u64;
    g.bench_function("read_u64", |b| {
        b.iter(|| {
            pa = (pa + 72) & ((1 << 20) - 8);
            m.read_u64(black_box(pa))
        })
    });
    g.bench_function("write_u64", |b| {
        b.iter(|| {
            pa = (pa + 72) & ((1 << 20) - 8);
            m.write_u64(black_box(pa), pa)
        })
    });
    // whole-page writes (a pte page filled or cleared by the kernel's block walk): the
    // content store's hash, lookup and compare
    let mut page = [0u8; 4096];
    for (i, w) in page.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&(((0x4_0000 + i as u64) << 12) | 0x25).to_le_bytes());
    }
    let shared_base = 1u64 << 28;
    for f in 0..64 {
        m.write_bytes(shared_base + f * 4096, &page)
            .expect("in RAM");
    }
    let mut f = 0u64;
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("write_page_shared", |b| {
        b.iter(|| {
            f = (f + 1) & 63;
            m.write_bytes(black_box(shared_base + f * 4096), &page)
        })
    });
    let mut n = 0u64;
    g.bench_function("write_page_unique", |b| {
        b.iter(|| {
            // a new content each time: stored, then let go when the frame is cleared
            n += 1;
            page[0] = n as u8;
            page[1] = (n >> 8) as u8;
            m.write_bytes(black_box(shared_base), &page)
        })
    });
    g.bench_function("write_page_zero", |b| {
        b.iter(|| {
            f = (f + 1) & 63;
            m.write_bytes(black_box(shared_base + (64 + f) * 4096), &[0u8; 4096])
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("read_u64_shared", |b| {
        b.iter(|| {
            pa = (pa + 72) & ((1 << 18) - 8);
            m.read_u64(black_box(shared_base + 4096 + pa))
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_mode::<TwoLevel>(c);
    bench_mode::<Pae>(c);
    bench_phys(c);
}

criterion_group!(mmu, benches);
criterion_main!(mmu);
