import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// global-context against mmcv's ContextBlock through the committed fixtures
/// (Tools/reference/global_context.py: every weight random, H ≠ W; add, mul, add+mul, avg).
final class GlobalContextBlockTests: XCTestCase {
    static let cases = ["global-context", "global-context-mul", "global-context-add-mul", "global-context-avg"]

    func testParityWithMMCV() throws {
        try assertParity(Self.cases)
    }

    func testMapIsTheReferenceContextWeights() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            guard let expected = f.map else { return XCTFail("\(name) has no map") }
            // Query-independent: any query gives the same map.
            let a = try m.attentionMap(f.input, query: MapQuery(row: 0, column: 0))
            let b = try m.attentionMap(f.input, query: MapQuery(row: 3, column: 2))
            XCTAssertEqual(a.kind, .global)
            XCTAssertEqual(a.values.scalars, b.values.scalars)
            assertClose(a.values, expected, rtol: 1e-4, name)
            XCTAssertEqual(a.values.scalars.reduce(0, +), 1, accuracy: 1e-5)
        }
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("global-context-add-mul")
        var sd = f.stateDict
        sd.tensors["channel_mul_conv.1.weight"] = nil
        sd.tensors["channel_add_conv.2.weight"] = Tensor(zeros: [1])
        sd.tensors["channel_add_conv.1.bias"] = Tensor(zeros: [4])
        XCTAssertThrowsError(try Registry.make(id: "global-context", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: channel_mul_conv.1.weight"), text)
            XCTAssertTrue(text.contains("unexpected keys: channel_add_conv.2.weight"), text)
            XCTAssertTrue(text.contains("size mismatch for channel_add_conv.1.bias"), text)
        }
        // An add-only checkpoint does not load into an add+mul block.
        let add = try Fixture.load("global-context")
        XCTAssertThrowsError(try Registry.make(id: "global-context", settings: ["fusion_types": "channel_add,channel_mul"],
                                               inputShape: add.input.shape, weights: add.stateDict))
    }

    func testConfigErrors() throws {
        let shape = [1, 8, 4, 5]
        XCTAssertThrowsError(try Registry.make(id: "global-context", settings: ["fusion_types": "channel_sum"], inputShape: shape))
        XCTAssertThrowsError(try Registry.make(id: "global-context", settings: ["pooling_type": "max"], inputShape: shape))
        XCTAssertThrowsError(try Registry.make(id: "global-context", settings: ["ratio": "1/16"], inputShape: shape)) { e in
            XCTAssertTrue(String(describing: e).contains("0 bottleneck planes"), String(describing: e))
        }
        XCTAssertThrowsError(try Registry.make(id: "global-context", settings: ["inplanes": "8"], inputShape: shape))
        let m = try Registry.make(id: "global-context", settings: ["fusion_types": "channel_mul,channel_add"], inputShape: shape)
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 6, 4, 5]))) { e in
            XCTAssertEqual(String(describing: e), "global-context: expected input N×8×H×W, found 1×6×4×5")
        }
    }

    func testBatchItemsAreIndependent() throws {
        let x = randomTensor([2, 8, 5, 3], seed: 4)
        let m = try Registry.make(id: "global-context", settings: ["fusion_types": "channel_add,channel_mul"],
                                  inputShape: x.shape, seed: 9)
        let y = try m(x)
        let y1 = try m(x.batch(1))
        assertClose(y.batch(1), y1, rtol: 1e-6)
    }
}

extension Tensor {
    /// Batch item `i` as a 1×… tensor (tests).
    func batch(_ i: Int) -> Tensor {
        let per = count / shape[0]
        return Tensor(shape: [1] + Array(shape.dropFirst()), scalars: Array(scalars[(i * per)..<((i + 1) * per)]))
    }
}
