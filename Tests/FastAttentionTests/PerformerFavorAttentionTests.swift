import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// performer-favor against its PyTorch reference written from the paper
/// (Tools/reference/performer_favor.py), and the paper's promise: the random-feature estimate
/// approaches exact softmax attention as the number of features grows.
final class PerformerFavorAttentionTests: XCTestCase {
    func testParityWithReferenceFromThePaper() throws {
        try checkFixture("performer-favor")            // trigonometric, 20 = 2·8 + 4 projections
        try checkFixture("performer-favor-causal")     // trigonometric, unidirectional
        try checkFixture("performer-favor-positive")   // positive features, ortho_scaling 1, causal
    }

    /// FAVOR's trigonometric features give an unbiased estimate of exp(q·k/√d); with many
    /// orthogonal features the renormalised output approaches softmax attention (checked
    /// against DenseAttention with the same projections).
    func testApproachesSoftmaxAttentionWithMoreFeatures() throws {
        let (l, dim, heads, dh) = (24, 8, 2, 4)
        let x = randomTensor([1, l, dim], seed: 3) * 0.5
        let wq = randomTensor([heads * dh, dim], seed: 4) * 0.5
        let wk = randomTensor([heads * dh, dim], seed: 5) * 0.5
        let wv = randomTensor([heads * dh, dim], seed: 6)
        let eye = Naive.tensor(shape: [dim, heads * dh]) { $0[0] == $0[1] ? 1 : 0 }
        let q = x.matmul(wq, transposeOther: true), k = x.matmul(wk, transposeOther: true), v = x.matmul(wv, transposeOther: true)
        let exact = DenseAttention.multiHead(q: q, k: k, v: v, heads: heads, scale: 1 / Float(dh).squareRoot())
        func error(features m: Int) throws -> Float {
            var errors: [Float] = []
            for seed in 0..<4 as Range<UInt64> {
                var g = SeededGenerator(seed: seed)
                let sd = StateDict(tensors: [
                    "to_q.weight": wq, "to_k.weight": wk, "to_v.weight": wv,
                    "to_out.weight": eye, "to_out.bias": Tensor(zeros: [dim]),
                    "fast_attention.projection_matrix": PerformerAttention.gaussianOrthogonalRandomMatrix(rows: m, columns: dh, generator: &g),
                ])
                let module = try Registry.make(id: "performer-favor", settings: ["heads": "\(heads)", "dim_head": "\(dh)", "nb_features": "\(m)"],
                                               inputShape: x.shape, weights: sd)
                errors.append(maxRelativeError(try module(x), exact))
            }
            return errors.reduce(0, +) / Float(errors.count)
        }
        let coarse = try error(features: 8), fine = try error(features: 2048)
        print("performer-favor vs softmax: 8 features \(coarse), 2048 features \(fine)")
        XCTAssertLessThan(fine, coarse / 4, "more features, closer to softmax (\(coarse) → \(fine))")
        XCTAssertLessThan(fine, 0.2)   // max relative error over the whole output; O(1/√m)
    }

    func testCausalAndMapsAndLoading() throws {
        let x = randomTensor([1, 40, 8], seed: 7)
        for positive in ["false", "true"] {
            let m = try Registry.make(id: "performer-favor", settings: ["unidirectional": "true", "heads": "2", "dim_head": "4",
                                                                        "nb_features": "16", "nonnegative_features": positive],
                                      inputShape: x.shape)
            if positive == "false" {
                try checkCausal(m, x, at: 30)
            } else {
                // The positive keys' stabiliser is a max over all positions: the past moves, a little.
                let x2 = x + Naive.tensor(shape: x.shape) { $0[1] >= 30 ? 1.5 : 0 }
                let past = { (t: Tensor) in Tensor(shape: [30, 8], scalars: Array(t.scalars[..<(30 * 8)])) }
                let leak = maxRelativeError(past(try m(x2)), past(try m(x)))
                XCTAssertGreaterThan(leak, 0, "documented leak")
                XCTAssertLessThan(leak, 1e-2, "the leak is small")
            }
            let w = try m.attentionMap(x, query: MapQuery(row: 0, column: 20)).values.scalars
            XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-4)
            XCTAssertEqual(w[21...].max(), 0)
        }
        try checkStrictLoading("performer-favor", drop: "to_v.weight", reshape: "fast_attention.projection_matrix")
        try checkBadInputs("performer-favor", channels: 8)
    }
}
