import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// autonl against our PyTorch transliteration of the TF non_local_op math on the parameters of
/// meijieru's Nonlocal (Tools/reference/autonl.py: every parameter and BN statistic random,
/// H ≠ W, odd sizes with strides 2 and 3, a channel fraction that needs Python's int()).
final class AutoNLTests: XCTestCase {
    static let cases = ["autonl", "autonl-full", "autonl-stride3"]

    func testParityWithTFMath() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let y = try m(f.input)
            assertClose(y, f.output, rtol: 1e-4, name)
            print("\(name): max relative error \(maxRelativeError(y, f.output))")
        }
    }

    func testMapMatchesReferenceRow() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let map = try m.attentionMap(f.input, query: f.mapQuery!)
            XCTAssertEqual(map.kind, .perQuery)
            assertClose(map.values, f.map!, rtol: 1e-4, name)
        }
    }

    func testDividesByHTimesWNotByHThenTimesW() throws {
        // With an identity depthwise conv and an identity BN, y − x is f itself: check it
        // against Σ_j (x_i·x_j) x_j / (H·W) built naively (the port's (f/H)·W would be 25× off).
        let x = randomTensor([1, 4, 3, 5], seed: 9)
        var sd = StateDict()
        var dw = Tensor(zeros: [4, 1, 3, 3])
        for c in 0..<4 { dw[c, 0, 1, 1] = 1 }
        sd.tensors = ["depthwise_conv.weight": dw, "bn.weight": Tensor(shape: [4], repeating: 1),
                      "bn.bias": Tensor(zeros: [4]), "bn.running_mean": Tensor(zeros: [4]),
                      "bn.running_var": Tensor(shape: [4], repeating: 1 - 1e-5)]
        let m = try Registry.make(id: "autonl", settings: ["nl_c": "1.0", "nl_s": "1"], inputShape: x.shape, weights: sd)
        let f = try m(x) - x
        // Naive: f_i = Σ_j (x_i·x_j) x_j / 15.
        let t = x.reshaped([4, 15]).scalars
        var expected = [Float](repeating: 0, count: 60)
        for i in 0..<15 {
            for j in 0..<15 {
                var a: Float = 0
                for c in 0..<4 { a += t[c * 15 + i] * t[c * 15 + j] }
                for c in 0..<4 { expected[c * 15 + i] += a * t[c * 15 + j] / 15 }
            }
        }
        assertClose(f, Tensor(shape: [1, 4, 3, 5], scalars: expected), rtol: 1e-4)
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("autonl")
        var sd = f.stateDict
        sd.tensors["bn.running_var"] = nil
        sd.tensors["theta.weight"] = Tensor(zeros: [1])
        sd.tensors["depthwise_conv.weight"] = Tensor(zeros: [16, 16, 3, 3])
        XCTAssertThrowsError(try Registry.make(id: "autonl", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: bn.running_var"), text)
            XCTAssertTrue(text.contains("unexpected keys: theta.weight"), text)
            XCTAssertTrue(text.contains("depthwise_conv.weight"), text)
        }
    }

    func testBadInputsAndConfigsAreClearErrors() throws {
        let m = try Registry.make(id: "autonl", settings: ["nl_s": "2", "nl_c": "0.5"], inputShape: [1, 8, 5, 7])
        XCTAssertEqual(try m.attentionMap(randomTensor([1, 8, 5, 7]), query: MapQuery(row: 4, column: 6)).values.shape, [1, 3, 4])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 6, 4, 4]))) { e in
            XCTAssertEqual(String(describing: e), "autonl: expected input N×8×H×W, found 1×6×4×4")
        }
        XCTAssertThrowsError(try Registry.make(id: "autonl", settings: ["nl_c": "0.1"], inputShape: [1, 8, 4, 4])) { e in
            XCTAssertTrue(String(describing: e).contains("0 channels"), String(describing: e))
        }
        XCTAssertThrowsError(try Registry.make(id: "autonl", settings: ["nl_c": "1.5"], inputShape: [1, 8, 4, 4]))
        XCTAssertThrowsError(try Registry.make(id: "autonl", settings: ["nl_s": "0"], inputShape: [1, 8, 4, 4]))
        XCTAssertThrowsError(try Registry.make(id: "autonl", settings: ["ratio": "1"], inputShape: [1, 8, 4, 4]))
    }
}
