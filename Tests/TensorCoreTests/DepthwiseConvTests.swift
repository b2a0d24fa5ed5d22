// Tests DepthwiseConv.swift: depthwiseConv3x3 against conv2dNaive (+ bias, + residual) on odd
// shapes, over threads, and the AVX2 path bit for bit against the portable one.

import CKernels
import Foundation
import TensorCore
import TestSupport
import XCTest

final class DepthwiseConvTests: XCTestCase {
    func testMatchesNaiveConvPlusBiasPlusResidual() throws {
        // Widths below, at and around the 8-column vector step; 1×1 and 1-row planes.
        let shapes = [[1, 3, 1, 1], [2, 3, 1, 9], [1, 2, 7, 13], [2, 5, 8, 16], [1, 4, 9, 17], [3, 2, 5, 3]]
        let count = Threads.count
        defer { Threads.count = count }
        for (s, shape) in shapes.enumerated() {
            let c = shape[1]
            let x = randomTensor(shape, seed: UInt64(s)), r = randomTensor(shape, seed: UInt64(40 + s))
            let w = randomTensor([c, 1, 3, 3], seed: UInt64(80 + s)), b = randomTensor([c], seed: UInt64(90 + s))
            let conv = try conv2dNaive(x, weight: w, bias: b, padding: (1, 1), groups: c)
            let plain = try conv2dNaive(x, weight: w, padding: (1, 1), groups: c)
            var one = Tensor(zeros: [1])
            for threads in [1, 2, 3] {
                Threads.count = threads
                let y = depthwiseConv3x3(x, weight: w, bias: b, adding: r)
                assertClose(y, conv + r, rtol: 1e-5, "\(shape), \(threads) threads")
                assertClose(depthwiseConv3x3(x, weight: w), plain, rtol: 1e-5, "\(shape) no bias, no residual")
                if threads == 1 { one = y } else { XCTAssertEqual(y.scalars, one.scalars, "same bits on \(threads) threads") }
            }
        }
    }

    func testVectorPathEqualsPortablePathBitForBit() {
        let (n, c, h, w) = (2, 3, 6, 21)
        let x = randomTensor([n, c, h, w], seed: 1), r = randomTensor([n, c, h, w], seed: 2)
        let wt = randomTensor([c, 1, 3, 3], seed: 3), b = randomTensor([c], seed: 4)
        var fast = [Float](repeating: 0, count: n * c * h * w), portable = fast
        var scratch = [Float](repeating: 0, count: (h + 2) * (w + 2))
        let (xs, rs, ws, bs) = (x.scalars, r.scalars, wt.scalars, b.scalars)
        fa_dwconv3x3(xs, ws, bs, rs, &fast, n * c, 0, c, h, w, &scratch)
        fa_dwconv3x3_portable(xs, ws, bs, rs, &portable, n * c, 0, c, h, w, &scratch)
        XCTAssertEqual(fast.map(\.bitPattern), portable.map(\.bitPattern))
    }

    func testRowConvMatchesNaiveAndPortable() {
        // Widths across the 32- and 8-column steps, taps longer than the sequence, row subsets.
        for (len, width, taps) in [(5, 70, 3), (3, 8, 7), (40, 37, 9), (1, 5, 1)] {
            let ld = width + 3, pad = taps / 2
            let v = randomTensor([len * ld], seed: UInt64(len)).scalars
            let cw = randomTensor([taps * width], seed: UInt64(width)).scalars
            let start = randomTensor([len * ld], seed: UInt64(taps)).scalars
            var naive = start
            for i in 0..<len {
                for j in 0..<width {
                    var acc = Double(start[i * ld + j])
                    for t in 0..<taps where i + t >= pad && i + t - pad < len {
                        acc += Double(cw[t * width + j]) * Double(v[(i + t - pad) * ld + j])
                    }
                    naive[i * ld + j] = Float(acc)
                }
            }
            var fast = start, portable = start
            let mid = len / 2
            fa_rowconv_add(v, cw, &fast, len, width, ld, taps, pad, 0, mid)
            fa_rowconv_add(v, cw, &fast, len, width, ld, taps, pad, mid, len)
            fa_rowconv_add_portable(v, cw, &portable, len, width, ld, taps, pad, 0, len)
            assertClose(Tensor(shape: [len * ld], scalars: fast), Tensor(shape: [len * ld], scalars: naive), rtol: 1e-5,
                        "len \(len) width \(width) taps \(taps)")
            XCTAssertEqual(fast.map(\.bitPattern), portable.map(\.bitPattern), "AVX2 = portable bit for bit")
        }
    }
}
