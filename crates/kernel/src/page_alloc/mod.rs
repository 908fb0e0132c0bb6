//! Physical page allocation: mem_map, zones and the buddy allocator.
