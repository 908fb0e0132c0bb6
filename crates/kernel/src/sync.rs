//! Simulated kernel locks: spinlocks and sleeping mutexes.
//!
//! The simulation runs every task on one host thread, switching between them only inside
//! [`Platform`] calls. A lock's state is therefore a plain `Cell`, and mutual exclusion between
//! simulated tasks is what makes handing out `&mut T` sound: a task reaches the data only while
//! it owns the simulated lock, and any other task that wants it spins (or sleeps) inside a
//! platform call until the owner releases it.
//!
//! As in Linux, a spinlock disables preemption while held; on a UP machine it *is* just
//! `preempt_disable` (plus a debug check that nobody holds it, which would mean a holder slept).
//!
//! The sleeping locks ([`Mutex`], [`RwSem`]) take `&mut SleepCtx` to acquire, like every
//! other call that may sleep, so they cannot be taken while a pte is mapped.

use crate::ctx::SleepCtx;
use crate::platform::{BugReport, Platform, TaskId, WaitOn, WaitQueueKey};
use alloc::format;
use core::cell::{Cell, UnsafeCell};
use core::ops::{Deref, DerefMut};

/// Counters of one lock, for contention reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockStats {
    /// Times the lock was taken.
    pub acquisitions: u64,
    /// Times it was found held.
    pub contended: u64,
    /// Spin-loop iterations (or sleeps, for a mutex) while waiting.
    pub spins: u64,
}

/// Add to a lock's counters in place (never across a spin or a sleep, where other tasks
/// update them too).
#[inline(always)]
fn bump(c: &Cell<LockStats>, f: impl FnOnce(&mut LockStats)) {
    let mut st = c.get();
    f(&mut st);
    c.set(st);
}

/// A spinlock protecting a `T`.
pub struct SpinLock<T: ?Sized> {
    name: &'static str,
    /// 0 when free, else holder task id + 1.
    owner: Cell<u32>,
    stats: Cell<LockStats>,
    data: UnsafeCell<T>,
}

impl<T> SpinLock<T> {
    /// A free lock with a name used in reports.
    pub const fn new(name: &'static str, value: T) -> Self {
        Self {
            name,
            owner: Cell::new(0),
            stats: Cell::new(LockStats {
                acquisitions: 0,
                contended: 0,
                spins: 0,
            }),
            data: UnsafeCell::new(value),
        }
    }
    /// Consume the lock, returning the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> SpinLock<T> {
    fn id(&self) -> u64 {
        self as *const Self as *const u8 as usize as u64
    }
    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// The holder, if held.
    pub fn holder(&self) -> Option<TaskId> {
        match self.owner.get() {
            0 => None,
            n => Some(TaskId(n - 1)),
        }
    }
    /// True if held by anyone.
    pub fn is_locked(&self) -> bool {
        self.owner.get() != 0
    }
    /// Contention counters.
    pub fn stats(&self) -> LockStats {
        self.stats.get()
    }

    /// `spin_lock`: disable preemption, then spin until the lock is free and take it.
    pub fn lock<'a, P: Platform>(&'a self, p: &'a P) -> SpinGuard<'a, T, P> {
        p.preempt_disable();
        bump(&self.stats, |st| st.acquisitions += 1);
        let me = p.task().0 + 1;
        if self.owner.get() != 0 {
            if self.owner.get() == me {
                p.bug(BugReport {
                    kind: "spinlock recursion",
                    message: format!(
                        "task {} takes spinlock '{}' that it already holds",
                        me - 1,
                        self.name
                    ),
                });
            }
            if p.nr_cpus() == 1 {
                p.bug(BugReport {
                    kind: "spinlock held on UP",
                    message: format!(
                        "task {} finds spinlock '{}' held by task {} on a UP kernel: the holder slept or was preempted while holding it",
                        me - 1,
                        self.name,
                        self.owner.get() - 1
                    ),
                });
            }
            bump(&self.stats, |st| st.contended += 1);
            while self.owner.get() != 0 {
                bump(&self.stats, |st| st.spins += 1);
                p.cpu_relax(WaitOn::SpinLock {
                    name: self.name,
                    id: self.id(),
                    holder: self.holder(),
                });
            }
        }
        self.owner.set(me);
        p.note_lock(self.name, self.id(), true);
        SpinGuard { lock: self, p }
    }

    /// `spin_trylock`: take the lock if free.
    pub fn try_lock<'a, P: Platform>(&'a self, p: &'a P) -> Option<SpinGuard<'a, T, P>> {
        if self.owner.get() != 0 {
            return None;
        }
        p.preempt_disable();
        self.owner.set(p.task().0 + 1);
        bump(&self.stats, |st| st.acquisitions += 1);
        p.note_lock(self.name, self.id(), true);
        Some(SpinGuard { lock: self, p })
    }

    /// Access without locking, for code that owns the only reference (boot, teardown).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// The data without taking the lock, for a post-mortem report after the simulation has
    /// stopped (a deadlock or a bug).
    ///
    /// # Safety
    /// No simulated task may run while the reference lives (the machine must be stopped), so
    /// nothing can change the data under it.
    pub unsafe fn peek_stopped(&self) -> &T {
        // SAFETY: the caller guarantees no task runs; the host thread is the only accessor.
        unsafe { &*self.data.get() }
    }

