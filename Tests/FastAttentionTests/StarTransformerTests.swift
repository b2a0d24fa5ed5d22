import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// star-transformer against fastNLP 1.0.1's StarTransformer through the committed fixtures
/// (Tools/reference/star_transformer.py: every weight random, L odd, several heads,
/// num_head·head_dim ≠ hidden_size, with and without position embedding, L = 2).
final class StarTransformerTests: XCTestCase {
    static let cases = ["star-transformer", "star-transformer-pos", "star-transformer-short"]

    func testParityWithFastNLP() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let y = try m(f.input)
            print("\(name): max relative error \(maxRelativeError(y, f.output))")
            assertClose(y, f.output, rtol: 1e-4, name)
        }
    }

    func testMapMatchesReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            guard let expected = f.map, let q = f.mapQuery else { return XCTFail("\(name) has no map") }
            let map = try m.attentionMap(f.input, query: q)
            XCTAssertEqual(map.kind, .perQuery)
            XCTAssertEqual(map.labels.count, 2)
            assertClose(map.values, expected, rtol: 1e-4, name)
        }
    }

    /// The composed map sums to 1 inside the sequence (at the ends the zero slot's weight goes
    /// nowhere), the relay row sums to 1 minus the relay's weight on itself, and a token's
    /// direct reach is its ring: far tokens get only the relay's share, the same for each
    /// far token up to the relay's own weights.
    func testMapMassAndSupport() throws {
        let x = randomTensor([1, 12, 8], seed: 5)
        let m = try Registry.make(id: "star-transformer", settings: ["num_head": "2", "head_dim": "4", "num_layers": "1"],
                                  inputShape: x.shape, seed: 2)
        let map = try m.attentionMap(x, query: MapQuery(row: 0, column: 6)).values.scalars
        XCTAssertEqual(map[0..<12].reduce(0, +), 1, accuracy: 1e-5)
        XCTAssertLessThan(map[12..<24].reduce(0, +), 1)
        // One layer: the relay is s⁰ = mean, so every token off the ring gets the same α_relay/L.
        let far = [0, 1, 2, 3, 4, 8, 9, 10, 11].map { map[$0] }
        for v in far { XCTAssertEqual(v, far[0], accuracy: 1e-7) }
        XCTAssertGreaterThan(map[6], far[0])
        let end = try m.attentionMap(x, query: MapQuery(row: 0, column: 0)).values.scalars
        XCTAssertLessThan(end[0..<12].reduce(0, +), 1 - 1e-4)
        XCTAssertThrowsError(try m.attentionMap(x, query: MapQuery(row: 0, column: 12)))
        XCTAssertThrowsError(try m.attentionMap(x, query: MapQuery(row: 0, column: 1, head: 2)))
    }

    /// O(L·D): a token's output depends on its neighbours only through the ring and the relay,
    /// so with one layer, changing token j moves token i's output (i ≠ j±1, j) only through the
    /// relay's mean — compared here against moving the mean the same way.
    func testOneLayerReachIsRingPlusMean() throws {
        let m = try Registry.make(id: "star-transformer", settings: ["num_layers": "1", "num_head": "2", "head_dim": "3"],
                                  inputShape: [1, 7, 6], seed: 4)
        let x = randomTensor([1, 7, 6], seed: 6)
        var a = x.scalars, b = x.scalars
        for c in 0..<6 {                      // same sum of tokens 0 and 1: same mean, same relay
            a[0 * 6 + c] += 0.5; a[1 * 6 + c] -= 0.5
            b[0 * 6 + c] -= 0.3; b[1 * 6 + c] += 0.3
        }
        let ya = try m(Tensor(shape: x.shape, scalars: a)).scalars, yb = try m(Tensor(shape: x.shape, scalars: b)).scalars
        for i in 3..<7 {
            for c in 0..<6 { XCTAssertEqual(ya[i * 6 + c], yb[i * 6 + c], accuracy: 1e-5) }
        }
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("star-transformer-pos")
        var sd = f.stateDict
        sd.tensors["ring_att.2.WK.bias"] = nil
        sd.tensors["star_att.3.WQ.weight"] = Tensor(zeros: [8, 8, 1, 1])
        sd.tensors["pos_emb.weight"] = Tensor(zeros: [10, 8])
        XCTAssertThrowsError(try Registry.make(id: f.module, settings: f.settings, inputShape: f.input.shape, weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: ring_att.2.WK.bias"), text)
            XCTAssertTrue(text.contains("unexpected keys: star_att.3.WQ.weight"), text)
            XCTAssertTrue(text.contains("size mismatch for pos_emb.weight: checkpoint has 10×8, module expects 16×8"), text)
        }
        var settings = f.settings
        settings["max_len"] = nil
        XCTAssertThrowsError(try Registry.make(id: f.module, settings: settings, inputShape: f.input.shape,
                                               weights: f.stateDict)) { error in
            XCTAssertTrue(String(describing: error).contains("unexpected keys: pos_emb.weight"), "\(error)")
        }
    }

    func testBadInputsAndConfigsAreClearErrors() throws {
        let m = try Registry.make(id: "star-transformer", settings: ["max_len": "6"], inputShape: [1, 5, 8])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 5, 6]))) { e in
            XCTAssertEqual(String(describing: e), "star-transformer: expected input N×L×8 with L ≤ 6, found 1×5×6")
        }
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 7, 8])))
        XCTAssertEqual(try m(Tensor(zeros: [2, 6, 8])).shape, [2, 6, 8])
        XCTAssertThrowsError(try Registry.make(id: "star-transformer", settings: ["hidden_size": "4"], inputShape: [1, 5, 8]))
        XCTAssertThrowsError(try Registry.make(id: "star-transformer", settings: ["num_layer": "1"], inputShape: [1, 5, 8]))
        XCTAssertThrowsError(try Registry.make(id: "star-transformer", settings: ["dropout": "1.5"], inputShape: [1, 5, 8]))
        XCTAssertNoThrow(try Registry.make(id: "star-transformer", settings: ["dropout": "0.3"], inputShape: [1, 5, 8]))
        let onMap = try Registry.make(id: "star-transformer", inputShape: [1, 12, 8])
        XCTAssertEqual(try onMap.apply(randomTensor([1, 8, 3, 4])).shape, [1, 8, 3, 4])
    }
}
