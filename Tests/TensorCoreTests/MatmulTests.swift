// Tests Matmul.swift: BLAS.gemm and Tensor.matmul against BLAS.gemmNaive on odd shapes, with
// transposes and batch broadcasting.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class MatmulTests: XCTestCase {
    /// Reference batched product with explicit per-batch naive GEMMs.
    func reference(_ a: Tensor, _ b: Tensor, ta: Bool, tb: Bool) -> Tensor {
        let (ar, ac) = (a.size(-2), a.size(-1)), (br, bc) = (b.size(-2), b.size(-1))
        let m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc
        let batch = a.rank > 2 ? Array(a.shape.dropLast(2)) : Array(b.shape.dropLast(2))
        let nb = batch.reduce(1, *)
        var out = [Float](repeating: 0, count: nb * m * n)
        let av = a.scalars, bv = b.scalars
        for i in 0..<nb {
            let ao = a.rank > 2 ? i * ar * ac : 0, bo = b.rank > 2 ? i * br * bc : 0
            av.withUnsafeBufferPointer { pa in
                bv.withUnsafeBufferPointer { pb in
                    out.withUnsafeMutableBufferPointer { pc in
                        BLAS.gemmNaive(transA: ta, transB: tb, m: m, n: n, k: k, a: pa.baseAddress! + ao, lda: ac,
                                       b: pb.baseAddress! + bo, ldb: bc, c: pc.baseAddress! + i * m * n, ldc: n)
                    }
                }
            }
        }
        return Tensor(shape: batch + [m, n], scalars: out)
    }

    func testMatmulMatchesNaiveWithTransposesAndBroadcast() {
        let cases: [([Int], [Int], Bool, Bool)] = [
            ([5, 7], [7, 3], false, false), ([7, 5], [7, 3], true, false), ([5, 7], [3, 7], false, true),
            ([7, 5], [3, 7], true, true), ([2, 3, 5, 7], [7, 4], false, false), ([5, 7], [2, 7, 3], false, false),
            ([2, 5, 7], [2, 3, 7], false, true), ([1, 1], [1, 9], false, false), ([3, 17, 33], [3, 33, 1], false, false),
        ]
        for (i, (sa, sb, ta, tb)) in cases.enumerated() {
            let a = randomTensor(sa, seed: UInt64(i)), b = randomTensor(sb, seed: UInt64(50 + i))
            assertClose(a.matmul(b, transposeSelf: ta, transposeOther: tb), reference(a, b, ta: ta, tb: tb),
                        rtol: 1e-5, "\(sa) · \(sb) ta \(ta) tb \(tb)")
        }
        let a = randomTensor([4, 6], seed: 99), b = randomTensor([6, 5], seed: 98)
        assertClose(a.matmul(b, alpha: 0.5), reference(a, b, ta: false, tb: false) * 0.5, rtol: 1e-5)
    }

    func testGramMatchesNaiveOnEveryThreadCount() {
        // Odd n and k, a row stride wider than k, C inside a wider buffer; k split over threads.
        let (count, small) = (Threads.count, Threads.smallGemm)
        defer { Threads.count = count; Threads.smallGemm = small }
        for (n, k) in [(1, 1), (5, 700), (17, 1031), (3, 0)] {
            let lda = k + 3, ldc = n + 2
            let a = randomTensor([n * lda + 1], seed: UInt64(n * 31 + k)).scalars
            var naive = [Float](repeating: 7, count: n * ldc)
            BLAS.gemmNaive(transB: true, m: n, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: a, ldb: lda,
                           c: &naive, ldc: ldc)
            for threads in [1, 2, 3] {
                Threads.count = threads
                Threads.smallGemm = 1
                var c = [Float](repeating: 7, count: n * ldc), again = c
                BLAS.gram(n: n, k: k, alpha: 0.5, a: a, lda: lda, c: &c, ldc: ldc)
                BLAS.gram(n: n, k: k, alpha: 0.5, a: a, lda: lda, c: &again, ldc: ldc)
                assertClose(Tensor(shape: [n * ldc], scalars: c), Tensor(shape: [n * ldc], scalars: naive), rtol: 1e-5,
                            "n \(n) k \(k), \(threads) threads")
                XCTAssertEqual(c, again, "deterministic for a thread count")
                for i in 0..<n { for j in 0..<n { XCTAssertEqual(c[i * ldc + j], c[j * ldc + i]) } }
            }
        }
    }

    func testGemmWithLeadingDimensionsAndBeta() {
        // A 3×4 block inside a 3×6 buffer, C accumulated with beta = 1.
        let a = randomTensor([3, 6], seed: 1).scalars, b = randomTensor([4, 2], seed: 2).scalars
        var c = [Float](repeating: 1, count: 6), c0 = c
        BLAS.gemm(m: 3, n: 2, k: 4, a: a, lda: 6, b: b, ldb: 2, beta: 1, c: &c, ldc: 2)
        BLAS.gemmNaive(m: 3, n: 2, k: 4, a: a, lda: 6, b: b, ldb: 2, beta: 1, c: &c0, ldc: 2)
        assertClose(Tensor(shape: [6], scalars: c), Tensor(shape: [6], scalars: c0), rtol: 1e-5)
        var z = [Float](repeating: 5, count: 4)
        BLAS.gemm(m: 2, n: 2, k: 0, a: a, lda: 1, b: b, ldb: 2, c: &z, ldc: 2)
        XCTAssertEqual(z, [0, 0, 0, 0], "k = 0 with beta = 0 gives zeros")
    }
}
