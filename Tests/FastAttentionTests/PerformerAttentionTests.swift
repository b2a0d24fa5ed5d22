import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// performer against performer-pytorch 1.1.4 through the committed fixtures
/// (Tools/reference/performer.py: random weights and projection, L = 37/29/23, several heads).
final class PerformerAttentionTests: XCTestCase {
    func testParityWithPerformerPytorch() throws {
        try checkFixture("performer")              // nb_features 20 = 2 blocks of 8 + 4 rows, qkv_bias
        try checkFixture("performer-causal")       // prefix sums, keys stabilised over all positions
        try checkFixture("performer-generalized")  // ReLU kernel, no to_out bias
        try checkFixture("performer-no-projection") // softmax(q) over features, softmax(k) over positions
        try checkFixture("performer-no-projection-causal") // exp(k), prefix sums across two kernel chunks
        try checkFixture("performer-generalized-causal")   // ReLU kernel, prefix sums across two kernel chunks
    }

    func testSeededProjectionIsOrthogonalBlocksWithChiNorms() throws {
        let recs = try Registry.parameterRecords(id: "performer", settings: ["dim_head": "8", "nb_features": "20"],
                                                 inputShape: [1, 4, 16])
        XCTAssertTrue(recs.contains { $0.key == "fast_attention.projection_matrix" && $0.shape == [20, 8] && $0.kind == .buffer })
        var g = SeededGenerator(seed: 3)
        let w = PerformerAttention.gaussianOrthogonalRandomMatrix(rows: 20, columns: 8, generator: &g)
        // Rows within a block are orthogonal (directions); their norms are the χ draws.
        let s = w.scalars
        func row(_ r: Int) -> [Float] { Array(s[(r * 8)..<((r + 1) * 8)]) }
        func dot(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map(*).reduce(0, +) }
        for block in [0, 8] {
            for i in block..<(block + 8) {
                for j in (i + 1)..<(block + 8) {
                    XCTAssertEqual(dot(row(i), row(j)) / (dot(row(i), row(i)) * dot(row(j), row(j))).squareRoot(), 0, accuracy: 1e-5)
                }
            }
        }
        for i in 16..<20 { for j in (i + 1)..<20 { XCTAssertEqual(dot(row(i), row(j)) / (dot(row(i), row(i)) * dot(row(j), row(j))).squareRoot(), 0, accuracy: 1e-5) } }
        // Seeded modules are deterministic.
        let x = randomTensor([1, 9, 16], seed: 2)
        let a = try Registry.make(id: "performer", settings: ["dim_head": "8"], inputShape: x.shape, seed: 4)
        let b = try Registry.make(id: "performer", settings: ["dim_head": "8"], inputShape: x.shape, seed: 4)
        XCTAssertEqual(try a(x).scalars, try b(x).scalars)
    }

    /// The reference stabilises keys by their max over all positions, so causal outputs move a
    /// little when the future changes — only through the 1e-4 added after the exp. With the
    /// stabiliser fixed (all keys equal in scale) the port must be exactly causal.
    func testCausalityAsTheReference() throws {
        let x = randomTensor([1, 40, 8], seed: 7)
        let m = try Registry.make(id: "performer", settings: ["causal": "true", "heads": "2", "dim_head": "4", "nb_features": "6"],
                                  inputShape: x.shape)
        let y = try m(x)
        var x2 = x
        x2 = x2 + Naive.tensor(shape: x.shape) { $0[1] >= 30 ? 0.5 : 0 }
        let y2 = try m(x2)
        let past = { (t: Tensor) in Tensor(shape: [30, 8], scalars: Array(t.scalars[..<(30 * 8)])) }
        let leak = maxRelativeError(past(y2), past(y))
        XCTAssertLessThan(leak, 1e-2, "the leak is small, as in the reference")
        // generalized_attention has no stabiliser: strictly causal.
        let g = try Registry.make(id: "performer", settings: ["causal": "true", "generalized_attention": "true", "dim_head": "4"],
                                  inputShape: x.shape)
        try checkCausal(g, x, at: 30)
    }

    func testMapRowsSumToOneAndStrictLoading() throws {
        let x = randomTensor([1, 12, 16], seed: 5)
        let m = try Registry.make(id: "performer", settings: ["dim_head": "8"], inputShape: x.shape)
        let w = try m.attentionMap(x, query: MapQuery(row: 0, column: 3)).values
        XCTAssertEqual(w.scalars.reduce(0, +), 1, accuracy: 1e-5)
        try checkStrictLoading("performer", drop: "fast_attention.projection_matrix", reshape: "to_q.bias")
        try checkBadInputs("performer", channels: 16)
        XCTAssertThrowsError(try Registry.make(id: "performer", settings: ["local_heads": "2"], inputShape: [1, 4, 16]))
    }
}
