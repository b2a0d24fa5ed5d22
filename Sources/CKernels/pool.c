/* Fork-join worker pool with spin-then-sleep workers. See include/fa_pool.h.
 *
 * Each worker has its own mailbox: the caller writes fn/ctx/index, then bumps `gen` (release);
 * the worker runs the part and stores `done = gen` (release); the caller waits until every
 * mailbox it used reports done. A worker that saw no new generation for `spin_ns` sleeps on
 * its condition variable; the sleeping flag and gen are sequentially consistent on both sides,
 * so a post either finds the flag set (and signals under the mutex) or the worker finds the
 * new gen before it waits. */
#define _GNU_SOURCE
#include "fa_pool.h"
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#define FA_POOL_MAX 256

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

typedef struct {
    _Atomic unsigned long gen;   /* bumped by the caller per part posted */
    _Atomic unsigned long done;  /* = gen once the part has run */
    _Atomic int sleeping;
    fa_pool_fn fn;
    void *ctx;
    long index;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char pad[64];
} mailbox;

static mailbox boxes[FA_POOL_MAX];
static long workers;                       /* started so far (mailboxes 1..workers) */
static atomic_flag busy = ATOMIC_FLAG_INIT;
static _Atomic long spin_ns = 300000;

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

void fa_pool_set_spin_us(long us) { atomic_store(&spin_ns, us < 0 ? 0 : us * 1000); }

static void *worker_main(void *arg) {
    mailbox *b = arg;
    unsigned long seen = 0;   /* gen is 0 when the worker is created, whenever it starts */
    for (;;) {
        unsigned long g = atomic_load_explicit(&b->gen, memory_order_acquire);
        if (g == seen) {
            long limit = atomic_load_explicit(&spin_ns, memory_order_relaxed);
            long start = limit > 0 ? now_ns() : 0;
            for (unsigned i = 1; limit > 0; i++) {
                CPU_RELAX();
                g = atomic_load_explicit(&b->gen, memory_order_acquire);
                if (g != seen) break;
                if ((i & 63) == 0 && now_ns() - start > limit) break;
            }
            if (g == seen) {
                pthread_mutex_lock(&b->mu);
                atomic_store(&b->sleeping, 1);
                while ((g = atomic_load(&b->gen)) == seen) pthread_cond_wait(&b->cv, &b->mu);
                atomic_store(&b->sleeping, 0);
                pthread_mutex_unlock(&b->mu);
            }
        }
        seen = g;
        b->fn(b->ctx, b->index);
        atomic_store_explicit(&b->done, g, memory_order_release);
    }
    return NULL;
}

/* Starts workers up to `want`; returns how many exist. Called only while `busy` is held. */
static long ensure_workers(long want) {
    if (want > FA_POOL_MAX - 1) want = FA_POOL_MAX - 1;
    while (workers < want) {
        mailbox *b = &boxes[workers + 1];
        pthread_mutex_init(&b->mu, NULL);
        pthread_cond_init(&b->cv, NULL);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker_main, b);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        workers++;
    }
    return workers;
}

void fa_pool_run(long n, fa_pool_fn fn, void *ctx) {
    if (n <= 0) return;
    if (n == 1 || atomic_flag_test_and_set_explicit(&busy, memory_order_acquire)) {
        for (long i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    long helpers = ensure_workers(n - 1);
    if (helpers > n - 1) helpers = n - 1;
    for (long i = 1; i <= helpers; i++) {
        mailbox *b = &boxes[i];
        b->fn = fn;
        b->ctx = ctx;
        b->index = i;
        atomic_fetch_add(&b->gen, 1);   /* seq_cst: ordered before the load of sleeping */
        if (atomic_load(&b->sleeping)) {
            pthread_mutex_lock(&b->mu);
            pthread_cond_signal(&b->cv);
            pthread_mutex_unlock(&b->mu);
        }
    }
    fn(ctx, 0);
    for (long i = helpers + 1; i < n; i++) fn(ctx, i);   /* only if threads could not start */
    for (long i = 1; i <= helpers; i++) {
        mailbox *b = &boxes[i];
        unsigned long g = atomic_load_explicit(&b->gen, memory_order_relaxed);
        for (unsigned s = 1; atomic_load_explicit(&b->done, memory_order_acquire) != g; s++) {
            CPU_RELAX();
            if ((s & 1023) == 0) sched_yield();   /* the worker may be descheduled */
        }
    }
    atomic_flag_clear_explicit(&busy, memory_order_release);
}

int fa_openblas_stop_workers(void) {
    int (*shutdown)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "blas_thread_shutdown_");
    if (!shutdown) return 0;
    shutdown();
    return 1;
}

int fa_malloc_keep_freed(void) {
#ifdef __GLIBC__
    static atomic_flag once = ATOMIC_FLAG_INIT;
    if (atomic_flag_test_and_set(&once)) return 0;
    if (getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_")) return 0;
    /* The trim threshold first: setting either one turns off glibc's dynamic thresholds. */
    int ok = mallopt(M_TRIM_THRESHOLD, 256 << 20);
    ok &= mallopt(M_MMAP_THRESHOLD, 32 << 20);
    return ok ? 1 : 0;
#else
    return 0;
#endif
}

long fa_malloc_mapped_bytes(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    return (long)mallinfo2().hblkhd;
#else
    return -1;
#endif
}
