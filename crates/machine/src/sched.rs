//! The scheduler: a discrete-event loop over the CPUs' clocks.
//!
//! Each step resumes the current task of the busy CPU whose clock is earliest (ties go to the
//! lower CPU number), first switching that CPU to the head of its run queue if it has no
//! current task. The task runs until it yields: its clock passed the other busy CPUs' by more
//! than the quantum (the task stays current: this is how CPUs interleave, not a preemption),
//! it spins, sleeps, is preempted, reschedules, exits or reports a bug. Idle CPUs steal from
//! the longest run queue; an idle CPU's clock jumps to the time work arrives.

use crate::deadlock::{self, DeadlockKind};
use crate::events::Event;
use crate::machine::{MachineState, RunOutcome};
use crate::task::{PreemptKind, Resume, TaskState, Yield};
use crate::timeline::{RunEnd, What};
use corosensei::CoroutineResult;
use highpte_arch::PagingMode;
use highpte_kernel::TaskId;
use rand::Rng;
use std::ptr::NonNull;

/// The run loop behind [`crate::machine::Machine::run`].
pub(crate) fn run<M: PagingMode>(state: NonNull<MachineState<M>>) -> RunOutcome {
    loop {
        let (mut co, cpu, task, resume) = {
            // SAFETY: no coroutine runs now (we are between resumes on the only host thread),
            // and this reference is dropped before the next resume.
            let st = unsafe { &mut *state.as_ptr() };
            if let Some(f) = &st.failure {
                return f.clone();
            }
            st.balance();
            let Some(cpu) = st.pick_cpu() else {
                if st.live_tasks == 0 {
                    return RunOutcome::Completed;
                }
                let report = deadlock::report(st, DeadlockKind::AllAsleep);
                st.fail(RunOutcome::Deadlock(Box::new(report)));
                continue;
            };
            if let Some(limit) = st.opts.max_cycles {
                if st.cpus[cpu].clock >= limit {
                    return RunOutcome::TimeLimit;
                }
            }
            let (task, resume) = st.dispatch(cpu);
            st.prepare_slice(cpu, task);
            let Some(co) = st.coroutines[task.0 as usize].take() else {
                // Unreachable by construction: a dispatched task is live and not running.
                let msg = format!("scheduler: task {task} has no coroutine");
                st.fail(RunOutcome::Bug(Box::new(deadlock::internal_bug(
                    st, task, msg,
                ))));
                continue;
            };
            (co, cpu, task, resume)
        };
        let result = co.resume(resume);
        // SAFETY: the coroutine has suspended or returned; nothing else references the state.
        let st = unsafe { &mut *state.as_ptr() };
        match result {
            CoroutineResult::Return(code) => {
                st.exited(cpu, task, code);
                st.stacks.give_back(co.into_stack());
            }
            CoroutineResult::Yield(why) => {
                st.coroutines[task.0 as usize] = Some(co);
                st.after_yield(cpu, task, why);
            }
        }
    }
}

