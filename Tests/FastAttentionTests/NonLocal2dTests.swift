import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// non-local against mmcv's NonLocal2d through the committed fixtures
/// (Tools/reference/non_local.py: every weight and BN statistic random, H ≠ W).
final class NonLocal2dTests: XCTestCase {
    static let cases = ["non-local", "non-local-bn-subsample", "non-local-dot-product", "non-local-gaussian",
                        "non-local-concatenation"]

    func testParityWithMMCV() throws {
        try assertParity(Self.cases)
    }

    func testMapMatchesReferenceRow() throws {
        try assertMapsMatch(Self.cases, kind: .perQuery)
    }

    func testSoftmaxMapRowSumsToOne() throws {
        let x = randomTensor([1, 8, 5, 6], seed: 3)
        let m = try Registry.make(id: "non-local", inputShape: x.shape, seed: 2)
        let map = try m.attentionMap(x, query: MapQuery(row: 4, column: 0))
        XCTAssertEqual(map.values.shape, [1, 5, 6])
        XCTAssertEqual(map.values.scalars.reduce(0, +), 1, accuracy: 1e-5)
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("non-local")
        var sd = f.stateDict
        sd.tensors["theta.conv.weight"] = nil
        sd.tensors["extra.weight"] = Tensor(zeros: [1])
        sd.tensors["g.conv.bias"] = Tensor(zeros: [3])
        XCTAssertThrowsError(try Registry.make(id: "non-local", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: theta.conv.weight"), text)
            XCTAssertTrue(text.contains("unexpected keys: extra.weight"), text)
            XCTAssertTrue(text.contains("size mismatch for g.conv.bias: checkpoint has 3, module expects 16"), text)
        }
    }

    func testWrongChannelsAndRankAreClearErrors() throws {
        let m = try Registry.make(id: "non-local", inputShape: [1, 8, 4, 4])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 6, 4, 4]))) { e in
            XCTAssertEqual(String(describing: e), "non-local: expected input N×8×H×W, found 1×6×4×4")
        }
        XCTAssertThrowsError(try m(Tensor(zeros: [8, 4, 4])))
        XCTAssertThrowsError(try Registry.make(id: "non-local", settings: ["in_channels": "16"], inputShape: [1, 8, 4, 4])) { e in
            XCTAssertTrue(String(describing: e).contains("in_channels=16 but the input has 8 channels"))
        }
        XCTAssertThrowsError(try Registry.make(id: "non-local", settings: ["reductio": "2"], inputShape: [1, 8, 4, 4])) { e in
            XCTAssertTrue(String(describing: e).contains("unknown config key 'reductio'"))
        }
        XCTAssertThrowsError(try Registry.make(id: "non-local", settings: ["mode": "cosine"], inputShape: [1, 8, 4, 4]))
        XCTAssertThrowsError(try Registry.make(id: "non-local", settings: ["reduction": "0"], inputShape: [1, 8, 4, 4]))
    }

    func testSimilarityInitialisationGivesSymmetricLogits() throws {
        // Seeded, φ = θ, so logits s·θᵢ·θⱼ are symmetric and the weights satisfy Kolmogorov's
        // cycle criterion: w(i→j)·w(j→k)·w(k→i) = w(i→k)·w(k→j)·w(j→i).
        let x = randomTensor([1, 6, 4, 5], seed: 8)
        let m = try Registry.make(id: "non-local", inputShape: x.shape, seed: 5)
        let pos = [(0, 0), (2, 3), (3, 1)]
        let rows = try pos.map { try m.attentionMap(x, query: MapQuery(row: $0.0, column: $0.1)).values.scalars }
        let idx = pos.map { $0.0 * 5 + $0.1 }
        let forward = Double(rows[0][idx[1]]) * Double(rows[1][idx[2]]) * Double(rows[2][idx[0]])
        let backward = Double(rows[0][idx[2]]) * Double(rows[2][idx[1]]) * Double(rows[1][idx[0]])
        XCTAssertEqual(forward / backward, 1, accuracy: 1e-4)
    }
}
