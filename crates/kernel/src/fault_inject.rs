//! Fault injection for the page allocator: every page allocation in the kernel names its
//! *site* (the kernel function that allocates), and a policy set after boot makes chosen
//! allocations fail as if memory had run out.
//!
//! The policies ([`FailAlloc`]) fail allocations at a rate (decided by
//! [`CpuInfo::random`](crate::CpuInfo::random), so a run replays from its seed), the n-th
//! allocation, every allocation at one site, or the n-th at one site. Every failure must turn
//! into what Linux gives: a system call fails with ENOMEM and changes nothing, a page fault
//! ends in the OOM killer (or SIGBUS), and nothing leaks once the processes are gone.
//!
//! Every site string passed to `alloc_pages` / `alloc_pages_atomic` in the kernel is listed in
//! [`ALLOC_SITES`]; the injector counts the allocations and the injected failures per site,
//! and remembers any site name it does not know (a test asserts there is none).

use crate::platform::Platform;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;

/// A named allocation site and what allocates there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocSite {
    /// The site name (the kernel function that allocates).
    pub name: &'static str,
    /// One line: what is allocated there and on whose behalf.
    pub description: &'static str,
    /// What a failure there turns into.
    pub on_failure: &'static str,
}

/// Every allocation site of the kernel, with its description (same order as
/// [`ALLOC_SITES`]).
pub const ALLOC_SITE_INFO: &[AllocSite] = &[
    AllocSite {
        name: "alloc_thread_info",
        description: "kernel stack (order-1, 8 KB) of a new task: process creation and fork",
        on_failure: "fork / process creation fails with ENOMEM",
    },
    AllocSite {
        name: "kmem_cache_alloc",
        description: "slab page for kernel objects: task_struct, mm_struct, VMAs, shm segments",
        on_failure: "the system call fails with ENOMEM (brk returns the old break)",
    },
    AllocSite {
        name: "pgd_alloc",
        description: "page-table root of a new address space (process creation, fork)",
        on_failure: "fork / process creation fails with ENOMEM",
    },
    AllocSite {
        name: "pmd_alloc",
        description: "PAE: one of the three user pmd pages of a new address space",
        on_failure: "fork / process creation fails with ENOMEM",
    },
    AllocSite {
        name: "pte_alloc_one",
        description: "user pte page (high memory with HIGHPTE): faults, populate, mremap, fork",
        on_failure: "fault: OOM kill; mremap, fork, populate: ENOMEM",
    },
    AllocSite {
        name: "pte_alloc_one_kernel",
        description: "kernel pte page (always low): pte_alloc_kernel for vmalloc space",
        on_failure: "pte_alloc_kernel returns OutOfMemory",
    },
    AllocSite {
        name: "do_anonymous_page",
        description: "zeroed page for a write fault on never-touched private anonymous memory",
        on_failure: "the OOM killer runs: the faulting or the biggest process gets SIGKILL",
    },
    AllocSite {
        name: "do_wp_page",
        description: "copy-on-write copy: write fault on a shared private page (after fork)",
        on_failure: "the OOM killer runs: the faulting or the biggest process gets SIGKILL",
    },
    AllocSite {
        name: "shmem_getpage",
        description: "page of a shared object (SysV shm, shared anonymous) on its first fault",
        on_failure: "the OOM killer runs: the faulting or the biggest process gets SIGKILL",
    },
    AllocSite {
        name: "populate_range",
        description: "pages populate_range pre-faults (a database pre-paging its SGA)",
        on_failure: "populate_range fails with ENOMEM (what was filled stays)",
    },
    AllocSite {
        name: "page_cache_alloc",
        description: "page-cache page (high memory): read, write, truncate and file-mapping faults",
        on_failure: "read / write fail with ENOMEM (or return the bytes done); a fault: OOM kill",
    },
];

/// The name of every allocation site of the kernel.
pub const ALLOC_SITES: &[&str] = &[
    "alloc_thread_info",
    "kmem_cache_alloc",
    "pgd_alloc",
    "pmd_alloc",
    "pte_alloc_one",
    "pte_alloc_one_kernel",
    "do_anonymous_page",
    "do_wp_page",
    "shmem_getpage",
    "populate_range",
    "page_cache_alloc",
];

