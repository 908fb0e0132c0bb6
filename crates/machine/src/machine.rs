//! The simulated SMP machine: physical memory, CPUs, tasks, the scheduler's state, and the
//! [`Machine`] type that owns them and runs the simulation.

use crate::cost::CostModel;
use crate::cpu::{Cpu, CpuStats};
use crate::events::{Event, EventLog};
use crate::phys::{PhysMem, PhysMemError};
use crate::stack::Stacks;
use crate::task::{make_coroutine, SpawnError, TaskCoroutine, TaskHandle, TaskInfo, TaskState};
use crate::timeline::{TimelineEvent, What};
use crate::tlb::Tlb;
use highpte_arch::{PagingMode, VirtAddr, MAX_CPUS};
use highpte_kernel::TaskId;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::rc::Rc;

mod outcome;

pub use outcome::{BugInfo, MachineStats, RunOutcome};

/// Hooks the OS running on the machine provides. Called on the task's own coroutine, so they
/// may use the handle's [`highpte_kernel::Platform`] methods (e.g. load CR3).
pub trait Os<M: PagingMode>: 'static {
    /// The CPU switched from `prev` (the task that ran last on it, possibly exited) to
    /// `next`, the task `p` belongs to. The kernel loads the next mm's CR3 here. Runs with
    /// preemption disabled.
    fn switch_mm(&self, p: &TaskHandle<M>, prev: Option<TaskId>, next: TaskId);
    /// Task `task` is about to exit with `code` (its body returned).
    fn task_exit(&self, p: &TaskHandle<M>, task: TaskId, code: i32) {
        let _ = (p, task, code);
    }
    /// Memory figures for a timeline, read between run slices (no task runs). Must not call
    /// back into the machine.
    fn memory_sample(&self) -> Option<crate::timeline::MemorySample> {
        None
    }
    /// What the OS knows about kernel address `va` (e.g. which kmap_atomic slot it is and who
    /// mapped or released it), appended to a kernel-page-fault oops. Must not call back into
    /// the machine.
    fn describe_address(&self, va: VirtAddr) -> Option<String> {
        let _ = va;
        None
    }
}

/// No OS: tasks share whatever CR3 is loaded (for machine tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoOs;

impl<M: PagingMode> Os<M> for NoOs {
    fn switch_mm(&self, _p: &TaskHandle<M>, _prev: Option<TaskId>, _next: TaskId) {}
}

/// How to build a machine.
#[derive(Clone, Debug)]
pub struct MachineOptions {
    /// Number of CPUs, 1 (UP) to 32.
    pub cpus: u32,
    /// Bytes of simulated RAM (a non-zero multiple of 4096, at most 64 GiB).
    pub ram_bytes: u64,
    /// The seed of every random choice (stress perturbations, [`highpte_kernel::CpuInfo::random`]).
    pub seed: u64,
    /// `CONFIG_PREEMPT`: kernel preemption at `preempt_enable`.
    pub preempt: bool,
    /// Cycles between timer ticks on each CPU (0: no tick).
    pub tick_period: u64,
    /// How far (in cycles) a CPU may run ahead of the earliest other busy CPU before it lets
    /// the others catch up. Smaller interleaves more finely and costs more host time.
    pub quantum: u64,
    /// Stress mode: random quanta, tick jitter, extra reschedules and preemptions at the
    /// places they are allowed, all drawn from the seed.
    pub stress: bool,
    /// Spin-loop iterations with no lock released anywhere after which a spinner is declared
    /// deadlocked.
    pub spin_bound: u64,
    /// Bytes of host stack per task (committed lazily by the host OS).
    pub stack_size: usize,
    /// Stop with [`RunOutcome::TimeLimit`] when every busy CPU's clock passes this.
    pub max_cycles: Option<u64>,
    /// Keep the first this-many events in a trace ([`Machine::trace`]); 0 keeps none.
    pub trace_limit: usize,
    /// The cost of every event.
    pub cost: CostModel,
    /// Back simulated memory with host huge pages where the host allows (fewer host page
    /// faults, less precise host memory accounting).
    pub huge_pages: bool,
    /// Keep the swap device's blocks in this host file instead of host memory (for swap
    /// bigger than the host can hold). Created or truncated when the machine is built,
    /// removed when it is dropped; see [`crate::blockdev::swap_file`]. The simulation is the
    /// same bit for bit either way.
    pub swap_file: Option<std::path::PathBuf>,
    /// Record the run's timeline here (see [`crate::timeline`]); `None` costs nothing.
    pub timeline: Option<crate::timeline::TimelineHook>,
}

