// Tests Softmax.swift: the C last-axis path and the strided other-axis path against the Double
// reference, masked rows, extreme logits.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class SoftmaxTests: XCTestCase {
    func testSoftmaxMatchesNaiveOnEveryAxis() {
        let x = randomTensor([3, 5, 7], seed: 1) * 3
        for axis in [0, 1, 2, -1, -2] {
            assertClose(x.softmax(axis: axis), Naive.softmax(x, axis: axis), rtol: 1e-6, "axis \(axis)")
            assertClose(x.logSoftmax(axis: axis), Naive.softmax(x, axis: axis, log: true), rtol: 1e-6, "log axis \(axis)")
            assertClose(x.softmax(axis: axis).sum(axis: axis), Tensor(shape: x.shape.enumerated().filter { $0.offset != (axis + 3) % 3 }.map(\.element), repeating: 1), rtol: 1e-6)
        }
    }

    func testWideInnerAxisSpansSeveralColumnUnits() {
        let x = randomTensor([2, 3, 300], seed: 2)
        assertClose(x.softmax(axis: 1), Naive.softmax(x, axis: 1), rtol: 1e-6)
        assertClose(x.logSoftmax(axis: 0), Naive.softmax(x, axis: 0, log: true), rtol: 1e-6)
        let rows = randomTensor([600, 130], seed: 3)
        assertClose(rows.softmax(), Naive.softmax(rows, axis: -1), rtol: 1e-6)
    }

    func testMaskedRowsAndExtremeLogits() {
        let ninf = -Float.infinity
        let x = Tensor(shape: [3, 4], scalars: [ninf, ninf, ninf, ninf, 1000, 1000, ninf, 0, -1000, 5, 5, 5])
        let s = x.softmax()
        XCTAssertEqual(Array(s.scalars[0..<4]), [0, 0, 0, 0], "an all −inf row gives zeros (torch gives NaN)")
        XCTAssertEqual(s[1, 0], 0.5, accuracy: 1e-6)
        XCTAssertEqual(s[1, 2], 0)
        XCTAssertEqual(s[2, 0], 0)
        XCTAssertEqual(s[2, 1], 1.0 / 3, accuracy: 1e-6)
        let l = x.logSoftmax()
        XCTAssertEqual(l[0, 0], ninf)
        XCTAssertEqual(l[1, 0], -Float(Foundation.log(2.0)), accuracy: 1e-5)
        XCTAssertEqual(l[2, 0], -1005 - Float(Foundation.log(3.0)), accuracy: 1e-3)
        let t = x.transposed()
        assertClose(t.softmax(axis: 0), s.transposed(), rtol: 1e-6)
        assertClose(t.logSoftmax(axis: 0).maskedFill(t.logSoftmax(axis: 0).map { $0 == ninf ? 1 : 0 }, value: 0),
                    l.transposed().maskedFill(l.transposed().map { $0 == ninf ? 1 : 0 }, value: 0), rtol: 1e-6)
    }

    func testSizeOneAndEmpty() {
        let x = randomTensor([4, 1, 3], seed: 4)
        XCTAssertEqual(x.softmax(axis: 1).scalars, [Float](repeating: 1, count: 12))
        XCTAssertEqual(x.logSoftmax(axis: 1).scalars, [Float](repeating: 0, count: 12))
        XCTAssertEqual(Tensor(zeros: [0, 5]).softmax().shape, [0, 5])
    }
}
