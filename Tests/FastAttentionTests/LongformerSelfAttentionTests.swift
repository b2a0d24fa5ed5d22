import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// longformer against HF transformers' LongformerSelfAttention (Tools/reference/longformer.py),
/// and the dilated window against the dense masked reference written from the paper.
final class LongformerSelfAttentionTests: XCTestCase {
    static let cases = ["longformer", "longformer-global", "longformer-global-query", "longformer-dilated",
                        "longformer-autoregressive"]

    func testParityWithHF() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            assertClose(try m(f.input), f.output, rtol: 1e-4, name)
            let map = try m.attentionMap(f.input, query: f.mapQuery!)
            assertClose(map.values, f.map!, rtol: 1e-4, name + " map")
            XCTAssertEqual(map.values.scalars.reduce(0, +), 1, accuracy: 1e-5)
        }
    }

    func testAnyLengthEqualsTheWindowDefinition() throws {
        // L = 37 (not a multiple of attention_window), dilation 1 and 3, 2 global tokens.
        for d in [1, 3] {
            let m = try Registry.make(id: "longformer", settings: ["attention_window": "6", "global_tokens": "2",
                                                                   "attention_dilation": "\(d)", "num_attention_heads": "2"],
                                      inputShape: [1, 37, 8]) as! LongformerSelfAttention
            let c = try m.layouts(length: 37)[0][0].denseCounts()
            for i in 0..<37 {
                for j in 0..<37 {
                    let on = (abs(i - j) <= 3 * d && (i - j) % d == 0) || j < 2
                    XCTAssertEqual(c[i * 37 + j], on ? 1 : 0, "d=\(d) \(i),\(j)")
                }
            }
            let x = randomTensor([2, 37, 8], seed: 5)
            XCTAssertEqual(try m(x).shape, [2, 37, 8])
        }
    }

    func testAutoregressiveIgnoresTheFuture() throws {
        for d in [1, 2] {
            var x = randomTensor([1, 45, 8], seed: 8)
            let m = try Registry.make(id: "longformer", settings: ["autoregressive": "true", "attention_window": "8",
                                                                   "global_tokens": "3", "attention_dilation": "\(d)"],
                                      inputShape: x.shape, seed: 1)
            let y0 = try m(x)
            x.withUnsafeMutableBufferPointer { p in for i in (19 * 8)..<(45 * 8) { p[i] = 2 } }
            XCTAssertEqual(Array(y0.scalars[0..<(19 * 8)]), Array(try m(x).scalars[0..<(19 * 8)]), "d=\(d)")
        }
    }

    func testStrictLoadingAndBadInputs() throws {
        let f = try Fixture.load("longformer-global")
        var sd = f.stateDict
        sd.tensors["value_global.weight"] = nil
        sd.tensors["query.weight"] = Tensor(zeros: [12, 6])
        XCTAssertThrowsError(try Registry.make(id: "longformer", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { e in
            let text = String(describing: e)
            XCTAssertTrue(text.contains("missing keys: value_global.weight"), text)
            XCTAssertTrue(text.contains("query.weight"), text)
        }
        XCTAssertThrowsError(try Registry.make(id: "longformer", settings: ["attention_window": "5"], inputShape: [1, 8, 8]))
        XCTAssertThrowsError(try Registry.make(id: "longformer", settings: ["num_attention_heads": "3"], inputShape: [1, 8, 8]))
        let m = try Registry.make(id: "longformer", settings: ["global_tokens": "9"], inputShape: [1, 8, 8])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 8, 8]))) { e in
            XCTAssertTrue(String(describing: e).contains("L ≥ global_tokens=9"), String(describing: e))
        }
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 8, 4]))) { e in
            XCTAssertEqual(String(describing: e), "longformer: expected input N×L×8, found 1×8×4")
        }
    }

    func testCostIsLinear() throws {
        let m = try Registry.make(id: "longformer", settings: ["attention_window": "64", "global_tokens": "4"],
                                  inputShape: [1, 16, 8]) as! LongformerSelfAttention
        let a = try m.layouts(length: 4096)[0][0].entryCount, b = try m.layouts(length: 16384)[0][0].entryCount
        XCTAssertLessThan(log(Double(b) / Double(a)) / log(4.0), 1.05)
    }
}
