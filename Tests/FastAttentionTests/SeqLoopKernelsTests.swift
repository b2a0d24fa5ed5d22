import CKernels
import Foundation
import TestSupport
import XCTest

/// CKernels/seqloops.c's vector sigmoid and tanh (used by SAC's LSTM) against libm in double, on
/// every instruction-set path this CPU has.
final class SeqLoopKernelsTests: XCTestCase {
    func check(_ f: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void, _ reference: (Double) -> Double, _ name: String) {
        var xs: [Float] = stride(from: -30, through: 30, by: 0.00731).map { Float($0) }
        xs += [0, -0, 1e-30, -1e-30, 1e-8, -3e-6, 0.6249999, 0.625, -0.625, 0.6250001, 9, -9, 40, -40, 87, -87, 88.5, -88.5, 200, -200,
               .infinity, -.infinity, .leastNormalMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude]
        var y = [Float](repeating: 0, count: xs.count)
        // Every length up to 11 exercises the padded tail; then the whole sweep at once.
        for count in [1, 3, 7, 8, 9, 11, xs.count] {
            xs.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { f(xp.baseAddress!, $0.baseAddress!, count) } }
            for i in 0..<count {
                let r = reference(Double(xs[i])), v = Double(y[i])
                XCTAssertLessThanOrEqual(abs(v - r), max(abs(r) * 4e-7, 1e-38), "\(name)(\(xs[i])) = \(v), expected \(r)")
            }
        }
        var nan: [Float] = [.nan, 1, .nan]
        nan.withUnsafeMutableBufferPointer { f(UnsafePointer($0.baseAddress!), $0.baseAddress!, 3) }
        XCTAssertTrue(nan[0].isNaN && nan[2].isNaN && !nan[1].isNaN, name)
    }

    func testSigmoid() {
        forEachKernelISA { check({ fa_sigmoid($0, $1, $2) }, { 1 / (1 + Foundation.exp(-$0)) }, "sigmoid") }
    }

    func testTanh() {
        forEachKernelISA { check({ fa_tanh($0, $1, $2) }, { Foundation.tanh($0) }, "tanh") }
    }
}
