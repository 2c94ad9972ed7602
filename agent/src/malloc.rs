//! glibc malloc settings for tables of a million routes.
//!
//! The RIB and the kernel route table grow shard by shard (`podroute_bgp::sharded_map`):
//! each growth allocates a table twice the old one's size and frees the old one. glibc serves
//! such blocks from the heap once its mmap threshold has adapted upwards (it does after the
//! first freed mapped block), and a block freed inside the heap stays resident: measured with
//! `podroute-bench` (one run each, v4-100k / v4-1m), 99 / 109 B per route with glibc's
//! defaults, 92 / 101 B with a fixed 64 KiB threshold, under which every block of that size
//! is its own mapping and goes back to the kernel when freed. The cost is an `mmap` and a
//! `munmap` per large allocation, a few a second at most while routes arrive.
//!
//! The agent's only other module with `unsafe` is [`crate::sockopt`].
#![allow(unsafe_code)]

/// Allocations from this size up get their own mapping.
pub const MMAP_THRESHOLD: usize = 64 * 1024;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD`] (which also stops it adapting). Call
/// once, before any thread starts. Without glibc (a musl build) it does nothing.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(MMAP_THRESHOLD).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes allocator parameters; it is called before the runtime
        // starts any thread, and a rejected value leaves the defaults (return value 0).
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) } == 0 {
            eprintln!("podroute-agent: glibc refused the mmap threshold; keeping its default");
        }
    }
}
