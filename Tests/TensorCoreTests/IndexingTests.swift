// Tests Indexing.swift: gather, index_select, scatter_add, stack, one-hot, IndexTensor.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class IndexingTests: XCTestCase {
    func indices(_ shape: [Int], below n: Int, seed: UInt64) -> IndexTensor {
        var g = SeededGenerator(seed: seed)
        return IndexTensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in g.nextInt(below: n) })
    }

    func testGatherMatchesNaive() {
        let x = randomTensor([3, 5, 7], seed: 1)
        for axis in 0..<3 {
            var shape = [2, 4, 6]
            shape[axis] = 9  // longer than the axis itself: gather may repeat indices
            let idx = indices(shape, below: x.shape[axis], seed: UInt64(axis))
            XCTAssertEqual(x.gathered(axis: axis, indices: idx).scalars, Naive.gather(x, axis: axis, indices: idx).scalars)
        }
    }

    func testIndexSelect() {
        let x = randomTensor([3, 5, 7], seed: 2)
        let sel = x.indexSelect(axis: 1, indices: [4, 0, 0, 2])
        XCTAssertEqual(sel.shape, [3, 4, 7])
        let want = Naive.tensor(shape: [3, 4, 7]) { Naive.element(x, [$0[0], [4, 0, 0, 2][$0[1]], $0[2]]) }
        XCTAssertEqual(sel.scalars, want.scalars)
        XCTAssertEqual(x.indexSelect(axis: 0, indices: []).shape, [0, 5, 7])
    }

    func testScatterAddMatchesNaiveWithRepeats() {
        let base = randomTensor([4, 5, 3], seed: 3)
        for axis in 0..<3 {
            let src = randomTensor([4, 5, 3], seed: UInt64(10 + axis))
            var shape = [3, 4, 2]
            shape[axis] = 6
            let idx = indices(shape.enumerated().map { $0.offset == axis ? Swift.min($0.element, src.shape[axis]) : $0.element },
                              below: base.shape[axis], seed: UInt64(20 + axis))
            assertClose(base.scatterAdded(axis: axis, indices: idx, source: src),
                        Naive.scatterAdd(base, axis: axis, indices: idx, source: src), rtol: 1e-6, "axis \(axis)")
        }
        var counts = Tensor(zeros: [3])
        counts.scatterAdd(axis: 0, indices: IndexTensor([2, 0, 2, 2]), source: Tensor(shape: [4], repeating: 1))
        XCTAssertEqual(counts.scalars, [1, 0, 3])
    }

    func testStackAndOneHot() {
        let a = randomTensor([2, 3], seed: 4), b = randomTensor([2, 3], seed: 5)
        XCTAssertEqual(Tensor.stack([a, b]).shape, [2, 2, 3])
        XCTAssertEqual(Tensor.stack([a, b], axis: 0).scalars, a.scalars + b.scalars)
        let last = Tensor.stack([a, b], axis: -1)
        XCTAssertEqual(last.shape, [2, 3, 2])
        XCTAssertEqual(last[1, 2, 0], a[1, 2])
        XCTAssertEqual(last[1, 2, 1], b[1, 2])
        XCTAssertEqual(Tensor.stack([a, b], axis: 1).shape, [2, 2, 3])
        let h = Tensor.oneHot(IndexTensor(shape: [2, 2], scalars: [0, 3, 2, 0]), classes: 4)
        XCTAssertEqual(h.shape, [2, 2, 4])
        XCTAssertEqual(h.scalars, [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0])
    }

    func testIndexTensorConversions() {
        let t = Tensor(shape: [2, 2], scalars: [0, 3, 7, 1])
        let i = IndexTensor(t)
        XCTAssertEqual(i.scalars, [0, 3, 7, 1])
        XCTAssertEqual(i[1, 0], 7)
        XCTAssertEqual(i.asTensor.scalars, t.scalars)
        XCTAssertEqual(i.reshaped([4]).shape, [4])
    }
}
