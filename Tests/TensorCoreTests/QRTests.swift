// Tests QR.swift: reconstruction, orthonormal Q, triangular R, and agreement with Gram–Schmidt
// once LAPACK's signs are normalised.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class QRTests: XCTestCase {
    func check(_ a: Tensor, file: StaticString = #filePath, line: UInt = #line) {
        let (q, r) = a.qr()
        let m = a.size(-2), n = a.size(-1), k = Swift.min(m, n)
        XCTAssertEqual(q.shape, Array(a.shape.dropLast(2)) + [m, k], file: file, line: line)
        XCTAssertEqual(r.shape, Array(a.shape.dropLast(2)) + [k, n], file: file, line: line)
        assertClose(q.matmul(r), a, rtol: 1e-5, "Q·R = A", file: file, line: line)
        let eye = Naive.tensor(shape: [k, k]) { $0[0] == $0[1] ? 1 : 0 }
        let qtq = q.matmul(q, transposeSelf: true)
        for b in 0..<(qtq.count / (k * k)) {
            let one = qtq.reshaped([-1, k, k]).sliced(axis: 0, range: b..<b + 1).reshaped([k, k])
            assertClose(one, eye, rtol: 1e-5, "QᵀQ = I", file: file, line: line)
        }
        let rv = r.reshaped([-1, k, n])
        for b in 0..<rv.size(0) { for i in 0..<k { for j in 0..<Swift.min(i, n) { XCTAssertEqual(rv[b, i, j], 0, file: file, line: line) } } }
    }

    func testReducedQROnTallSquareWideAndBatched() {
        check(randomTensor([7, 4], seed: 1))
        check(randomTensor([4, 4], seed: 2))
        check(randomTensor([3, 5], seed: 3))
        check(randomTensor([2, 6, 3], seed: 4))
        check(randomTensor([1, 1], seed: 5))
    }

    func testMatchesGramSchmidtUpToSigns() {
        let a = randomTensor([9, 5], seed: 6)
        let (q, r) = a.qr(), (q0, r0) = Naive.qr(a)
        let signs = Tensor(shape: [5], scalars: (0..<5).map { r[$0, $0] < 0 ? -1 : 1 })
        assertClose(q * signs, q0, rtol: 1e-5)
        assertClose(r * signs.reshaped([5, 1]), r0, rtol: 1e-5)
    }

    func testEmpty() {
        XCTAssertEqual(Tensor(zeros: [0, 3]).qr().q.shape, [0, 0])
        XCTAssertEqual(Tensor(zeros: [4, 0]).qr().r.shape, [0, 0])
    }
}
