// Tests Threads.swift: parallelFor covers every index once (nested and concurrent calls too),
// a GEMM split over threads gives bitwise the one-call result and matches the naive loop, and
// malloc keeps MiB blocks on the heap once Threads is configured.

import CKernels
import Foundation
import TensorCore
import TestSupport
import XCTest

final class ThreadsTests: XCTestCase {
    /// Runs `body` with `Threads.count` = `threads` and every GEMM split (smallGemm = 1).
    func withThreads(_ threads: Int, splitAll: Bool = false, _ body: () -> Void) {
        let (count, small) = (Threads.count, Threads.smallGemm)
        Threads.count = threads
        if splitAll { Threads.smallGemm = 1 }
        defer { Threads.count = count; Threads.smallGemm = small }
        body()
    }

    /// Once Threads is configured, a freed 1 MiB block is kept by malloc for reuse: allocating
    /// it maps no new memory (fa_malloc_keep_freed; glibc only).
    func testMallocKeepsMiBBlocksOnTheHeap() throws {
        #if canImport(Glibc)
        if ProcessInfo.processInfo.environment["MALLOC_MMAP_THRESHOLD_"] != nil
            || ProcessInfo.processInfo.environment["MALLOC_TRIM_THRESHOLD_"] != nil {
            throw XCTSkip("malloc thresholds set in the environment are left alone")
        }
        Threads.configure()
        guard fa_malloc_mapped_bytes() >= 0 else { throw XCTSkip("glibc < 2.33") }
        let mapped = fa_malloc_mapped_bytes()
        let p = malloc(1 << 20)
        XCTAssertNotNil(p)
        XCTAssertEqual(fa_malloc_mapped_bytes(), mapped, "a 1 MiB block was mmapped")
        free(p)
        #else
        throw XCTSkip("glibc only")
        #endif
    }

    func testParallelForCoversEveryIndexOnce() {
        for threads in [1, 2, 3, 5] {
            withThreads(threads) {
                for n in [0, 1, 2, 7, 64, 1001] {
                    var hits = [Int](repeating: 0, count: n)
                    hits.withUnsafeMutableBufferPointer { h in
                        Threads.parallelFor(n) { r in for i in r { h[i] += 1 } }
                    }
                    XCTAssertEqual(hits, [Int](repeating: 1, count: n), "\(threads) threads, n = \(n)")
                }
            }
        }
    }

    func testNestedAndConcurrentParallelForRunEveryIndex() {
        withThreads(3) {
            let outer = 6, inner = 50
            var hits = [Int](repeating: 0, count: outer * inner)
            hits.withUnsafeMutableBufferPointer { h in
                Threads.parallelFor(outer) { rows in
                    for o in rows {
                        Threads.parallelFor(inner) { cols in for i in cols { h[o * inner + i] += 1 } }  // serial
                    }
                }
            }
            XCTAssertEqual(hits, [Int](repeating: 1, count: outer * inner))
            // Two threads calling at once: one gets the pool, the other runs its parts itself.
            let sums = UnsafeMutableBufferPointer<Int>.allocate(capacity: 2)
            defer { sums.deallocate() }
            DispatchQueue.concurrentPerform(iterations: 2) { t in
                var local = [Int](repeating: 0, count: 1000)
                for _ in 0..<20 {
                    local.withUnsafeMutableBufferPointer { l in
                        Threads.parallelFor(1000) { r in for i in r { l[i] += i } }
                    }
                }
                sums[t] = local.reduce(0, +)
            }
            XCTAssertEqual(sums[0], 20 * 999 * 1000 / 2)
            XCTAssertEqual(sums[1], 20 * 999 * 1000 / 2)
        }
    }

    func testSplitGemmIsBitwiseTheOneCallResult() {
        // Odd shapes: C taller than wide (rows cut) and wider than tall (columns cut), all
        // transposes, leading dimensions larger than the matrices, beta = 1.
        let shapes = [(67, 5, 9), (5, 83, 13), (129, 33, 7), (3, 2, 4)]
        for (s, (m, n, k)) in shapes.enumerated() {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1
                let a = randomTensor([(ta ? k : m) * lda], seed: UInt64(s)).scalars
                let b = randomTensor([(tb ? n : k) * ldb], seed: UInt64(10 + s)).scalars
                let c0 = randomTensor([m * ldc], seed: UInt64(20 + s)).scalars
                func run(_ threads: Int) -> [Float] {
                    var c = c0
                    withThreads(threads, splitAll: true) {
                        BLAS.gemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda,
                                  b: b, ldb: ldb, beta: 1, c: &c, ldc: ldc)
                    }
                    return c
                }
                var naive = c0
                BLAS.gemmNaive(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda,
                               b: b, ldb: ldb, beta: 1, c: &naive, ldc: ldc)
                let one = run(1)
                assertClose(Tensor(shape: [m * ldc], scalars: one), Tensor(shape: [m * ldc], scalars: naive), rtol: 1e-5)
                for threads in [2, 3] {
                    XCTAssertEqual(run(threads), one, "\(m)×\(n)×\(k) ta \(ta) tb \(tb), \(threads) threads")
                }
            }
        }
    }

    func testBatchedMatmulOverThreadsMatchesSerial() {
        let a = randomTensor([5, 17, 9], seed: 1), b = randomTensor([5, 9, 23], seed: 2)
        var serial = Tensor(zeros: [1])
        withThreads(1) { serial = a.matmul(b) }
        for threads in [2, 4, 8] {
            withThreads(threads, splitAll: true) { XCTAssertEqual(a.matmul(b).scalars, serial.scalars, "\(threads) threads") }
        }
    }
}