const NSITES: usize = 11;

/// The index of a site in [`ALLOC_SITES`].
pub fn site_index(name: &str) -> Option<usize> {
    ALLOC_SITES.iter().position(|s| *s == name)
}

/// The `&'static` name of a known site (for parsing a site given on a command line).
pub fn site_named(name: &str) -> Option<&'static str> {
    site_index(name).map(|i| ALLOC_SITES[i])
}

/// The description of a known site.
pub fn site_info(name: &str) -> Option<&'static AllocSite> {
    ALLOC_SITE_INFO.iter().find(|s| s.name == name)
}

/// Which page allocations fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailAlloc {
    /// No injection.
    #[default]
    Off,
    /// Each allocation fails with probability `per_million / 1_000_000`, decided by
    /// `Platform::random()` (deterministic from the machine's seed).
    Rate {
        /// Failures per million allocations.
        per_million: u32,
    },
    /// Only the n-th allocation (1-based, counted from when the policy was set) fails.
    Nth(u64),
    /// Every allocation at this site fails.
    Site(&'static str),
    /// Only the n-th allocation (1-based) at this site fails.
    SiteNth(&'static str, u64),
    /// `n` allocations succeed, then every one fails (memory "runs out" at a chosen point).
    After(u64),
}

impl FailAlloc {
    /// What [`FailAlloc::parse`] accepts, in one line.
    pub const SYNTAX: &'static str =
        "expected off, rate=R (0 <= R <= 1, e.g. 0.01), nth=N (N >= 1), after=N, site=NAME or site=NAME:N (N >= 1; `highpte sites` lists the names)";

    /// Parse `off`, `rate=0.01`, `nth=N`, `after=N`, `site=NAME`, `site=NAME:N`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: String| Err(format!("{why}: {}", Self::SYNTAX));
        if s == "off" {
            return Ok(FailAlloc::Off);
        }
        let Some((k, v)) = s.split_once('=') else {
            return bad(format!("bad --fail-alloc '{s}'"));
        };
        let num = |v: &str, min: u64| -> Result<u64, String> {
            match v.parse::<u64>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(format!("bad number '{v}' in --fail-alloc '{s}'")),
            }
        };
        match k {
            "rate" => match v.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(FailAlloc::Rate {
                    per_million: (r * 1_000_000.0 + 0.5) as u32,
                }),
                _ => bad(format!("bad rate '{v}'")),
            },
            "nth" => num(v, 1).map(FailAlloc::Nth).or_else(bad),
            "after" => num(v, 0).map(FailAlloc::After).or_else(bad),
            "site" => {
                let (name, n) = match v.split_once(':') {
                    Some((a, b)) => (a, Some(b)),
                    None => (v, None),
                };
                let Some(site) = site_named(name) else {
                    return bad(format!("unknown allocation site '{name}'"));
                };
                match n {
                    None => Ok(FailAlloc::Site(site)),
                    Some(n) => num(n, 1).map(|n| FailAlloc::SiteNth(site, n)).or_else(bad),
                }
            }
            _ => bad(format!("bad --fail-alloc '{s}'")),
        }
    }
}

impl fmt::Display for FailAlloc {
    /// The form [`FailAlloc::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FailAlloc::Off => f.write_str("off"),
            FailAlloc::Rate { per_million } => {
                write!(f, "rate={}", f64::from(per_million) / 1_000_000.0)
            }
            FailAlloc::Nth(n) => write!(f, "nth={n}"),
            FailAlloc::Site(s) => write!(f, "site={s}"),
            FailAlloc::SiteNth(s, n) => write!(f, "site={s}:{n}"),
            FailAlloc::After(n) => write!(f, "after={n}"),
        }
    }
}

/// Allocations and injected failures at one site.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// Allocation requests made at the site since boot.
    pub calls: u64,
    /// Of those, failures injected.
    pub injected: u64,
}

