// Tests CKernels' planestats.c (fa_sum, fa_sum_squares, fa_max, fa_row_col_sums, fa_outer_add,
// fa_scaled_max_sum) against plain loops on odd lengths, on the dispatched and portable paths.

import CKernels
import Foundation
import TensorCore
import TestSupport
import XCTest

final class PlaneStatsTests: XCTestCase {
    func bothPaths(_ body: (String) -> Void) {
        for isa in KernelISA.available {
            KernelISA.limited(to: isa) { body("\(isa)") }
        }
    }

    func testReductionsMatchLoops() {
        bothPaths { path in
            for n in [0, 1, 7, 8, 9, 31, 32, 33, 100, 4096] {
                let x = randomTensor([max(n, 1)], seed: UInt64(n)).scalars
                let sum = x.prefix(n).reduce(Double(0)) { $0 + Double($1) }
                let sq = x.prefix(n).reduce(Double(0)) { $0 + Double($1) * Double($1) }
                XCTAssertEqual(Double(fa_sum(x, n)), sum, accuracy: 1e-4 * max(1, abs(sum)), "\(path) n \(n)")
                XCTAssertEqual(Double(fa_sum_squares(x, n)), sq, accuracy: 1e-4 * max(1, sq), "\(path) n \(n)")
                XCTAssertEqual(fa_max(x, n), x.prefix(n).max() ?? -.infinity, "\(path) n \(n)")
            }
            var x = randomTensor([37], seed: 5).scalars
            for at in [0, 15, 33, 36] {
                let saved = x[at]
                x[at] = .nan
                XCTAssertTrue(fa_max(x, 37).isNaN, "\(path) NaN at \(at)")
                x[at] = saved
            }
        }
    }

    func testRowColumnSumsAndOuterAdd() {
        bothPaths { path in
            for (h, w) in [(1, 1), (3, 7), (5, 8), (4, 17), (9, 64)] {
                let p = randomTensor([h * w], seed: UInt64(h * 100 + w)).scalars
                var rows = [Float](repeating: .nan, count: h), cols = [Float](repeating: .nan, count: w)
                fa_row_col_sums(p, h, w, &rows, &cols)
                for i in 0..<h {
                    XCTAssertEqual(rows[i], (0..<w).reduce(Float(0)) { $0 + p[i * w + $1] }, accuracy: 1e-4, "\(path) row \(i)")
                }
                for j in 0..<w {
                    XCTAssertEqual(cols[j], (0..<h).reduce(Float(0)) { $0 + p[$1 * w + j] }, accuracy: 1e-4, "\(path) col \(j)")
                }
                var out = [Float](repeating: .nan, count: h * w)
                fa_outer_add(rows, cols, &out, h, w)
                for i in 0..<h { for j in 0..<w { XCTAssertEqual(out[i * w + j], rows[i] + cols[j], "\(path) \(i),\(j)") } }
            }
        }
    }

    func testScaledMaxSumMatchesLoop() {
        bothPaths { path in
            for n in [1, 7, 8, 19, 64] {
                let x = randomTensor([n], seed: UInt64(n + 7)).scalars
                let m0 = randomTensor([n], seed: UInt64(n + 8)).scalars, s0 = randomTensor([n], seed: UInt64(n + 9)).scalars
                var mx = m0, sum = s0
                fa_scaled_max_sum(x, -0.75, &mx, &sum, n)
                for j in 0..<n {
                    let v = x[j] * -0.75
                    XCTAssertEqual(mx[j], v > m0[j] ? v : m0[j], "\(path) \(j)")
                    XCTAssertEqual(sum[j], s0[j] + v, "\(path) \(j)")
                }
            }
        }
    }
}
