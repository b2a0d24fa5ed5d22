// Tests ShapeOps.swift against references built from explicit multi-indices.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class ShapeOpsTests: XCTestCase {
    let x = randomTensor([3, 5, 7], seed: 1)

    func testPermutedMatchesNaiveForEveryPermutation() {
        for p in [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
            XCTAssertEqual(x.permuted(p).scalars, Naive.permute(x, p).scalars, "\(p)")
            XCTAssertEqual(x.permuted(p).shape, p.map { x.shape[$0] })
        }
        let y = randomTensor([2, 3, 1, 4, 5], seed: 2)
        for p in [[4, 3, 2, 1, 0], [0, 3, 1, 4, 2], [1, 0, 2, 4, 3]] {
            XCTAssertEqual(y.permuted(p).scalars, Naive.permute(y, p).scalars, "\(p)")
        }
        XCTAssertEqual(x.transposed(0, 2).scalars, Naive.permute(x, [2, 1, 0]).scalars)
        XCTAssertEqual(x.transposed().scalars, Naive.permute(x, [0, 2, 1]).scalars)
    }

    func testBlockedTransposeOnPartialTiles() {
        for shape in [[70, 90], [2, 33, 65], [1, 300, 260]] {
            let m = randomTensor(shape, seed: 3)
            let p = Array(0..<(shape.count - 2)) + [shape.count - 1, shape.count - 2]
            XCTAssertEqual(m.permuted(p).scalars, Naive.permute(m, p).scalars, "\(shape)")
        }
    }

    func testConcatSplitChunkRoundTrip() {
        for axis in 0..<3 {
            let parts = x.split(sizes: axis == 0 ? [1, 2] : [2, 0, x.shape[axis] - 2], axis: axis)
            XCTAssertEqual(Tensor.concatenated(parts, axis: axis).scalars, x.scalars)
            let chunks = x.chunked(2, axis: axis)
            XCTAssertEqual(Tensor.concatenated(chunks, axis: axis).scalars, x.scalars)
            XCTAssertEqual(chunks[0].shape[axis], (x.shape[axis] + 1) / 2)
        }
        XCTAssertEqual(Tensor(zeros: [6]).chunked(4, axis: 0).map { $0.count }, [2, 2, 2], "torch.chunk may give fewer pieces")
        XCTAssertEqual(Tensor(zeros: [5]).chunked(3, axis: 0).map { $0.count }, [2, 2, 1])
        let c = Tensor.concatenated([x, x.sliced(axis: 1, range: 1..<3)], axis: -2)
        XCTAssertEqual(c.shape, [3, 7, 7])
        XCTAssertEqual(c[2, 6, 4], x[2, 2, 4])
    }

    func testSlicedWithStep() {
        let s = x.sliced(axis: 2, range: 1..<7, step: 2)
        XCTAssertEqual(s.shape, [3, 5, 3])
        XCTAssertEqual(s.scalars, Naive.tensor(shape: [3, 5, 3]) { Naive.element(self.x, [$0[0], $0[1], 1 + 2 * $0[2]]) }.scalars)
        XCTAssertEqual(x.sliced(axis: 0, range: 2..<2).shape, [0, 5, 7])
    }

    func testPaddedMatchesNaiveIncludingCrops() {
        let pads: [[(Int, Int)]] = [[(0, 0), (1, 2), (3, 0)], [(1, 1), (0, 0), (-2, 1)], [(0, 0), (-1, -1), (-3, -4)]]
        for p in pads {
            XCTAssertEqual(x.padded(p, value: 9).scalars, Naive.pad(x, p, value: 9).scalars, "\(p)")
        }
        let t = x.padded(torchPads: [1, 2, 3, 4])
        XCTAssertEqual(t.shape, [3, 12, 10], "W padded 1|2, H padded 3|4")
        XCTAssertEqual(t.scalars, Naive.pad(x, [(0, 0), (3, 4), (1, 2)], value: 0).scalars)
    }

    func testSqueezeUnsqueezeFlatten() {
        let y = Tensor(zeros: [1, 3, 1, 2])
        XCTAssertEqual(y.squeezed().shape, [3, 2])
        XCTAssertEqual(y.squeezed(axes: [-2]).shape, [1, 3, 2])
        XCTAssertEqual(x.unsqueezed(axis: 0).shape, [1, 3, 5, 7])
        XCTAssertEqual(x.unsqueezed(axis: -1).shape, [3, 5, 7, 1])
        XCTAssertEqual(x.flattened(startAxis: 1).shape, [3, 35])
        XCTAssertEqual(x.flattened().shape, [105])
        XCTAssertTrue(x.unsqueezed(axis: 1).sharesStorage(with: x), "reshapes do not copy")
    }

    func testBroadcastExpandRepeat() {
        let v = randomTensor([5, 1], seed: 4)
        XCTAssertEqual(v.broadcast(to: [3, 5, 7]).scalars, Naive.broadcast(v, Tensor(zeros: [3, 5, 7]), { a, _ in a }).scalars)
        XCTAssertEqual(v.expanded(to: [2, -1, 4]).shape, [2, 5, 4])
        let r = x.repeated([2, 1, 3])
        XCTAssertEqual(r.shape, [6, 5, 21])
        XCTAssertEqual(r.scalars, Naive.tensor(shape: [6, 5, 21]) { Naive.element(self.x, [$0[0] % 3, $0[1], $0[2] % 7]) }.scalars)
        XCTAssertEqual(v.repeated([2, 1, 2]).shape, [2, 5, 2])
    }

    func testFlipAndRoll() {
        XCTAssertEqual(x.flipped(axes: [0, 2]).scalars,
                       Naive.tensor(shape: x.shape) { Naive.element(self.x, [2 - $0[0], $0[1], 6 - $0[2]]) }.scalars)
        for shift in [-8, -1, 0, 3, 7, 12] {
            XCTAssertEqual(x.rolled(shift: shift, axis: 2).scalars,
                           Naive.tensor(shape: x.shape) { Naive.element(self.x, [$0[0], $0[1], (($0[2] - shift) % 7 + 7) % 7]) }.scalars,
                           "shift \(shift)")
        }
    }

    func testMapTokensRoundTrip() {
        let m = randomTensor([2, 3, 4, 5], seed: 5)  // N, C, H, W
        let t = m.mapToTokens()                      // N, L, C
        XCTAssertEqual(t.shape, [2, 20, 3])
        XCTAssertEqual(t[1, 2 * 5 + 3, 2], m[1, 2, 2, 3])
        XCTAssertEqual(t.tokensToMap(height: 4, width: 5).scalars, m.scalars)
    }
}
