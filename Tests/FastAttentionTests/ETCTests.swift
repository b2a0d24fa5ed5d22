import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// etc against Tools/reference/etc.py (a PyTorch restatement of google-research etcmodel) through
/// the committed fixtures: shared projections with relative positions (L = 13, blocks of 4, 3
/// heads); every projection separate but k/v shared, hard l2g and g2l masks, a larger relative
/// vocabulary and separate feed-forwards; no relative positions with pre-LayerNorm order, a
/// shared output projection and blocks from global_seq_len (the dense-kernel path for the global
/// rows); 35 global tokens (two
/// tiles of global rows). Every weight random.
final class ETCTests: XCTestCase {
    static let cases = ["etc", "etc-unshared-hard", "etc-plain", "etc-many-globals"]

    func testParityWithReference() throws {
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
            XCTAssertEqual(map.labels.count, 3)
            assertClose(map.values, expected, rtol: 1e-4, name)
        }
    }

    /// The paper's pattern: l2l is zero outside the radius, l2l + l2g is one distribution, and
    /// with hard l2g a long token sees only its own block's global token.
    func testPiecesOfTheMap() throws {
        let x = randomTensor([1, 30, 8], seed: 31)
        let m = try Registry.make(id: "etc", settings: ["num_attention_heads": "2", "local_radius": "3",
                                                        "num_tokens_per_block": "7", "use_hard_l2g_mask": "true"],
                                  inputShape: x.shape, seed: 4)
        let v = try m.attentionMap(x, query: MapQuery(row: 0, column: 16)).values.scalars
        let local = Array(v[0..<30]), spread = Array(v[30..<60]), composed = Array(v[60..<90])
        for j in 0..<30 where abs(j - 16) > 3 { XCTAssertEqual(local[j], 0) }
        XCTAssertEqual(local.reduce(0, +) + spread.reduce(0, +), 1, accuracy: 1e-5)
        for j in 0..<30 where j / 7 != 16 / 7 { XCTAssertEqual(spread[j], 0) }     // only block 2
        XCTAssertGreaterThan(spread[14], 0)
        XCTAssertLessThanOrEqual(composed.reduce(0, +), 1 + 1e-5)
        // Two layers: the own global token reaches tokens of its block beyond the radius.
        XCTAssertGreaterThan(composed[20], 0)
    }

    /// The default keeps at most global_seq_len = 16 global tokens, whatever L: blocks of ⌈L/16⌉.
    func testDefaultGlobalCountIsFixed() throws {
        let x = randomTensor([1, 100, 8], seed: 33)
        let m = try Registry.make(id: "etc", settings: ["num_attention_heads": "2", "use_hard_l2g_mask": "true"],
                                  inputShape: x.shape, seed: 2)
        let spread = Array(try m.attentionMap(x, query: MapQuery(row: 0, column: 50)).values.scalars[100..<200])
        // Token 50 sits in block 50 / 7 = 7 (blocks of ⌈100/16⌉ = 7): only tokens 49..55 carry its l2g weight.
        for j in 0..<100 { XCTAssertEqual(spread[j] > 0, (49...55).contains(j), "token \(j)") }
    }

    /// O((N g + g² + N k) D): with one layer a long token depends on tokens outside its radius
    /// only through nothing (the globals' keys are still the embedding); from two layers on,
    /// through the global tokens.
    func testLocalityAndGlobalReach() throws {
        let x = randomTensor([1, 24, 8], seed: 32)
        var far = x.scalars
        for c in 0..<8 { far[23 * 8 + c] += 1 }
        let xf = Tensor(shape: x.shape, scalars: far)
        let set = ["num_attention_heads": "2", "local_radius": "2", "num_tokens_per_block": "6"]
        let one = try Registry.make(id: "etc", settings: set.merging(["num_hidden_layers": "1"]) { $1 }, inputShape: x.shape, seed: 6)
        let (a, b) = (try one(x).scalars, try one(xf).scalars)
        for c in 0..<8 { XCTAssertEqual(a[3 * 8 + c], b[3 * 8 + c]) }
        let two = try Registry.make(id: "etc", settings: set, inputShape: x.shape, seed: 6)
        let (a2, b2) = (try two(x).scalars, try two(xf).scalars)
        let moved: [Float] = (0..<8).map { (c: Int) -> Float in abs(a2[3 * 8 + c] - b2[3 * 8 + c]) }
        XCTAssertGreaterThan(moved.max()!, 1e-6)
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("etc")
        var sd = f.stateDict
        sd.tensors["layers.1.fused_att.long_relative_bias_table"] = nil
        sd.tensors["layers.0.fused_att.g2l_key_projection.weight"] = Tensor(zeros: [12, 12])
        sd.tensors["global_token_embedding"] = Tensor(zeros: [8])
        XCTAssertThrowsError(try Registry.make(id: f.module, settings: f.settings, inputShape: f.input.shape, weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: layers.1.fused_att.long_relative_bias_table"), text)
            XCTAssertTrue(text.contains("unexpected keys: layers.0.fused_att.g2l_key_projection.weight"), text)
            XCTAssertTrue(text.contains("size mismatch for global_token_embedding: checkpoint has 8, module expects 12"), text)
        }
        // Sharing options decide which projections exist: the unshared fixture does not load shared.
        let u = try Fixture.load("etc-unshared-hard")
        var settings = u.settings
        settings["share_qkv_projections"] = "true"
        XCTAssertThrowsError(try Registry.make(id: u.module, settings: settings, inputShape: u.input.shape, weights: u.stateDict)) { e in
            XCTAssertTrue(String(describing: e).contains("unexpected keys: layers.0.fused_att.g2g_key_projection.bias"), "\(e)")
        }
    }

    func testBadInputsAndConfigsAreClearErrors() throws {
        let m = try Registry.make(id: "etc", inputShape: [1, 5, 8])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 5, 6]))) { e in
            XCTAssertEqual(String(describing: e), "etc: expected input N×L×8, found 1×5×6")
        }
        XCTAssertThrowsError(try m(Tensor(zeros: [5, 8])))
        XCTAssertThrowsError(try Registry.make(id: "etc", settings: ["num_attention_heads": "3"], inputShape: [1, 5, 8]))
        XCTAssertThrowsError(try Registry.make(id: "etc", settings: ["local_radius": "0"], inputShape: [1, 5, 8]))
        XCTAssertThrowsError(try Registry.make(id: "etc", settings: ["relative_vocab_size": "6"], inputShape: [1, 5, 8])) { e in
            XCTAssertTrue(String(describing: e).contains("below 2·relative_pos_max_distance + 3 = 11"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "etc", settings: ["relative_pos_max_distance": "0", "relative_vocab_size": "6"],
                                               inputShape: [1, 5, 8]))
        XCTAssertThrowsError(try Registry.make(id: "etc", settings: ["local_radiu": "2"], inputShape: [1, 5, 8]))
        XCTAssertThrowsError(try Registry.make(id: "etc", settings: ["num_tokens_per_block": "4", "global_seq_len": "3"],
                                               inputShape: [1, 5, 8])) { e in
            XCTAssertTrue(String(describing: e).contains("not both"), "\(e)")
        }
        XCTAssertThrowsError(try m.attentionMap(randomTensor([1, 5, 8]), query: MapQuery(row: 0, column: 5)))
        let onMap = try Registry.make(id: "etc", inputShape: [1, 12, 8])
        XCTAssertEqual(try onMap.apply(randomTensor([1, 8, 3, 4])).shape, [1, 8, 3, 4])
    }
}
