import CKernels
import Foundation
import TestSupport
import XCTest

/// CKernels/kernels.c's `fa_exp`, `fa_softmax_rows` and `fa_online_softmax_tile` (the dense
/// attention's softmax step) against their definitions in Double, on every instruction-set path
/// this CPU has (portable, AVX2, AVX-512F): odd lengths (masked and padded tails), −inf, NaN.
final class SoftmaxKernelsTests: XCTestCase {
    /// Deterministic logits in [-spread, spread].
    func logits(_ n: Int, seed: UInt64, spread: Float = 8) -> [Float] {
        var s = seed &* 6364136223846793005 &+ 1442695040888963407
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return (Float(s >> 40) / Float(1 << 24) * 2 - 1) * spread
        }
    }

    func testExpAgainstLibm() {
        var xs: [Float] = stride(from: -87.3, through: 88.3, by: 0.0371).map { Float($0) }
        xs += [0, -0, 1e-30, -1e-30, 1e-8, -3e-6, 0.3465, -0.3466, 1, -1, 20, -20, 87, -87, 88.37, -87.33]
        var y = [Float](repeating: 0, count: xs.count)
        var byISA: [[Float]] = []
        forEachKernelISA {
            for count in [1, 3, 7, 8, 9, 15, 16, 17, 31, xs.count] {
                xs.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { fa_exp(xp.baseAddress!, $0.baseAddress!, count) } }
                for i in 0..<count {
                    let r = Foundation.exp(Double(xs[i])), v = Double(y[i])
                    // ≈ 1 ulp measured over a dense sweep; 4e-7 is about 3 ulp.
                    XCTAssertLessThanOrEqual(abs(v - r), r * 4e-7, "exp(\(xs[i])) = \(v), expected \(r) (isa \(fa_isa()))")
                }
            }
            byISA.append(y)
            // Special values, each at every lane position of a 16-wide block and in a tail.
            let specials: [Float] = [-.infinity, .infinity, .nan, -88.5, -200, -1e30, 200, -.greatestFiniteMagnitude]
            for s in specials {
                for n in [5, 16, 19] {
                    for pos in 0..<n {
                        var v = [Float](repeating: 0.5, count: n); v[pos] = s
                        var o = [Float](repeating: 7, count: n)
                        v.withUnsafeBufferPointer { vp in o.withUnsafeMutableBufferPointer { fa_exp(vp.baseAddress!, $0.baseAddress!, n) } }
                        let got = o[pos]
                        if s.isNaN { XCTAssertTrue(got.isNaN, "exp(nan) at \(pos)/\(n)") }
                        else if s > 0 { XCTAssertEqual(got, .infinity, "exp(\(s))") }
                        else { XCTAssertTrue(got >= 0 && got < Float.leastNormalMagnitude, "exp(\(s)) = \(got) at \(pos)/\(n) (isa \(fa_isa()))") }
                        for j in 0..<n where j != pos { XCTAssertEqual(o[j], Float(Foundation.exp(0.5)), accuracy: 1e-6) }
                    }
                }
            }
        }
        // The vector widths share one exp: identical bits (2^n is exact either way).
        for k in byISA.indices.dropFirst(2) { XCTAssertEqual(byISA[k], byISA[1], "AVX-512 exp differs from AVX2") }
    }

    func testSoftmaxRowsAgainstDefinition() {
        forEachKernelISA {
            for cols in [1, 2, 7, 15, 16, 17, 33, 100] {
                for scale: Float in [1, 0.125, -0.5] {
                    let rows = 3, ld = cols + 3
                    var x = logits(rows * ld, seed: UInt64(cols * 10) + 1)
                    if scale > 0 && cols > 1 { x[ld + cols / 2] = -.infinity }   // one masked logit in row 1
                    let src = x
                    fa_softmax_rows(&x, rows, cols, ld, scale)
                    for r in 0..<rows {
                        let row = (0..<cols).map { Double(src[r * ld + $0]) * Double(scale) }
                        let m = row.max()!, z = row.map { Foundation.exp($0 - m) }.reduce(0, +)
                        for j in 0..<cols {
                            XCTAssertEqual(Double(x[r * ld + j]), Foundation.exp(row[j] - m) / z, accuracy: 1e-6,
                                           "cols \(cols) scale \(scale) [\(r),\(j)] (isa \(fa_isa()))")
                        }
                        for j in cols..<ld { XCTAssertEqual(x[r * ld + j], src[r * ld + j], "padding untouched") }
                    }
                }
            }
        }
    }

    func testSoftmaxRowsMaskedAndNaN() {
        forEachKernelISA {
            for cols in [3, 16, 21] {
                // Row 0 all −inf → zeros; row 1 has a NaN → all NaN; row 2 all −inf but a NaN → all NaN;
                // row 3 ordinary (a NaN never leaks across rows).
                var x = [Float](repeating: -.infinity, count: 4 * cols)
                for j in 0..<cols { x[cols + j] = Float(j); x[3 * cols + j] = Float(j % 5) }
                x[cols + cols - 1] = .nan
                x[2 * cols + cols / 2] = .nan
                fa_softmax_rows(&x, 4, cols, cols, 1)
                XCTAssertEqual(Array(x[0..<cols]), [Float](repeating: 0, count: cols), "masked row (isa \(fa_isa()))")
                XCTAssertTrue(x[cols..<(3 * cols)].allSatisfy(\.isNaN), "NaN rows (isa \(fa_isa()), cols \(cols))")
                XCTAssertEqual(Double(x[3 * cols..<(4 * cols)].reduce(0, +)), 1, accuracy: 1e-6)
                XCTAssertFalse(x[3 * cols..<(4 * cols)].contains { $0.isNaN })
            }
        }
    }

    /// Runs the online step tile by tile over a row, then normalises: it must give softmax, with
    /// m the running max, l the normaliser, and corr the factor rescaling the earlier tiles.
    func testOnlineTileAgainstDefinition() {
        forEachKernelISA {
            for (cols, tile) in [(37, 16), (50, 7), (64, 64), (33, 17), (5, 1)] {
                let rows = 3
                var x = logits(rows * cols, seed: UInt64(cols + tile))
                // Row 0 starts masked (its whole first tile where tile ≤ cols/2), row 2 has a −inf inside.
                for j in 0..<min(tile, cols / 2) { x[j] = -.infinity }
                x[2 * cols + cols / 3] = -.infinity
                var m = [Float](repeating: -.infinity, count: rows), l = [Float](repeating: 0, count: rows)
                var corr = [Float](repeating: 0, count: rows)
                var p = x
                var acc = [Double](repeating: 0, count: rows * cols)   // Σ p·(one-hot) rescaled = softmax numerators
                for start in stride(from: 0, to: cols, by: tile) {
                    let w = min(tile, cols - start)
                    var t = [Float](repeating: 0, count: rows * w)
                    for r in 0..<rows { for j in 0..<w { t[r * w + j] = x[r * cols + start + j] } }
                    let mBefore = m
                    fa_online_softmax_tile(&t, rows, w, w, &m, &l, &corr)
                    for r in 0..<rows {
                        let tmax = (0..<w).map { x[r * cols + start + $0] }.max()!
                        XCTAssertEqual(m[r], max(mBefore[r], tmax))
                        if m[r] == -.infinity { XCTAssertEqual(corr[r], 1); XCTAssertEqual(l[r], 0) }
                        else if mBefore[r] == -.infinity { XCTAssertEqual(corr[r], 0) }
                        else { XCTAssertEqual(Double(corr[r]), Foundation.exp(Double(mBefore[r]) - Double(m[r])), accuracy: 1e-6) }
                        for j in 0..<start { acc[r * cols + j] *= Double(corr[r]) }
                        for j in 0..<w { acc[r * cols + start + j] = Double(t[r * w + j]); p[r * cols + start + j] = t[r * w + j] }
                    }
                }
                for r in 0..<rows {
                    let row = (0..<cols).map { Double(x[r * cols + $0]) }
                    let mx = row.max()!, z = row.map { Foundation.exp($0 - mx) }.reduce(0, +)
                    XCTAssertEqual(Double(m[r]), mx)
                    XCTAssertEqual(Double(l[r]) * Foundation.exp(Double(m[r]) - mx), z, accuracy: z * 1e-6)
                    for j in 0..<cols {
                        XCTAssertEqual(acc[r * cols + j] / Double(l[r]), Foundation.exp(row[j] - mx) / z, accuracy: 1e-6,
                                       "cols \(cols) tile \(tile) [\(r),\(j)] (isa \(fa_isa()))")
                    }
                }
            }
        }
    }

    func testOnlineTileMaskedAndNaN() {
        forEachKernelISA {
            for cols in [4, 16, 19] {
                // Row 0 all −inf: zeros, corr 1, m and l untouched. Row 1 all −inf but a NaN (nothing
                // seen yet): NaN reaches l. Row 2 finite with a NaN after a finite history: l is NaN.
                var t = [Float](repeating: -.infinity, count: 3 * cols)
                t[cols + 1] = .nan
                for j in 0..<cols { t[2 * cols + j] = Float(j) * 0.1 }
                t[2 * cols + cols - 1] = .nan
                var m: [Float] = [-.infinity, -.infinity, 0.5], l: [Float] = [0, 0, 2], corr = [Float](repeating: 9, count: 3)
                fa_online_softmax_tile(&t, 3, cols, cols, &m, &l, &corr)
                XCTAssertEqual(Array(t[0..<cols]), [Float](repeating: 0, count: cols))
                XCTAssertEqual(corr[0], 1); XCTAssertEqual(m[0], -.infinity); XCTAssertEqual(l[0], 0)
                XCTAssertTrue(l[1].isNaN, "masked row with a NaN (isa \(fa_isa()), cols \(cols))")
                XCTAssertTrue(l[2].isNaN, "NaN in a live row (isa \(fa_isa()), cols \(cols))")
                XCTAssertTrue(t[2 * cols + cols - 1].isNaN)
            }
        }
    }
}
