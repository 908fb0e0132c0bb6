//! Task stacks, owned by the machine.
//!
//! A task's coroutine runs on a stack the machine owns, not one the coroutine owns. When a
//! machine is dropped with tasks still suspended in the middle of kernel code, their
//! coroutines are leaked rather than unwound (unwinding would run kernel destructors that call
//! back into a machine being torn down). With a coroutine-owned stack every such task leaked
//! its whole stack: the system-call fuzzer, which builds one machine per case, grew to 20.9 GB
//! of host memory by 50,000 cases (issue 21). Here a coroutine holds only a [`TaskStack`]
//! view, and [`Stacks`] unmaps every stack when the machine goes.

use corosensei::stack::{DefaultStack, Stack, StackPointer};
use std::cell::Cell;

thread_local! {
    /// Task stacks mapped by the machines of this thread, now.
    static MAPPED: Cell<usize> = const { Cell::new(0) };
}

/// Task stacks mapped now by machines created on the calling thread: those of live machines
/// only, since a dropped machine unmaps all of its stacks (a test's leak check).
pub fn task_stacks_mapped() -> usize {
    MAPPED.with(Cell::get)
}

/// Stacks of exited tasks kept for reuse, at most this many; more are unmapped at once.
pub(crate) const STACK_POOL_LIMIT: usize = 64;

/// A task's view of a stack that [`Stacks`] owns.
pub(crate) struct TaskStack {
    index: usize,
    base: StackPointer,
    limit: StackPointer,
}

// SAFETY: `base` and `limit` are those of the `DefaultStack` at `Stacks::owned[index]`, which
// stays mapped until its `Stacks` unmaps it: when the view comes back through
// `Stacks::give_back` (its coroutine completed) or when the `Stacks` is dropped, which the
// machine does only after every coroutine has completed or been leaked, never to run again.
unsafe impl Stack for TaskStack {
    #[inline]
    fn base(&self) -> StackPointer {
        self.base
    }

    #[inline]
    fn limit(&self) -> StackPointer {
        self.limit
    }
}

/// Every stack of one machine's tasks, and the free ones.
pub(crate) struct Stacks {
    owned: Vec<Option<DefaultStack>>,
    free: Vec<TaskStack>,
    size: usize,
}

impl Stacks {
    /// No stacks yet; each will be `size` bytes (plus a guard page).
    pub(crate) fn new(size: usize) -> Self {
        Stacks {
            owned: Vec::new(),
            free: Vec::new(),
            size,
        }
    }

    /// A stack for a new task: a free one, or a newly mapped one.
    pub(crate) fn take(&mut self) -> std::io::Result<TaskStack> {
        if let Some(s) = self.free.pop() {
            return Ok(s);
        }
        let s = DefaultStack::new(self.size)?;
        let view = TaskStack {
            index: self.owned.len(),
            base: s.base(),
            limit: s.limit(),
        };
        self.owned.push(Some(s));
        MAPPED.with(|m| m.set(m.get() + 1));
        Ok(view)
    }

    /// The stack of a task whose coroutine completed: kept for the next task, or unmapped when
    /// [`STACK_POOL_LIMIT`] are kept already.
    pub(crate) fn give_back(&mut self, s: TaskStack) {
        if self.free.len() < STACK_POOL_LIMIT {
            self.free.push(s);
        } else {
            self.owned[s.index] = None;
            MAPPED.with(|m| m.set(m.get() - 1));
        }
    }

    /// Stacks mapped now (in use, free, or under a leaked coroutine).
    pub(crate) fn mapped(&self) -> usize {
        self.owned.iter().filter(|s| s.is_some()).count()
    }
}

impl Drop for Stacks {
    fn drop(&mut self) {
        let n = self.mapped();
        MAPPED.with(|m| m.set(m.get() - n));
        // the stacks themselves are unmapped as `owned` drops
    }
}
