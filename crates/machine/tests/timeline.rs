//! The timeline hook: it sees every system call, fault and kmap_atomic the kernel counts, in
//! balanced pairs, and recording never changes the run (the event hash).

use highpte_arch::{Config, MemoryVariant, Pae};
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use highpte_kernel::{Counter, KernelOptions, TaskId, TracePoint};
use highpte_machine::timeline::What;
use highpte_machine::{
    MachineOptions, RunOutcome, System, TimelineEvent, TimelineHook, TimelineSink,
};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Recorder {
    events: Vec<TimelineEvent>,
    names: Vec<(TaskId, String)>,
}

impl TimelineSink for Recorder {
    fn record(&mut self, ev: &TimelineEvent) {
        self.events.push(*ev);
    }
    fn task_name(&mut self, task: TaskId, name: &str) {
        self.names.push((task, name.to_string()));
    }
}

/// Boot a 4-CPU 64G-HIGHPTE machine, run three forking processes, return the event hash and
/// the kernel's counters of syscalls, faults and kmap_atomic.
fn run(timeline: Option<TimelineHook>) -> (u64, [u64; 3]) {
    let cfg = Config::new(MemoryVariant::Highmem64gHighpte, 2 << 30, 4, true).unwrap();
    let ko = KernelOptions::defaults_for(&cfg);
    let mopts = MachineOptions {
        tick_period: 100_000,
        timeline,
        ..Default::default()
    };
    let mut sys = System::<Pae>::boot(cfg, ko, mopts).unwrap();
    for i in 0..3 {
        sys.spawn_process(format!("p{i}"), None, move |u| {
            let a = u
                .mmap(
                    0,
                    4 << 20,
                    PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS,
                )
                .unwrap();
            for p in 0..256u32 {
                u.store_u32(a + p * 4096, p).unwrap();
            }
            let c = u.fork("thread", true, move |c| {
                c.store_u32(a, 1).unwrap();
                0
            });
            u.wait().unwrap();
            assert!(u.munmap(a, 4 << 20).is_ok());
            assert!(c.is_ok());
            0
        })
        .unwrap();
    }
    assert!(matches!(sys.run(), RunOutcome::Completed));
    let k = sys.kernel();
    let c = [Counter::Syscalls, Counter::Faults, Counter::KmapAtomic].map(|c| k.counters().get(c));
    (sys.machine.event_hash(), c)
}

#[test]
fn timeline_sees_every_counted_event_and_changes_nothing() {
    let rec = Arc::new(Mutex::new(Recorder::default()));
    let (hash_with, counts) = run(Some(TimelineHook(rec.clone())));
    let (hash_without, counts_without) = run(None);
    assert_eq!(hash_with, hash_without, "the timeline changed the run");
    assert_eq!(counts, counts_without);
    let rec = rec.lock().unwrap();
    let kernel = |f: fn(&TracePoint) -> bool| {
        rec.events
            .iter()
            .filter(|e| matches!(&e.what, What::Kernel(p) if f(p)))
            .count() as u64
    };
    assert_eq!(
        kernel(|p| matches!(p, TracePoint::SyscallEnter { .. })),
        counts[0]
    );
    assert_eq!(
        kernel(|p| matches!(p, TracePoint::FaultEnter { .. })),
        counts[1]
    );
    assert_eq!(
        kernel(|p| matches!(p, TracePoint::FaultExit { .. })),
        counts[1]
    );
    assert_eq!(
        kernel(|p| matches!(p, TracePoint::KmapAtomic { .. })),
        counts[2]
    );
    assert_eq!(
        kernel(|p| matches!(p, TracePoint::KunmapAtomic { .. })),
        counts[2]
    );
    assert!(counts.iter().all(|c| *c > 0), "{counts:?}");
    // every run slice that starts ends (the run completed), on the CPU it started on
    let mut running = [None; 4];
    for e in &rec.events {
        match e.what {
            What::RunStart => {
                assert_eq!(running[e.cpu as usize], None, "{e:?}");
                running[e.cpu as usize] = Some(e.task);
            }
            What::RunEnd { .. } => {
                assert_eq!(running[e.cpu as usize], Some(e.task), "{e:?}");
                running[e.cpu as usize] = None;
            }
            _ => {}
        }
    }
    assert_eq!(running, [None; 4]);
    assert!(rec.names.iter().any(|(_, n)| n == "p0"));
    assert!(rec.events.iter().any(|e| matches!(e.what, What::Memory(_))));
    assert!(rec
        .events
        .iter()
        .any(|e| matches!(e.what, What::TlbIpi { .. })));
}
