import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// cbam against the authors' CBAM (Jongchan/attention-module) through the committed fixtures
/// (Tools/reference/cbam.py: every weight and BN statistic random, H ≠ W; all four pool types).
final class CBAMTests: XCTestCase {
    static let cases = ["cbam", "cbam-lp-lse", "cbam-no-spatial"]

    func testParityWithAuthorsCode() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let y = try m(f.input)
            print("\(name): max relative error \(maxRelativeError(y, f.output))")
            assertClose(y, f.output, rtol: 1e-4, name)
        }
    }

    func testChannelGateAndSpatialMapMatchReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try XCTUnwrap(try f.makeModule() as? CBAM)
            let gate = try m.channelGate(f.input)
            assertClose(gate, try XCTUnwrap(f.file.tensors["channel_gate"]), rtol: 1e-4, name)
            if let expected = f.map {
                let map = try m.attentionMap(f.input, query: MapQuery(row: 0, column: 0))
                XCTAssertEqual(map.kind, .global)
                assertClose(map.values, expected, rtol: 1e-4, name)
                XCTAssertTrue(map.values.scalars.allSatisfy { $0 > 0 && $0 < 1 })
            } else {
                XCTAssertThrowsError(try m.attentionMap(f.input, query: MapQuery(row: 0, column: 0))) { e in
                    XCTAssertTrue(String(describing: e).contains("no_spatial=true"), String(describing: e))
                }
            }
        }
    }

    /// The fixtures exercise the channel MLP: with a ReLU layer whose every hidden unit is dead
    /// on the fixture's pooled features, the gate is σ(b₃) whatever the input, and parity would
    /// test only a bias.
    func testFixtureChannelGatesDependOnTheInput() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try XCTUnwrap(try f.makeModule() as? CBAM)
            let other = randomTensor(f.input.shape, seed: 9)
            let a = try m.channelGate(f.input).scalars, b = try m.channelGate(other).scalars
            let change = zip(a, b).map { abs($0 - $1) }.max()!
            XCTAssertGreaterThan(change, 1e-3, "\(name): the channel gate does not depend on the input")
        }
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("cbam")
        var sd = f.stateDict
        sd.tensors["SpatialGate.spatial.bn.running_var"] = nil
        sd.tensors["SpatialGate.spatial.conv.bias"] = Tensor(zeros: [1])
        sd.tensors["ChannelGate.mlp.1.weight"] = Tensor(zeros: [8, 32])
        sd.tensors["SpatialGate.spatial.bn.num_batches_tracked"] = nil   // optional, as in torch
        XCTAssertThrowsError(try Registry.make(id: "cbam", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: SpatialGate.spatial.bn.running_var"), text)
            XCTAssertTrue(text.contains("unexpected keys: SpatialGate.spatial.conv.bias"), text)
            XCTAssertFalse(text.contains("ChannelGate.mlp.1.weight"), text)
        }
        // The spatial gate's keys are unexpected in a no_spatial module.
        var settings = f.settings
        settings["no_spatial"] = "true"
        XCTAssertThrowsError(try Registry.make(id: "cbam", settings: settings, inputShape: f.input.shape,
                                               weights: f.stateDict)) { error in
            XCTAssertTrue(String(describing: error).contains("SpatialGate.spatial.conv.weight"))
        }
    }

    func testConfigErrors() throws {
        let shape = [1, 8, 4, 5]
        XCTAssertThrowsError(try Registry.make(id: "cbam", inputShape: shape)) { e in   // 8 // 16 = 0
            XCTAssertTrue(String(describing: e).contains("0 hidden units"), String(describing: e))
        }
        XCTAssertThrowsError(try Registry.make(id: "cbam", settings: ["reduction_ratio": "2", "pool_types": "avg,avg"], inputShape: shape))
        XCTAssertThrowsError(try Registry.make(id: "cbam", settings: ["reduction_ratio": "2", "pool_types": "mean"], inputShape: shape))
        XCTAssertThrowsError(try Registry.make(id: "cbam", settings: ["reduction_ratio": "2", "pool_types": "max,avg"], inputShape: shape))
        XCTAssertThrowsError(try Registry.make(id: "cbam", settings: ["reduction": "2"], inputShape: shape))
        let m = try Registry.make(id: "cbam", settings: ["reduction_ratio": "2", "pool_types": "max,lp,lse"], inputShape: shape)
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 6, 4, 5]))) { e in
            XCTAssertEqual(String(describing: e), "cbam: expected input N×8×H×W, found 1×6×4×5")
        }
    }

    func testOutputIsInputTimesBothGates() throws {
        let x = randomTensor([2, 8, 5, 3], seed: 4)
        let m = try XCTUnwrap(try Registry.make(id: "cbam", settings: ["reduction_ratio": "4"], inputShape: x.shape, seed: 9) as? CBAM)
        let y = try m(x)
        let a = try m.channelGate(x)
        let s = try m.attentionMap(x, query: MapQuery(row: 0, column: 0)).values.reshaped([1, 1, 5, 3])
        assertClose(y.batch(0), x.batch(0) * a.batch(0) * s, rtol: 1e-6)
    }
}
