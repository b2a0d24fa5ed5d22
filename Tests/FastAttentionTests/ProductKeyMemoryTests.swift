import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// product-key-memory against PKM (pip product-key-memory 0.3.0) through the committed fixtures
/// (Tools/reference/pkm.py): the default layer, pre/output LayerNorms with ReLU gates, and the
/// concat mode (values read without gate weights).
final class ProductKeyMemoryTests: XCTestCase {
    static let cases = ["product-key-memory", "product-key-memory-variants", "product-key-memory-concat"]

    func testParityWithReference() throws {
        try assertParity(Self.cases)
    }

    /// The slot grid equals the reference's EmbeddingBag indices and per-sample weights.
    func testMapIsTheSlotsTheReferenceRead() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            guard let expected = f.map, let q = f.mapQuery else { return XCTFail("\(name) has no map") }
            let map = try m.attentionMap(f.input, query: q)
            XCTAssertEqual(map.kind, .perQuery)
            assertClose(map.values, expected, rtol: 1e-4, name)
            let heads = Int(f.settings["heads"]!)!, k = Int(f.settings["topk"]!)!
            // k slots per head; softmax gates sum to 1 per head.
            XCTAssertLessThanOrEqual(map.values.scalars.filter { $0 != 0 }.count, heads * k)
            if name == "product-key-memory" {
                XCTAssertEqual(map.values.scalars.reduce(0, +), Float(heads), accuracy: 1e-5)
                let one = try m.attentionMap(f.input, query: MapQuery(row: 0, column: q.column, head: 1))
                XCTAssertEqual(one.values.scalars.filter { $0 != 0 }.count, k)
                XCTAssertEqual(one.values.scalars.reduce(0, +), 1, accuracy: 1e-5)
            }
        }
    }

    /// The product search equals the exhaustive one: with topk = num_keys every slot is a
    /// candidate, so that module's k best slots (its softmax is monotone in the score) are what
    /// a small-k module with the same weights must pick — the best slots have both halves among
    /// each half's top k. Exercises the half-key selection and the pruned k² merge.
    func testProductSearchEqualsExhaustiveSearch() throws {
        for (nk, k, dh, seed) in [(4, 2, 3, 1), (24, 5, 4, 2), (40, 7, 6, 3)] as [(Int, Int, Int, UInt64)] {
            let x = randomTensor([1, 9, 6], seed: seed)
            let base = ["heads": "1", "num_keys": "\(nk)", "dim_head": "\(dh)"]
            let exact = try Registry.make(id: "product-key-memory", settings: base.merging(["topk": "\(nk)"]) { $1 },
                                          inputShape: x.shape, seed: seed)
            let small = try Registry.make(id: "product-key-memory", settings: base.merging(["topk": "\(k)"]) { $1 },
                                          inputShape: x.shape, seed: seed)
            for i in 0..<9 {
                let a = try exact.attentionMap(x, query: MapQuery(row: 0, column: i)).values.scalars
                let b = try small.attentionMap(x, query: MapQuery(row: 0, column: i)).values.scalars
                let bestExact = Set((0..<nk * nk).sorted { a[$0] > a[$1] }.prefix(k))
                let picked = Set((0..<nk * nk).filter { b[$0] > 0 })
                XCTAssertEqual(picked, bestExact, "num_keys \(nk) topk \(k) token \(i)")
                // The gate order agrees too: softmax weights ranked as the exhaustive scores.
                let rankSmall = picked.sorted { b[$0] > b[$1] }, rankExact = picked.sorted { a[$0] > a[$1] }
                XCTAssertEqual(rankSmall, rankExact)
            }
        }
    }

    func testTokensAreIndependent() throws {
        let x = randomTensor([2, 7, 8], seed: 5)
        let m = try Registry.make(id: "product-key-memory",
                                  settings: ["heads": "2", "num_keys": "8", "topk": "3", "dim_head": "4"],
                                  inputShape: x.shape, seed: 2)
        let y = try m(x)
        var z = x
        z.withUnsafeMutableBufferPointer { p in for c in (4 * 8)..<(7 * 8) { p[c] += 3 } }   // batch 0, tokens ≥ 4
        let yz = try m(z)
        XCTAssertEqual(yz.sliced(axis: 1, range: 0..<4).scalars, y.sliced(axis: 1, range: 0..<4).scalars)
        XCTAssertEqual(yz.sliced(axis: 0, range: 1..<2).scalars, y.sliced(axis: 0, range: 1..<2).scalars)
        XCTAssertGreaterThan(maxRelativeError(yz, y), 1e-3)
        // A token alone gives the same row as inside the sequence.
        let alone = try m(x.sliced(axis: 1, range: 3..<4))
        assertClose(alone, y.sliced(axis: 1, range: 3..<4), rtol: 1e-6)
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("product-key-memory")
        var sd = f.stateDict
        sd.tensors["norm.bias"] = nil
        sd.tensors["to_queries.bias"] = Tensor(zeros: [30])
        sd.tensors["keys"] = Tensor(zeros: [3, 7, 5, 2])
        XCTAssertThrowsError(try Registry.make(id: "product-key-memory", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { e in
            let text = String(describing: e)
            XCTAssertTrue(text.contains("missing keys: norm.bias"), text)
            XCTAssertTrue(text.contains("unexpected keys: to_queries.bias"), text)
            XCTAssertTrue(text.contains("size mismatch for keys"), text)
        }
        let concat = try Fixture.load("product-key-memory-concat")
        var sc = concat.stateDict
        sc.tensors["maybe_concat_combine.2.weight"] = nil
        XCTAssertThrowsError(try Registry.make(id: "product-key-memory", settings: concat.settings,
                                               inputShape: concat.input.shape, weights: sc))
    }

    func testShapeAndConfigErrors() throws {
        let id = "product-key-memory"
        XCTAssertThrowsError(try Registry.make(id: id, settings: ["topk": "9", "num_keys": "8"], inputShape: [1, 4, 8])) { e in
            XCTAssertTrue("\(e)".contains("topk=9 exceeds num_keys=8"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: id, settings: ["use_layernorm": "false"], inputShape: [1, 4, 8])) { e in
            XCTAssertTrue("\(e)".contains("BatchNorm1d"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: id, settings: ["differentiable_topk": "true"], inputShape: [1, 4, 8]))
        XCTAssertThrowsError(try Registry.make(id: id, settings: ["gumbel": "1"], inputShape: [1, 4, 8]))
        let m = try Registry.make(id: id, settings: ["num_keys": "8", "topk": "2", "dim_head": "4", "heads": "2"], inputShape: [1, 4, 8])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 4, 6]))) { e in
            XCTAssertEqual("\(e)", "product-key-memory: expected input N×L×8, found 1×4×6")
        }
        XCTAssertThrowsError(try m.attentionMap(randomTensor([1, 4, 8]), query: MapQuery(row: 0, column: 4)))
        XCTAssertThrowsError(try m.attentionMap(randomTensor([1, 4, 8]), query: MapQuery(row: 0, column: 1, head: 2)))
        XCTAssertEqual(try m.map(onGrid: randomTensor([1, 8, 3, 5]), query: MapQuery(row: 1, column: 4)).values.shape, [1, 8, 8])
    }
}
