import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// slim-performer against google-research's SLiM Performer MultiHeadAttention through the
/// committed fixtures (Tools/reference/slim_performer.py, the reference's rfs injected).
final class SlimPerformerAttentionTests: XCTestCase {
    func testParityWithGoogleResearch() throws {
        try checkFixture("slim-performer")           // favor+, 2 heads, L = 29
        try checkFixture("slim-performer-favor2")    // favor+_2 (two orthogonal blocks per head), 3 heads, L = 37
        try checkFixture("slim-performer-relu")      // relu features
    }

    func testSampledMatricesAreOrthogonal() {
        var g = SeededGenerator(seed: 9)
        for d in [1, 4, 7] {
            let q = SlimPerformerAttention.sampleOrthogonalMatrix(d, generator: &g)
            for i in 0..<d {
                for j in 0..<d {
                    let dot = (0..<d).map { q[$0 * d + i] * q[$0 * d + j] }.reduce(0, +)
                    XCTAssertEqual(dot, i == j ? 1 : 0, accuracy: 1e-9)
                }
            }
        }
    }

    func testAlwaysCausalAcrossChunks() throws {
        let x = randomTensor([2, 75, 8], seed: 6)      // more than one 64-position chunk
        for ft in ["favor+", "favor+_2", "elu+1"] {
            let m = try Registry.make(id: "slim-performer", settings: ["feature_type": ft], inputShape: x.shape)
            try checkCausal(m, x, at: 70)
            try checkCausal(m, x, at: 3)
        }
    }

    func testMapLoadingAndInputs() throws {
        let x = randomTensor([1, 12, 8], seed: 5)
        let m = try Registry.make(id: "slim-performer", inputShape: x.shape)
        let w = try m.attentionMap(x, query: MapQuery(row: 0, column: 7, head: 1)).values.scalars
        XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-5)
        XCTAssertEqual(w[8...].max(), 0)
        try checkStrictLoading("slim-performer", drop: "q_map.weight", reshape: "rfs")
        try checkBadInputs("slim-performer", channels: 8)
    }
}
