//! Handing the heap's free pages back to the system after a burst of work
//! (an inventory sync, a history prune, a status list of every slot). It
//! owns nothing else, and sits below every layer that calls it.

/// Hands the heap's free pages back to the system. A sync or a status list
/// of 100k slots allocates and frees hundreds of MiB in a burst; glibc's
/// allocator keeps those pages mapped otherwise, and the resident size an
/// operator sees would stay at the burst's peak.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim(3) only walks the allocator's own free lists; it
    // takes no pointer and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
