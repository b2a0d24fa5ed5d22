@testable import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// bp-transformer against the PyTorch reference (Tools/reference/bp_transformer.py: the BPTBlock
/// stack over a graph built like yzh119/BPT's Cython BinaryPartition), plus graph properties.
final class BinaryPartitionTransformerTests: XCTestCase {
    func testParityWithReference() throws {
        for name in ["bp-transformer", "bp-transformer-step1", "bp-transformer-short"] {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            assertClose(try m(f.input), f.output, rtol: 1e-4, name)
            let map = try m.attentionMap(f.input, query: f.mapQuery!)
            assertClose(map.values, f.map!, rtol: 1e-4, name + " map")
        }
    }

    /// The builder's pointer loop (builder.pyx, triu=True), restated: (src, dst) in level-major ids.
    static func builderEdges(length: Int, step: Int) -> Set<[Int]> {
        var sizes: [Int] = [], shift = [0], n = length
        while n >= 2 { sizes.append(n); shift.append(shift.last! + n); n = (n + 1) >> 1 }
        sizes.append(1)
        var edges = Set<[Int]>()
        for i in 0..<length {
            var v = i, base = 0, left = i - 1, overlap = false
            for j in 0..<sizes.count {
                for _ in 0..<step {
                    if left >= 0 {
                        edges.insert([overlap ? shift[j - 1] + 2 * left : shift[j] + left, i])
                        overlap = false
                    }
                    left -= 1
                }
                if left & 1 == 0 { overlap = true }
                left >>= 1
                edges.insert([i, base + v])
                base += sizes[j]
                v >>= 1
            }
        }
        return edges
    }

    /// The layout's pairs are exactly the builder's edges (dst = query, src = key), ragged L and
    /// several steps and block sizes; padding rows read and are read by nothing that matters.
    func testLayoutIsTheBuilderGraph() throws {
        for (l, k, bs) in [(1, 1, 4), (2, 1, 2), (5, 3, 4), (27, 2, 4), (37, 1, 8), (64, 4, 16), (100, 3, 8)] {
            let g = BinaryPartitionGraph(length: l, step: k, blockSize: bs)
            var levelMajor = [Int: Int]()
            for (i, r) in g.nodeRows.enumerated() { levelMajor[Int(r)] = i }
            var got = Set<[Int]>()
            for (dst, r) in g.nodeRows.enumerated() {
                for key in g.layout.support(ofQuery: Int(r)) {
                    guard let src = levelMajor[key] else { XCTFail("L=\(l): node \(dst) reads padding row \(key)"); continue }
                    XCTAssertTrue(got.insert([src, dst]).inserted, "L=\(l): duplicate edge")
                }
            }
            XCTAssertEqual(got, Self.builderEdges(length: l, step: k), "L=\(l) k=\(k) block \(bs)")
        }
    }

    func testCausalOutputsIgnoreTheFuture() throws {
        var x = randomTensor([1, 45, 8], seed: 4)
        let m = try Registry.make(id: "bp-transformer", settings: ["h": "2", "step": "2", "block_size": "4", "n_layers": "3"],
                                  inputShape: x.shape, seed: 3)
        let y0 = try m(x)
        x.withUnsafeMutableBufferPointer { p in for i in (21 * 8)..<(45 * 8) { p[i] = -7 } }
        let y1 = try m(x)
        XCTAssertEqual(Array(y0.scalars[0..<(21 * 8)]), Array(y1.scalars[0..<(21 * 8)]))
        XCTAssertNotEqual(Array(y0.scalars[(21 * 8)...]), Array(y1.scalars[(21 * 8)...]))
    }

    func testCostIsNLogN() throws {
        // Computed pairs (entries × block area) grow as L·log L at fixed k and block size.
        func pairs(_ l: Int) -> Double { Double(BinaryPartitionGraph(length: l, step: 4, blockSize: 16).layout.entryCount) * 256 }
        let a = pairs(1024), b = pairs(4096)
        XCTAssertLessThan(log(b / a) / log(4.0), 1.2)
        XCTAssertLessThan(b, 0.2 * 4096 * 4096)
    }

    func testMapIsTheQuerysTiling() throws {
        let x = randomTensor([1, 50, 8], seed: 9)
        let m = try Registry.make(id: "bp-transformer", settings: ["step": "2"], inputShape: x.shape, seed: 1)
        let w = try m.attentionMap(x, query: MapQuery(row: 0, column: 33)).values.scalars
        XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-5)
        for t in 0..<50 { if t <= 33 { XCTAssertGreaterThan(w[t], 0, "\(t)") } else { XCTAssertEqual(w[t], 0, "\(t)") } }
        let h1 = try m.attentionMap(x, query: MapQuery(row: 0, column: 33, head: 1)).values.scalars
        XCTAssertEqual(h1.reduce(0, +), 1, accuracy: 1e-5)
        XCTAssertThrowsError(try m.attentionMap(x, query: MapQuery(row: 0, column: 50)))
    }

    func testStrictLoadingAndBadInputs() throws {
        let f = try Fixture.load("bp-transformer")
        var sd = f.stateDict
        sd.tensors["layers.1.proj_k.weight"] = nil
        sd.tensors["layers.0.embed_ak.weight"] = Tensor(zeros: [1000, 4])
        XCTAssertThrowsError(try Registry.make(id: "bp-transformer", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { e in
            let text = String(describing: e)
            XCTAssertTrue(text.contains("missing keys: layers.1.proj_k.weight"), text)
            XCTAssertTrue(text.contains("unexpected keys: layers.0.embed_ak.weight"), text)
        }
        let m = try Registry.make(id: "bp-transformer", inputShape: [1, 10, 8])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 10, 6]))) { e in
            XCTAssertEqual(String(describing: e), "bp-transformer: expected input N×L×8, found 1×10×6")
        }
        XCTAssertThrowsError(try Registry.make(id: "bp-transformer", settings: ["h": "3"], inputShape: [1, 10, 8]))
        for bad in [["triu": "false"], ["rel_pos": "true"], ["step": "0"], ["window": "3"]] {
            XCTAssertThrowsError(try Registry.make(id: "bp-transformer", settings: bad, inputShape: [1, 10, 8]), "\(bad)")
        }
    }
}
