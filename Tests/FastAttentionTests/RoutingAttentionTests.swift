import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// routing against pip routing-transformer 1.6.1 SelfAttention (routed heads only) through the
/// committed fixtures (Tools/reference/routing.py: random weights, mem kv and k-means means with
/// `initted` true; non-causal with zero-size mem, causal with 2 mem kv and dim_head ≠ dim/heads,
/// shared_qk).
final class RoutingAttentionTests: XCTestCase {
    static let cases = ["routing", "routing-causal", "routing-shared"]

    func testParityWithReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let y = try m(f.input)
            print("\(name): max relative error \(maxRelativeError(y, f.output))")
            assertClose(y, f.output, rtol: 1e-4, name)
            guard let expected = f.map, let q = f.mapQuery else { return XCTFail("\(name) has no map") }
            assertClose(try m.attentionMap(f.input, query: q).values, expected, rtol: 1e-4, name + " map")
        }
    }

    func testStateDictKeysIncludeBoolAndZeroSizeBuffers() throws {
        let f = try Fixture.load("routing")
        XCTAssertEqual(f.stateDict.tensors["global_attn.mem_key"]?.shape, [3, 5, 0, 8])
        var sd = f.stateDict
        sd.tensors["global_attn.kmeans.initted"] = nil
        sd.tensors["global_attn.local"] = Tensor(zeros: [1])
        sd.tensors["global_attn.kmeans.means"] = Tensor(zeros: [3, 4, 8])
        XCTAssertThrowsError(try Registry.make(id: "routing", settings: f.settings, inputShape: f.input.shape, weights: sd)) { e in
            let text = String(describing: e)
            XCTAssertTrue(text.contains("missing keys: global_attn.kmeans.initted"), text)
            XCTAssertTrue(text.contains("unexpected keys: global_attn.local"), text)
            XCTAssertTrue(text.contains("size mismatch for global_attn.kmeans.means"), text)
        }
    }

    /// Causal masks positions exactly (no weight after the query); cluster membership may still
    /// change with the future (documented partial causality).
    func testCausalRowsHaveNoFutureWeight() throws {
        let f = try Fixture.load("routing-causal")
        let m = try f.makeModule()
        for i in [0, 11, 35] {
            let row = try m.attentionMap(f.input, query: MapQuery(row: 0, column: i)).values.scalars
            XCTAssertTrue(row[(i + 1)...].allSatisfy { $0 == 0 }, "query \(i) sees the future")
        }
    }

    /// Untrained (initted false): means come from the input as the reference's first call makes
    /// them; deterministic for a seed, different across seeds; default window √L.
    func testUntrainedDefaultsAndErrors() throws {
        let x = randomTensor([1, 64, 8], seed: 5)
        let s = ["heads": "2"]
        let a = try Registry.make(id: "routing", settings: s, inputShape: x.shape, seed: 1)
        let b = try Registry.make(id: "routing", settings: s, inputShape: x.shape, seed: 1)
        let c = try Registry.make(id: "routing", settings: s, inputShape: x.shape, seed: 2)
        XCTAssertEqual(a.config.int("window_size"), 8)
        XCTAssertEqual(a.config.int("max_seq_len"), 64)
        XCTAssertEqual(try a(x).scalars, try b(x).scalars)
        XCTAssertNotEqual(try a(x).scalars, try c(x).scalars)
        let row = try a.attentionMap(x, query: MapQuery(row: 0, column: 10)).values.scalars
        XCTAssertLessThanOrEqual(row.filter { $0 != 0 }.count, 64)
        XCTAssertThrowsError(try Registry.make(id: "routing", settings: ["window_size": "7"], inputShape: [1, 64, 8]))
        XCTAssertThrowsError(try Registry.make(id: "routing", settings: ["local_attn_heads": "1"], inputShape: [1, 64, 8]))
        XCTAssertThrowsError(try a(Tensor(zeros: [1, 64, 9]))) { e in
            XCTAssertEqual(String(describing: e), "routing: expected input N×L×8, found 1×64×9")
        }
    }
}
