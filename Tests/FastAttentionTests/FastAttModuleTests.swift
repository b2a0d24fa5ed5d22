import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// fast-attention against FANet's FastAttModule (with the paper's 1/n restored by a hook on
/// latlayer3's input) through the committed fixtures (Tools/reference/fast_attention.py: every
/// conv weight and the unused BN entries random, H ≠ W).
final class FastAttModuleTests: XCTestCase {
    static let cases = ["fast-attention", "fast-attention-wide"]

    func testParityWithReference() throws {
        try assertParity(Self.cases)
    }

    func testMapMatchesReferenceRow() throws {
        try assertMapsMatch(Self.cases, kind: .perQuery)
    }

    func testMapIsCosineOverN() throws {
        // Similarity initialisation: w_ks = w_qs, so the query's own weight is cos = 1, over n,
        // and every weight lies in [−1/n, 1/n].
        let x = randomTensor([1, 8, 5, 6], seed: 7)
        let m = try Registry.make(id: "fast-attention", inputShape: x.shape, seed: 2)
        let map = try m.attentionMap(x, query: MapQuery(row: 2, column: 4))
        let n = Float(30)
        XCTAssertEqual(map.values.scalars[2 * 6 + 4], 1 / n, accuracy: 1e-6)
        XCTAssertTrue(map.values.scalars.allSatisfy { abs($0) <= 1 / n + 1e-6 })
        XCTAssertEqual(try m(x).shape, [1, 128, 5, 6])
    }

    func testUnusedNormsDoNotChangeTheOutput() throws {
        // fanet.py's BatchNorm2d applies only the activation: its state is dead weight.
        let f = try Fixture.load("fast-attention")
        var sd = f.stateDict
        for k in sd.tensors.keys where k.contains(".bn.running_var") { sd.tensors[k] = Tensor(shape: sd.tensors[k]!.shape, repeating: 9) }
        let m = try Registry.make(id: "fast-attention", settings: f.settings, inputShape: f.input.shape, weights: sd)
        assertClose(try m(f.input), f.output, rtol: 1e-4)
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("fast-attention")
        XCTAssertEqual(f.stateDict.tensors.count, 36)
        var sd = f.stateDict
        sd.tensors["up.bn.running_mean"] = nil
        sd.tensors["w_qs.conv.bias"] = Tensor(zeros: [32])
        sd.tensors["smooth.conv.weight"] = Tensor(zeros: [5, 12, 1, 1])
        XCTAssertThrowsError(try Registry.make(id: "fast-attention", settings: f.settings,
                                               inputShape: f.input.shape, weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: up.bn.running_mean"), text)
            XCTAssertTrue(text.contains("unexpected keys: w_qs.conv.bias"), text)
            XCTAssertTrue(text.contains("smooth.conv.weight"), text)
        }
    }

    func testBadInputsAndConfigsAreClearErrors() throws {
        let m = try Registry.make(id: "fast-attention", settings: ["out_chan": "4", "mid_chn": "256"], inputShape: [1, 8, 4, 5])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 6, 4, 4]))) { e in
            XCTAssertEqual(String(describing: e), "fast-attention: expected input N×8×H×W, found 1×6×4×4")
        }
        XCTAssertThrowsError(try m.attentionMap(Tensor(zeros: [1, 8, 4, 5]), query: MapQuery(row: 4, column: 0)))
        XCTAssertThrowsError(try Registry.make(id: "fast-attention", settings: ["out_channels": "4"], inputShape: [1, 8, 4, 4]))
        XCTAssertThrowsError(try Registry.make(id: "fast-attention", inputShape: [1, 1, 4, 4]))
        XCTAssertThrowsError(try Registry.make(id: "fast-attention", settings: ["in_chan": "16"], inputShape: [1, 8, 4, 4]))
    }
}
