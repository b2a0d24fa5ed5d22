import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// sinkhorn against pip sinkhorn-transformer 0.11.4 SinkhornSelfAttention through the committed
/// fixtures (Tools/reference/sinkhorn.py: random weights; soft top-1 and top-2 block sorts, and
/// Gumbel-Sinkhorn with the call's noise injected).
final class SinkhornSelfAttentionTests: XCTestCase {
    static let cases = ["sinkhorn", "sinkhorn-top2", "sinkhorn-gumbel", "sinkhorn-causal", "sinkhorn-padded"]

    func testParityWithReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let y = try m(f.input)
            print("\(name): max relative error \(maxRelativeError(y, f.output))")
            assertClose(y, f.output, rtol: 1e-4, name)
            guard let expected = f.map, let q = f.mapQuery else { continue }      // causal: see below
            assertClose(try m.attentionMap(f.input, query: q).values, expected, rtol: 1e-4, name + " map")
        }
    }

    /// Causal: perturbing the inputs after position i leaves outputs ≤ i unchanged, and maps
    /// have no weight after the query (rotated and plain heads alike).
    func testCausalIgnoresTheFuture() throws {
        let f = try Fixture.load("sinkhorn-causal")
        let m = try f.makeModule()
        let (l, c) = (f.input.shape[1], f.input.shape[2])
        let y = try m(f.input)
        for i in [0, 3, 13, 26] {
            var x2 = f.input
            x2.withUnsafeMutableBufferPointer { p in for j in ((i + 1) * c)..<(l * c) { p[j] += 2 } }
            let y2 = try m(x2)
            let past = y.sliced(axis: 1, range: 0..<(i + 1)), past2 = y2.sliced(axis: 1, range: 0..<(i + 1))
            XCTAssertLessThanOrEqual(zip(past.scalars, past2.scalars).map { abs($0 - $1) }.max()!, 1e-6, "position \(i)")
            for h in 0..<3 {
                let row = try m.attentionMap(f.input, query: MapQuery(row: 0, column: i, head: h)).values.scalars
                XCTAssertTrue(row[(i + 1)...].allSatisfy { $0 == 0 }, "head \(h) query \(i) sees the future")
                XCTAssertGreaterThan(row.reduce(0, +), 0)
            }
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
        XCTAssertThrowsError(try a(randomTensor([1, 24, 9]))) { e in
            XCTAssertEqual(String(describing: e), "sinkhorn: expected input N×L×8, found 1×24×9")
        }
        let padded = try Registry.make(id: "sinkhorn", settings: ["heads": "2", "bucket_size": "4"], inputShape: [1, 25, 8])
        XCTAssertEqual(try padded(randomTensor([1, 25, 8])).shape, [1, 25, 8])          // zero tokens up to 28, masked
        let causal = try Registry.make(id: "sinkhorn", settings: ["heads": "2", "bucket_size": "4", "causal": "true"], inputShape: [1, 25, 8])
        XCTAssertEqual(try causal(randomTensor([1, 25, 8])).shape, [1, 25, 8])
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
