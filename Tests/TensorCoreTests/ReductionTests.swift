// Tests Reductions.swift (sum … logsumexp, argmax, top-k, sort) and CumSum.swift against the
// naive references, on odd shapes, every axis set, negative axes and keepDims.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class ReductionTests: XCTestCase {
    let axisSets: [[Int]?] = [nil, [0], [1], [2], [-1], [0, 1], [1, 2], [0, 2], [0, 1, 2], [-3, -1]]

    func testSumMeanMaxMinMatchNaive() {
        let x = randomTensor([3, 5, 7], seed: 1)
        for axes in axisSets {
            for keep in [false, true] {
                let tag = "axes \(String(describing: axes)) keepDims \(keep)"
                assertClose(x.sum(axes: axes, keepDims: keep), Naive.reduce(x, axes: axes, keepDims: keep, initial: 0, +), rtol: 1e-6, tag)
                assertClose(x.mean(axes: axes, keepDims: keep),
                            Naive.reduce(x, axes: axes, keepDims: keep, initial: 0, +, finish: { $0 / Double($1) }), rtol: 1e-6, tag)
                assertClose(x.amax(axes: axes, keepDims: keep), Naive.reduce(x, axes: axes, keepDims: keep, initial: -.infinity, { Swift.max($0, $1) }), rtol: 0, tag)
                assertClose(x.amin(axes: axes, keepDims: keep), Naive.reduce(x, axes: axes, keepDims: keep, initial: .infinity, { Swift.min($0, $1) }), rtol: 0, tag)
                assertClose(x.norm(axes: axes, keepDims: keep),
                            Naive.reduce(x, axes: axes, keepDims: keep, initial: 0, { $0 + $1 * $1 }, finish: { v, _ in v.squareRoot() }), rtol: 1e-6, tag)
            }
        }
        XCTAssertEqual(x.sum().shape, [])
        XCTAssertEqual(x.sum(axis: 1, keepDims: true).shape, [3, 1, 7])
        XCTAssertEqual(x.mean(axes: [0, 2]).shape, [5])
    }

    func testVarianceAndLogsumexpMatchNaive() {
        let x = randomTensor([2, 3, 4, 5], seed: 2) * 3 + 10
        for axes in [[1], [2, 3], [0, 2], [-1]] {
            let n = Double(axes.map { x.size($0) }.reduce(1, *))
            let mean = Naive.reduce(x, axes: axes, keepDims: true, initial: 0, +, finish: { $0 / Double($1) })
            let dev = x - mean
            let ss = Naive.reduce(dev, axes: axes, initial: 0, { $0 + $1 * $1 })
            assertClose(x.variance(axes: axes), ss / Float(n - 1), rtol: 1e-5)
            assertClose(x.variance(axes: axes, unbiased: false), ss / Float(n), rtol: 1e-5)
            let lse = Naive.reduce(x, axes: axes, initial: 0, { $0 + Foundation.exp($1 - 10) }, finish: { v, _ in Foundation.log(v) + 10 })
            assertClose(x.logsumexp(axes: axes), lse, rtol: 1e-6)
        }
        let special = Tensor(shape: [3, 2], scalars: [-.infinity, -.infinity, .infinity, 1, 1000, 1000])
        let l = special.logsumexp(axis: 1).scalars
        XCTAssertEqual(l[0], -.infinity)
        XCTAssertEqual(l[1], .infinity)
        XCTAssertEqual(l[2], 1000 + Float(Foundation.log(2.0)), accuracy: 1e-3)
        XCTAssertTrue(Tensor(shape: [1, 1], scalars: [3]).variance(axis: 1).scalars[0].isNaN, "R − 1 = 0 gives NaN as torch")
    }

    func testLargeReductionsUseParallelPaths() {
        let x = randomTensor([4, 64, 512], seed: 3)
        for axes in [[0], [1], [2], [0, 2]] {
            assertClose(x.sum(axes: axes), Naive.reduce(x, axes: axes, initial: 0, +), rtol: 1e-6, "\(axes)")
        }
        let big = Tensor(shape: [200_001], repeating: 0.1)
        XCTAssertEqual(big.sum().item(), Float(Double(Float(0.1)) * 200_001), accuracy: 1e-3, "Double accumulation does not drift")
    }

    func testMaxPropagatesNaNAndArgmaxTakesFirstTie() {
        let t = Tensor(shape: [2, 4], scalars: [1, 3, 3, 0, .nan, 2, .nan, 9])
        XCTAssertTrue(t.amax(axis: 1).scalars[1].isNaN)
        XCTAssertEqual(t.amax(axis: 1).scalars[0], 3)
        XCTAssertEqual(t.argmax(axis: 1).scalars, [1, 0])
        XCTAssertEqual(t.argmin(axis: 1).scalars, [3, 0])
        XCTAssertEqual(t.argmax(axis: 0, keepDims: true).shape, [1, 4])
        let x = randomTensor([3, 5, 7], seed: 4)
        for axis in 0..<3 {
            let idx = x.argmax(axis: axis)
            XCTAssertEqual(idx.scalars, x.topK(1, axis: axis).indices.scalars)
        }
        XCTAssertEqual(x.argmax(), x.scalars.firstIndex(of: x.scalars.max()!)!)
        XCTAssertEqual(x.argmin(), x.scalars.firstIndex(of: x.scalars.min()!)!)
    }

    func testTopKMatchesNaiveWithTies() {
        // Rounded values make many ties; the heap path (k ≪ n) and the sort path must agree with the scan.
        let x = (randomTensor([3, 40, 5], seed: 5) * 2).map { $0.rounded() }
        for axis in [0, 1, 2, -1] {
            let n = x.size(axis)
            for k in Set([0, 1, 2, n / 2, n]) {
                for largest in [true, false] {
                    let got = x.topK(k, axis: axis, largest: largest)
                    let want = Naive.topK(x, k, axis: axis, largest: largest)
                    XCTAssertEqual(got.values.scalars, want.values.scalars, "axis \(axis) k \(k) largest \(largest)")
                    XCTAssertEqual(got.indices, want.indices, "axis \(axis) k \(k) largest \(largest)")
                }
            }
        }
        let withNaN = Tensor(shape: [5], scalars: [1, .nan, 5, 5, -1])
        XCTAssertEqual(withNaN.topK(3).indices.scalars, [1, 2, 3])
        XCTAssertEqual(withNaN.topK(2, largest: false).indices.scalars, [4, 0])
    }

    func testSortIsStable() {
        let t = Tensor(shape: [2, 6], scalars: [3, 1, 2, 1, 3, 0, .nan, 1, .nan, 1, 0, 2])
        let asc = t.sorted()
        XCTAssertEqual(asc.indices.scalars, [5, 1, 3, 2, 0, 4, 4, 1, 3, 5, 0, 2])
        XCTAssertEqual(Array(asc.values.scalars.prefix(6)), [0, 1, 1, 2, 3, 3])
        let desc = t.sorted(descending: true)
        XCTAssertEqual(desc.indices.scalars, [0, 4, 2, 1, 3, 5, 0, 2, 5, 1, 3, 4])
        XCTAssertEqual(t.argsort(axis: 0).shape, [2, 6])
        let x = randomTensor([4, 9, 3], seed: 6)
        let s = x.sorted(axis: 1)
        XCTAssertEqual(s.values.scalars, x.gathered(axis: 1, indices: s.indices).scalars)
        for a in 0..<4 { for c in 0..<3 { for i in 1..<9 { XCTAssertLessThanOrEqual(s.values[a, i - 1, c], s.values[a, i, c]) } } }
    }

    func testCumsumAndCumprodMatchNaive() {
        let x = randomTensor([3, 5, 7], seed: 7)
        for axis in [0, 1, 2, -1] {
            assertClose(x.cumsum(axis: axis), Naive.cumsum(x, axis: axis), rtol: 1e-7, "axis \(axis)")
            assertClose(x.cumprod(axis: axis), Naive.cumprod(x, axis: axis), rtol: 1e-7, "axis \(axis)")
        }
        let wide = randomTensor([2, 3, 1500], seed: 8)
        assertClose(wide.cumsum(axis: 1), Naive.cumsum(wide, axis: 1), rtol: 1e-7)
        let long = Tensor(shape: [100_000], repeating: 0.1).cumsum(axis: 0)
        XCTAssertEqual(long.scalars.last!, Float(Double(Float(0.1)) * 100_000), accuracy: 1e-3)
        XCTAssertEqual(Tensor(zeros: [0, 3]).cumsum(axis: 0).shape, [0, 3])
    }
}