impl<M: PagingMode> MachineState<M> {
    /// The busy CPU with the earliest clock (lowest number on ties).
    fn pick_cpu(&self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, c) in self.cpus.iter().enumerate() {
            if c.has_work() && best.is_none_or(|b| c.clock < self.cpus[b].clock) {
                best = Some(i);
            }
        }
        best
    }

    /// Idle CPUs steal one waiting task each from the longest run queue behind a running task.
    fn balance(&mut self) {
        if self.cpus.len() == 1 {
            return;
        }
        for idle in 0..self.cpus.len() {
            if self.cpus[idle].has_work() {
                continue;
            }
            let mut src: Option<usize> = None;
            for (i, c) in self.cpus.iter().enumerate() {
                // A CPU between two slices (no current task) keeps its queue head, except in
                // stress mode, where that is a chance to exercise migration.
                let spare = c.load() >= 2 || (self.opts.stress && c.current.is_none());
                if spare
                    && !c.runq.is_empty()
                    && src.is_none_or(|s| c.runq.len() > self.cpus[s].runq.len())
                {
                    src = Some(i);
                }
            }
            let Some(src) = src else { return };
            if let Some(t) = self.cpus[src].runq.pop_back() {
                let now = self.cpus[src].clock;
                let c = &mut self.cpus[idle];
                c.clock = c.clock.max(now);
                c.runq.push_back(t);
            }
        }
    }

    /// Make sure `cpu` has a current task; returns it and how to resume it.
    fn dispatch(&mut self, cpu: usize) -> (TaskId, Resume) {
        if let Some(t) = self.cpus[cpu].current {
            return (t, Resume::Continue);
        }
        let c = &mut self.cpus[cpu];
        // `pick_cpu` only picks CPUs with work, so the queue is non-empty here.
        let next = c.runq.pop_front().unwrap_or_default();
        c.current = Some(next);
        c.need_resched = false;
        c.spinning = false;
        let prev = c.last.replace(next);
        let resume = if prev != Some(next) {
            c.clock += self.cost.context_switch;
            c.stats.context_switches += 1;
            self.stats.context_switches += 1;
            self.events.record(Event::ContextSwitch {
                cpu: cpu as u32,
                prev,
                next,
                at: c.clock,
            });
            Resume::SwitchedIn { prev }
        } else {
            Resume::Continue
        };
        let t = &mut self.tasks[next.0 as usize];
        if t.has_run && t.last_cpu != cpu as u32 {
            self.stats.migrations += 1;
            self.events.record(Event::Migrate {
                task: next,
                from: t.last_cpu,
                to: cpu as u32,
            });
        }
        t.has_run = true;
        t.last_cpu = cpu as u32;
        t.state = TaskState::Running { cpu: cpu as u32 };
        self.timeline(cpu, next, What::RunStart);
        (next, resume)
    }

    /// Set up the slice: take due ticks, compute when the task must let others catch up.
    fn prepare_slice(&mut self, cpu: usize, task: TaskId) {
        self.cur_cpu = cpu;
        self.process_ticks(cpu);
        let others = self
            .cpus
            .iter()
            .enumerate()
            .filter(|(i, c)| *i != cpu && c.has_work())
            .map(|(_, c)| c.clock)
            .min()
            .unwrap_or(u64::MAX);
        let q = if self.opts.stress {
            self.rng
                .random_range(1..=self.opts.quantum.saturating_mul(2))
        } else {
            self.opts.quantum
        };
        self.slice_quantum = q;
        self.interleave_at = others.saturating_add(q);
        self.yield_at = self.interleave_at.min(self.cpus[cpu].next_tick);
        self.stats.scheduler_events += 1;
        self.events.record(Event::Resume {
            cpu: cpu as u32,
            task,
            at: self.cpus[cpu].clock,
        });
        if self.timeline.is_some() {
            self.timeline_step(cpu, task);
        }
    }

    /// The timeline's view of a scheduler step: the step number, and memory figures when
    /// the last sample is old enough (no task runs now, so the OS may read its state).
    #[cold]
    fn timeline_step(&mut self, cpu: usize, task: TaskId) {
        let step = self.stats.scheduler_events;
        self.timeline(cpu, task, What::Step { step });
        let at = self.cpus[cpu].clock;
        if at < self.next_memory_sample {
            return;
        }
        self.next_memory_sample = at.saturating_add(crate::timeline::MEMORY_SAMPLE_CYCLES);
        if let Some(sample) = self.os.clone().and_then(|os| os.memory_sample()) {
            self.timeline(cpu, task, What::Memory(sample));
        }
    }

    /// Take the timer ticks that are due on `cpu`: count them, charge them, and ask for a
    /// reschedule if other tasks wait for this CPU. A CPU that was idle for a long time skips
    /// the ticks it slept through (a tickless idle).
    pub(crate) fn process_ticks(&mut self, cpu: usize) {
        let period = self.opts.tick_period;
        if period == 0 {
            return;
        }
        let c = &mut self.cpus[cpu];
        if c.clock >= c.next_tick.saturating_add(period.saturating_mul(4)) {
            c.next_tick = c.clock;
        }
        while c.clock >= c.next_tick {
            c.stats.ticks += 1;
            c.clock += self.cost.timer_tick;
            let jitter = if self.opts.stress {
                self.rng.random_range(0..period)
            } else {
                period / 2
            };
            c.next_tick = c.next_tick.saturating_add(period / 2 + jitter);
            if !c.runq.is_empty() || (self.opts.stress && self.rng.random_bool(0.5)) {
                c.need_resched = true;
            }
        }
    }

    /// True if the current task of `cpu` should be switched out now, at a point where that is
    /// allowed: a reschedule is due and another task waits for the CPU, or stress mode draws
    /// an extra one (which an idle CPU may turn into a migration).
    pub(crate) fn resched_due(&mut self, cpu: usize) -> bool {
        let c = &mut self.cpus[cpu];
        if c.need_resched {
            if !c.runq.is_empty() {
                return true;
            }
            c.need_resched = false;
        }
        self.opts.stress && self.rng.random_ratio(1, 8)
    }

    /// Account for a task's yield.
    fn after_yield(&mut self, cpu: usize, task: TaskId, why: Yield) {
        match why {
            Yield::Interleave => {}
            Yield::Spin => {
                if let Some(kind) = self.spin_deadlock(cpu) {
                    let report = deadlock::report(self, kind);
                    self.fail(RunOutcome::Deadlock(Box::new(report)));
                }
            }
            Yield::Preempt(kind) => {
                match kind {
                    PreemptKind::Kernel => self.stats.preemptions += 1,
                    PreemptKind::User => self.stats.user_preemptions += 1,
                }
                let at = self.cpus[cpu].clock;
                self.events.record(Event::Preempt {
                    cpu: cpu as u32,
                    task,
                    at,
                });
                let why = match kind {
                    PreemptKind::Kernel => RunEnd::KernelPreempt,
                    PreemptKind::User => RunEnd::UserPreempt,
                };
                self.timeline(cpu, task, What::RunEnd { why });
                self.requeue(cpu, task);
            }
            Yield::Schedule => {
                if !self.cpus[cpu].runq.is_empty() {
                    self.stats.voluntary_switches += 1;
                }
                let why = RunEnd::Schedule;
                self.timeline(cpu, task, What::RunEnd { why });
                self.requeue(cpu, task);
            }
            Yield::Sleep => {
                let why = RunEnd::Sleep;
                self.timeline(cpu, task, What::RunEnd { why });
                self.cpus[cpu].current = None;
            }
            Yield::Stop => {}
        }
    }

    /// Put the current task of `cpu` back at the tail of its run queue.
    fn requeue(&mut self, cpu: usize, task: TaskId) {
        let c = &mut self.cpus[cpu];
        c.current = None;
        c.runq.push_back(task);
        self.tasks[task.0 as usize].state = TaskState::Runnable;
    }

    /// A task's body returned.
    fn exited(&mut self, cpu: usize, task: TaskId, code: i32) {
        let c = &mut self.cpus[cpu];
        c.current = None;
        c.spinning = false;
        let at = c.clock;
        self.tasks[task.0 as usize].state = TaskState::Exited { code };
        if !self.tasks[task.0 as usize].daemon {
            self.live_tasks -= 1;
        }
        self.progress += 1;
        self.stats.exited += 1;
        self.events.record(Event::Exit { task, code, at });
        self.timeline(cpu, task, What::Exit { code });
        let why = RunEnd::Exit;
        self.timeline(cpu, task, What::RunEnd { why });
    }

    /// After a spin: is the machine stuck? Either the spinner passed the spin bound with no
    /// lock released anywhere, or every busy CPU's task is spinning, has seen no progress
    /// since its last two spins, and cannot be preempted in favour of a queued task.
    fn spin_deadlock(&self, cpu: usize) -> Option<DeadlockKind> {
        if self.cpus[cpu].spins_without_release > self.opts.spin_bound {
            return Some(DeadlockKind::SpinBound);
        }
        for c in &self.cpus {
            if !c.has_work() {
                continue;
            }
            let t = c.current?;
            if !c.spinning || c.spin_seen != self.progress || c.spin_rounds < 2 {
                return None;
            }
            if self.opts.preempt
                && self.tasks[t.0 as usize].preempt_count == 0
                && !c.runq.is_empty()
            {
                return None;
            }
        }
        Some(DeadlockKind::AllSpinning)
    }

    /// Where a woken task should run: its last CPU if idle, else the lowest idle CPU, else
    /// its last CPU.
    pub(crate) fn select_cpu(&self, task: TaskId) -> u32 {
        let last = self.tasks[task.0 as usize].last_cpu;
        if !self.cpus[last as usize].has_work() {
            return last;
        }
        self.cpus
            .iter()
            .position(|c| !c.has_work())
            .map_or(last, |i| i as u32)
    }
}
