import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// smyrf against giannisdaras/smyrf SmyrfAttention through the committed fixtures
/// (Tools/reference/smyrf.py: the call's E2LSH draws captured as `alpha`/`beta`; 3 rounds of
/// clusters of 8 on L = 40, and 1 round of 12 on L = 36 with r = 2.5).
final class SmyrfAttentionTests: XCTestCase {
    static let cases = ["smyrf", "smyrf-1hash"]

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

    /// One round with one cluster of all L positions is plain softmax(x xᵀ) x (the paper's limit).
    func testOneClusterIsFullAttention() throws {
        let (l, c) = (9, 4)
        let x = randomTensor([1, l, c], seed: 6)
        let m = try Registry.make(id: "smyrf", settings: ["n_hashes": "1", "q_cluster_size": "\(l)", "k_cluster_size": "\(l)"],
                                  inputShape: x.shape)
        let full = DenseAttention.forwardNaive(lq: l, lk: l, d: c, dv: c, q: x.scalars, k: x.scalars, v: x.scalars, scale: 1)
        assertClose(try m(x), Tensor(shape: [1, l, c], scalars: full), rtol: 1e-5)
        let row = try m.attentionMap(x, query: MapQuery(row: 0, column: 4)).values.scalars
        XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-5)
        XCTAssertTrue(row.allSatisfy { $0 > 0 })
    }

    func testSeedsPaddingAndErrors() throws {
        let x = randomTensor([1, 45, 6], seed: 2)
        let s = ["n_hashes": "2", "q_cluster_size": "8", "k_cluster_size": "8"]
        let a = try Registry.make(id: "smyrf", settings: s, inputShape: x.shape, seed: 1)
        let b = try Registry.make(id: "smyrf", settings: s, inputShape: x.shape, seed: 1)
        let c = try Registry.make(id: "smyrf", settings: s, inputShape: x.shape, seed: 2)
        let ya = try a(x)
        XCTAssertEqual(ya.shape, [1, 45, 6])                       // padded to 48 inside
        XCTAssertEqual(ya.scalars, try b(x).scalars)
        XCTAssertNotEqual(ya.scalars, try c(x).scalars)
        let row = try a.attentionMap(x, query: MapQuery(row: 0, column: 44)).values.scalars
        XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-5)
        XCTAssertLessThanOrEqual(row.filter { $0 > 0 }.count, 16)           // two rounds of one cluster of 8
        XCTAssertThrowsError(try Registry.make(id: "smyrf", settings: ["q_cluster_size": "8", "k_cluster_size": "4"], inputShape: [1, 8, 4]))
        XCTAssertThrowsError(try Registry.make(id: "smyrf", settings: ["clustering_algo": "kmeans"], inputShape: [1, 8, 4]))
        XCTAssertThrowsError(try a(Tensor(zeros: [1, 45, 5]))) { e in
            XCTAssertEqual(String(describing: e), "smyrf: expected input N×L×6, found 1×45×5")
        }
        var sd = StateDict()
        sd.tensors["alpha"] = Tensor(zeros: [8, 2])
        sd.tensors["beta"] = Tensor(zeros: [2])
        sd.tensors["proj.weight"] = Tensor(zeros: [2])
        XCTAssertThrowsError(try Registry.make(id: "smyrf", settings: s, inputShape: x.shape, weights: sd)) { e in
            let text = String(describing: e)
            XCTAssertTrue(text.contains("unexpected keys: proj.weight"), text)
            XCTAssertTrue(text.contains("size mismatch for beta"), text)
        }
    }
}
