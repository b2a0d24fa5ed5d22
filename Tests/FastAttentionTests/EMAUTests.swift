import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// em-attention against EMANet's EMAU in eval mode through the committed fixtures
/// (Tools/reference/em_attention.py: every parameter, BN statistic and the bases buffer random,
/// H ≠ W; the map is the z EMAU's own softmax produced in its last stage).
final class EMAUTests: XCTestCase {
    static let cases = ["em-attention", "em-attention-1stage"]

    func testParityWithReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try XCTUnwrap(try f.makeModule() as? EMAU)
            let (y, mu) = try m.withBases(f.input)
            assertClose(y, f.output, rtol: 1e-4, name)
            assertClose(mu, f.file.tensors["mu_out"]!, rtol: 1e-4, name + " mu")
            print("\(name): max relative error \(maxRelativeError(y, f.output)), mu \(maxRelativeError(mu, f.file.tensors["mu_out"]!))")
            assertClose(try m(f.input), f.output, rtol: 1e-4, name)
        }
    }

    func testMapIsTheLastResponsibilities() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let map = try m.attentionMap(f.input, query: MapQuery(row: 0, column: 0))
            XCTAssertEqual(map.kind, .bases)
            XCTAssertEqual(map.labels.first, "base 0")
            XCTAssertEqual(map.labels.count, f.map!.shape[0])
            assertClose(map.values, f.map!, rtol: 1e-4, name)
            // Responsibilities sum to 1 over the bases at every pixel.
            let (k, hw) = (map.values.shape[0], map.values.shape[1] * map.values.shape[2])
            let v = map.values.scalars
            for i in 0..<hw {
                XCTAssertEqual((0..<k).map { v[$0 * hw + i] }.reduce(0, +), 1, accuracy: 1e-5)
            }
        }
    }

    func testEvalLeavesTheBasesAlone() throws {
        // Eval is a pure function of the stored mu: two calls agree, and a different mu changes it.
        let f = try Fixture.load("em-attention")
        let m = try f.makeModule()
        let a = try m(f.input), b = try m(f.input)
        XCTAssertEqual(a.scalars, b.scalars)
        var sd = f.stateDict
        sd.tensors["mu"] = sd.tensors["mu"]! * 2
        let m2 = try Registry.make(id: "em-attention", settings: f.settings, inputShape: f.input.shape, weights: sd)
        XCTAssertGreaterThan(maxRelativeError(try m2(f.input), f.output), 1e-3)
    }

    func testSeededKeysFollowTheReferenceOrder() throws {
        let records = try Registry.parameterRecords(id: "em-attention", inputShape: [1, 6, 4, 4])
        XCTAssertEqual(records.map(\.key), ["mu", "conv1.weight", "conv1.bias", "conv2.0.weight", "conv2.1.weight",
                                            "conv2.1.bias", "conv2.1.running_mean", "conv2.1.running_var"])
        XCTAssertEqual(records.first?.shape, [1, 6, 8])
        let x = randomTensor([1, 6, 4, 5], seed: 2)
        let m = try Registry.make(id: "em-attention", settings: ["k": "4"], inputShape: x.shape, seed: 1)
        let map = try m.attentionMap(x, query: MapQuery(row: 0, column: 0))
        XCTAssertEqual(map.values.shape, [4, 4, 5])
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("em-attention")
        var sd = f.stateDict
        sd.tensors["mu"] = nil
        sd.tensors["bases"] = Tensor(zeros: [1, 12, 5])
        sd.tensors["conv2.0.weight"] = Tensor(zeros: [12, 12])
        XCTAssertThrowsError(try Registry.make(id: "em-attention", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: mu"), text)
            XCTAssertTrue(text.contains("unexpected keys: bases"), text)
            XCTAssertTrue(text.contains("conv2.0.weight"), text)
        }
    }

    func testBadInputsAndConfigsAreClearErrors() throws {
        let m = try Registry.make(id: "em-attention", inputShape: [1, 8, 4, 5])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 6, 4, 4]))) { e in
            XCTAssertEqual(String(describing: e), "em-attention: expected input N×8×H×W, found 1×6×4×4")
        }
        XCTAssertThrowsError(try Registry.make(id: "em-attention", settings: ["stage_num": "0"], inputShape: [1, 8, 4, 4]))
        XCTAssertThrowsError(try Registry.make(id: "em-attention", settings: ["K": "4"], inputShape: [1, 8, 4, 4]))
        XCTAssertThrowsError(try Registry.make(id: "em-attention", settings: ["c": "4"], inputShape: [1, 8, 4, 4]))
    }
}
