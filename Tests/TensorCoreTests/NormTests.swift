// Tests of Norms.swift: batch, layer and group norm against one-element-at-a-time references.

import TensorCore
import TestSupport
import XCTest

final class NormTests: XCTestCase {
    func testBatchNormWithRunningStatsAnyRank() throws {
        let mean = randomTensor([3], seed: 31), w = randomTensor([3], seed: 32), b = randomTensor([3], seed: 33)
        let variance = Tensor(shape: [3], scalars: [0.5, 1.7, 0.01])
        for shape in [[4, 3], [2, 3, 5], [2, 3, 7, 5]] {
            let x = randomTensor(shape, seed: 34)
            let y = try batchNorm(x, runningMean: mean, runningVar: variance, weight: w, bias: b, eps: 1e-5)
            assertClose(y, batchNormNaive(x, runningMean: mean, runningVar: variance, weight: w, bias: b), rtol: 1e-5, "\(shape)")
            let plain = try batchNorm(x, runningMean: mean, runningVar: variance)
            assertClose(plain, batchNormNaive(x, runningMean: mean, runningVar: variance), rtol: 1e-5, "\(shape)")
        }
    }

    func testBatchNormWithoutRunningStatsUsesBatchStatistics() throws {
        let x = randomTensor([2, 3, 7, 5], seed: 35), w = randomTensor([3], seed: 36)
        let y = try batchNorm(x, runningMean: nil, runningVar: nil, weight: w, bias: nil)
        assertClose(y, batchNormNaive(x, runningMean: nil, runningVar: nil, weight: w), rtol: 1e-5)
    }

    func testLayerNormOverTrailingDims() throws {
        let x = randomTensor([2, 3, 7, 5], seed: 37)
        for shape in [[5], [7, 5], [3, 7, 5]] {
            let w = randomTensor(shape, seed: 38), b = randomTensor(shape, seed: 39)
            assertClose(try layerNorm(x, normalizedShape: shape, weight: w, bias: b),
                        layerNormNaive(x, normalizedShape: shape, weight: w, bias: b), rtol: 1e-5, "\(shape)")
            assertClose(try layerNorm(x, normalizedShape: shape), layerNormNaive(x, normalizedShape: shape), rtol: 1e-5)
        }
    }

    /// A large common offset: E[x²]−E[x]² in float would lose ~6 % of the variance at 1000 ± 1.
    func testLayerNormStableUnderLargeOffset() throws {
        var x = randomTensor([4, 64], seed: 40)
        x.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = 1000 + p[i] } }
        let y = try layerNorm(x, normalizedShape: [64])
        assertClose(y, layerNormNaive(x, normalizedShape: [64]), rtol: 1e-5)
        let row = Array(y.scalars[0..<64]).map(Double.init)
        let m = row.reduce(0, +) / 64, v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / 64
        XCTAssertEqual(m, 0, accuracy: 1e-4)
        XCTAssertEqual(v, 1, accuracy: 1e-3)
    }

    func testGroupNorm() throws {
        let x = randomTensor([2, 6, 7, 5], seed: 41), w = randomTensor([6], seed: 42), b = randomTensor([6], seed: 43)
        for groups in [1, 2, 3, 6] {
            assertClose(try groupNorm(x, groups: groups, weight: w, bias: b, eps: 1e-5),
                        groupNormNaive(x, groups: groups, weight: w, bias: b), rtol: 1e-5, "groups \(groups)")
        }
        let seq = randomTensor([2, 6, 11], seed: 44)
        assertClose(try groupNorm(seq, groups: 3), groupNormNaive(seq, groups: 3), rtol: 1e-5)
    }

    func testNormShapeErrors() {
        let x = randomTensor([2, 6, 7, 5], seed: 45)
        XCTAssertThrowsError(try groupNorm(x, groups: 4))
        XCTAssertThrowsError(try layerNorm(x, normalizedShape: [7]))
        XCTAssertThrowsError(try layerNorm(x, normalizedShape: [5], weight: Tensor(zeros: [6])))
        XCTAssertThrowsError(try batchNorm(x, runningMean: Tensor(zeros: [6]), runningVar: nil))
        XCTAssertThrowsError(try batchNorm(x, runningMean: Tensor(zeros: [5]), runningVar: Tensor(zeros: [5])))
    }
}
