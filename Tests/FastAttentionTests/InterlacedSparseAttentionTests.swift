import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// interlaced-sparse against the authors' openseg ISA_Block through the committed fixtures
/// (Tools/reference/interlaced_sparse.py: every weight and BN statistic random, H, W not
/// multiples of the block with an odd padding split; and a case without padding).
final class InterlacedSparseAttentionTests: XCTestCase {
    static let cases = ["interlaced-sparse", "interlaced-sparse-nopad"]

    func testParityWithOpenseg() throws {
        try assertParity(Self.cases)
    }

    func testMapMatchesReferenceSoftmaxes() throws {
        try assertMapsMatch(Self.cases, kind: .perQuery)
    }

    func testMapSupportAndMassWithoutPadding() throws {
        // 6×8 with 2×4 blocks: lattices of 3×2 pixels, no padding, so each map has mass 1.
        let x = randomTensor([1, 6, 6, 8], seed: 5)
        let m = try Registry.make(id: "interlaced-sparse", settings: ["down_factor": "2,4"], inputShape: x.shape, seed: 1)
        let (r, c) = (3, 5)
        let v = try m.attentionMap(x, query: MapQuery(row: r, column: c)).values.scalars
        let plane = 48
        for k in 0..<3 { XCTAssertEqual(v[(k * plane)..<((k + 1) * plane)].reduce(0, +), 1, accuracy: 1e-5) }
        for i in 0..<6 { for j in 0..<8 {
            if i % 2 != r % 2 || j % 4 != c % 4 { XCTAssertEqual(v[i * 8 + j], 0, "long range off the lattice") }
            if i / 2 != r / 2 || j / 4 != c / 4 { XCTAssertEqual(v[plane + i * 8 + j], 0, "short range off the block") }
            XCTAssertGreaterThan(v[2 * plane + i * 8 + j], 0, "composed reaches every pixel")
        } }
    }

    func testPaddingSplitPutsOneRowBeforeAndTwoAfter() throws {
        // H=5 with 4-row blocks pads 3 rows: pad//2 = 1 above, 2 below (the reference's split).
        // So input rows 0...2 share the first block row and rows 3...4 the second; a split of
        // 0 above / 3 below would put rows 0...3 together. The short-range map shows which.
        let x = randomTensor([1, 4, 5, 3], seed: 9)
        let m = try Registry.make(id: "interlaced-sparse", settings: ["down_factor": "4,3"], inputShape: x.shape, seed: 4)
        let top = try m.attentionMap(x, query: MapQuery(row: 2, column: 1)).values.scalars
        let bottom = try m.attentionMap(x, query: MapQuery(row: 3, column: 1)).values.scalars
        let short = { (v: [Float], r: Int) in v[15 + r * 3..<15 + r * 3 + 3].reduce(0, +) }   // panel 1, row r
        for r in 0..<3 { XCTAssertGreaterThan(short(top, r), 0); XCTAssertEqual(short(bottom, r), 0) }
        for r in 3..<5 { XCTAssertEqual(short(top, r), 0); XCTAssertGreaterThan(short(bottom, r), 0) }
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("interlaced-sparse")
        var sd = f.stateDict
        sd.tensors["short_range_sa.f_key.3.0.running_var"] = nil
        sd.tensors["short_range_sa.f_value.bias"] = Tensor(zeros: [5])
        XCTAssertThrowsError(try Registry.make(id: "interlaced-sparse", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: short_range_sa.f_key.3.0.running_var"), text)
            XCTAssertTrue(text.contains("unexpected keys: short_range_sa.f_value.bias"), text)
        }
        var noTracked = f.stateDict
        for k in noTracked.tensors.keys where k.hasSuffix("num_batches_tracked") { noTracked.tensors[k] = nil }
        XCTAssertNoThrow(try Registry.make(id: "interlaced-sparse", settings: f.settings, inputShape: f.input.shape,
                                           weights: noTracked))
    }

    func testBadInputsAndConfig() throws {
        let m = try Registry.make(id: "interlaced-sparse", inputShape: [1, 8, 5, 6])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 4, 5, 6]))) { e in
            XCTAssertEqual(String(describing: e), "interlaced-sparse: expected input N×8×H×W, found 1×4×5×6")
        }
        XCTAssertThrowsError(try m.attentionMap(Tensor(zeros: [1, 8, 5, 6]), query: MapQuery(row: 5, column: 0)))
        for bad in [["down_factor": "8"], ["down_factor": "0,4"], ["bn_type": "gn"], ["key_channel": "4"]] {
            XCTAssertThrowsError(try Registry.make(id: "interlaced-sparse", settings: bad, inputShape: [1, 8, 5, 6]), "\(bad)")
        }
        // Defaults: key = in/2, value = out = in.
        let y = try m(randomTensor([1, 8, 5, 6]))
        XCTAssertEqual(y.shape, [1, 8, 5, 6])
        let o = try Registry.make(id: "interlaced-sparse", settings: ["out_channels": "3"], inputShape: [1, 8, 5, 6])
        XCTAssertEqual(try o(randomTensor([1, 8, 5, 6])).shape, [1, 3, 5, 6])
    }
}