    /// Release a lock this task holds through a guard that stays alive (the guard's owner
    /// promises to call [`SpinLock::relock`] before the guard is used or dropped).
    pub(crate) fn force_unlock<P: Platform>(&self, p: &P) {
        self.owner.set(0);
        p.note_lock(self.name, self.id(), false);
        p.preempt_enable();
    }

    /// Retake a lock released by [`SpinLock::force_unlock`].
    pub(crate) fn relock<P: Platform>(&self, p: &P) {
        core::mem::forget(self.lock(p));
    }
}

/// A held spinlock; unlocks (and re-enables preemption) when dropped.
#[must_use = "a spinlock is released when its guard is dropped"]
pub struct SpinGuard<'a, T: ?Sized, P: Platform> {
    lock: &'a SpinLock<T>,
    p: &'a P,
}

impl<'a, T: ?Sized, P: Platform> SpinGuard<'a, T, P> {
    /// The lock this guard holds.
    pub(crate) fn lock_ref(&self) -> &'a SpinLock<T> {
        self.lock
    }

    /// Run `f` with the lock released, then retake it (as code that must sleep while holding
    /// a spinlock does: `spin_unlock; ...; spin_lock`). Whatever the lock protects may have
    /// changed when `f` returns: re-check it.
    pub fn unlocked<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.release();
        let r = f();
        let g = self.lock.lock(self.p);
        core::mem::forget(g);
        r
    }

    fn release(&self) {
        self.lock.owner.set(0);
        self.p.note_lock(self.lock.name, self.lock.id(), false);
        self.p.preempt_enable();
    }
}

impl<T: ?Sized, P: Platform> Deref for SpinGuard<'_, T, P> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the simulated lock is held by this task (set in `lock`), and every other
        // task that wants the data spins in `lock` until `owner` is cleared, so no other
        // reference to the data exists while the guard lives. All tasks run on one host thread.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized, P: Platform> DerefMut for SpinGuard<'_, T, P> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; the guard is borrowed mutably, so this is the only access.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized, P: Platform> Drop for SpinGuard<'_, T, P> {
    fn drop(&mut self) {
        self.release();
    }
}

/// A sleeping lock (a semaphore used as a mutex, like `mmap_sem` taken for writing).
pub struct Mutex<T: ?Sized> {
    name: &'static str,
    owner: Cell<u32>,
    stats: Cell<LockStats>,
    data: UnsafeCell<T>,
}

impl<T> Mutex<T> {
    /// A free mutex.
    pub const fn new(name: &'static str, value: T) -> Self {
        Self {
            name,
            owner: Cell::new(0),
            stats: Cell::new(LockStats {
                acquisitions: 0,
                contended: 0,
                spins: 0,
            }),
            data: UnsafeCell::new(value),
        }
    }
}

impl<T: ?Sized> Mutex<T> {
    fn key(&self) -> WaitQueueKey {
        WaitQueueKey(self as *const Self as *const u8 as usize as u64)
    }
    /// The holder, if held.
    pub fn holder(&self) -> Option<TaskId> {
        match self.owner.get() {
            0 => None,
            n => Some(TaskId(n - 1)),
        }
    }
    /// Contention counters.
    pub fn stats(&self) -> LockStats {
        self.stats.get()
    }
    /// `down()`: take the mutex, sleeping while someone else holds it. May sleep, so the
    /// caller must prove it may: it lends its [`SleepCtx`] for the call, which a live pte
    /// mapping has borrowed (taking a sleeping lock with a pte mapped does not compile). The
    /// guard keeps only the platform handle, so the context is free again once it returns.
    pub fn lock<'a, 'p: 'a, P: Platform>(
        &'a self,
        cx: &mut SleepCtx<'p, P>,
        place: &'static str,
    ) -> MutexGuard<'a, T, P> {
        let p: &'a P = cx.p();
        p.might_sleep(place);
        bump(&self.stats, |st| st.acquisitions += 1);
        if self.owner.get() == p.task().0 + 1 {
            p.bug(BugReport {
                kind: "mutex recursion",
                message: format!(
                    "task {} takes mutex '{}' it already holds at {}",
                    p.task(),
                    self.name,
                    place
                ),
            });
        }
        if self.owner.get() != 0 {
            bump(&self.stats, |st| st.contended += 1);
        }
        while self.owner.get() != 0 {
            bump(&self.stats, |st| st.spins += 1);
            let token = p.prepare_to_wait(self.key());
            if self.owner.get() == 0 {
                break;
            }
            p.sleep(self.key(), token, self.name, place);
        }
        self.owner.set(p.task().0 + 1);
        p.note_lock(self.name, self.key().0, true);
        MutexGuard { lock: self, p }
    }
    /// Access without locking, for code that owns the only reference.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

/// A held mutex; released on drop, waking the waiters.
#[must_use = "a mutex is released when its guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized, P: Platform> {
    lock: &'a Mutex<T>,
    p: &'a P,
}

