import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// random-feature against its PyTorch reference written from the paper
/// (Tools/reference/random_feature.py: the gated recurrence run step by step), and the paper's
/// promises: φ(x)·φ(y) estimates the Gaussian kernel, and the gate forgets.
final class RandomFeatureAttentionTests: XCTestCase {
    func testParityWithReferenceFromThePaper() throws {
        try checkFixture("random-feature")             // gated RFA: decayed prefix sums == the recurrence
        try checkFixture("random-feature-noncausal")   // plain RFA, 3 heads, L = 37
        try checkFixture("random-feature-arccos")      // arc-cos features, causal without gate
    }

    /// φ(x)·φ(y) is an unbiased estimate of the Gaussian kernel of unit-normalised q, k, so the
    /// implicit row converges as D grows: D = 2000 lands far closer than D = 4 to an independent
    /// D = 20000 estimate of the same row (softmax of q̂·k̂ at temperature σ² = 1).
    func testEstimatesConvergeWithMoreFeatures() throws {
        let (l, c) = (20, 8)
        let x = randomTensor([1, l, c], seed: 3)
        func error(_ d: Int) throws -> Float {
            let m = try Registry.make(id: "random-feature", settings: ["num_heads": "1", "num_features": "\(d)", "causal": "false",
                                                                       "gate": "false"], inputShape: x.shape, seed: 5)
            // The same module's implicit row against exp(q̂·k̂) normalised, for query 4.
            let w = try m.attentionMap(x, query: MapQuery(row: 0, column: 4)).values.scalars
            let big = try Registry.make(id: "random-feature", settings: ["num_heads": "1", "num_features": "20000", "causal": "false",
                                                                         "gate": "false"], inputShape: x.shape, seed: 5)
            let ref = try big.attentionMap(x, query: MapQuery(row: 0, column: 4)).values
            return maxRelativeError(Tensor(shape: [1, 1, l], scalars: w), ref)
        }
        let coarse = try error(4), fine = try error(2000)
        print("random-feature vs 20000 features: 4 features \(coarse), 2000 features \(fine)")
        XCTAssertLessThan(fine, coarse / 3)
    }

    func testGatedIsCausalAndForgets() throws {
        let x = randomTensor([2, 70, 8], seed: 6)
        let m = try Registry.make(id: "random-feature", inputShape: x.shape)
        try checkCausal(m, x, at: 66)
        try checkCausal(m, x, at: 5)
        let w = try m.attentionMap(x, query: MapQuery(row: 0, column: 60)).values.scalars
        XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-4)
        XCTAssertEqual(w[61...].map(Swift.abs).max(), 0)
        // Recency: the gate's decay makes the mass near the query dominate the far past.
        let near = w[50...60].map(Swift.abs).reduce(0, +), far = w[0..<11].map(Swift.abs).reduce(0, +)
        XCTAssertGreaterThan(near, far)
    }

    func testLoadingAndInputs() throws {
        try checkStrictLoading("random-feature", drop: "gate_proj.weight", reshape: "random_matrices")
        try checkBadInputs("random-feature", channels: 8)
        XCTAssertThrowsError(try Registry.make(id: "random-feature", settings: ["causal": "false"], inputShape: [1, 4, 8]))
    }
}
