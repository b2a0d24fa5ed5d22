// One place decides threads: every parallel loop, GEMMs included, runs on our own workers;
// OpenBLAS itself always runs on one thread, so two thread pools never compete for the cores.

import CBLAS
import CKernels
import Foundation

public enum Threads {
    nonisolated(unsafe) private static var _count: Int = {
        if let s = ProcessInfo.processInfo.environment["FASTATTENTION_NUM_THREADS"], let n = Int(s), n > 0 {
            return n
        }
        return ProcessInfo.processInfo.activeProcessorCount
    }()
    nonisolated(unsafe) private static var depth = 0
    private static let lock = NSLock()

    /// OpenBLAS is pinned to one thread the first time a GEMM runs (or `configure` is called),
    /// and the workers it started at load time are stopped. Its own pool would otherwise spin
    /// (sched_yield) for ~0.1 s after every threaded GEMM on the core our workers need next: at
    /// 2 threads that spinning took 15-25% of the cycles of the 1-5 ms forwards, which then ran
    /// no faster than on one thread.
    ///
    /// glibc's malloc is told at the same time to keep freed blocks up to 32 MiB for reuse
    /// (`fa_malloc_keep_freed`): with its default, history-dependent mmap threshold some runs
    /// mapped every fresh 1 MiB tensor anew, ~500 page faults a forward (talk-conv at 2 threads,
    /// 4096×64: 0.95 ms instead of 0.17 ms, in about half of the runs).
    private static let blasPinned: Void = {
        _ = fa_malloc_keep_freed()
        openblas_set_num_threads(1)
        _ = fa_openblas_stop_workers()   // the threads it started at load time, idle from now on
    }()

    /// Threads used by `parallelFor` and by the GEMM split. Set once at start-up (`attend --threads`).
    public static var count: Int {
        get { _count }
        set {
            _count = max(1, newValue)
            configure()
        }
    }

    /// True inside a `parallelFor` body (a GEMM there is not split again).
    static var insideParallel: Bool {
        lock.lock(); defer { lock.unlock() }
        return depth > 0
    }

    /// GEMMs below this many multiply-adds run whole on the calling thread: waking a worker
    /// costs more than it saves.
    /// FASTATTENTION_SMALL_GEMM overrides it (for tuning).
    public static var smallGemm: Int = {
        if let s = ProcessInfo.processInfo.environment["FASTATTENTION_SMALL_GEMM"], let n = Int(s), n > 0 { return n }
        return 1 << 21
    }()

    /// Pins OpenBLAS to one thread; called by every GEMM, harmless to call again.
    public static func configure() { _ = blasPinned }

    /// Runs `body` with OpenBLAS on its own `threads` threads (a baseline for benchmarks: raw
    /// cblas_sgemm as OpenBLAS threads it), then pins it to one thread again and stops its workers.
    public static func withOpenBLASThreads<R>(_ threads: Int, _ body: () throws -> R) rethrows -> R {
        configure()
        openblas_set_num_threads(Int32(max(1, threads)))
        defer {
            openblas_set_num_threads(1)
            _ = fa_openblas_stop_workers()
        }
        return try body()
    }

    /// Runs an m×n×k GEMM as `body(rows, columns)` over disjoint blocks of C, one per thread:
    /// the longer side of C is cut into runs of whole 16-wide blocks (the kernel's unroll), or
    /// not at all when the product is below `smallGemm` or a parallel loop is already running.
    /// The cut depends only on the shape and `count`, and every element of C is summed over k
    /// in the same order whatever the cut, so results are bitwise the same as one call's.
    static func splitGemm(m: Int, n: Int, k: Int, _ body: (Range<Int>, Range<Int>) -> Void) {
        configure()
        let rows = m >= n, total = rows ? m : n, blocks = (total + 15) / 16
        let parts = Swift.min(_count, blocks)
        if parts <= 1 || m * n * k < smallGemm || insideParallel {
            body(0..<m, 0..<n)
            return
        }
        parallelFor(parts) { ps in
            for p in ps {
                let lo = Swift.min(total, blocks * p / parts * 16), hi = Swift.min(total, blocks * (p + 1) / parts * 16)
                if lo < hi {
                    if rows { body(lo..<hi, 0..<n) } else { body(0..<m, lo..<hi) }
                }
            }
        }
    }

    /// Runs `body(i)` for i in 0..<n, split into `count` contiguous chunks over our own threads.
    /// Nested `parallelFor` calls run serially.
    public static func parallelFor(_ n: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        let workers = min(_count, max(1, n / max(minChunk, 1)))
        lock.lock()
        let nested = depth > 0
        if !(workers <= 1 || nested || n <= 1) { depth += 1 }
        lock.unlock()
        if workers <= 1 || nested || n <= 1 {
            body(0..<n)
            return
        }
        withoutActuallyEscaping({ (w: Int) in
            let lo = n * w / workers, hi = n * (w + 1) / workers
            if lo < hi { body(lo..<hi) }
        }) { part in
            var part = part
            withUnsafeMutablePointer(to: &part) { p in
                fa_pool_run(workers, { ctx, w in ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(w) }, p)
            }
        }
        lock.lock(); depth -= 1; lock.unlock()
    }
}
