//! The pages a [`crate::mm::Gather`] holds, kept as runs of consecutive frame numbers.
//!
//! An exit or munmap of a large shared mapping gathers every page of it before the TLB flush:
//! 131,072 pages for a 512 MB SGA, and in the `sga` workload 2,000 processes exit at once, each
//! holding its gather while the others run. As a `Vec<Pfn>` that was 1 MB of host memory per
//! process (1.4 GB at the demo's peak). A segment's frames are mostly consecutive (the buddy
//! allocator hands out split blocks in order), so runs cost a few entries instead; the pages
//! come back out in exactly the order they went in, so what is simulated does not change.

use alloc::vec::Vec;
use highpte_arch::Pfn;

/// One run: `len` frames from `first`, ascending or descending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    first: u64,
    len: u32,
    descending: bool,
}

impl Run {
    /// The frame after the last one of the run, in the run's direction (None if there is
    /// no such frame number).
    fn next(&self) -> Option<u64> {
        if self.descending {
            self.first.checked_sub(u64::from(self.len))
        } else {
            self.first.checked_add(u64::from(self.len))
        }
    }
}

/// An ordered list of frames, stored as runs of consecutive frame numbers.
#[derive(Clone, Debug, Default)]
pub struct PageRuns {
    runs: Vec<Run>,
    len: usize,
}

impl PageRuns {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            runs: Vec::new(),
            len: 0,
        }
    }

    /// Number of frames (not runs) held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no frame is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append `pfn` after the frames already held.
    #[inline]
    pub fn push(&mut self, pfn: Pfn) {
        self.len += 1;
        if let Some(r) = self.runs.last_mut() {
            if r.len < u32::MAX {
                if r.next() == Some(pfn.0) {
                    r.len += 1;
                    return;
                }
                if r.len == 1 && r.first.checked_sub(1) == Some(pfn.0) {
                    r.descending = true;
                    r.len = 2;
                    return;
                }
            }
        }
        self.runs.push(Run {
            first: pfn.0,
            len: 1,
            descending: false,
        });
    }

    /// The frames in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = Pfn> + '_ {
        self.runs.iter().flat_map(|r| {
            (0..u64::from(r.len)).map(move |i| {
                Pfn(if r.descending {
                    r.first - i
                } else {
                    r.first + i
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(input: &[u64]) -> (Vec<u64>, usize) {
        let mut r = PageRuns::new();
        for &p in input {
            r.push(Pfn(p));
        }
        assert_eq!(r.len(), input.len());
        (r.iter().map(|p| p.0).collect(), r.runs.len())
    }

    #[test]
    fn ascending_descending_and_scattered_come_back_in_order() {
        let up: Vec<u64> = (100..1100).collect();
        assert_eq!(roundtrip(&up), (up.clone(), 1));
        let down: Vec<u64> = (100..1100).rev().collect();
        assert_eq!(roundtrip(&down), (down.clone(), 1));
        let mixed = [5, 6, 7, 3, 2, 1, 0, 9, 9, 4, 12, 11, 20];
        let (out, runs) = roundtrip(&mixed);
        assert_eq!(out, mixed);
        assert_eq!(runs, 7);
        assert_eq!(roundtrip(&[]), (Vec::new(), 0));
        assert_eq!(
            roundtrip(&[0, u64::MAX, u64::MAX - 1]).0,
            [0, u64::MAX, u64::MAX - 1]
        );
    }
}
