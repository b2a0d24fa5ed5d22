import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// jukebox against openai/jukebox FactoredAttention (Tools/reference/jukebox.py): row, column,
/// previous row, unmasked row and dense, with Conv1D (in, out) weights.
final class JukeboxFactoredAttentionTests: XCTestCase {
    static let cases = ["jukebox", "jukebox-column", "jukebox-prev-row", "jukebox-row-unmasked", "jukebox-dense"]

    func testParityWithOpenAIJukebox() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            assertClose(try m(f.input), f.output, rtol: 1e-4, name)
            let map = try m.attentionMap(f.input, query: f.mapQuery!)
            assertClose(map.values, f.map!, rtol: 1e-4, name + " map")
        }
    }

    func testFactorsMatchTheirDefinitions() throws {
        // Supports at position 45 with block_ctx 8 (seq-b.md's gradient check), over 6 rows: blocks ≠ block_ctx,
        // so a port that swapped rows and columns (stride 6) would fail.
        let expected: [Int: [Int]] = [1: Array(40...45), 2: [5, 13, 21, 29, 37, 45], 3: Array(32...39), 0: Array(0...45)]
        for (f, keys) in expected {
            let m = try Registry.make(id: "jukebox", settings: ["attn_func": "\(f)", "blocks": "6"], inputShape: [1, 48, 8])
            let lay = try (m as! JukeboxFactoredAttention).layouts(length: 48)[0][0]
            XCTAssertEqual(lay.support(ofQuery: 45).sorted(), keys, "attn_func \(f)")
            XCTAssertTrue(lay.causal, "attn_func \(f)")
        }
    }

    func testCausalOutputsIgnoreTheFuture() throws {
        for f in 0...3 {
            var x = randomTensor([1, 48, 8], seed: 6)
            let m = try Registry.make(id: "jukebox", settings: ["attn_func": "\(f)", "blocks": "6"], inputShape: x.shape, seed: 2)
            let y0 = try m(x)
            x.withUnsafeMutableBufferPointer { p in for i in (30 * 8)..<(48 * 8) { p[i] = 3 } }
            let y1 = try m(x)
            XCTAssertEqual(Array(y0.scalars[0..<(30 * 8)]), Array(y1.scalars[0..<(30 * 8)]), "attn_func \(f)")
        }
    }

    func testStrictLoadingAndBadInputs() throws {
        let f = try Fixture.load("jukebox")
        var sd = f.stateDict
        sd.tensors["c_proj.b"] = nil
        sd.tensors["c_attn.weight"] = Tensor(zeros: [1])
        XCTAssertThrowsError(try Registry.make(id: "jukebox", settings: f.settings, inputShape: f.input.shape, weights: sd)) { e in
            let text = String(describing: e)
            XCTAssertTrue(text.contains("missing keys: c_proj.b"), text)
            XCTAssertTrue(text.contains("unexpected keys: c_attn.weight"), text)
        }
        let m = try f.makeModule()
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 41, 12]))) { e in
            XCTAssertEqual(String(describing: e), "jukebox: expected input N×L×12 (L a multiple of 8), found 1×41×12")
        }
        XCTAssertThrowsError(try Registry.make(id: "jukebox", settings: ["blocks": "7"], inputShape: [1, 40, 8]))
        XCTAssertThrowsError(try Registry.make(id: "jukebox", settings: ["attn_func": "4"], inputShape: [1, 40, 8]))
        XCTAssertThrowsError(try Registry.make(id: "jukebox", settings: ["n_head": "3"], inputShape: [1, 40, 8]))
    }
}
