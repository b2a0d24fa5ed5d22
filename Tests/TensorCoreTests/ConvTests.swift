// Tests of Conv.swift: every fast conv path against the direct definition on odd shapes.

import TensorCore
import TestSupport
import XCTest

final class ConvTests: XCTestCase {
    /// Compares conv2d with conv2dNaive; when the geometry is invalid both must throw.
    func check2d(n: Int = 2, c: Int, o: Int, h: Int = 7, w: Int = 5, k: (Int, Int), stride: (Int, Int) = (1, 1),
                 padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1, bias: Bool = true,
                 file: StaticString = #filePath, line: UInt = #line) throws {
        let x = randomTensor([n, c, h, w], seed: 1)
        let wt = randomTensor([o, c / groups, k.0, k.1], seed: 2)
        let b = bias ? randomTensor([o], seed: 3) : nil
        let label = "c=\(c) o=\(o) k=\(k) s=\(stride) p=\(padding) d=\(dilation) g=\(groups)"
        guard let ref = try? conv2dNaive(x, weight: wt, bias: b, stride: stride, padding: padding,
                                         dilation: dilation, groups: groups) else {
            XCTAssertThrowsError(try conv2d(x, weight: wt, bias: b, stride: stride, padding: padding,
                                            dilation: dilation, groups: groups), label, file: file, line: line)
            return
        }
        let y = try conv2d(x, weight: wt, bias: b, stride: stride, padding: padding, dilation: dilation, groups: groups)
        assertClose(y, ref, rtol: 1e-5, label, file: file, line: line)
    }

    func testConv2dMatchesNaiveOverAGridOfOddShapes() throws {
        for k in [1, 3, 5] {
            for groups in [1, 3] {
                for d in [1, 2] {
                    for s in [1, 2] {
                        for p in [0, 1] {
                            try check2d(c: 3, o: 6, k: (k, k), stride: (s, s), padding: (p, p), dilation: (d, d),
                                        groups: groups, bias: (k + p) % 2 == 0)
                        }
                    }
                }
            }
        }
    }

    func testConv2dRectangularKernelsAndMixedStrides() throws {
        try check2d(c: 2, o: 3, k: (3, 1), stride: (2, 1), padding: (1, 0))
        try check2d(c: 2, o: 3, k: (1, 3), stride: (1, 3), padding: (0, 2), dilation: (1, 2))
        try check2d(c: 4, o: 2, k: (2, 3), stride: (3, 2), padding: (1, 1), groups: 2)
        try check2d(c: 6, o: 9, k: (3, 3), stride: (2, 2), padding: (1, 1), dilation: (2, 2), groups: 3)
    }

    func testPointwiseIsOneGemmPerItemAndGroup() throws {
        try check2d(c: 3, o: 5, k: (1, 1))
        try check2d(c: 6, o: 4, k: (1, 1), groups: 2, bias: false)
        try check2d(n: 1, c: 1, o: 1, h: 1, w: 1, k: (1, 1))
    }

    func testDepthwiseDirectLoop() throws {
        try check2d(c: 4, o: 4, k: (3, 3), padding: (1, 1), groups: 4)
        try check2d(c: 4, o: 8, k: (3, 3), stride: (2, 2), padding: (1, 1), dilation: (2, 2), groups: 4)
        try check2d(c: 3, o: 3, k: (5, 1), stride: (1, 2), padding: (2, 0), groups: 3, bias: false)
    }

    /// Large enough that the GEMMs run one at a time on BLAS threads rather than in parallelFor.
    func testLargeGemmPathSerial() throws {
        try check2d(n: 2, c: 16, o: 32, h: 17, w: 16, k: (3, 3), padding: (1, 1))
    }

    func testOutputShapeFollowsTorchFormula() throws {
        let x = Tensor(zeros: [1, 2, 7, 5])
        let y = try conv2d(x, weight: Tensor(zeros: [4, 2, 3, 3]), stride: (2, 2), padding: (1, 1))
        XCTAssertEqual(y.shape, [1, 4, 4, 3])
        let z = try conv2d(x, weight: Tensor(zeros: [4, 1, 3, 2]), stride: (1, 2), dilation: (3, 1), groups: 2)
        XCTAssertEqual(z.shape, [1, 4, 1, 2])
    }

    func testConv1dMatchesNaive() throws {
        let x = randomTensor([2, 3, 11], seed: 4)
        for (k, s, p, d, g) in [(1, 1, 0, 1, 1), (3, 2, 1, 1, 1), (5, 1, 2, 2, 3), (3, 3, 0, 2, 1), (5, 2, 2, 1, 3)] {
            let w = randomTensor([6, 3 / g, k], seed: 5), b = randomTensor([6], seed: 6)
            let y = try conv1d(x, weight: w, bias: b, stride: s, padding: p, dilation: d, groups: g)
            let ref = try conv1dNaive(x, weight: w, bias: b, stride: s, padding: p, dilation: d, groups: g)
            XCTAssertEqual(y.shape, [2, 6, (11 + 2 * p - d * (k - 1) - 1) / s + 1])
            assertClose(y, ref, rtol: 1e-5, "k=\(k) s=\(s) p=\(p) d=\(d) g=\(g)")
        }
    }

    func testBadShapesThrowNamedErrors() {
        let x = Tensor(zeros: [1, 3, 4, 4])
        XCTAssertThrowsError(try conv2d(x, weight: Tensor(zeros: [2, 2, 3, 3]))) { error in
            XCTAssertTrue("\(error)".contains("conv2d"), "\(error)")
        }
        XCTAssertThrowsError(try conv2d(x, weight: Tensor(zeros: [2, 3, 5, 5])))  // kernel larger than input
        XCTAssertThrowsError(try conv2d(x, weight: Tensor(zeros: [2, 3, 3, 3]), bias: Tensor(zeros: [3])))
        XCTAssertThrowsError(try conv2d(x, weight: Tensor(zeros: [4, 1, 1, 1]), groups: 3))
        XCTAssertThrowsError(try conv1d(x, weight: Tensor(zeros: [2, 3, 3])))
    }
}
