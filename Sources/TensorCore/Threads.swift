// One place decides threads: OpenBLAS threads for big GEMMs, our own parallel loops for the
// rest, never both at once (no oversubscription on small machines).

import CBLAS
import Dispatch
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

    /// Threads used by BLAS calls and by `parallelFor`. Set once at start-up (`attend --threads`).
    public static var count: Int {
        get { _count }
        set {
            _count = max(1, newValue)
            openblas_set_num_threads(Int32(_count))
        }
    }

    /// True inside a `parallelFor` body (OpenBLAS is then already held at one thread).
    static var insideParallel: Bool {
        lock.lock(); defer { lock.unlock() }
        return depth > 0
    }

    /// GEMMs below this many multiply-adds run on one OpenBLAS thread: waking the second
    /// thread costs more than it saves (set-transformer at 64×64 measured 3.3 ms on 2 threads,
    /// 2.3 ms on 1).
    public static var smallGemm = 1 << 21

    /// Runs `body` with OpenBLAS on one thread when the product is small (and restores it).
    @inline(__always)
    static func forGemm(m: Int, n: Int, k: Int, _ body: () -> Void) {
        if _count > 1 && m * n * k < smallGemm && !insideParallel {
            openblas_set_num_threads(1)
            body()
            openblas_set_num_threads(Int32(_count))
        } else {
            body()
        }
    }

    /// Applies the policy to OpenBLAS; call once before the first GEMM.
    public static func configure() { openblas_set_num_threads(Int32(_count)) }

    /// Runs `body(i)` for i in 0..<n, split into `count` contiguous chunks over our own threads.
    /// While it runs, OpenBLAS is held at one thread, so a GEMM inside `body` does not nest a
    /// second thread pool inside this one. Nested `parallelFor` calls run serially.
    public static func parallelFor(_ n: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        let workers = min(_count, max(1, n / max(minChunk, 1)))
        lock.lock()
        let nested = depth > 0
        lock.unlock()
        if workers <= 1 || nested || n <= 1 {
            body(0..<n)
            return
        }
        lock.lock(); depth += 1; openblas_set_num_threads(1); lock.unlock()
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let lo = n * w / workers, hi = n * (w + 1) / workers
            if lo < hi { body(lo..<hi) }
        }
        lock.lock(); depth -= 1; openblas_set_num_threads(Int32(_count)); lock.unlock()
    }
}
