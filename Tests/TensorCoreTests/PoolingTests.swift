// Tests of Pooling.swift: fast pools against per-tap definitions, torch's bins and edge rules.

import TensorCore
import TestSupport
import XCTest

final class PoolingTests: XCTestCase {
    let x = randomTensor([2, 3, 7, 5], seed: 11)

    func testAvgPoolMatchesNaive() throws {
        for (k, s, p) in [((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 2), (1, 0)), ((3, 2), (3, 1), (0, 1)), ((1, 1), (2, 2), (0, 0))] {
            for ceil in [false, true] {
                for include in [true, false] {
                    let y = try avgPool2d(x, kernel: k, stride: s, padding: p, ceilMode: ceil, countIncludePad: include)
                    let ref = try avgPool2dNaive(x, kernel: k, stride: s, padding: p, ceilMode: ceil, countIncludePad: include)
                    assertClose(y, ref, rtol: 1e-6, "k=\(k) s=\(s) p=\(p) ceil=\(ceil) include=\(include)")
                }
            }
        }
    }

    func testAvgPoolShapesAndDivisors() throws {
        let ones = Tensor(shape: [1, 1, 5, 5], repeating: 1)
        // ceil mode adds a last window that starts inside the input: 5 → 3 with k2 s2.
        XCTAssertEqual(try avgPool2d(ones, kernel: (2, 2), ceilMode: true).shape, [1, 1, 3, 3])
        XCTAssertEqual(try avgPool2d(ones, kernel: (2, 2)).shape, [1, 1, 2, 2])
        // The corner window covers 4 inputs of 9 padded taps.
        let y = try avgPool2d(ones, kernel: (3, 3), stride: (1, 1), padding: (1, 1))
        XCTAssertEqual(y[0, 0, 0, 0], 4.0 / 9.0, accuracy: 1e-6)
        let z = try avgPool2d(ones, kernel: (3, 3), stride: (1, 1), padding: (1, 1), countIncludePad: false)
        XCTAssertEqual(z[0, 0, 0, 0], 1, accuracy: 1e-6)
    }

    func testMaxPoolMatchesNaive() throws {
        for (k, s, p, d) in [((3, 3), (2, 2), (1, 1), (1, 1)), ((3, 3), (1, 1), (1, 1), (2, 2)),
                             ((2, 3), (2, 1), (1, 1), (2, 1)), ((2, 2), nil, (0, 0), (1, 1))] as [((Int, Int), (Int, Int)?, (Int, Int), (Int, Int))] {
            for ceil in [false, true] {
                let y = try maxPool2d(x, kernel: k, stride: s, padding: p, dilation: d, ceilMode: ceil)
                let ref = try maxPool2dNaive(x, kernel: k, stride: s, padding: p, dilation: d, ceilMode: ceil)
                assertClose(y, ref, rtol: 0, "k=\(k) s=\(String(describing: s)) p=\(p) d=\(d) ceil=\(ceil)")
            }
        }
    }

    func testMaxPoolPropagatesNaNAndIgnoresPadding() throws {
        var t = Tensor(shape: [1, 1, 2, 2], scalars: [-5, -6, -7, -8])
        XCTAssertEqual(try maxPool2d(t, kernel: (3, 3), stride: (1, 1), padding: (1, 1))[0, 0, 1, 1], -5)
        t[0, 0, 1, 0] = .nan
        XCTAssertTrue(try maxPool2d(t, kernel: (2, 2))[0, 0, 0, 0].isNaN)
    }

    func testAdaptivePoolsUseTorchBins() throws {
        for size in [(3, 2), (4, 4), (7, 5), (1, 1), (2, 7)] {
            assertClose(try adaptiveAvgPool2d(x, outputSize: size), adaptivePool2dNaive(x, outputSize: size, max: false),
                        rtol: 1e-6, "avg \(size)")
            assertClose(try adaptiveMaxPool2d(x, outputSize: size), adaptivePool2dNaive(x, outputSize: size, max: true),
                        rtol: 0, "max \(size)")
        }
        // 5 → 3 bins: [0,2) [1,4) [3,5): overlapping, as torch's.
        let r = Tensor(shape: [1, 1, 1, 5], scalars: [0, 1, 2, 3, 4])
        XCTAssertEqual(try adaptiveAvgPool2d(r, outputSize: (1, 3)).scalars, [0.5, 2, 3.5])
    }

    func testGlobalPools() throws {
        let avg = try globalAvgPool2d(x), mx = try globalMaxPool2d(x)
        XCTAssertEqual(avg.shape, [2, 3, 1, 1])
        let plane = Array(x.scalars[35..<70])
        XCTAssertEqual(avg[0, 1, 0, 0], plane.reduce(0, +) / 35, accuracy: 1e-5)
        XCTAssertEqual(mx[0, 1, 0, 0], plane.max()!)
    }

    func testOneDimensionalPoolsMatchTwoDimensional() throws {
        let s = randomTensor([2, 3, 11], seed: 12), m = s.reshaped([2, 3, 1, 11])
        assertClose(try avgPool1d(s, kernel: 3, stride: 2, padding: 1).reshaped([2, 3, 1, 6]),
                    try avgPool2dNaive(m, kernel: (1, 3), stride: (1, 2), padding: (0, 1)), rtol: 1e-6)
        assertClose(try maxPool1d(s, kernel: 3, padding: 1, dilation: 2, ceilMode: true).reshaped([2, 3, 1, 4]),
                    try maxPool2dNaive(m, kernel: (1, 3), stride: (1, 3), padding: (0, 1), dilation: (1, 2), ceilMode: true), rtol: 0)
        XCTAssertEqual(try adaptiveAvgPool1d(s, outputSize: 4).shape, [2, 3, 4])
        XCTAssertEqual(try adaptiveMaxPool1d(s, outputSize: 1).scalars[0], Array(s.scalars[0..<11]).max()!)
    }

    func testInvalidPoolingThrows() {
        XCTAssertThrowsError(try avgPool2d(x, kernel: (2, 2), padding: (2, 2)))  // pad > kernel/2
        XCTAssertThrowsError(try maxPool2d(x, kernel: (9, 1)))                   // kernel > input
        XCTAssertThrowsError(try adaptiveAvgPool2d(x, outputSize: (0, 1)))
        XCTAssertThrowsError(try avgPool1d(x, kernel: 2))                         // rank 4 is not N×C×L
    }
}
