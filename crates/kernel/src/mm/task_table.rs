//! The process table: the live processes by task id, and the exit codes of children their
//! parent has not waited for yet (zombies). It owns both maps; the rest of the kernel reaches
//! them only through the methods here, none of which hands out a borrow that outlives the call
//! (a caller's closure runs while the table is borrowed and must not create or remove a
//! process).

use super::process::Process;
use crate::platform::TaskId;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

/// The process table (`tasklist` plus the zombies of each parent).
#[derive(Default)]
pub(crate) struct TaskTable {
    procs: RefCell<BTreeMap<TaskId, Rc<Process>>>,
    /// Per parent, its exited children not yet waited for, oldest first.
    zombies: RefCell<BTreeMap<TaskId, Vec<(TaskId, i32)>>>,
}

impl TaskTable {
    /// The process `pid`, if it is alive.
    pub(crate) fn get(&self, pid: TaskId) -> Option<Rc<Process>> {
        self.procs.borrow().get(&pid).cloned()
    }
    /// Whether `pid` is alive.
    pub(crate) fn contains(&self, pid: TaskId) -> bool {
        self.procs.borrow().contains_key(&pid)
    }
    /// Number of live processes.
    pub(crate) fn len(&self) -> usize {
        self.procs.borrow().len()
    }
    /// Every live process id, ascending.
    pub(crate) fn pids(&self) -> Vec<TaskId> {
        self.procs.borrow().keys().copied().collect()
    }
    /// Enter a new process.
    pub(crate) fn insert(&self, p: Rc<Process>) {
        self.procs.borrow_mut().insert(p.pid, p);
    }
    /// Take `pid` out of the table (it has exited).
    pub(crate) fn remove(&self, pid: TaskId) {
        self.procs.borrow_mut().remove(&pid);
    }
    /// The first live process (ascending id) that `pred` accepts.
    pub(crate) fn find(&self, mut pred: impl FnMut(&Process) -> bool) -> Option<Rc<Process>> {
        self.procs.borrow().values().find(|p| pred(p)).cloned()
    }
    /// The live process with the largest `key` (ties: the later in id order).
    pub(crate) fn max_by_key<K: Ord>(
        &self,
        mut pred: impl FnMut(&Process) -> bool,
        key: impl FnMut(&&Rc<Process>) -> K,
    ) -> Option<Rc<Process>> {
        self.procs
            .borrow()
            .values()
            .filter(|p| pred(p))
            .max_by_key(key)
            .cloned()
    }
    /// Call `f` on every live process in id order, starting at the first id `>= from` and
    /// wrapping around (the order of a scan that resumes where it stopped).
    pub(crate) fn for_each_from(&self, from: TaskId, mut f: impl FnMut(&Rc<Process>)) {
        let procs = self.procs.borrow();
        for p in procs
            .range(from..)
            .chain(procs.range(..from))
            .map(|(_, p)| p)
        {
            f(p);
        }
    }
    /// Call `f` on every live process in id order.
    pub(crate) fn for_each(&self, f: impl FnMut(&Rc<Process>)) {
        self.for_each_from(TaskId(0), f);
    }
    /// Queue `child`'s exit code for `parent`'s `wait()`.
    pub(crate) fn push_zombie(&self, parent: TaskId, child: TaskId, code: i32) {
        self.zombies
            .borrow_mut()
            .entry(parent)
            .or_default()
            .push((child, code));
    }
    /// The oldest exited child of `parent` not yet waited for, taken off the queue.
    pub(crate) fn take_zombie(&self, parent: TaskId) -> Option<(TaskId, i32)> {
        let mut z = self.zombies.borrow_mut();
        let v = z.get_mut(&parent)?;
        if v.is_empty() {
            None
        } else {
            Some(v.remove(0))
        }
    }
    /// Forget the zombies queued for `parent` (it has exited: nobody will reap them).
    pub(crate) fn forget_zombies(&self, parent: TaskId) {
        self.zombies.borrow_mut().remove(&parent);
    }
}
