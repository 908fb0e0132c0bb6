//! Reaching high memory: per-CPU atomic mappings and the persistent kmap pool.
//!
//! A high page has no permanent kernel address. [`atomic`] maps it into a per-CPU fixmap slot
//! for a short, non-blocking section (`kmap_atomic`: the seed's choice for ptes); [`pkmap`]
//! maps it into the shared persistent window under one global lock, and may sleep
//! (`kmap`: what the seed keeps for "clear, high-level cases such as read()").

pub mod atomic;
pub mod pkmap;

pub use atomic::SlotUse;
pub use pkmap::{Pkmap, PkmapHolder};
