import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// criss-cross against mmcv's CrissCrossAttention through the committed fixtures
/// (Tools/reference/criss_cross.py: every weight random, gamma.scale 0-dim, H ≠ W, recurrence 1 and 2).
final class CrissCrossAttentionTests: XCTestCase {
    static let cases = ["criss-cross", "criss-cross-recurrence2"]

    func testParityWithMMCV() throws {
        try assertParity(Self.cases)
    }

    func testMapsMatchReferenceAttention() throws {
        try assertMapsMatch(Self.cases, kind: .perQuery) { f, map in XCTAssertEqual(map.labels.count, f.map!.shape[0]) }
    }

    func testCrossSupportAndTwoHopsReachEveryPixel() throws {
        let x = randomTensor([1, 16, 5, 7], seed: 3)
        let m = try Registry.make(id: "criss-cross", settings: ["recurrence": "2"], inputShape: x.shape, seed: 2)
        let (qr, qc) = (3, 1)
        let map = try m.attentionMap(x, query: MapQuery(row: qr, column: qc))
        XCTAssertEqual(map.values.shape, [2, 5, 7])
        XCTAssertEqual(map.labels, ["1 hop (row + column)", "2 hops"])
        let v = map.values.scalars
        for r in 0..<5 {
            for c in 0..<7 {
                let one = v[r * 7 + c], two = v[35 + r * 7 + c]
                if r != qr && c != qc { XCTAssertEqual(one, 0, "1 hop off the cross at \(r),\(c)") }
                else { XCTAssertGreaterThan(one, 0) }
                XCTAssertGreaterThan(two, 0, "2 hops reach \(r),\(c)")
            }
        }
        XCTAssertEqual(v[0..<35].reduce(0, +), 1, accuracy: 1e-5)
        XCTAssertEqual(v[35...].reduce(0, +), 1, accuracy: 1e-5)
    }

    func testRecurrenceAppliesTheSameModuleAgain() throws {
        let x = randomTensor([2, 16, 4, 6], seed: 5)
        let one = try Registry.make(id: "criss-cross", inputShape: x.shape, seed: 7)
        let two = try Registry.make(id: "criss-cross", settings: ["recurrence": "2"], inputShape: x.shape, seed: 7)
        assertClose(try two(x), try one(try one(x)), rtol: 1e-6)
    }

    func testBranchKernelsAgainstNaiveLoops() throws {
        // The per-column / per-row GEMM kernel against a direct sum over every pixel's 1-hop
        // map: y = γ·Σⱼ A[p, j]·v[j] + x[p], with the fixture's weights (γ random).
        let f = try Fixture.load("criss-cross")
        let m = try f.makeModule()
        let x = f.input.batch(0)
        let y = try m(x)
        let (c, h, w) = (32, 6, 7), l = h * w
        let sd = f.stateDict.tensors
        let wv = sd["value_conv.weight"]!.scalars, bv = sd["value_conv.bias"]!.scalars
        let gamma = sd["gamma.scale"]!.scalars[0], xs = x.scalars
        var v = [Float](repeating: 0, count: c * l)              // C, L
        for o in 0..<c {
            for j in 0..<l {
                var s = bv[o]
                for i in 0..<c { s += wv[o * c + i] * xs[i * l + j] }
                v[o * l + j] = s
            }
        }
        var expected = x
        for r in 0..<h {
            for col in 0..<w {
                let a = try m.attentionMap(x, query: MapQuery(row: r, column: col)).values.scalars
                XCTAssertEqual(a[r * w + col] > 0, true)
                for ch in 0..<c {
                    var s: Float = 0
                    for j in 0..<l { s += a[j] * v[ch * l + j] }
                    expected[0, ch, r, col] = gamma * s + xs[ch * l + r * w + col]
                }
            }
        }
        XCTAssertEqual(try Registry.parameterRecords(id: "criss-cross", inputShape: x.shape).map(\.key),
                       ["query_conv.weight", "query_conv.bias", "key_conv.weight", "key_conv.bias",
                        "value_conv.weight", "value_conv.bias", "gamma.scale"])
        assertClose(y, expected, rtol: 1e-5)
    }

    func testStrictLoadingAndZeroDimGamma() throws {
        let f = try Fixture.load("criss-cross")
        var sd = f.stateDict
        XCTAssertEqual(sd.tensors["gamma.scale"]?.shape, [])
        sd.tensors["gamma"] = sd.tensors["gamma.scale"].map { $0.reshaped([1]) }   // the authors' name and shape
        sd.tensors["gamma.scale"] = nil
        sd.tensors["key_conv.bias"] = Tensor(zeros: [5])
        XCTAssertThrowsError(try Registry.make(id: "criss-cross", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: gamma.scale"), text)
            XCTAssertTrue(text.contains("unexpected keys: gamma"), text)
            XCTAssertTrue(text.contains("size mismatch for key_conv.bias"), text)
        }
        var scalar = f.stateDict
        scalar.tensors["gamma.scale"] = Tensor(zeros: [1])
        XCTAssertThrowsError(try Registry.make(id: "criss-cross", settings: f.settings, inputShape: f.input.shape,
                                               weights: scalar))
    }

    func testInputAndConfigErrors() throws {
        XCTAssertThrowsError(try Registry.make(id: "criss-cross", inputShape: [1, 4, 5, 5])) { e in
            XCTAssertTrue(String(describing: e).contains("at least 8 channels"), String(describing: e))
        }
        XCTAssertThrowsError(try Registry.make(id: "criss-cross", settings: ["recurrence": "0"], inputShape: [1, 8, 5, 5]))
        XCTAssertThrowsError(try Registry.make(id: "criss-cross", settings: ["in_dim": "8"], inputShape: [1, 8, 5, 5]))
        let m = try Registry.make(id: "criss-cross", inputShape: [1, 8, 5, 5])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 16, 5, 5]))) { e in
            XCTAssertEqual(String(describing: e), "criss-cross: expected input N×8×H×W, found 1×16×5×5")
        }
        XCTAssertThrowsError(try m.attentionMap(Tensor(zeros: [1, 8, 5, 5]), query: MapQuery(row: 5, column: 0)))
    }
}
