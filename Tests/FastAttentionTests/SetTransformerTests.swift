import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// set-transformer against juho-lee/set_transformer's ISAB and PMA through the committed
/// fixtures (Tools/reference/set_transformer.py: every weight random, L odd, several heads,
/// dim_in ≠ dim_out, with and without LayerNorms).
final class SetTransformerTests: XCTestCase {
    static let cases = ["set-transformer", "set-transformer-noln", "set-transformer-pma", "set-transformer-pma-noln"]

    func testParityWithReference() throws {
        try assertParity(Self.cases)
    }

    func testMapMatchesReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            guard let expected = f.map else { return XCTFail("\(name) has no map") }
            let map = try m.attentionMap(f.input, query: f.mapQuery ?? MapQuery(row: 0, column: 0))
            XCTAssertEqual(map.kind, name.contains("pma") ? .bases : .perQuery, name)
            assertClose(map.values, expected, rtol: 1e-4, name)
        }
    }

    func testMapRowsSumToOneAndOneHeadDiffers() throws {
        let x = randomTensor([1, 10, 8], seed: 4)
        let m = try Registry.make(id: "set-transformer", settings: ["num_heads": "2", "num_inds": "3"], inputShape: x.shape)
        let mean = try m.attentionMap(x, query: MapQuery(row: 0, column: 7))
        XCTAssertEqual(mean.values.shape, [1, 1, 10])
        XCTAssertEqual(mean.values.scalars.reduce(0, +), 1, accuracy: 1e-5)
        let h0 = try m.attentionMap(x, query: MapQuery(row: 0, column: 7, head: 0)).values
        let h1 = try m.attentionMap(x, query: MapQuery(row: 0, column: 7, head: 1)).values
        assertClose((h0 + h1) * 0.5, mean.values, rtol: 1e-5)
        XCTAssertThrowsError(try m.attentionMap(x, query: MapQuery(row: 0, column: 10)))
        XCTAssertThrowsError(try m.attentionMap(x, query: MapQuery(row: 0, column: 0, head: 2)))
        let pma = try Registry.make(id: "set-transformer", settings: ["num_seeds": "3"], inputShape: x.shape)
        let seeds = try pma.attentionMap(x, query: MapQuery(row: 0, column: 0)).values
        XCTAssertEqual(seeds.shape, [3, 1, 10])
        for s in 0..<3 { XCTAssertEqual(seeds.scalars[(s * 10)..<(s * 10 + 10)].reduce(0, +), 1, accuracy: 1e-5) }
    }

    /// ISAB is permutation-equivariant and PMA permutation-invariant (the paper's Props. 1–2).
    func testPermutationEquivarianceAndInvariance() throws {
        let x = randomTensor([2, 9, 6], seed: 9)
        let perm = [4, 0, 8, 2, 7, 1, 3, 6, 5]
        let xp = x.indexSelect(axis: 1, indices: perm)
        let isab = try Registry.make(id: "set-transformer", settings: ["num_heads": "3", "ln": "true"], inputShape: x.shape, seed: 3)
        assertClose(try isab(xp), try isab(x).indexSelect(axis: 1, indices: perm), rtol: 1e-5)
        let pma = try Registry.make(id: "set-transformer", settings: ["num_heads": "2", "num_seeds": "2"], inputShape: x.shape, seed: 3)
        assertClose(try pma(xp), try pma(x), rtol: 1e-5)
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("set-transformer")
        var sd = f.stateDict
        sd.tensors["mab1.fc_k.weight"] = nil
        sd.tensors["mab0.ln2.weight"] = Tensor(zeros: [16])
        sd.tensors["I"] = Tensor(zeros: [1, 4, 16])
        XCTAssertThrowsError(try Registry.make(id: f.module, settings: f.settings, inputShape: f.input.shape, weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: mab1.fc_k.weight"), text)
            XCTAssertTrue(text.contains("unexpected keys: mab0.ln2.weight"), text)
            XCTAssertTrue(text.contains("size mismatch for I: checkpoint has 1×4×16, module expects 1×5×16"), text)
        }
        // ln=false has no LayerNorm keys: the fixture with LayerNorms is refused.
        var settings = f.settings
        settings["ln"] = "false"
        XCTAssertThrowsError(try Registry.make(id: "set-transformer", settings: settings, inputShape: f.input.shape,
                                               weights: f.stateDict)) { error in
            XCTAssertTrue(String(describing: error).contains("unexpected keys: mab0.ln0.bias"), "\(error)")
        }
    }

    func testBadInputsAndConfigsAreClearErrors() throws {
        let m = try Registry.make(id: "set-transformer", inputShape: [1, 5, 8])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 5, 6]))) { e in
            XCTAssertEqual(String(describing: e), "set-transformer: expected input N×L×8, found 1×5×6")
        }
        XCTAssertThrowsError(try m(Tensor(zeros: [5, 8])))
        XCTAssertThrowsError(try Registry.make(id: "set-transformer", settings: ["num_heads": "3"], inputShape: [1, 5, 8])) { e in
            XCTAssertTrue(String(describing: e).contains("num_heads=3 must divide"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "set-transformer", settings: ["num_seeds": "2", "num_inds": "4"],
                                               inputShape: [1, 5, 8])) { e in
            XCTAssertTrue(String(describing: e).contains("num_inds is an ISAB key"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "set-transformer", settings: ["dim": "8"], inputShape: [1, 5, 8])) { e in
            XCTAssertTrue(String(describing: e).contains("dim is a PMA key"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "set-transformer", settings: ["dim_in": "16"], inputShape: [1, 5, 8])) { e in
            XCTAssertTrue(String(describing: e).contains("dim_in=16 but the input has 8 channels"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "set-transformer", settings: ["num_ind": "4"], inputShape: [1, 5, 8]))
        XCTAssertThrowsError(try Registry.make(id: "set-transformer", settings: ["num_inds": "0"], inputShape: [1, 5, 8]))
        // PMA pools: N×num_seeds×dim, and on a map the pooled tokens come back as they are.
        let pma = try Registry.make(id: "set-transformer", settings: ["num_seeds": "3"], inputShape: [2, 5, 8])
        XCTAssertEqual(try pma(randomTensor([2, 5, 8])).shape, [2, 3, 8])
        XCTAssertEqual(try pma.apply(randomTensor([2, 8, 3, 4])).shape, [2, 3, 8])
        let isab = try Registry.make(id: "set-transformer", settings: ["dim_out": "12", "num_heads": "3"], inputShape: [1, 12, 8])
        XCTAssertEqual(try isab.apply(randomTensor([1, 8, 3, 4])).shape, [1, 12, 3, 4])
    }
}
