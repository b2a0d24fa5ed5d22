import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// multiscale-transformer against the paper-based PyTorch reference
/// (Tools/reference/multiscale_transformer.py), plus the properties the paper's LM needs.
final class MultiscaleRetinaAttentionTests: XCTestCase {
    static let cases = ["multiscale-transformer", "multiscale-transformer-bidirectional", "multiscale-transformer-long"]

    func testParityWithReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            assertClose(try m(f.input), f.output, rtol: 1e-4, name)
            let map = try m.attentionMap(f.input, query: f.mapQuery!)
            assertClose(map.values, f.map!, rtol: 1e-4, name + " map")
            XCTAssertEqual(map.values.scalars.reduce(0, +), 1, accuracy: 1e-5)
        }
    }

    func testCausalNoFutureInCoarseTokens() throws {
        var x = randomTensor([1, 61, 8], seed: 2)
        let m = try Registry.make(id: "multiscale-transformer", settings: ["window": "5", "pool": "4"], inputShape: x.shape, seed: 1)
        let y0 = try m(x)
        x.withUnsafeMutableBufferPointer { p in for i in (37 * 8)..<(61 * 8) { p[i] = -4 } }
        XCTAssertEqual(Array(y0.scalars[0..<(37 * 8)]), Array(try m(x).scalars[0..<(37 * 8)]))
    }

    func testSupportIsWindowPlusEarlierSpans() throws {
        let m = try Registry.make(id: "multiscale-transformer", settings: ["window": "6", "pool": "4"],
                                  inputShape: [1, 40, 8]) as! MultiscaleRetinaAttention
        let keys = try m.layouts(length: 40)[0][0].support(ofQuery: 30).sorted()
        // Fine 25...30; spans 0..5 end at 3, 7, ..., 23 ≤ 30 − 6 = 24 → coarse keys 40...45.
        XCTAssertEqual(keys, Array(25...30) + Array(40...45))
        XCTAssertThrowsError(try Registry.make(id: "multiscale-transformer", settings: ["heads": "3"], inputShape: [1, 8, 8]))
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 8, 4])))
    }

    func testStrictLoading() throws {
        try checkStrictLoading("multiscale-transformer", drop: "out.bias", reshape: "key.weight")
    }
}