/// The injector's state (one per kernel).
#[derive(Default)]
pub struct FailInjection {
    policy: Cell<FailAlloc>,
    /// Allocations since the policy was set (all sites).
    since_set: Cell<u64>,
    /// Allocations at the policy's site since the policy was set.
    site_since_set: Cell<u64>,
    injected: Cell<u64>,
    sites: [Cell<SiteStats>; NSITES],
    unknown: RefCell<Vec<&'static str>>,
    /// The last site name looked up (its address and length) and its index, so the usual
    /// run of allocations from one site costs a compare of two words instead of a search of
    /// [`ALLOC_SITES`] by text. Equal address and length mean equal text.
    last_site: Cell<(usize, usize, Option<usize>)>,
}

impl FailInjection {
    /// Set the policy (counts for `nth` start again).
    pub fn set(&self, policy: FailAlloc) {
        self.policy.set(policy);
        self.since_set.set(0);
        self.site_since_set.set(0);
    }

    /// The policy in force.
    pub fn policy(&self) -> FailAlloc {
        self.policy.get()
    }

    /// Failures injected since boot.
    pub fn injected(&self) -> u64 {
        self.injected.get()
    }

    /// Allocations and injected failures per site, in [`ALLOC_SITES`] order.
    pub fn site_stats(&self) -> Vec<(&'static str, SiteStats)> {
        ALLOC_SITES
            .iter()
            .zip(self.sites.iter())
            .map(|(n, c)| (*n, c.get()))
            .collect()
    }

    /// Site names seen at run time that are not in [`ALLOC_SITES`].
    pub fn unknown_sites(&self) -> Vec<&'static str> {
        self.unknown.borrow().clone()
    }

    /// Count an allocation request at `site` and decide whether it fails.
    pub(crate) fn should_fail<P: Platform>(&self, p: &P, site: &'static str) -> bool {
        let key = (site.as_ptr() as usize, site.len());
        let (lp, ll, li) = self.last_site.get();
        let idx = if (lp, ll) == key {
            li
        } else {
            let i = site_index(site);
            self.last_site.set((key.0, key.1, i));
            i
        };
        match idx {
            Some(i) => {
                let c = &self.sites[i];
                let mut s = c.get();
                s.calls += 1;
                c.set(s);
            }
            None => {
                let mut u = self.unknown.borrow_mut();
                if !u.contains(&site) {
                    u.push(site);
                }
            }
        }
        let n = self.since_set.get() + 1;
        self.since_set.set(n);
        let fail = match self.policy.get() {
            FailAlloc::Off => false,
            FailAlloc::Rate { per_million } => {
                per_million > 0 && p.random() % 1_000_000 < u64::from(per_million)
            }
            FailAlloc::Nth(k) => n == k,
            FailAlloc::After(k) => n > k,
            FailAlloc::Site(s) => s == site,
            FailAlloc::SiteNth(s, k) => {
                s == site && {
                    let m = self.site_since_set.get() + 1;
                    self.site_since_set.set(m);
                    m == k
                }
            }
        };
        if fail {
            self.injected.set(self.injected.get() + 1);
            if let Some(i) = idx {
                let c = &self.sites[i];
                let mut s = c.get();
                s.injected += 1;
                c.set(s);
            }
        }
        fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_lists_agree() {
        assert_eq!(ALLOC_SITES.len(), NSITES);
        assert_eq!(ALLOC_SITE_INFO.len(), NSITES);
        for (a, b) in ALLOC_SITES.iter().zip(ALLOC_SITE_INFO) {
            assert_eq!(*a, b.name);
        }
    }

    #[test]
    fn parse_round_trips() {
        for s in [
            "off",
            "rate=0.01",
            "nth=7",
            "after=0",
            "site=pte_alloc_one",
            "site=kmem_cache_alloc",
            "site=do_wp_page:3",
        ] {
            let p = FailAlloc::parse(s).unwrap();
            assert_eq!(alloc::string::ToString::to_string(&p), s);
        }
        assert_eq!(
            FailAlloc::parse("rate=0.01"),
            Ok(FailAlloc::Rate {
                per_million: 10_000
            })
        );
        for s in [
            "",
            "rate",
            "rate=2",
            "rate=x",
            "nth=0",
            "nth=-1",
            "site=nope",
            "site=",
            "foo=1",
            "site=pgd_alloc:0",
        ] {
            let e = FailAlloc::parse(s).unwrap_err();
            assert!(e.contains("expected off, rate="), "{s}: {e}");
        }
    }
}
