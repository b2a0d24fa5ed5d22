/* A small fork-join pool for TensorCore's Threads.parallelFor (Sources/CKernels/pool.c).
 *
 * fa_pool_run(n, fn, ctx) runs fn(ctx, 0) on the caller and fn(ctx, i) for 1 ≤ i < n on
 * persistent worker i, and returns when all have finished. Idle workers spin for a while
 * (fa_pool_set_spin_us) before they sleep, so back-to-back parallel loops — a forward pass is
 * dozens of 10-500 µs ones — hand work over in well under a microsecond instead of a futex
 * wake-up each. One run at a time: a call made while another is in flight (another thread,
 * or nested inside fn) runs all n parts serially on its caller. No stable API. */
#ifndef FA_POOL_H
#define FA_POOL_H

typedef void (*fa_pool_fn)(void *ctx, long index);

/* Runs fn(ctx, i) for i in 0..<n (n ≥ 1), part 0 on the calling thread. */
void fa_pool_run(long n, fa_pool_fn fn, void *ctx);

/* How long an idle worker spins before it sleeps, in µs (default 300; 0 sleeps at once). */
void fa_pool_set_spin_us(long us);

/* Stops OpenBLAS's own worker threads when the loaded OpenBLAS exports its internal
 * blas_thread_shutdown_ (pthreads builds do): call after pinning it to one thread. They
 * otherwise spin in sched_yield for ~0.1 s after start-up on the core our workers use.
 * Returns 1 if they were stopped, 0 if the symbol is absent (nothing done). */
int fa_openblas_stop_workers(void);

/* Makes glibc's malloc keep freed memory for reuse: blocks up to 32 MiB come from the heap
 * (M_MMAP_THRESHOLD) and the heap is trimmed only above 256 MiB free at its top
 * (M_TRIM_THRESHOLD). By default the mmap threshold moves with the program's history, and
 * a run where it stayed at 128 KiB mapped every 1 MiB tensor fresh per call, so each forward
 * paid ~500 page faults (talk-conv at 4096×64: 0.17 → 0.95 ms). Left alone where the user set
 * MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_, and a no-op without glibc. Once per
 * process; returns 1 if it changed the settings. */
int fa_malloc_keep_freed(void);

/* Bytes malloc currently holds in mmapped blocks (mallinfo2's hblkhd); -1 without glibc. For tests. */
long fa_malloc_mapped_bytes(void);

#endif
