import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// reformer against HF transformers 5.23.0 LSHSelfAttention through the committed fixtures
/// (Tools/reference/reformer.py: random weights, HF's rotation draw injected as
/// `random_rotations`; 2 and 3 hash rounds, chunks before and after, causal with padding, and
/// L ≤ chunk length).
final class LSHSelfAttentionTests: XCTestCase {
    static let cases = ["reformer", "reformer-causal", "reformer-full", "reformer-factorised"]

    func testParityWithHuggingFace() throws {
        try assertParity(Self.cases)
    }

    func testMapMatchesReferenceRow() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            guard let expected = f.map, let q = f.mapQuery else { return XCTFail("\(name) has no map") }
            let map = try m.attentionMap(f.input, query: q)
            XCTAssertEqual(map.kind, .perQuery)
            assertClose(map.values, expected, rtol: 1e-4, name)
        }
    }

    /// Causal masking is exact on positions: a query's row has no weight after it. Bucketing sees
    /// the whole sequence (partial causality, documented), but with L ≤ chunk length there is no
    /// bucketing and perturbing the future leaves the past unchanged.
    func testCausalMasksFutureKeys() throws {
        let f = try Fixture.load("reformer-causal")
        let m = try f.makeModule()
        for i in [3, 20, 36] {
            let row = try m.attentionMap(f.input, query: MapQuery(row: 0, column: i)).values.scalars
            XCTAssertTrue(row[(i + 1)...].allSatisfy { $0 == 0 }, "query \(i) sees the future")
            XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-5)
        }
        let full = try Fixture.load("reformer-full")
        let mf = try full.makeModule()
        var x2 = full.input
        x2.withUnsafeMutableBufferPointer { p in for j in (5 * 16)..<(7 * 16) { p[j] += 3 } }   // batch 0, positions 5, 6
        let a = try mf(full.input), b = try mf(x2)
        XCTAssertEqual(a.sliced(axis: 1, range: 0..<5).scalars, b.sliced(axis: 1, range: 0..<5).scalars)
    }

    func testSeedsAndInjectedRotations() throws {
        let x = randomTensor([1, 48, 8], seed: 3)
        let s = ["num_attention_heads": "2", "attention_head_size": "4", "lsh_attn_chunk_length": "8", "num_hashes": "2"]
        let a = try Registry.make(id: "reformer", settings: s, inputShape: x.shape, seed: 1)
        let b = try Registry.make(id: "reformer", settings: s, inputShape: x.shape, seed: 1)
        let c = try Registry.make(id: "reformer", settings: s, inputShape: x.shape, seed: 2)
        XCTAssertEqual(try a(x).scalars, try b(x).scalars)
        XCTAssertNotEqual(try a(x).scalars, try c(x).scalars)
        XCTAssertEqual(a.config.ints("num_buckets"), [8])                  // largest power of 2 ≤ 2·48/8
        // Past 2·max(√(4096/8), 8) = 44 buckets HF factorises: 2·(720/8) = 180 → 128 = 8 × 16.
        let big = try Registry.make(id: "reformer", settings: s, inputShape: [1, 720, 8])
        XCTAssertEqual(big.config.ints("num_buckets"), [8, 16])
        XCTAssertEqual(big.config.int("hidden_size"), 8)
        XCTAssertEqual(big.config.int("num_hashes"), 2)
        XCTAssertTrue(try Registry.parameterRecords(id: "reformer", settings: s, inputShape: [1, 720, 8]).isEmpty == false)
        let recs = try Registry.parameterRecords(id: "reformer", settings: s, inputShape: x.shape)
        XCTAssertEqual(recs.map(\.key), ["query_key.weight", "value.weight"])
        // L not a multiple of the chunk: padded, output keeps L.
        let padded = try Registry.make(id: "reformer", settings: s, inputShape: [1, 45, 8])
        XCTAssertEqual(try padded(randomTensor([1, 45, 8])).shape, [1, 45, 8])
    }

    func testStrictLoadingAndErrors() throws {
        let f = try Fixture.load("reformer")
        var sd = f.stateDict
        sd.tensors["value.weight"] = nil
        sd.tensors["output.dense.weight"] = Tensor(zeros: [24, 24])
        sd.tensors["random_rotations"] = Tensor(zeros: [3, 8, 2, 3])
        XCTAssertThrowsError(try Registry.make(id: "reformer", settings: f.settings, inputShape: f.input.shape, weights: sd)) { e in
            let text = String(describing: e)
            XCTAssertTrue(text.contains("missing keys: value.weight"), text)
            XCTAssertTrue(text.contains("unexpected keys: output.dense.weight"), text)
            XCTAssertTrue(text.contains("size mismatch for random_rotations"), text)
        }
        XCTAssertThrowsError(try Registry.make(id: "reformer", settings: ["num_buckets": "5"], inputShape: [1, 8, 4]))
        XCTAssertThrowsError(try Registry.make(id: "reformer", settings: ["chunk": "5"], inputShape: [1, 8, 4]))
        let m = try Registry.make(id: "reformer", settings: ["num_attention_heads": "2", "attention_head_size": "3"],
                                  inputShape: [1, 8, 4])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 8, 5]))) { e in
            XCTAssertEqual(String(describing: e), "reformer: expected input N×L×4, found 1×8×5")
        }
        XCTAssertThrowsError(try m.attentionMap(randomTensor([1, 8, 4]), query: MapQuery(row: 0, column: 8)))
        let grid = try Registry.make(id: "reformer", settings: ["lsh_attn_chunk_length": "4", "num_attention_heads": "2", "attention_head_size": "4"],
                                     inputShape: [1, 6, 3, 5])
        XCTAssertEqual(try grid.apply(randomTensor([1, 6, 3, 5])).shape, [1, 8, 3, 5])
        XCTAssertEqual(try grid.map(onGrid: randomTensor([1, 6, 3, 5]), query: MapQuery(row: 2, column: 1)).values.shape, [1, 3, 5])
    }
}
