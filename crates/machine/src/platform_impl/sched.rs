//! Preemption, spinning, wait queues and schedule points, on the task's coroutine.

use crate::events::Event;
use crate::task::{HeldLock, PreemptKind, TaskHandle, TaskState, Yield};
use crate::timeline::{TimelineEvent, What};
use highpte_arch::PagingMode;
use highpte_kernel::{Sched, WaitOn, WaitQueueKey};

impl<M: PagingMode> Sched for TaskHandle<M> {
    #[inline]
    fn preempt_count(&self) -> u32 {
        self.st().tasks[self.task_index()].preempt_count
    }

    #[inline]
    fn preempt_disable(&self) {
        self.st().tasks[self.task_index()].preempt_count += 1;
    }

    fn preempt_enable(&self) {
        let cost = self.st().cost.preempt_toggle;
        self.advance(cost);
        let st = self.st();
        let t = &mut st.tasks[self.task_index()];
        if t.preempt_count == 0 {
            self.atomic_bug(
                "preempt_count underflow",
                "preempt_enable with preempt_count already 0".into(),
            );
        }
        t.preempt_count -= 1;
        if t.preempt_count == 0 && st.opts.preempt && st.resched_due(st.cur_cpu) {
            self.suspend(Yield::Preempt(PreemptKind::Kernel));
        }
    }

    fn preempt_enable_no_resched(&self) {
        let t = &mut self.st().tasks[self.task_index()];
        if t.preempt_count == 0 {
            self.atomic_bug(
                "preempt_count underflow",
                "preempt_enable_no_resched with preempt_count already 0".into(),
            );
        }
        t.preempt_count -= 1;
    }

    fn cpu_relax(&self, on: WaitOn) {
        let st = self.st();
        let c = st.cur_cpu;
        let cost = st.cost.spin_lock_per_spin;
        let progress_before = st.progress;
        let releases = st.lock_releases;
        let cpu = &mut st.cpus[c];
        let same_wait = cpu.spinning && cpu.spin_on == Some(on);
        let mut progress = progress_before;
        if !same_wait {
            // A new wait is progress: whatever others spun on may have changed.
            progress += 1;
            cpu.spin_release_seen = releases;
            cpu.spins_without_release = 0;
        }
        cpu.spin_on = Some(on);
        cpu.spinning = true;
        if cpu.spin_seen == progress {
            cpu.spin_rounds = cpu.spin_rounds.saturating_add(1);
        } else {
            cpu.spin_seen = progress;
            cpu.spin_rounds = 1;
        }
        if cpu.spin_release_seen == releases {
            cpu.spins_without_release += 1;
        } else {
            cpu.spin_release_seen = releases;
            cpu.spins_without_release = 1;
        }
        if st.timeline.is_some() {
            self.timeline_spin(on);
        }
        let st = self.st();
        let cpu = &mut st.cpus[c];
        cpu.clock += cost;
        cpu.stats.spin_cycles += cost;
        let tick_due = cpu.clock >= cpu.next_tick;
        st.progress = progress;
        st.stats.spins += 1;
        if tick_due {
            st.process_ticks(c);
        }
        // A spin loop with preemption enabled is a preemption point, as in Linux.
        let preemptible = st.tasks[self.task_index()].preempt_count == 0 && st.opts.preempt;
        if preemptible && st.resched_due(c) {
            st.cpus[c].spinning = false;
            self.suspend(Yield::Preempt(PreemptKind::Kernel));
        } else {
            self.suspend(Yield::Spin);
        }
    }

    fn note_lock(&self, name: &'static str, id: u64, acquired: bool) {
        let st = self.st();
        let me = self.id();
        let at = st.cpus[st.cur_cpu].clock;
        if acquired && std::mem::take(&mut st.tasks[self.task_index()].timeline_spin) {
            st.timeline(st.cur_cpu, me, What::SpinEnd);
        }
        let t = &mut st.tasks[self.task_index()];
        let cost = if acquired {
            t.held.push(HeldLock { name, id });
            st.cost.spin_lock_uncontended
        } else {
            // Locks are mostly released in reverse order: the last one is the common case.
            if t.held.last().is_some_and(|l| l.id == id) {
                t.held.pop();
            } else if let Some(i) = t.held.iter().rposition(|l| l.id == id) {
                t.held.remove(i);
            }
            st.lock_releases += 1;
            st.cost.spin_unlock
        };
        st.events.record(Event::Lock {
            task: me,
            name,
            id,
            acquired,
            at,
        });
        self.advance(cost);
    }

