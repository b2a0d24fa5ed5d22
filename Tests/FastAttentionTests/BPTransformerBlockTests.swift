import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// bp-transformer: the binary-partition graph against yzh119/BPT's compiled builder (edges stored
/// in the fixtures), and the block against a dense masked PyTorch BPTBlock
/// (Tools/reference/bp_transformer.py).
final class BPTransformerBlockTests: XCTestCase {
    static let cases = ["bp-transformer", "bp-transformer-triu", "bp-transformer-step4"]

    func testGraphMatchesTheBuilder() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let l = f.input.shape[1]
            let g = BinaryPartitionGraph(length: l, triu: f.settings["triu"] == "true", step: Int(f.settings["step"]!)!)
            let src = f.file.tensors["edges_src"]!.scalars.map { Int($0) }, dst = f.file.tensors["edges_dst"]!.scalars.map { Int($0) }
            var expected = [[Int]](repeating: [], count: g.nodeCount)
            for (s, d) in zip(src, dst) { expected[d].append(s) }
            XCTAssertEqual(g.inEdges.map { $0.sorted() }, expected.map { $0.sorted() }, name)
        }
    }

    func testParityWithDenseBPTBlock() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            assertClose(try m(f.input), f.output, rtol: 1e-4, name)
            let map = try m.attentionMap(f.input, query: f.mapQuery!)
            assertClose(map.values, f.map!, rtol: 1e-4, name + " map")
            XCTAssertEqual(map.values.scalars.reduce(0, +), 1, accuracy: 1e-5)
        }
    }

    func testTriuIsCausalAndBadInputs() throws {
        var x = randomTensor([1, 40, 8], seed: 3)
        let m = try Registry.make(id: "bp-transformer", settings: ["triu": "true", "step": "2"], inputShape: x.shape, seed: 2)
        let y0 = try m(x)
        x.withUnsafeMutableBufferPointer { p in for i in (23 * 8)..<(40 * 8) { p[i] = 9 } }
        XCTAssertEqual(Array(y0.scalars[0..<(23 * 8)]), Array(try m(x).scalars[0..<(23 * 8)]))
        XCTAssertThrowsError(try Registry.make(id: "bp-transformer", settings: ["rel_pos": "true"], inputShape: [1, 8, 8]))
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 8, 6]))) { e in
            XCTAssertEqual(String(describing: e), "bp-transformer: expected input N×L×8, found 1×8×6")
        }
        let f = try Fixture.load("bp-transformer")
        var sd = f.stateDict
        sd.tensors["ffn.0.w_1.bias"] = nil
        XCTAssertThrowsError(try Registry.make(id: "bp-transformer", settings: f.settings, inputShape: f.input.shape, weights: sd)) { e in
            XCTAssertTrue(String(describing: e).contains("missing keys: ffn.0.w_1.bias"), String(describing: e))
        }
        let one = try Registry.make(id: "bp-transformer", inputShape: [1, 1, 8])
        let y1 = try one(Tensor(zeros: [1, 1, 8]))
        XCTAssertEqual(y1.shape, [1, 1, 8])
    }
}
