//! Host cost of the scheduler: ns per task switch, ns per scheduler event, simulated events per
//! host second, host memory per idle task.
//!
//! `cargo bench -p highpte-machine --bench sched`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use highpte_arch::TwoLevel;
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{KernelEvent, SpinLock, WaitQueueKey};
use highpte_machine::{Machine, MachineOptions, RunOutcome, TaskHandle};
use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

type H = TaskHandle<TwoLevel>;

fn machine(cpus: u32) -> Machine<TwoLevel> {
    let o = MachineOptions {
        cpus,
        ram_bytes: 16 << 20,
        ..MachineOptions::default()
    };
    match Machine::new(o) {
        Ok(m) => m,
        Err(e) => panic!("machine: {e}"),
    }
}

fn run_ok(m: &mut Machine<TwoLevel>) {
    let out = m.run();
    assert_eq!(out, RunOutcome::Completed, "{out}");
}

/// Two tasks on one CPU hand it to each other with `schedule()`: one context switch per call
/// (two host coroutine switches: task to scheduler to task).
fn task_switch(c: &mut Criterion) {
    let mut g = c.benchmark_group("sched");
    g.throughput(Throughput::Elements(1));
    g.bench_function("context_switch", |b| {
        b.iter_custom(|iters| {
            let mut m = machine(1);
            for i in 0..2 {
                m.spawn(format!("pingpong{i}"), Some(0), move |p: &H| {
                    for _ in 0..iters {
                        p.schedule();
                    }
                    0
                })
                .expect("spawn");
            }
            let t = Instant::now();
            run_ok(&mut m);
            t.elapsed() / 2
        })
    });
    // Four CPUs whose tasks charge a quantum at a time: every charge hands control back to the
    // scheduler to let the other CPUs catch up (one scheduler event, no context switch).
    g.bench_function("scheduler_event", |b| {
        b.iter_custom(|iters| {
            let mut m = machine(4);
            let per_task = iters.div_ceil(4);
            for i in 0..4 {
                m.spawn(format!("cpu{i}"), Some(i), move |p: &H| {
                    for _ in 0..per_task {
                        p.charge(KernelEvent::Cycles(2_000));
                    }
                    0
                })
                .expect("spawn");
            }
            let t = Instant::now();
            run_ok(&mut m);
            let events = m.stats().scheduler_events.max(1);
            t.elapsed().mul_f64(iters as f64 / events as f64)
        })
    });
    g.finish();
}

/// A mixed SMP run (spinlocks with contention, charges, memory traffic) for events per host
/// second; printed once, with the host memory per idle task.
fn throughput_and_memory(c: &mut Criterion) {
    let mut g = c.benchmark_group("sched");
    g.sample_size(10);
    g.bench_function("mixed_8cpu_run", |b| b.iter(|| black_box(mixed(8, 200))));
    g.finish();

    let (events, platform_calls, elapsed) = mixed(8, 2_000);
    let secs = elapsed.as_secs_f64();
    println!(
        "mixed 8-CPU run: {events} scheduler events, {platform_calls} platform calls in {:.1} ms: \
         {:.2} M scheduler events/s, {:.2} M platform calls/s",
        secs * 1e3,
        events as f64 / secs / 1e6,
        platform_calls as f64 / secs / 1e6
    );
    let per_task = idle_task_memory(10_000);
    println!(
        "host memory per idle (sleeping) task: {per_task} bytes (RSS growth over 10,000 tasks)"
    );
}

/// 32 tasks on `cpus` CPUs: lock, read/write memory, unlock, `rounds` times. Returns scheduler
/// events, platform calls made and host time.
fn mixed(cpus: u32, rounds: u32) -> (u64, u64, Duration) {
    let mut m = machine(cpus);
    let lock = Rc::new(SpinLock::new("bench", 0u64));
    for i in 0..32u32 {
        let lock = lock.clone();
        m.spawn(format!("mixed{i}"), None, move |p: &H| {
            let va = highpte_arch::VirtAddr::new(0x10_0000 + i * 4096);
            for r in 0..rounds {
                {
                    let mut g = lock.lock(p);
                    *g += 1;
                }
                unsafe { p.write_u32(va, r) };
                let v = unsafe { p.read_u32(va) };
                p.charge(KernelEvent::Cycles(u64::from(v % 7) * 100));
            }
            0
        })
        .expect("spawn");
    }
    let t = Instant::now();
    run_ok(&mut m);
    let elapsed = t.elapsed();
    // Per round: lock (preempt_disable, note_lock), unlock (note_lock, preempt_enable), two
    // memory accesses and a charge, plus one cpu_relax per spin.
    let calls = 32 * u64::from(rounds) * 7 + m.stats().spins;
    (m.stats().scheduler_events, calls, elapsed)
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Spawn `n` tasks that go to sleep; measure RSS from a last task once they all sleep, then
/// wake them so the run completes.
fn idle_task_memory(n: u64) -> u64 {
    let mut m = machine(4);
    let before = rss_bytes();
    let asleep = Rc::new(Cell::new(0u64));
    let go = Rc::new(Cell::new(false));
    let key = WaitQueueKey(1);
    for i in 0..n {
        let (asleep, go) = (asleep.clone(), go.clone());
        m.spawn(format!("idle{i}"), None, move |p: &H| {
            asleep.set(asleep.get() + 1);
            loop {
                let token = p.prepare_to_wait(key);
                if go.get() {
                    return 0;
                }
                p.sleep(key, token, "go", "bench:idle");
            }
        })
        .expect("spawn");
    }
    let during = Rc::new(Cell::new(0u64));
    let (a, g, d) = (asleep.clone(), go.clone(), during.clone());
    m.spawn("waker", None, move |p: &H| {
        while a.get() < n {
            p.schedule();
        }
        d.set(rss_bytes());
        g.set(true);
        p.wake_up_all(key);
        0
    })
    .expect("spawn");
    run_ok(&mut m);
    during.get().saturating_sub(before) / n
}

criterion_group!(benches, task_switch, throughput_and_memory);
criterion_main!(benches);