    fn prepare_to_wait(&self, key: WaitQueueKey) -> u64 {
        self.st().queues.entry(key.0).or_default().wakes
    }

    fn sleep(&self, key: WaitQueueKey, token: u64, what: &'static str, place: &'static str) {
        let st = self.st();
        if st.tasks[self.task_index()].preempt_count != 0 {
            self.atomic_bug("sleeping in atomic context", format!("sleeping function called from invalid context at {place} (sleeping on \"{what}\")"));
        }
        let q = st.queues.entry(key.0).or_default();
        if q.wakes != token {
            return; // woken between prepare_to_wait and now
        }
        q.sleepers.push_back(self.id());
        let c = st.cur_cpu;
        let at = st.cpus[c].clock;
        st.cpus[c].spinning = false;
        st.tasks[self.task_index()].state = TaskState::Sleeping { key, what, place };
        st.progress += 1;
        st.stats.sleeps += 1;
        st.events.record(Event::Sleep {
            task: self.id(),
            what,
            key: key.0,
            at,
        });
        st.timeline(c, self.id(), What::Sleep { what });
        self.suspend(Yield::Sleep);
    }

    fn wake_up_all(&self, key: WaitQueueKey) -> u32 {
        let st = self.st();
        let Some(q) = st.queues.get_mut(&key.0) else {
            // No one ever prepared to wait on this key, so no token can be outstanding.
            let cost = st.cost.atomic_op;
            self.advance(cost);
            return 0;
        };
        q.wakes += 1;
        let sleepers = std::mem::take(&mut q.sleepers);
        let now = st.cpus[st.cur_cpu].clock;
        let n = sleepers.len() as u32;
        for t in sleepers {
            let cpu = st.select_cpu(t);
            st.enqueue(t, cpu, Some(now));
            st.events.record(Event::Wake {
                task: t,
                waker: self.id(),
                cpu,
            });
            if let Some(tl) = &st.timeline {
                let waker = self.id();
                let what = What::Wake { waker };
                let (cpu, at) = (cpu, now);
                tl.send(TimelineEvent {
                    cpu,
                    at,
                    task: t,
                    what,
                });
            }
        }
        st.stats.wakeups += u64::from(n);
        st.progress += 1;
        let cost = st.cost.atomic_op;
        self.advance(cost);
        n
    }

    fn might_sleep(&self, place: &'static str) {
        if self.st().tasks[self.task_index()].preempt_count != 0 {
            self.atomic_bug(
                "might_sleep",
                format!("sleeping function called from invalid context at {place}"),
            );
        }
    }

    fn cond_resched(&self) {
        let st = self.st();
        let c = st.cur_cpu;
        st.progress += 1;
        st.cpus[c].spinning = false;
        if st.tasks[self.task_index()].preempt_count == 0 && st.resched_due(c) {
            self.suspend(Yield::Schedule);
        }
    }

    fn schedule(&self) {
        let st = self.st();
        if st.tasks[self.task_index()].preempt_count != 0 {
            self.atomic_bug(
                "scheduling while atomic",
                "schedule() called in atomic context".into(),
            );
        }
        st.progress += 1;
        st.cpus[st.cur_cpu].spinning = false;
        self.suspend(Yield::Schedule);
    }

    #[inline]
    fn set_where(&self, place: &'static str) {
        self.st().tasks[self.task_index()].where_label = place;
    }
}

impl<M: PagingMode> TaskHandle<M> {
    /// Tell the timeline this task spins on `on`, once per wait.
    #[cold]
    fn timeline_spin(&self, on: WaitOn) {
        let st = self.st();
        let t = &mut st.tasks[self.task_index()];
        if t.timeline_spin {
            return;
        }
        t.timeline_spin = true;
        let what = match on {
            WaitOn::SpinLock { name, holder, .. } => What::SpinBegin { lock: name, holder },
            WaitOn::Queue { what, .. } => What::SpinBegin {
                lock: what,
                holder: None,
            },
        };
        st.timeline(st.cur_cpu, self.id(), what);
    }
}
