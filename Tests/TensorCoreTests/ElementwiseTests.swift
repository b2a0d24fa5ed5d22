// Tests Elementwise.swift and Activations.swift: broadcasting against `Naive.broadcast`, scalar
// and compound forms, unary maths and activations against Double formulas.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class ElementwiseTests: XCTestCase {
    /// Shape pairs covering each collapse case: equal, trailing vector, leading block, both sides
    /// stretched, scalar and rank-0, fewer dims, and empty.
    let pairs: [([Int], [Int])] = [
        ([3, 5, 7], [3, 5, 7]), ([3, 5, 7], [7]), ([3, 5, 7], [5, 1]), ([3, 1, 7], [1, 5, 1]),
        ([2, 3, 4, 5], [2, 3, 1, 1]), ([1], [3, 5, 7]), ([], [3, 2]), ([4, 1], [3]), ([0, 3], [3]),
        ([2, 1, 3, 1], [1, 4, 1, 5]),
    ]

    func testBinaryOpsMatchNaiveBroadcast() {
        for (i, (sa, sb)) in pairs.enumerated() {
            let a = randomTensor(sa, seed: UInt64(i)), b = abs(randomTensor(sb, seed: UInt64(100 + i))) + 0.5
            assertClose(a + b, Naive.broadcast(a, b, +), rtol: 0, "\(sa) + \(sb)")
            assertClose(b - a, Naive.broadcast(b, a, -), rtol: 0, "\(sb) - \(sa)")
            assertClose(a * b, Naive.broadcast(a, b, *), rtol: 0, "\(sa) * \(sb)")
            assertClose(a / b, Naive.broadcast(a, b, /), rtol: 0, "\(sa) / \(sb)")
            assertClose(Tensor.maximum(a, b - 1), Naive.broadcast(a, b - 1, { Swift.max($0, $1) }), rtol: 0)
            assertClose(Tensor.minimum(a, b - 1), Naive.broadcast(a, b - 1, { Swift.min($0, $1) }), rtol: 0)
        }
    }

    func testLargeBroadcastRunsParallelPathCorrectly() {
        let a = randomTensor([2, 260, 260], seed: 3), b = randomTensor([260, 1], seed: 4)
        assertClose(a * b, Naive.broadcast(a, b, *), rtol: 0)
        let c = randomTensor([140_000], seed: 5)
        assertClose(c + c, c * 2, rtol: 0)
    }

    func testScalarForms() {
        let a = randomTensor([3, 5, 7], seed: 7)
        let s: Float = 1.7
        assertClose(a + s, Naive.broadcast(a, Tensor(scalar: s), +), rtol: 0)
        assertClose(s - a, Naive.broadcast(Tensor(scalar: s), a, -), rtol: 0)
        assertClose(a * s, Naive.broadcast(a, Tensor(scalar: s), *), rtol: 0)
        assertClose(a / s, Naive.broadcast(a, Tensor(scalar: s), /), rtol: 0)
        assertClose(s / (abs(a) + 1), Naive.broadcast(Tensor(scalar: s), abs(a) + 1, /), rtol: 0)
        XCTAssertEqual((-a).scalars, a.scalars.map { -$0 })
    }

    func testCompoundAssignmentIsInPlaceAndCopyOnWrite() {
        let a = randomTensor([2, 3, 4], seed: 8), b = randomTensor([3, 1], seed: 9)
        var c = a
        c += b
        XCTAssertEqual(c.scalars, (a + b).scalars)
        XCTAssertFalse(c.sharesStorage(with: a), "the copy must not write into a's storage")
        XCTAssertEqual(a.scalars, randomTensor([2, 3, 4], seed: 8).scalars)
        c -= b; c *= b; c /= b
        c += 1; c -= 2; c *= 3; c /= 4
        let expected = ((((a + b - b) * b / b) + 1 - 2) * 3) / 4
        assertClose(c, expected, rtol: 1e-6)
        var d = Tensor(shape: [2], scalars: [1, 2])
        d += d
        XCTAssertEqual(d.scalars, [2, 4])
    }

    func testUnaryMaths() {
        let x = randomTensor([3, 5, 7], seed: 10), p = abs(x) + 0.1
        assertClose(exp(x), Naive.unary(x) { Foundation.exp($0) }, rtol: 1e-6)
        assertClose(log(p), Naive.unary(p) { Foundation.log($0) }, rtol: 1e-6)
        assertClose(sqrt(p), Naive.unary(p) { $0.squareRoot() }, rtol: 1e-7)
        assertClose(p.rsqrt(), Naive.unary(p) { 1 / $0.squareRoot() }, rtol: 1e-6)
        assertClose(x.squared(), Naive.unary(x) { $0 * $0 }, rtol: 1e-7)
        assertClose(pow(p, 3), Naive.unary(p) { Foundation.pow($0, 3) }, rtol: 1e-6)
        assertClose(pow(p, 0.5), sqrt(p), rtol: 0)
        assertClose(pow(p, 2), p.squared(), rtol: 0)
        assertClose(p.reciprocal(), Naive.unary(p) { 1 / $0 }, rtol: 1e-7)
        XCTAssertEqual(abs(x).scalars, x.scalars.map { Swift.abs($0) })
        XCTAssertEqual(x.clamped(min: -0.5, max: 0.5).scalars, x.scalars.map { Swift.min(Swift.max($0, -0.5), 0.5) })
        XCTAssertEqual(x.clamped(min: 0).scalars, x.scalars.map { Swift.max($0, 0) })
        XCTAssertEqual(Array(Tensor(shape: [4], scalars: [-2, 0, 3, .nan]).sign().scalars.prefix(3)), [-1, 0, 1])
        XCTAssertTrue(Tensor(shape: [1], scalars: [.nan]).clamped(min: 0, max: 1).scalars[0].isNaN)
        XCTAssertEqual(exp(Tensor(shape: [3], scalars: [-.infinity, 0, -200])).scalars, [0, 1, 0])
    }

    func testMaximumPropagatesNaNAndMaskedFillBroadcasts() {
        let a = Tensor(shape: [3], scalars: [1, .nan, 3]), b = Tensor(shape: [3], scalars: [.nan, 2, 1])
        XCTAssertTrue(Tensor.maximum(a, b).scalars[0].isNaN && Tensor.maximum(a, b).scalars[1].isNaN)
        XCTAssertTrue(Tensor.minimum(a, b).scalars[0].isNaN)
        let logits = randomTensor([2, 3, 3], seed: 11)
        let causal = Naive.tensor(shape: [3, 3]) { $0[1] > $0[0] ? 1 : 0 }
        let masked = logits.maskedFill(causal, value: -.infinity)
        XCTAssertEqual(masked.shape, [2, 3, 3])
        XCTAssertEqual(masked[1, 0, 2], -.infinity)
        XCTAssertEqual(masked[1, 2, 0], logits[1, 2, 0])
        assertClose(masked.maskedFill(causal, value: 0), logits * (1 - causal), rtol: 0)
    }

    func testActivationsMatchDoubleFormulas() {
        var x = randomTensor([4, 5, 6], seed: 12) * 4
        x[0, 0, 0] = 30; x[0, 0, 1] = -100; x[0, 0, 2] = 90
        assertClose(x.sigmoid(), Naive.sigmoid(x), rtol: 1e-6)
        assertClose(x.silu(), Naive.silu(x), rtol: 1e-6)
        assertClose(x.gelu(), Naive.gelu(x), rtol: 1e-6)
        assertClose(x.gelu(approximate: .tanh), Naive.geluTanh(x), rtol: 1e-6)
        assertClose(x.softplus(), Naive.softplus(x), rtol: 1e-6)
        assertClose(x.softplus(beta: 2, threshold: 1), Naive.softplus(x, beta: 2, threshold: 1), rtol: 1e-6)
        assertClose(tanh(x), Naive.unary(x) { Foundation.tanh($0) }, rtol: 1e-6)
        assertClose(x.elu(alpha: 0.7), Naive.unary(x) { $0 > 0 ? $0 : 0.7 * Foundation.expm1($0) }, rtol: 1e-6)
        XCTAssertEqual(x.relu().scalars, x.scalars.map { Swift.max($0, 0) })
        XCTAssertEqual(x.relu6().scalars, x.scalars.map { Swift.min(Swift.max($0, 0), 6) })
        XCTAssertEqual(x.leakyRelu(negativeSlope: 0.2).scalars, x.scalars.map { $0 >= 0 ? $0 : 0.2 * $0 })
        assertClose(x.hardSigmoid(), Naive.unary(x) { Swift.min(Swift.max($0 + 3, 0), 6) / 6 }, rtol: 1e-7)
        assertClose(x.hardSwish(), Naive.unary(x) { $0 * Swift.min(Swift.max($0 + 3, 0), 6) / 6 }, rtol: 1e-6)
        XCTAssertEqual(x.sigmoid()[0, 0, 1], 0)
        XCTAssertEqual(x.sigmoid()[0, 0, 2], 1)
        XCTAssertEqual(x.softplus()[0, 0, 0], 30, "above the threshold softplus returns x itself")
    }

    func testInPlaceReluAndResidualReluOverThreads() {
        // 3×70 001 elements: several parallel chunks and an odd tail; NaN passes through.
        var x = randomTensor([3, 70_001], seed: 21), r = randomTensor([3, 70_001], seed: 22)
        x[1, 5] = .nan
        var a = x
        a.formRelu()
        XCTAssertEqual(a.scalars.map(\.bitPattern), x.relu().scalars.map(\.bitPattern))
        var b = x
        b.formRelu(adding: r)
        let expected = zip(x.scalars, r.scalars).map { let v = $0 + $1; return v < 0 ? 0 : v }
        XCTAssertEqual(b.scalars.map(\.bitPattern), expected.map(\.bitPattern))
        XCTAssertTrue(b[1, 5].isNaN)
        var c = r
        c.formSum(withReluOf: x)
        XCTAssertEqual(c.scalars.map(\.bitPattern), (r + x.relu()).scalars.map(\.bitPattern))
    }
}

/// A custom kernel, as a module would write one for a hot elementwise op.
private struct AffineKernel: UnaryKernel {
    let a: Float, b: Float
    func callAsFunction(_ x: Float) -> Float { a * x + b }
}

final class ElementwiseKernelTests: XCTestCase {
    func testApplyingMapAndMapInPlaceAgree() {
        let x = randomTensor([3, 70_000], seed: 13)
        let viaKernel = x.applying(AffineKernel(a: 2, b: -1))
        XCTAssertEqual(viaKernel.scalars, x.map { 2 * $0 - 1 }.scalars)
        var y = x
        y.mapInPlace { 2 * $0 - 1 }
        XCTAssertEqual(y.scalars, viaKernel.scalars)
        XCTAssertFalse(y.sharesStorage(with: x))
    }
}
