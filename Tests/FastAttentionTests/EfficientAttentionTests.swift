import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// efficient-attention against cmsflash's EfficientAttention through the committed fixtures
/// (Tools/reference/efficient_attention.py: every weight random, H ≠ W, 3 heads with a leftover
/// key channel), plus the core kernel against its naive n×n reference.
final class EfficientAttentionTests: XCTestCase {
    static let cases = ["efficient-attention", "efficient-attention-1head"]

    func testParityWithReference() throws {
        try assertParity(Self.cases)
    }

    func testTokensGiveTheSameOutputAsTheMap() throws {
        // N×L×C tokens in raster order with the same weights: the 1×1 convs act per token.
        for name in Self.cases {
            let f = try Fixture.load(name)
            let (h, w) = (f.input.shape[2], f.input.shape[3])
            let tokens = f.input.mapToTokens()                                  // N, L, C
            let m = try Registry.make(id: f.module, settings: f.settings, inputShape: tokens.shape,
                                      weights: f.stateDict)
            let y = try m(tokens)                                               // N, L, C
            XCTAssertEqual(y.shape, tokens.shape)
            assertClose(y.tokensToMap(height: h, width: w), f.output, rtol: 1e-4, name)
            // The token map is the map's row, laid out 1×L.
            let q = f.mapQuery!
            let map = try m.attentionMap(tokens, query: MapQuery(row: 0, column: q.row * w + q.column))
            XCTAssertEqual(map.values.shape, [1, 1, h * w])
            assertClose(map.values.reshaped([1, h, w]), f.map!, rtol: 1e-4, name)
        }
    }

    func testMapMatchesReferenceRow() throws {
        try assertMapsMatch(Self.cases, kind: .perQuery)
    }

    func testEveryHeadRowSumsToOne() throws {
        let f = try Fixture.load("efficient-attention")
        let m = try f.makeModule()
        var mean = [Float](repeating: 0, count: f.input.shape[2] * f.input.shape[3])
        for head in 0..<3 {
            let map = try m.attentionMap(f.input, query: MapQuery(row: 4, column: 6, head: head))
            XCTAssertEqual(map.labels, ["head \(head)"])
            XCTAssertEqual(map.values.scalars.reduce(0, +), 1, accuracy: 1e-5)
            XCTAssertTrue(map.values.scalars.allSatisfy { $0 >= 0 })
            for (j, v) in map.values.scalars.enumerated() { mean[j] += v / 3 }
        }
        let all = try m.attentionMap(f.input, query: MapQuery(row: 4, column: 6))
        assertClose(all.values, Tensor(shape: all.values.shape, scalars: mean), rtol: 1e-5)
        XCTAssertThrowsError(try m.attentionMap(f.input, query: MapQuery(row: 0, column: 0, head: 3)))
        XCTAssertThrowsError(try m.attentionMap(f.input, query: MapQuery(row: 5, column: 0)))
    }