impl Default for MachineOptions {
    fn default() -> Self {
        Self {
            cpus: 1,
            ram_bytes: 64 << 20,
            seed: 0,
            preempt: false,
            tick_period: 1_000_000,
            quantum: 2_000,
            stress: false,
            spin_bound: 1_000_000,
            stack_size: 128 << 10,
            max_cycles: None,
            trace_limit: 0,
            cost: CostModel::default(),
            huge_pages: false,
            swap_file: None,
            timeline: None,
        }
    }
}

/// Why a machine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The CPU count is out of range.
    #[error("{0} CPUs is out of range: a machine has 1 (UP) to {MAX_CPUS} CPUs")]
    Cpus(u32),
    /// The quantum is zero.
    #[error("the scheduling quantum must be at least 1 cycle")]
    Quantum,
    /// The tick period is not longer than the tick itself.
    #[error("tick period {period} cycles is not longer than a timer tick ({tick} cycles): use 0 for no tick or a longer period")]
    TickPeriod {
        /// The period asked for.
        period: u64,
        /// The cost of one tick.
        tick: u64,
    },
    /// Physical memory could not be set up.
    #[error(transparent)]
    Phys(#[from] PhysMemError),
    /// The swap file could not be created or opened.
    #[error(transparent)]
    SwapFile(#[from] crate::blockdev::SwapFileError),
}

/// A wait queue: sleepers in sleep order, and how many wake-ups it has had (the
/// `prepare_to_wait` token).
#[derive(Default, Debug)]
pub(crate) struct WaitQueue {
    pub sleepers: VecDeque<TaskId>,
    pub wakes: u64,
}

/// Body of a task before it is placed on a coroutine.
pub(crate) type TaskBody<M> = Box<dyn FnOnce(&TaskHandle<M>) -> i32>;

/// Everything the scheduler and the tasks share. Heap-allocated once; tasks reach it through
/// a raw pointer (see [`crate::task`] for the soundness argument).
pub(crate) struct MachineState<M: PagingMode> {
    pub self_ptr: NonNull<MachineState<M>>,
    pub phys: PhysMem,
    pub cpus: Vec<Cpu>,
    pub tasks: Vec<TaskInfo>,
    pub coroutines: Vec<Option<TaskCoroutine>>,
    pub stacks: Stacks,
    pub queues: BTreeMap<u64, WaitQueue>,
    pub cost: CostModel,
    pub rng: ChaCha8Rng,
    pub events: EventLog,
    /// Swap devices and the disk.
    pub disks: crate::blockdev::BlockStore,
    pub log: Vec<String>,
    pub opts: MachineOptions,
    pub os: Option<Rc<dyn Os<M>>>,
    /// The CPU whose task runs now (valid while a task runs).
    pub cur_cpu: usize,
    /// The clock at which the running task must take the slow path (next tick or
    /// `interleave_at`).
    pub yield_at: u64,
    /// The clock at which the running task lets the other CPUs catch up.
    pub interleave_at: u64,
    /// The quantum of the current run slice.
    pub slice_quantum: u64,
    /// Bumped by every platform call that may change what a spinner waits for.
    pub progress: u64,
    /// Bumped by every lock release.
    pub lock_releases: u64,
    /// Tasks not yet exited.
    pub live_tasks: usize,
    pub stats: MachineStats,
    /// Set when the run must stop (a bug, a deadlock).
    pub failure: Option<RunOutcome>,
    /// The timeline recorder, if any (a copy of the option's, reached without `opts`).
    pub timeline: Option<crate::timeline::TimelineHook>,
    /// The earliest clock of the next memory sample for the timeline.
    pub next_memory_sample: u64,
    pub _mode: PhantomData<M>,
}

impl<M: PagingMode> MachineState<M> {
    /// Create a task and queue it. `now` is the spawner's clock (None from outside a run).
    pub fn spawn(
        &mut self,
        name: String,
        cpu_hint: Option<u32>,
        now: Option<u64>,
        body: TaskBody<M>,
    ) -> Result<TaskId, SpawnError> {
        let index = self.tasks.len();
        let id = TaskId(u32::try_from(index).map_err(|_| SpawnError::TooManyTasks)?);
        let stack = self.stacks.take().map_err(|source| SpawnError::Stack {
            name: name.clone(),
            size: self.opts.stack_size,
            source,
        })?;
        let co = make_coroutine(self.self_ptr, id, stack, body);
        let nr = self.cpus.len() as u32;
        let cpu = match cpu_hint {
            Some(h) => h % nr,
            None => self.least_loaded_cpu(),
        };
        if let Some(t) = &self.timeline {
            t.name(id, &name);
            let at = now.unwrap_or(self.cpus[cpu as usize].clock);
            t.send(TimelineEvent {
                cpu,
                at,
                task: id,
                what: What::Spawn,
            });
        }
        self.tasks.push(TaskInfo::new(name, cpu));
        self.coroutines.push(Some(co));
        self.live_tasks += 1;
        self.stats.spawned += 1;
        self.progress += 1;
        self.events.record(Event::Spawn { task: id, cpu });
        self.enqueue(id, cpu, now);
        Ok(id)
    }

    /// The lowest-numbered CPU with the fewest tasks.
    fn least_loaded_cpu(&self) -> u32 {
        let mut best = 0;
        for (i, c) in self.cpus.iter().enumerate() {
            if c.load() < self.cpus[best].load() {
                best = i;
            }
        }
        best as u32
    }

    /// Put a runnable task on `cpu`'s run queue. An idle CPU's clock jumps to `now` (the time
    /// the task became runnable), and the running task's slice shortens so that CPU gets to
    /// run soon.
    pub fn enqueue(&mut self, id: TaskId, cpu: u32, now: Option<u64>) {
        let c = &mut self.cpus[cpu as usize];
        if !c.has_work() {
            if let Some(now) = now {
                c.clock = c.clock.max(now);
            }
            let at = c.clock.saturating_add(self.slice_quantum);
            self.interleave_at = self.interleave_at.min(at);
            self.yield_at = self.yield_at.min(at);
        }
        c.runq.push_back(id);
        self.tasks[id.0 as usize].state = TaskState::Runnable;
    }

    /// Tell the timeline (if one records) that `what` happened to `task` on `cpu`, now.
    #[inline(always)]
    pub fn timeline(&self, cpu: usize, task: TaskId, what: What) {
        if let Some(t) = &self.timeline {
            t.send(TimelineEvent {
                cpu: cpu as u32,
                at: self.cpus[cpu].clock,
                task,
                what,
            });
        }
    }

    /// Record the failure that stops the run (the first one wins).
    pub fn fail(&mut self, outcome: RunOutcome) {
        if self.failure.is_none() {
            self.failure = Some(outcome);
        }
    }
}

/// The deterministic simulated SMP machine.
///
/// Build it, [`Machine::spawn`] tasks, then [`Machine::run`] until they all exit, a bug is
/// reported or nothing can progress. Same options and seed, same run, bit for bit
/// ([`Machine::event_hash`]).
pub struct Machine<M: PagingMode> {
    state: NonNull<MachineState<M>>,
}

impl<M: PagingMode> Machine<M> {
    /// Build a machine: RAM, CPUs (paging off, clocks at 0), no tasks, no OS hooks.
    pub fn new(opts: MachineOptions) -> Result<Self, MachineError> {
        if opts.cpus == 0 || opts.cpus > MAX_CPUS {
            return Err(MachineError::Cpus(opts.cpus));
        }
        if opts.quantum == 0 {
            return Err(MachineError::Quantum);
        }
        if opts.tick_period != 0 && opts.tick_period <= opts.cost.timer_tick {
            return Err(MachineError::TickPeriod {
                period: opts.tick_period,
                tick: opts.cost.timer_tick,
            });
        }
        if let Some(Ok(mut t)) = opts.timeline.as_ref().map(|t| t.0.lock()) {
            t.machine(opts.cpus, opts.cost.clock_hz);
        }
        let phys = PhysMem::new(opts.ram_bytes)?;
        let disks = crate::blockdev::BlockStore::new(opts.swap_file.as_deref())?;
        if opts.huge_pages {
            // fewer host page faults for dense simulated memory (page tables, big segments)
            let _ = phys.set_huge_pages(true);
        }
        let tick = if opts.tick_period == 0 {
            u64::MAX
        } else {
            opts.tick_period
        };
        let cpus = (0..opts.cpus)
            .map(|i| Cpu::new(i, Tlb::new(M::PMD_SHIFT), tick))
            .collect();
        let state = Box::new(MachineState {
            self_ptr: NonNull::dangling(),
            phys,
            cpus,
            tasks: Vec::new(),
            coroutines: Vec::new(),
            stacks: Stacks::new(opts.stack_size),
            queues: BTreeMap::new(),
            cost: opts.cost.clone(),
            rng: ChaCha8Rng::seed_from_u64(opts.seed),
            events: EventLog::new(opts.trace_limit),
            timeline: opts.timeline.clone(),
            next_memory_sample: 0,
            disks,
            log: Vec::new(),
            opts,
            os: None,
            cur_cpu: 0,
            yield_at: u64::MAX,
            interleave_at: u64::MAX,
            slice_quantum: 0,
            progress: 0,
            lock_releases: 0,
            live_tasks: 0,
            stats: MachineStats::default(),
            failure: None,
            _mode: PhantomData,
        });
        let ptr = NonNull::from(Box::leak(state));
        // SAFETY: `ptr` was just leaked from a Box; nothing else references it yet.
        unsafe { (*ptr.as_ptr()).self_ptr = ptr };
        Ok(Self { state: ptr })
    }

    #[inline]
    fn st(&self) -> &MachineState<M> {
        // SAFETY: no coroutine runs outside `run`, and `run` holds `&mut self`, so while this
        // shared borrow of `self` lives nothing mutates the state.
        unsafe { self.state.as_ref() }
    }

    #[inline]
    fn st_mut(&mut self) -> &mut MachineState<M> {
        // SAFETY: as in `st`, with `&mut self` excluding every other access.
        unsafe { self.state.as_mut() }
    }

    /// Install (or replace) the OS hooks.
    pub fn set_os(&mut self, os: Rc<dyn Os<M>>) {
        self.st_mut().os = Some(os);
    }

    /// Create a task running `body`, queued on `cpu_hint` (modulo the CPU count) or, with
    /// `None`, on the least-loaded CPU. It starts at the next [`Machine::run`].
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        cpu_hint: Option<u32>,
        body: impl FnOnce(&TaskHandle<M>) -> i32 + 'static,
    ) -> Result<TaskId, SpawnError> {
        self.st_mut()
            .spawn(name.into(), cpu_hint, None, Box::new(body))
    }

    /// Create a daemon task (a kernel thread such as kswapd): like [`Machine::spawn`], but a
    /// run ends when the other tasks have exited and the daemons are asleep.
    pub fn spawn_daemon(
        &mut self,
        name: impl Into<String>,
        cpu_hint: Option<u32>,
        body: impl FnOnce(&TaskHandle<M>) -> i32 + 'static,
    ) -> Result<TaskId, SpawnError> {
        let st = self.st_mut();
        let id = st.spawn(name.into(), cpu_hint, None, Box::new(body))?;
        st.tasks[id.0 as usize].daemon = true;
        st.live_tasks -= 1;
        Ok(id)
    }

    /// Run until every task has exited, a bug is reported, nothing can progress, or the cycle
    /// limit passes. After a bug or a deadlock the machine stays stopped: later calls return
    /// the same outcome.
    pub fn run(&mut self) -> RunOutcome {
        crate::sched::run(self.state)
    }

    /// The run's fingerprint: a hash of every scheduling decision and event so far.
    pub fn event_hash(&self) -> u64 {
        self.st().events.hash()
    }

    /// The first [`MachineOptions::trace_limit`] events.
    pub fn trace(&self) -> &[Event] {
        self.st().events.trace()
    }

    /// Machine-wide counters.
    pub fn stats(&self) -> MachineStats {
        let st = self.st();
        let mut s = st.stats.clone();
        s.ticks = st.cpus.iter().map(|c| c.stats.ticks).sum();
        s.ipis_sent = st.cpus.iter().map(|c| c.stats.ipis_sent).sum();
        s
    }

    /// Per-CPU counters.
    pub fn cpu_stats(&self) -> Vec<CpuStats> {
        self.st().cpus.iter().map(|c| c.stats).collect()
    }

    /// Simulated cycles elapsed on each CPU.
    pub fn cpu_clocks(&self) -> Vec<u64> {
        self.st().cpus.iter().map(|c| c.clock).collect()
    }

    /// The latest CPU clock: the simulated duration of the run so far.
    pub fn elapsed_cycles(&self) -> u64 {
        self.st().cpus.iter().map(|c| c.clock).max().unwrap_or(0)
    }

    /// Number of CPUs.
    pub fn nr_cpus(&self) -> u32 {
        self.st().cpus.len() as u32
    }

    /// Physical memory (for setup and checks between runs).
    pub fn phys(&self) -> &PhysMem {
        &self.st().phys
    }

    /// The MMU registers of `cpu` (None if out of range).
    pub fn mmu_regs(&self, cpu: u32) -> Option<crate::mmu::MmuRegs> {
        self.st().cpus.get(cpu as usize).map(|c| c.regs)
    }

    /// The contents of block `block` of `dev` (zeros if never written), read without
    /// counting an I/O (for tests that look at the disk itself). Fails only if the block is
    /// in a swap file the host cannot read.
    pub fn disk_block(
        &self,
        dev: highpte_kernel::BlockDev,
        block: u64,
    ) -> Result<[u8; crate::blockdev::BLOCK_BYTES], crate::blockdev::HostIoError> {
        let mut buf = [0u8; crate::blockdev::BLOCK_BYTES];
        self.st().disks.peek(dev, block, &mut buf)?;
        Ok(buf)
    }

    /// The block devices: where their blocks live and how many (e.g. to check that a swap
    /// file keeps swap out of host memory).
    pub fn block_store(&self) -> &crate::blockdev::BlockStore {
        &self.st().disks
    }

    /// Blocks read and written on every block device since boot, and the blocks holding
    /// data.
    pub fn disk_stats(&self) -> (u64, u64, usize) {
        let d = &self.st().disks;
        let (r, w) = d.io_counts();
        (r, w, d.stored_blocks())
    }

    /// The TLB of `cpu` (None if out of range), e.g. to check no entry maps a freed frame.
    pub fn tlb(&self, cpu: u32) -> Option<&Tlb> {
        self.st().cpus.get(cpu as usize).map(|c| &c.tlb)
    }

    /// The cost model.
    pub fn cost(&self) -> &CostModel {
        &self.st().cost
    }

    /// The options the machine was built with.
    pub fn options(&self) -> &MachineOptions {
        &self.st().opts
    }

    /// The kernel log (dmesg), one line per entry.
    pub fn kernel_log(&self) -> &[String] {
        &self.st().log
    }

    /// Number of tasks ever created.
    pub fn nr_tasks(&self) -> usize {
        self.st().tasks.len()
    }

    /// A task's name and state (None if no such task).
    pub fn task_state(&self, id: TaskId) -> Option<(&str, TaskState)> {
        self.st()
            .tasks
            .get(id.0 as usize)
            .map(|t| (t.name.as_str(), t.state))
    }

    /// A task's exit code, if it exited.
    pub fn exit_code(&self, id: TaskId) -> Option<i32> {
        match self.st().tasks.get(id.0 as usize)?.state {
            TaskState::Exited { code } => Some(code),
            _ => None,
        }
    }
}

impl<M: PagingMode> Machine<M> {
    /// End every task for good: finished or never started coroutines are dropped, tasks
    /// suspended mid-way are leaked, never to run again (see below). What a dropped machine
    /// does first; a [`crate::System`] does it before dropping its kernel.
    pub(crate) fn abandon_tasks(&mut self) {
        let state = self.st_mut();
        for co in state.coroutines.drain(..).flatten() {
            if co.started() && !co.done() {
                // A suspended task is mid-way through kernel code: unwinding it would run
                // kernel destructors that call back into this machine. Leak the coroutine
                // (nothing will ever resume it); its stack belongs to `state.stacks`, which
                // unmaps it below.
                std::mem::forget(co);
            }
        }
    }
}

impl<M: PagingMode> Drop for Machine<M> {
    fn drop(&mut self) {
        self.abandon_tasks();
        // SAFETY: the state was leaked from a Box in `new` and is reclaimed exactly once, here;
        // no coroutine runs (we hold `&mut self`).
        drop(unsafe { Box::from_raw(self.state.as_ptr()) });
    }
}
