import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// linear-transformer against fast-transformers 0.4.0 through the committed fixtures
/// (Tools/reference/linear_transformer.py: random weights, L = 37 and 29, several heads).
final class LinearTransformerAttentionTests: XCTestCase {
    func testParityWithFastTransformers() throws {
        try checkFixture("linear-transformer")          // d_keys 6 ≠ d_values 5 ≠ d_model/heads
        try checkFixture("linear-transformer-causal")   // the authors' recurrent form as oracle
    }

    func testCausalIgnoresTheFuture() throws {
        let x = randomTensor([2, 70, 8], seed: 4)     // 70 > one 64-position chunk
        let m = try Registry.make(id: "linear-transformer", settings: ["causal": "true", "n_heads": "2"], inputShape: x.shape)
        try checkCausal(m, x, at: 66)
        try checkCausal(m, x, at: 9)
    }

    func testMapRowsSumToOneAndCausalRowsEndAtTheQuery() throws {
        let x = randomTensor([1, 12, 8], seed: 5)
        for causal in ["false", "true"] {
            let m = try Registry.make(id: "linear-transformer", settings: ["causal": causal], inputShape: x.shape)
            for head in [nil, 1] as [Int?] {
                let w = try m.attentionMap(x, query: MapQuery(row: 0, column: 6, head: head)).values
                XCTAssertEqual(w.shape, [1, 1, 12])
                XCTAssertEqual(w.scalars.reduce(0, +), 1, accuracy: 1e-5)
                if causal == "true" { XCTAssertEqual(w.scalars[7...].max(), 0) }
            }
        }
    }

    func testStrictLoadingAndBadInputs() throws {
        try checkStrictLoading("linear-transformer", drop: "key_projection.weight", reshape: "out_projection.bias")
        try checkBadInputs("linear-transformer", channels: 8)
    }
}
