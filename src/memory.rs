//! Gives freed heap back to the operating system after the few operations
//! that build large, short-lived structures: a reload (a whole new
//! configuration beside the old one), an account set's refresh, and the
//! unpaged account listing (every account's status at once).
//!
//! glibc's allocator keeps what a thread freed in that thread's arena, and
//! the blocking threads that build such answers each have their own, so a
//! daemon that answers a few of them holds their peak for good: at 10,000
//! accounts, 5 reloads and 60 listings took resident memory from 37 to up to
//! 146 MiB (BENCHMARKS.md, "Account sets"). `malloc_trim` returns the free
//! pages of every arena. It costs a walk of the heap, so it runs after those
//! operations only, never per signal. Elsewhere than glibc it does nothing.

/// Returns free heap pages to the OS, where the allocator allows it.
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it
    // takes the arenas' locks and has no precondition on the caller.
    unsafe {
        libc::malloc_trim(0);
    }
}
