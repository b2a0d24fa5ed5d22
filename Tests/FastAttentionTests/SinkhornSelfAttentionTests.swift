import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// sinkhorn against pip sinkhorn-transformer 0.11.4 SinkhornSelfAttention through the committed
/// fixtures (Tools/reference/sinkhorn.py: random weights; soft top-1 and top-2 block sorts, and
/// Gumbel-Sinkhorn with the call's noise injected).
final class SinkhornSelfAttentionTests: XCTestCase {
    static let cases = ["sinkhorn", "sinkhorn-top2", "sinkhorn-gumbel"]

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

    func testSeedsKeysAndErrors() throws {
        let x = randomTensor([1, 24, 8], seed: 1)
        let s = ["heads": "2", "bucket_size": "4", "non_permutative": "false"]
        let a = try Registry.make(id: "sinkhorn", settings: s, inputShape: x.shape, seed: 1)
        let b = try Registry.make(id: "sinkhorn", settings: s, inputShape: x.shape, seed: 1)
        let c = try Registry.make(id: "sinkhorn", settings: s, inputShape: x.shape, seed: 2)
        XCTAssertEqual(try a(x).scalars, try b(x).scalars)
        XCTAssertNotEqual(try a(x).scalars, try c(x).scalars)
        XCTAssertThrowsError(try a(randomTensor([1, 25, 8]))) { e in
            XCTAssertEqual(String(describing: e), "sinkhorn: expected input N×L×8 with L a multiple of 4, found 1×25×8")
        }
        XCTAssertThrowsError(try Registry.make(id: "sinkhorn", settings: ["n_sortcut": "2"], inputShape: [1, 8, 4]))
        let f = try Fixture.load("sinkhorn")
        var sd = f.stateDict
        sd.tensors["to_out.bias"] = nil
        sd.tensors["sinkhorn_attention.null_keys"] = Tensor(zeros: [3, 1, 8])
        XCTAssertThrowsError(try Registry.make(id: "sinkhorn", settings: f.settings, inputShape: f.input.shape, weights: sd)) { e in
            let text = String(describing: e)
            XCTAssertTrue(text.contains("missing keys: to_out.bias"), text)
            XCTAssertTrue(text.contains("unexpected keys: sinkhorn_attention.null_keys"), text)
        }
        let row = try a.attentionMap(x, query: MapQuery(row: 0, column: 5)).values.scalars
        XCTAssertGreaterThan(row.reduce(0, +), 0.5)
    }
}