    func testCoreMatchesNaiveQuadraticForm() {
        // The kernel (both layouts) against Σ_j (Q̂ᵀK̂)_ij v_j built as the n×n matrix.
        let (ck, cv, l, heads) = (7, 6, 11, 2)                  // dk = 3: key channel 6 unused
        let k = randomTensor([1, ck, l], seed: 1), q = randomTensor([1, ck, l], seed: 2)
        let v = randomTensor([1, cv, l], seed: 3)
        let naive = EfficientAttentionCore.forwardNaive(keys: k.scalars, queries: q.scalars, values: v.scalars,
                                                        keyChannels: ck, valueChannels: cv, length: l, heads: heads)
        var kc = k, qc = q
        EfficientAttentionCore.normalise(keys: &kc, queries: &qc, heads: heads, layout: .channels)
        let oc = EfficientAttentionCore.attend(keys: kc, queries: qc, values: v, heads: heads, layout: .channels)
        assertClose(oc, Tensor(shape: [1, cv, l], scalars: naive), rtol: 1e-5, "channels")
        var kt = k.permuted([0, 2, 1]), qt = q.permuted([0, 2, 1])            // 1, L, C
        EfficientAttentionCore.normalise(keys: &kt, queries: &qt, heads: heads, layout: .tokens)
        let ot = EfficientAttentionCore.attend(keys: kt, queries: qt, values: v.permuted([0, 2, 1]), heads: heads,
                                               layout: .tokens)
        assertClose(ot.permuted([0, 2, 1]), Tensor(shape: [1, cv, l], scalars: naive), rtol: 1e-5, "tokens")
        let wc = EfficientAttentionCore.weights(keys: kc, queries: qc, heads: heads, layout: .channels, batch: 0, position: 4)
        let wt = EfficientAttentionCore.weights(keys: kt, queries: qt, heads: heads, layout: .tokens, batch: 0, position: 4)
        assertClose(Tensor(shape: [l], scalars: wt), Tensor(shape: [l], scalars: wc), rtol: 1e-6)
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("efficient-attention")
        var sd = f.stateDict
        sd.tensors["queries.bias"] = nil
        sd.tensors["gamma"] = Tensor(zeros: [1])
        sd.tensors["reprojection.weight"] = Tensor(zeros: [12, 10, 1, 1])
        XCTAssertThrowsError(try Registry.make(id: "efficient-attention", settings: f.settings,
                                               inputShape: f.input.shape, weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: queries.bias"), text)
            XCTAssertTrue(text.contains("unexpected keys: gamma"), text)
            XCTAssertTrue(text.contains("reprojection.weight"), text)
        }
    }

    func testBadInputsAndConfigsAreClearErrors() throws {
        let m = try Registry.make(id: "efficient-attention", inputShape: [1, 8, 4, 5])
        XCTAssertEqual(m.config.int("key_channels"), 8)
        XCTAssertEqual(m.config.int("value_channels"), 8)
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 6, 4, 4]))) { e in
            XCTAssertEqual(String(describing: e),
                           "efficient-attention: expected input N×8×H×W or N×L×8, found 1×6×4×4")
        }
        XCTAssertThrowsError(try m(Tensor(zeros: [8, 4])))
        XCTAssertThrowsError(try Registry.make(id: "efficient-attention", settings: ["head_count": "3"],
                                               inputShape: [1, 8, 4, 4])) { e in
            XCTAssertTrue(String(describing: e).contains("divisible"), String(describing: e))
        }
        XCTAssertThrowsError(try Registry.make(id: "efficient-attention", settings: ["head_count": "4", "key_channels": "3"],
                                               inputShape: [1, 8, 4, 4]))
        XCTAssertThrowsError(try Registry.make(id: "efficient-attention", settings: ["heads": "2"], inputShape: [1, 8, 4, 4]))
        XCTAssertThrowsError(try Registry.make(id: "efficient-attention", settings: ["in_channels": "4"], inputShape: [1, 8, 4, 4]))
    }

    func testSimilarityInitialisationTiesQueriesToKeys() throws {
        let records = try Registry.parameterRecords(id: "efficient-attention", inputShape: [1, 8, 4, 4])
        XCTAssertEqual(records.map(\.key), ["keys.weight", "keys.bias", "queries.weight", "queries.bias",
                                            "values.weight", "values.bias", "reprojection.weight", "reprojection.bias"])
        let x = randomTensor([1, 8, 4, 5], seed: 4)
        let m = try Registry.make(id: "efficient-attention", inputShape: x.shape, seed: 3)
        let a = try m.attentionMap(x, query: MapQuery(row: 1, column: 2))
        XCTAssertEqual(a.values.scalars.reduce(0, +), 1, accuracy: 1e-5)
        // Deterministic for a seed.
        let m2 = try Registry.make(id: "efficient-attention", inputShape: x.shape, seed: 3)
        XCTAssertEqual(try m2(x).scalars, try m(x).scalars)
    }
}