impl<T: ?Sized, P: Platform> Deref for MutexGuard<'_, T, P> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the simulated mutex is owned by this task; others sleep in `lock` until it
        // is released. One host thread.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized, P: Platform> DerefMut for MutexGuard<'_, T, P> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and the guard is borrowed mutably.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized, P: Platform> Drop for MutexGuard<'_, T, P> {
    fn drop(&mut self) {
        self.lock.owner.set(0);
        self.p.note_lock(self.lock.name, self.lock.key().0, false);
        self.p.wake_up_all(self.lock.key());
    }
}

/// A read-write semaphore (`mmap_sem`): many readers or one writer, sleeping while blocked.
pub struct RwSem<T: ?Sized> {
    name: &'static str,
    /// Number of readers, or `u32::MAX` for a writer.
    state: Cell<u32>,
    writer: Cell<u32>,
    data: UnsafeCell<T>,
}

impl<T> RwSem<T> {
    /// A free semaphore.
    pub const fn new(name: &'static str, value: T) -> Self {
        Self {
            name,
            state: Cell::new(0),
            writer: Cell::new(0),
            data: UnsafeCell::new(value),
        }
    }
}

impl<T: ?Sized> RwSem<T> {
    fn key(&self) -> WaitQueueKey {
        WaitQueueKey(self as *const Self as *const u8 as usize as u64)
    }
    /// `down_read`: shared access; sleeps while a writer holds it, so it takes the caller's
    /// [`SleepCtx`] (see [`Mutex::lock`]).
    pub fn read<'a, 'p: 'a, P: Platform>(
        &'a self,
        cx: &mut SleepCtx<'p, P>,
        place: &'static str,
    ) -> RwSemReadGuard<'a, T, P> {
        let p: &'a P = cx.p();
        p.might_sleep(place);
        loop {
            let token = p.prepare_to_wait(self.key());
            if self.state.get() != u32::MAX {
                break;
            }
            p.sleep(self.key(), token, self.name, place);
        }
        self.state.set(self.state.get() + 1);
        RwSemReadGuard { sem: self, p }
    }
    /// `down_read_trylock`: shared access if no writer holds it, without sleeping (reclaim
    /// uses it on other processes' address spaces, where waiting could deadlock).
    pub fn try_read<'a, P: Platform>(&'a self, p: &'a P) -> Option<RwSemReadGuard<'a, T, P>> {
        if self.state.get() == u32::MAX {
            return None;
        }
        self.state.set(self.state.get() + 1);
        Some(RwSemReadGuard { sem: self, p })
    }
    /// `down_write`: exclusive access; sleeps while anyone holds it, so it takes the caller's
    /// [`SleepCtx`] (see [`Mutex::lock`]).
    pub fn write<'a, 'p: 'a, P: Platform>(
        &'a self,
        cx: &mut SleepCtx<'p, P>,
        place: &'static str,
    ) -> RwSemWriteGuard<'a, T, P> {
        let p: &'a P = cx.p();
        p.might_sleep(place);
        loop {
            let token = p.prepare_to_wait(self.key());
            if self.state.get() == 0 {
                break;
            }
            p.sleep(self.key(), token, self.name, place);
        }
        self.state.set(u32::MAX);
        self.writer.set(p.task().0 + 1);
        p.note_lock(self.name, self.key().0, true);
        RwSemWriteGuard { sem: self, p }
    }
    /// Access without locking, for code that owns the only reference.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

/// Shared access to an [`RwSem`].
#[must_use = "the semaphore is released when the guard is dropped"]
pub struct RwSemReadGuard<'a, T: ?Sized, P: Platform> {
    sem: &'a RwSem<T>,
    p: &'a P,
}

/// Exclusive access to an [`RwSem`].
#[must_use = "the semaphore is released when the guard is dropped"]
pub struct RwSemWriteGuard<'a, T: ?Sized, P: Platform> {
    sem: &'a RwSem<T>,
    p: &'a P,
}

impl<T: ?Sized, P: Platform> Deref for RwSemReadGuard<'_, T, P> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: readers share; no writer exists while `state` counts readers, and a writer
        // waits in `write` until every reader has left. One host thread.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T: ?Sized, P: Platform> Drop for RwSemReadGuard<'_, T, P> {
    fn drop(&mut self) {
        let n = self.sem.state.get() - 1;
        self.sem.state.set(n);
        if n == 0 {
            self.p.wake_up_all(self.sem.key());
        }
    }
}

impl<T: ?Sized, P: Platform> Deref for RwSemWriteGuard<'_, T, P> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer is alone: `state` is u32::MAX until this guard is dropped.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T: ?Sized, P: Platform> DerefMut for RwSemWriteGuard<'_, T, P> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and the guard is borrowed mutably.
        unsafe { &mut *self.sem.data.get() }
    }
}

impl<T: ?Sized, P: Platform> Drop for RwSemWriteGuard<'_, T, P> {
    fn drop(&mut self) {
        self.sem.state.set(0);
        self.sem.writer.set(0);
        self.p.note_lock(self.sem.name, self.sem.key().0, false);
        self.p.wake_up_all(self.sem.key());
    }
}
