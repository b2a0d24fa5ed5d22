// Tests Gemv.swift: BLAS.gemv against BLAS.gemmNaive (one column) on odd shapes, both
// orientations, leading dimensions wider than a row, and beta.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class GemvTests: XCTestCase {
    func testGemvMatchesNaiveGemm() {
        for (ci, (m, n, lda, trans, beta)) in [(5, 7, 7, false, Float(0)), (5, 7, 9, true, 0), (13, 1, 3, false, 1),
                                               (1, 33, 40, true, 0.5), (64, 4096, 4096, true, 1), (64, 4096, 4096, false, 0)].enumerated() {
            let a = randomTensor([m * lda], seed: UInt64(ci)).scalars
            let xCount = trans ? m : n, yCount = trans ? n : m
            let x = randomTensor([xCount], seed: UInt64(20 + ci)).scalars
            let y0 = randomTensor([yCount], seed: UInt64(40 + ci)).scalars
            var y = y0, expected = y0
            BLAS.gemv(trans: trans, m: m, n: n, a: a, lda: lda, x: x, beta: beta, y: &y)
            // Aᵀx as (x as a 1×m row) · A, Ax as A · (x as an n×1 column).
            if trans {
                BLAS.gemmNaive(m: 1, n: n, k: m, a: x, lda: m, b: a, ldb: lda, beta: beta, c: &expected, ldc: n)
            } else {
                BLAS.gemmNaive(m: m, n: 1, k: n, a: a, lda: lda, b: x, ldb: 1, beta: beta, c: &expected, ldc: 1)
            }
            assertClose(Tensor(shape: [yCount], scalars: y), Tensor(shape: [yCount], scalars: expected), rtol: 1e-5,
                        "case \(ci)")
        }
    }

    func testEmptyInnerDimensionScalesByBeta() {
        var y: [Float] = [2, -4]
        BLAS.gemv(m: 2, n: 0, a: [], lda: 1, x: [], beta: 0.5, y: &y)
        XCTAssertEqual(y, [1, -2])
    }
}
