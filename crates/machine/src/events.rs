//! The event log: a running hash over every scheduling decision and kernel-visible event, and
//! an optional bounded trace of the same events.
//!
//! Host addresses (lock identities, most wait-queue keys) differ from run to run with the host
//! allocator's state, so they stay out of the hash: locks and queues are hashed by name.
//!
//! Two runs with the same seed and inputs must produce the same hash: the hash is the cheap
//! proof of determinism, and a changed hash under a different stress seed is the proof that the
//! interleaving really changed. The trace (off by default) is for tests and debugging.
//!
//! The hash is FNV-1a taken a 64-bit word at a time, written here rather than taken from the
//! `fnv` crate on purpose: that crate's `FnvHasher` is the byte-wise FNV-1a behind the `Hasher`
//! trait (eight multiplies per word, on the path of every lock acquire and release), and the
//! value is a fingerprint printed in reports, docs and replay commands, so it must stay the
//! same across dependency upgrades. It is the two lines in [`EventLog::record`] and
//! `str_hash`; it is a fingerprint, not a `HashMap` hasher, and nothing else hashes with it.

use highpte_kernel::TaskId;

/// One recorded event. `cpu` is the simulated CPU and `at` its clock when the event happened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// The scheduler resumed `task` on `cpu` (every scheduling decision).
    Resume {
        /// The CPU.
        cpu: u32,
        /// The task resumed.
        task: TaskId,
        /// The CPU clock.
        at: u64,
    },
    /// `cpu` switched from `prev` to `next`.
    ContextSwitch {
        /// The CPU.
        cpu: u32,
        /// The task that ran before, if any.
        prev: Option<TaskId>,
        /// The task that runs now.
        next: TaskId,
        /// The CPU clock.
        at: u64,
    },
    /// `task` was preempted on `cpu` (kernel preemption or return to user).
    Preempt {
        /// The CPU.
        cpu: u32,
        /// The preempted task.
        task: TaskId,
        /// The CPU clock.
        at: u64,
    },
    /// `task` moved from CPU `from` to CPU `to`.
    Migrate {
        /// The task.
        task: TaskId,
        /// The CPU it last ran on.
        from: u32,
        /// The CPU it will run on.
        to: u32,
    },
    /// A lock was taken or released.
    Lock {
        /// The task.
        task: TaskId,
        /// The lock's name (hashed).
        name: &'static str,
        /// The lock's identity (a host address: kept in the trace, left out of the hash).
        id: u64,
        /// True for acquire, false for release.
        acquired: bool,
        /// The CPU clock.
        at: u64,
    },
    /// `task` went to sleep on a wait queue.
    Sleep {
        /// The task.
        task: TaskId,
        /// What the queue is for (hashed).
        what: &'static str,
        /// The wait queue key (often a host address: kept in the trace, left out of the hash).
        key: u64,
        /// The CPU clock.
        at: u64,
    },
    /// `waker` woke `task`.
    Wake {
        /// The task woken.
        task: TaskId,
        /// The task that woke it.
        waker: TaskId,
        /// The CPU the woken task was queued on.
        cpu: u32,
    },
    /// A task was created.
    Spawn {
        /// The new task.
        task: TaskId,
        /// The CPU it was queued on.
        cpu: u32,
    },
    /// A task exited.
    Exit {
        /// The task.
        task: TaskId,
        /// Its exit code.
        code: i32,
        /// The CPU clock.
        at: u64,
    },
    /// A user-visible event reported by a higher layer (a syscall result, a stamp check...).
    User {
        /// The task.
        task: TaskId,
        /// What happened, as the caller encodes it.
        value: u64,
    },
}

impl Event {
    /// The event as words for hashing: a tag and up to four fields. Names are hashed with
    /// [`str_hash`], through the memo `names`.
    #[inline]
    fn words(&self, names: &mut NameHashes) -> [u64; 5] {
        fn t(task: TaskId) -> u64 {
            u64::from(task.0)
        }
        fn ot(task: Option<TaskId>) -> u64 {
            task.map_or(u64::MAX, |t| u64::from(t.0))
        }
        match *self {
            Event::Resume { cpu, task, at } => [1, u64::from(cpu), t(task), at, 0],
            Event::ContextSwitch {
                cpu,
                prev,
                next,
                at,
            } => [2, u64::from(cpu), ot(prev), t(next), at],
            Event::Preempt { cpu, task, at } => [3, u64::from(cpu), t(task), at, 0],
            Event::Migrate { task, from, to } => [4, t(task), u64::from(from), u64::from(to), 0],
            Event::Lock {
                task,
                name,
                acquired,
                at,
                ..
            } => [5, t(task), names.get(name), u64::from(acquired), at],
            Event::Sleep { task, what, at, .. } => [6, t(task), names.get(what), at, 0],
            Event::Wake { task, waker, cpu } => [7, t(task), t(waker), u64::from(cpu), 0],
            Event::Spawn { task, cpu } => [8, t(task), u64::from(cpu), 0, 0],
            Event::Exit { task, code, at } => [9, t(task), code as u32 as u64, at, 0],
            Event::User { task, value } => [10, t(task), value, 0, 0],
        }
    }
}

