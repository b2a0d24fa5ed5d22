// Tests Tensor.swift: construction, reshape, indexing, strides and copy-on-write.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class TensorTests: XCTestCase {
    func testConstructionAndAccess() {
        let t = Tensor(shape: [2, 3], scalars: [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(t.count, 6)
        XCTAssertEqual(t.rank, 2)
        XCTAssertEqual(t.strides, [3, 1])
        XCTAssertEqual(t[1, 2], 5)
        XCTAssertEqual(t.size(-1), 3)
        XCTAssertEqual(Tensor(zeros: [2, 2]).scalars, [0, 0, 0, 0])
        XCTAssertEqual(Tensor(shape: [3], repeating: 2).scalars, [2, 2, 2])
        XCTAssertEqual(Tensor(scalar: 4).item(), 4)
        XCTAssertEqual(Tensor(scalar: 4).shape, [])
        XCTAssertEqual(Tensor(zeros: [0, 4]).count, 0)
        XCTAssertEqual(Tensor.strides(of: [2, 3, 4]), [12, 4, 1])
    }

    func testReshapeInfersAndSharesStorage() {
        let t = randomTensor([2, 3, 4], seed: 1)
        let r = t.reshaped([4, -1])
        XCTAssertEqual(r.shape, [4, 6])
        XCTAssertTrue(r.sharesStorage(with: t))
        XCTAssertEqual(t.reshaped(24).scalars, t.scalars)
    }

    func testCopyOnWrite() {
        let a = randomTensor([3, 4], seed: 2)
        var b = a
        XCTAssertTrue(b.sharesStorage(with: a))
        b[0, 0] = 100
        XCTAssertFalse(b.sharesStorage(with: a))
        XCTAssertNotEqual(a[0, 0], 100)
        XCTAssertEqual(a.scalars, randomTensor([3, 4], seed: 2).scalars, "mutating a copy leaves the original")
        var c = a.reshaped([12])
        c.withUnsafeMutableBufferPointer { $0[5] = -1 }
        XCTAssertNotEqual(a.scalars[5], -1)
        var d = Tensor(zeros: [4])
        let before = d.sharesStorage(with: d)
        d[1] = 2   // unique: no copy needed
        XCTAssertTrue(before)
        XCTAssertEqual(d.scalars, [0, 2, 0, 0])
    }

    func testDescription() {
        XCTAssertTrue(Tensor(shape: [2], scalars: [1, 2]).description.hasPrefix("Tensor(shape: [2]"))
    }
}
