import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// axial against lucidrains' axial-attention 0.6.1 through the committed fixtures
/// (Tools/reference/axial.py: every weight random, H ≠ W, several heads; summed and sequential).
final class AxialAttentionTests: XCTestCase {
    static let cases = ["axial", "axial-sequential"]

    func testParityWithReference() throws {
        try assertParity(Self.cases)
    }

    func testMapsMatchReferenceWeights() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            guard let expected = f.map, var q = f.mapQuery, let head1 = f.file.tensors["map_head1"] else {
                return XCTFail("\(name) has no maps")
            }
            let map = try m.attentionMap(f.input, query: q)
            XCTAssertEqual(map.kind, .perQuery)
            XCTAssertEqual(map.labels.count, 3)
            assertClose(map.values, expected, rtol: 1e-4, name + " mean over heads")
            q.head = 1
            assertClose(try m.attentionMap(f.input, query: q).values, head1, rtol: 1e-4, name + " head 1")
        }
    }

    func testMapSupportAndMass() throws {
        let x = randomTensor([1, 8, 5, 7], seed: 4)
        for sum in [true, false] {
            let m = try Registry.make(id: "axial", settings: ["heads": "2", "sum_axial_out": "\(sum)"],
                                      inputShape: x.shape, seed: 3)
            let v = try m.attentionMap(x, query: MapQuery(row: 3, column: 2)).values.scalars
            let plane = 35
            func mass(_ k: Int) -> Float { v[(k * plane)..<((k + 1) * plane)].reduce(0, +) }
            XCTAssertEqual(mass(0), 1, accuracy: 1e-5)
            XCTAssertEqual(mass(1), 1, accuracy: 1e-5)
            XCTAssertEqual(mass(2), sum ? 2 : 1, accuracy: 1e-5)
            // Row and column maps are zero off their line.
            let (rowIndex, colIndex) = sum ? (1, 0) : (0, 1)
            for i in 0..<5 { for j in 0..<7 {
                if i != 3 { XCTAssertEqual(v[rowIndex * plane + i * 7 + j], 0) }
                if j != 2 { XCTAssertEqual(v[colIndex * plane + i * 7 + j], 0) }
            } }
            if !sum { XCTAssertTrue(v[(2 * plane)..<(3 * plane)].allSatisfy { $0 > 0 }, "2-hop reaches every pixel") }
        }
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("axial")
        var sd = f.stateDict
        sd.tensors["axial_attentions.1.fn.to_q.weight"] = nil
        sd.tensors["axial_attentions.2.fn.to_q.weight"] = Tensor(zeros: [1])
        XCTAssertThrowsError(try Registry.make(id: "axial", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: axial_attentions.1.fn.to_q.weight"), text)
            XCTAssertTrue(text.contains("unexpected keys: axial_attentions.2.fn.to_q.weight"), text)
        }
    }

    func testLayoutKeysAndBadInputs() throws {
        let shape = [1, 8, 4, 5]
        XCTAssertNoThrow(try Registry.make(id: "axial", settings: ["dim_index": "-3", "heads": "2"], inputShape: shape))
        XCTAssertThrowsError(try Registry.make(id: "axial", settings: ["dim_index": "-1"], inputShape: shape)) { e in
            XCTAssertTrue(String(describing: e).contains("dim_index=-1"), "\(e)")
            XCTAssertTrue(String(describing: e).contains("use dim_index=1"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "axial", settings: ["num_dimensions": "3"], inputShape: shape)) { e in
            XCTAssertTrue(String(describing: e).contains("num_dimensions=3"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "axial", settings: ["heads": "3"], inputShape: shape)) { e in
            XCTAssertTrue(String(describing: e).contains("not divisible by heads=3"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "axial", settings: ["dim_idx": "1"], inputShape: shape))
        let m = try Registry.make(id: "axial", settings: ["heads": "2"], inputShape: shape)
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 6, 4, 5]))) { e in
            XCTAssertEqual(String(describing: e), "axial: expected input N×8×H×W, found 1×6×4×5")
        }
        XCTAssertThrowsError(try m.attentionMap(Tensor(zeros: shape), query: MapQuery(row: 4, column: 0)))
        XCTAssertThrowsError(try m.attentionMap(Tensor(zeros: shape), query: MapQuery(row: 0, column: 0, head: 2)))
    }

    func testSimilarityInitialisationGivesSymmetricLogits() throws {
        // Seeded, the key half of to_kv equals to_q, so column logits s·qᵢ·qⱼ are symmetric and
        // the weights satisfy Kolmogorov's cycle criterion w(i→j)w(j→k)w(k→i) = w(i→k)w(k→j)w(j→i)
        // for three pixels of one column.
        let x = randomTensor([1, 8, 6, 5], seed: 11)
        let m = try Registry.make(id: "axial", settings: ["heads": "1"], inputShape: x.shape, seed: 2)
        let rows = [0, 2, 5], c = 3
        let maps = try rows.map { try m.attentionMap(x, query: MapQuery(row: $0, column: c)).values.scalars }
        func w(_ a: Int, _ b: Int) -> Double { Double(maps[a][rows[b] * 5 + c]) }   // column map is panel 0
        XCTAssertEqual(w(0, 1) * w(1, 2) * w(2, 0) / (w(0, 2) * w(2, 1) * w(1, 0)), 1, accuracy: 1e-4)
    }
}
