import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// sparse-transformer against the PyTorch masked-dense port of openai/sparse_attention's masks
/// (Tools/reference/sparse_transformer.py), plus pattern and causality properties.
final class SparseTransformerAttentionTests: XCTestCase {
    static let cases = ["sparse-transformer", "sparse-transformer-strided-only", "sparse-transformer-fixed",
                        "sparse-transformer-local", "sparse-transformer-all", "sparse-transformer-fixed-default-ctx",
                        "sparse-transformer-bidirectional", "sparse-transformer-image-fixed"]

    func testParityWithMaskedDenseReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            assertClose(try m(f.input), f.output, rtol: 1e-4, name)
            let map = try m.attentionMap(f.input, query: f.mapQuery!)
            assertClose(map.values, f.map!, rtol: 1e-4, name + " map")
        }
    }

    /// The layouts' pairs are exactly the paper's/openai's definitions, L ragged against blocks.
    func testPatternsMatchDefinitions() throws {
        for (l, bs, ell) in [(45, 4, 7), (50, 8, 6), (17, 4, 5)] {
            for causal in [true, false] {
                let before: (Int, Int) -> Bool = { q, k in !causal || k <= q }
                let local = SparseTransformerPatternsProbe.local(l, bs, ell, causal)
                let strided = SparseTransformerPatternsProbe.strided(l, bs, ell, causal, merged: true)
                for q in 0..<l {
                    for k in 0..<l {
                        let near = abs(q - k) < ell, col = (q - k) % ell == 0
                        XCTAssertEqual(local[q * l + k], before(q, k) && near ? 1 : 0)
                        XCTAssertEqual(strided[q * l + k], before(q, k) && (near || col) ? 1 : 0, "\(q),\(k)")
                    }
                }
            }
        }
    }

    func testCausalOutputsIgnoreTheFuture() throws {
        for mode in ["strided", "fixed", "local", "all"] {
            var x = randomTensor([1, 37, 8], seed: 4)
            let m = try Registry.make(id: "sparse-transformer", settings: ["attn_mode": mode, "heads": "2", "num_verts": "2",
                                                                          "blocksize": "4"], inputShape: x.shape, seed: 3)
            let y0 = try m(x)
            x.withUnsafeMutableBufferPointer { p in for i in (21 * 8)..<(37 * 8) { p[i] = -7 } }
            let y1 = try m(x)
            XCTAssertEqual(Array(y0.scalars[0..<(21 * 8)]), Array(y1.scalars[0..<(21 * 8)]), mode)
        }
    }

    func testCostIsNTimesRootN() throws {
        // Computed pairs (blocks × block area) of the default strided pattern grow as L·√L.
        let m = try Registry.make(id: "sparse-transformer", inputShape: [1, 16, 8]) as! SparseTransformerAttention
        func pairs(_ l: Int) throws -> Double {
            Double(try m.layouts(length: l).flatMap { $0 }.reduce(0) { $0 + $1.entryCount }) * 32 * 32
        }
        let a = try pairs(4096), b = try pairs(16384)
        XCTAssertLessThan(log(b / a) / log(4.0), 1.6)
        XCTAssertLessThan(b, 0.1 * 16384 * 16384)
    }

    func testMapIsARowOnThePattern() throws {
        let x = randomTensor([1, 30, 8], seed: 9)
        let m = try Registry.make(id: "sparse-transformer", settings: ["local_attn_ctx": "5"], inputShape: x.shape, seed: 1)
        let w = try m.attentionMap(x, query: MapQuery(row: 0, column: 23)).values.scalars
        XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-5)
        for k in 0..<30 {
            let on = k <= 23 && (23 - k < 5 || (23 - k) % 5 == 0)
            if !on { XCTAssertEqual(w[k], 0, "\(k)") } else { XCTAssertGreaterThan(w[k], 0, "\(k)") }
        }
    }

    func testStrictLoadingAndBadInputs() throws {
        let f = try Fixture.load("sparse-transformer")
        var sd = f.stateDict
        sd.tensors["key.bias"] = nil
        sd.tensors["out.weight"] = Tensor(zeros: [1])
        XCTAssertThrowsError(try Registry.make(id: "sparse-transformer", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { e in
            let text = String(describing: e)
            XCTAssertTrue(text.contains("missing keys: key.bias"), text)
            XCTAssertTrue(text.contains("unexpected keys: out.weight"), text)
        }
        let m = try Registry.make(id: "sparse-transformer", inputShape: [1, 10, 8])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 10, 6]))) { e in
            XCTAssertEqual(String(describing: e), "sparse-transformer: expected input N×L×8, found 1×10×6")
        }
        XCTAssertThrowsError(try Registry.make(id: "sparse-transformer", settings: ["heads": "3"], inputShape: [1, 10, 8]))
        XCTAssertThrowsError(try Registry.make(id: "sparse-transformer", settings: ["attn_mode": "fixed", "local_attn_ctx": "20"],
                                               inputShape: [1, 10, 8])) { e in
            XCTAssertTrue(String(describing: e).contains("multiple of blocksize"), String(describing: e))
        }
        XCTAssertThrowsError(try Registry.make(id: "sparse-transformer", settings: ["attn_mode": "dilated"], inputShape: [1, 10, 8]))
        let img = try Registry.make(id: "sparse-transformer", settings: ["image_width": "4"], inputShape: [1, 10, 8])
        XCTAssertThrowsError(try img(Tensor(zeros: [1, 10, 8])))
    }

    func testInfoRendersLayout() throws {
        let m = try Registry.make(id: "sparse-transformer", settings: ["blocksize": "4", "local_attn_ctx": "4"],
                                  inputShape: [1, 16, 8]) as! SparseTransformerAttention
        let text = try m.layoutDescription(length: 16)
        XCTAssertTrue(text.contains("local ℓ=4"), text)
        XCTAssertTrue(text.contains("strided ℓ=4"), text)
        XCTAssertTrue(text.contains("  +...\n  ++..\n  .++.\n  ..++"), text)
    }
}

/// Dense counts of the sparse-transformer builders through the public module API.
enum SparseTransformerPatternsProbe {
    static func local(_ l: Int, _ bs: Int, _ ell: Int, _ causal: Bool) -> [Int32] {
        let m = try! Registry.make(id: "sparse-transformer", settings: ["attn_mode": "local", "local_attn_ctx": "\(ell)",
                                                                        "blocksize": "\(bs)", "causal": "\(causal)",
                                                                        "heads": "1"], inputShape: [1, l, 4])
        return try! (m as! SparseTransformerAttention).layouts(length: l)[0][0].denseCounts()
    }

    static func strided(_ l: Int, _ bs: Int, _ ell: Int, _ causal: Bool, merged: Bool) -> [Int32] {
        let m = try! Registry.make(id: "sparse-transformer", settings: ["local_attn_ctx": "\(ell)", "blocksize": "\(bs)",
                                                                        "causal": "\(causal)", "merged": "\(merged)",
                                                                        "heads": "1"], inputShape: [1, l, 4])
        let parts = try! (m as! SparseTransformerAttention).layouts(length: l)
        var c = [Int32](repeating: 0, count: l * l)
        for p in parts { for (i, v) in p[0].denseCounts().enumerated() { c[i] += v } }
        return c
    }
}
