@testable import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// gmat against Tools/reference/gmat.py (written from the paper on HF BertLayers) through the
/// committed fixtures: windowed (L = 13, r = 2, 3 heads), full (radius ≥ L − 1) and a window
/// wider than half the sequence over 3 layers; every weight random.
final class GMATTests: XCTestCase {
    static let cases = ["gmat", "gmat-full", "gmat-wide"]

    func testParityWithReference() throws {
        try assertParity(Self.cases)
    }

    func testMapMatchesReference() throws {
        try assertMapsMatch(Self.cases, kind: .perQuery)
    }

    /// The paper's pattern: with one layer a token sees only its window (the memory keys are
    /// still the learned slots); from two layers on, a far token reaches it through the memory.
    func testWindowAndMemoryReach() throws {
        let x = randomTensor([1, 20, 8], seed: 11)
        var far = x.scalars
        for c in 0..<8 { far[19 * 8 + c] += 1 }                 // token 19, far from token 2 (r = 3)
        let xf = Tensor(shape: x.shape, scalars: far)
        let one = try Registry.make(id: "gmat", settings: ["num_attention_heads": "2", "num_memory": "3", "local_radius": "3",
                                                           "num_hidden_layers": "1"], inputShape: x.shape, seed: 3)
        let (a, b) = (try one(x).scalars, try one(xf).scalars)
        for c in 0..<8 { XCTAssertEqual(a[2 * 8 + c], b[2 * 8 + c]) }
        let two = try Registry.make(id: "gmat", settings: ["num_attention_heads": "2", "num_memory": "3", "local_radius": "3",
                                                           "num_hidden_layers": "2"], inputShape: x.shape, seed: 3)
        let (a2, b2) = (try two(x).scalars, try two(xf).scalars)
        let moved: [Float] = (0..<8).map { (c: Int) -> Float in abs(a2[2 * 8 + c] - b2[2 * 8 + c]) }
        XCTAssertGreaterThan(moved.max()!, 1e-6)
        // The map says the same: one layer, no reach; two layers, every token reached.
        let m1 = try one.attentionMap(x, query: MapQuery(row: 0, column: 2)).values.scalars
        XCTAssertEqual(Array(m1[0..<20]), Array(m1[20..<40]))
        XCTAssertEqual(m1[10], 0)
        let m2 = try two.attentionMap(x, query: MapQuery(row: 0, column: 2)).values.scalars
        XCTAssertEqual(m2[10], 0)
        XCTAssertGreaterThan(m2[20 + 10], 0)
        // The composed row adds the memory's share, minus what the memory kept on its learned
        // slots (reach⁰ = 0): more than the direct row, at most 1.
        let (direct, composed) = (m2[0..<20].reduce(0, +), m2[20..<40].reduce(0, +))
        XCTAssertGreaterThan(composed, direct)
        XCTAssertLessThanOrEqual(composed, 1 + 1e-5)
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("gmat")
        var sd = f.stateDict
        sd.tensors["layer.1.attention.self.key.bias"] = nil
        sd.tensors["layer.2.output.dense.bias"] = Tensor(zeros: [12])
        sd.tensors["memory"] = Tensor(zeros: [4, 12])
        XCTAssertThrowsError(try Registry.make(id: f.module, settings: f.settings, inputShape: f.input.shape, weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: layer.1.attention.self.key.bias"), text)
            XCTAssertTrue(text.contains("unexpected keys: layer.2.output.dense.bias"), text)
            XCTAssertTrue(text.contains("size mismatch for memory: checkpoint has 4×12, module expects 3×12"), text)
        }
    }

    func testBadInputsAndConfigsAreClearErrors() throws {
        let m = try Registry.make(id: "gmat", inputShape: [1, 5, 8])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 5, 6]))) { e in
            XCTAssertEqual(String(describing: e), "gmat: expected input N×L×8, found 1×5×6")
        }
        XCTAssertThrowsError(try m(Tensor(zeros: [5, 8])))
        XCTAssertThrowsError(try Registry.make(id: "gmat", settings: ["num_attention_heads": "3"], inputShape: [1, 5, 8])) { e in
            XCTAssertTrue(String(describing: e).contains("hidden_size=8 must be divisible by num_attention_heads=3"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "gmat", settings: ["local_radius": "-1"], inputShape: [1, 5, 8]))
        XCTAssertThrowsError(try Registry.make(id: "gmat", settings: ["hidden_act": "swish"], inputShape: [1, 5, 8]))
        XCTAssertThrowsError(try Registry.make(id: "gmat", settings: ["num_memories": "2"], inputShape: [1, 5, 8]))
        XCTAssertThrowsError(try m.attentionMap(randomTensor([1, 5, 8]), query: MapQuery(row: 0, column: 5)))
        let onMap = try Registry.make(id: "gmat", inputShape: [1, 12, 8])
        XCTAssertEqual(try onMap.apply(randomTensor([1, 8, 3, 4])).shape, [1, 8, 3, 4])
    }
}