/// FNV-1a over the bytes of `s`, 8 at a time (lock and queue names are short).
fn str_hash(s: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for chunk in s.as_bytes().chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(FNV_PRIME);
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Slots of [`NameHashes`].
const NAME_SLOTS: usize = 64;

/// A memo of [`str_hash`] keyed by the string's address and length.
///
/// Lock and queue names are a few dozen `&'static str`s hashed millions of times (every lock
/// acquire and release is an event), so each distinct name is hashed once and then found by its
/// address. This only caches a pure function of the string's bytes: the event hash is the same
/// with or without it, whatever the addresses (two copies of one name at different addresses
/// simply take two slots, and a slot taken over by another name is recomputed).
#[derive(Clone, Debug)]
struct NameHashes {
    /// (address, length, hash) per slot; address 0 (no `&str` has it) marks an empty slot.
    slots: [(usize, usize, u64); NAME_SLOTS],
}

impl NameHashes {
    fn new() -> Self {
        Self {
            slots: [(0, 0, 0); NAME_SLOTS],
        }
    }

    /// `str_hash(s)`, from the memo when `s` was hashed before. `'static`: the bytes at a
    /// cached address can never change.
    #[inline]
    fn get(&mut self, s: &'static str) -> u64 {
        let (addr, len) = (s.as_ptr() as usize, s.len());
        // Fibonacci hashing of the address: names sit side by side in read-only data.
        let i = (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) % NAME_SLOTS;
        let slot = &mut self.slots[i];
        if slot.0 == addr && slot.1 == len {
            return slot.2;
        }
        let h = str_hash(s);
        *slot = (addr, len, h);
        h
    }
}

/// The running hash (FNV-1a over 64-bit words) and the optional trace.
#[derive(Clone, Debug)]
pub struct EventLog {
    hash: u64,
    count: u64,
    trace: Vec<Event>,
    trace_limit: usize,
    names: NameHashes,
}

impl EventLog {
    /// An empty log keeping at most `trace_limit` events (0: hash only).
    pub fn new(trace_limit: usize) -> Self {
        Self {
            hash: FNV_OFFSET,
            count: 0,
            trace: Vec::new(),
            trace_limit,
            names: NameHashes::new(),
        }
    }

    /// Fold `ev` into the hash and, while there is room, append it to the trace.
    #[inline]
    pub fn record(&mut self, ev: Event) {
        let mut h = self.hash;
        for w in ev.words(&mut self.names) {
            // FNV-1a on whole words: cheap, order-sensitive, and good enough to tell two
            // interleavings apart (this is a fingerprint, not a cryptographic digest).
            h = (h ^ w).wrapping_mul(FNV_PRIME);
        }
        self.hash = h;
        self.count += 1;
        if self.trace.len() < self.trace_limit {
            self.trace.push(ev);
        }
    }

    /// The hash of every event so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many events were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The recorded trace (at most `trace_limit` events, the earliest ones).
    pub fn trace(&self) -> &[Event] {
        &self.trace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_order() {
        let a = Event::Spawn {
            task: TaskId(1),
            cpu: 0,
        };
        let b = Event::Spawn {
            task: TaskId(2),
            cpu: 0,
        };
        let mut x = EventLog::new(0);
        x.record(a);
        x.record(b);
        let mut y = EventLog::new(0);
        y.record(b);
        y.record(a);
        assert_ne!(x.hash(), y.hash());
        assert_eq!(x.count(), 2);
        assert!(x.trace().is_empty());
    }

    #[test]
    fn name_memo_gives_the_plain_hash() {
        let mut memo = NameHashes::new();
        // the same text at two addresses, and names that share slots, all hash as str_hash
        let owned: &'static str = Box::leak(String::from("zone->lock").into_boxed_str());
        let names = ["zone->lock", owned, "mm->page_table_lock", "", "a"];
        for _ in 0..3 {
            for n in &names {
                assert_eq!(memo.get(n), str_hash(n), "{n:?}");
            }
        }
        assert_eq!(str_hash("zone->lock"), str_hash(owned));
        // more names than slots: evicted entries are recomputed, never wrong
        let many: Vec<&'static str> = (0..4 * NAME_SLOTS)
            .map(|i| &*Box::leak(format!("lock{i}").into_boxed_str()))
            .collect();
        for _ in 0..2 {
            for n in &many {
                assert_eq!(memo.get(n), str_hash(n));
            }
        }
    }

    #[test]
    fn trace_is_bounded() {
        let mut x = EventLog::new(1);
        x.record(Event::User {
            task: TaskId(0),
            value: 1,
        });
        x.record(Event::User {
            task: TaskId(0),
            value: 2,
        });
        assert_eq!(
            x.trace(),
            &[Event::User {
                task: TaskId(0),
                value: 1
            }]
        );
    }
}
