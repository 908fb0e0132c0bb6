//! Physical page allocation: mem_map, zones and the buddy allocator.
//!
//! Pure, single-threaded data structures (the caller wraps them in its locks):
//! - [`mem_map`]: one 16-byte [`PageDesc`] per physical page ([`MemMap`]), whose simulated size
//!   [`DEFAULT_STRUCT_PAGE_BYTES`] is charged to low memory;
//! - [`buddy`]: the binary buddy allocator of one zone ([`FreeArea`]), with free lists threaded
//!   through the descriptors and misuse reported as [`BuddyError`];
//! - [`zone`]: DMA / Normal / HighMem layouts for a configuration, watermarks, and allocation
//!   along a request's zonelist ([`alloc_from_zonelist`]);
//! - `allocator`: the kernel's page allocator subsystem (`PageAllocator`): the zones under
//!   their locks, owner accounting and fault injection;
//! - [`gfp`]: request flags ([`GfpFlags`], `GFP_KERNEL`, `GFP_HIGHUSER`, ...) and [`zonelist`].

pub(crate) mod allocator;
pub mod buddy;
pub mod gfp;
pub mod mem_map;
pub mod watermarks61;
pub mod zone;

pub use buddy::{BuddyError, FreeArea, ListHead, MAX_ORDER};
pub use gfp::{
    zonelist, GfpFlags, GFP_ATOMIC, GFP_DMA, GFP_HIGHUSER, GFP_KERNEL, GFP_NOFS, GFP_NOIO, GFP_USER,
};
pub use mem_map::{MemMap, PageDesc, PageFlags, PageOwner, DEFAULT_STRUCT_PAGE_BYTES};
pub use zone::{
    alloc_from_zonelist, zone_layouts, zone_type_of, AllocFailure, Watermark, Watermarks, Zone,
    ZoneLayout, ZoneType,
};
