import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// fast-weights against IDSIA lmtool-fwms CudaNormFastWeightDPFPTransformerLayer through the
/// committed fixtures (Tools/reference/fast_weights.py: the CUDA delta kernel as its loop; the map
/// is ∂y_i/∂v_j by one-hot values pushed through that loop).
final class FastWeightsAttentionTests: XCTestCase {
    func testParityWithLmtoolFwms() throws {
        try checkFixture("fast-weights")                 // post-norm, n_roll 2, d_head 6 ≠ d_model/heads
        try checkFixture("fast-weights-roll3-prenorm")   // n_roll 3, pre_lnorm, 3 heads
        try checkFixture("fast-weights-unnormalised")    // skip_attn_normalization, n_roll 1
    }

    func testCausal() throws {
        let x = randomTensor([2, 40, 8], seed: 6)
        for settings in [[:], ["pre_lnorm": "true"], ["skip_attn_normalization": "true"]] as [[String: String]] {
            let m = try Registry.make(id: "fast-weights", settings: settings, inputShape: x.shape)
            try checkCausal(m, x, at: 30)
            try checkCausal(m, x, at: 1)
        }
    }

    /// The map of a seeded module: weights vanish after the query, and the query's own value has
    /// weight β_i·(k_i·q_i)·scale > 0 under the similarity initialisation (k_i = q_i before rescaling).
    func testMapIsCausalAndSelfWeighted() throws {
        let x = randomTensor([1, 15, 8], seed: 4)
        let m = try Registry.make(id: "fast-weights", settings: ["n_head": "2"], inputShape: x.shape)
        let w = try m.attentionMap(x, query: MapQuery(row: 0, column: 9, head: 1)).values.scalars
        XCTAssertEqual(w[10...].map(Swift.abs).max(), 0)
        XCTAssertGreaterThan(w[9], 0)
    }

    func testLoadingAndInputs() throws {
        try checkStrictLoading("fast-weights", drop: "o_net.weight", reshape: "layer_norm.bias")
        try checkBadInputs("fast-weights", channels: 8)
    }
}
