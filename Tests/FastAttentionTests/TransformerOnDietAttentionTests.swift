import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// transformer-on-a-diet against the PyTorch masked-dense port of the repository's masks
/// (Tools/reference/transformer_on_diet.py), and the rows the repository documents.
final class TransformerOnDietAttentionTests: XCTestCase {
    static let cases = ["transformer-on-a-diet", "transformer-on-a-diet-mem", "transformer-on-a-diet-cascade",
                        "transformer-on-a-diet-d3"]

    func testParityWithMaskedDenseReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            assertClose(try m(f.input), f.output, rtol: 1e-4, name)
            let map = try m.attentionMap(f.input, query: f.mapQuery!)
            assertClose(map.values, f.map!, rtol: 1e-4, name + " map")
        }
    }

    func testRowsAsTheRepositoryComputesThem() throws {
        // L = 16, row 15 (seq-a.md §10, from running the mask functions).
        let expect: [(String, Int, [Int])] = [("dilated", 0, [13, 14, 15]), ("dilated", 1, [11, 13, 15]),
                                              ("dilated", 2, [7, 11, 15]), ("dilated_mem", 2, [7, 11, 13, 14, 15])]
        for (model, layer, keys) in expect {
            let m = try Registry.make(id: "transformer-on-a-diet", settings: ["model": model, "layer": "\(layer)"],
                                      inputShape: [1, 16, 8]) as! TransformerOnDietAttention
            let lay = try m.layouts(length: 16)[0][0]
            XCTAssertEqual(lay.support(ofQuery: 15).sorted(), keys, "\(model) \(layer)")
            XCTAssertTrue(lay.causal)
        }
        let c = try Registry.make(id: "transformer-on-a-diet", settings: ["model": "cascade", "window_size": "4", "layer": "1"],
                                  inputShape: [1, 16, 8]) as! TransformerOnDietAttention
        XCTAssertEqual(try c.layouts(length: 16)[0][0].support(ofQuery: 15).sorted(), Array(8...15))
    }

    func testCausalAndBadInputs() throws {
        var x = randomTensor([1, 40, 8], seed: 1)
        let m = try Registry.make(id: "transformer-on-a-diet", settings: ["model": "dilated_mem", "layer": "3"],
                                  inputShape: x.shape, seed: 4)
        let y0 = try m(x)
        x.withUnsafeMutableBufferPointer { p in for i in (25 * 8)..<(40 * 8) { p[i] = 5 } }
        XCTAssertEqual(Array(y0.scalars[0..<(25 * 8)]), Array(try m(x).scalars[0..<(25 * 8)]))
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 40, 6]))) { e in
            XCTAssertEqual(String(describing: e), "transformer-on-a-diet: expected input N×L×8, found 1×40×6")
        }
        let f = try Fixture.load("transformer-on-a-diet")
        var sd = f.stateDict
        sd.tensors["proj.weight"] = nil
        XCTAssertThrowsError(try Registry.make(id: "transformer-on-a-diet", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { e in
            XCTAssertTrue(String(describing: e).contains("missing keys: proj.weight"), String(describing: e))
        }
        XCTAssertThrowsError(try Registry.make(id: "transformer-on-a-diet", settings: ["model": "sparse"], inputShape: [1, 8, 8]))
    }

    /// The repository's encoder cell has no projection biases (`_get_attention_cell(use_bias=False)`):
    /// a default module loads a bias-free checkpoint and has no bias to load; use_bias=true asks for them.
    func testDefaultProjectionsHaveNoBias() throws {
        let f = try Fixture.load("transformer-on-a-diet")
        XCTAssertNil(f.settings["use_bias"])
        XCTAssertFalse(f.stateDict.tensors.keys.contains { $0.hasSuffix(".bias") })
        XCTAssertNoThrow(try Registry.make(id: "transformer-on-a-diet", settings: f.settings, inputShape: f.input.shape,
                                           weights: f.stateDict))
        var withBias = f.settings
        withBias["use_bias"] = "true"
        XCTAssertThrowsError(try Registry.make(id: "transformer-on-a-diet", settings: withBias, inputShape: f.input.shape,
                                               weights: f.stateDict)) { e in
            XCTAssertTrue(String(describing: e).contains("missing keys: attention_cell.proj_query.bias"), String(describing: e))
        }
    }
}
