import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// memory-compressed against MemoryCompressedAttention (pip memory-compressed-attention 0.0.7)
/// through the committed fixtures (Tools/reference/memory_compressed.py): non-causal with left
/// padding, causal with padding 2 (cf 4), causal without padding; every weight random, null
/// key/value included.
final class MemoryCompressedAttentionTests: XCTestCase {
    static let cases = ["memory-compressed", "memory-compressed-causal", "memory-compressed-causal-nopad"]

    func testParityWithReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let y = try m(f.input)
            print("\(name): max relative error \(maxRelativeError(y, f.output))")
            assertClose(y, f.output, rtol: 1e-4, name)
        }
    }

    func testMapMatchesReferenceRow() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            guard let expected = f.map, let q = f.mapQuery, let null = f.file.tensors["map_null_weight"] else {
                return XCTFail("\(name) has no map")
            }
            let map = try m.attentionMap(f.input, query: q)
            XCTAssertEqual(map.kind, .perQuery)
            assertClose(map.values, expected, rtol: 1e-4, name)
            XCTAssertTrue(map.labels[0].hasPrefix(String(format: "null key %.3f", null.scalars[0])), map.labels[0])
            // Spread blocks and the null weight are the whole softmax row.
            XCTAssertEqual(map.values.scalars.reduce(0, +) + null.scalars[0], 1, accuracy: 1e-5, name)
        }
    }

    /// Perturbing positions > i leaves outputs ≤ i unchanged, for every padding residue.
    func testCausalIgnoresTheFuture() throws {
        for (l, cf) in [(13, 3), (14, 3), (15, 3), (9, 1), (11, 4)] {
            let x = randomTensor([2, l, 8], seed: UInt64(l))
            let m = try Registry.make(id: "memory-compressed",
                                      settings: ["causal": "true", "heads": "2", "compression_factor": "\(cf)"],
                                      inputShape: x.shape, seed: 3)
            let y = try m(x)
            for i in [0, l / 2, l - 2] {
                var z = x
                z.withUnsafeMutableBufferPointer { p in
                    for b in 0..<2 { for t in (i + 1)..<l { for c in 0..<8 { p[(b * l + t) * 8 + c] += 5 } } }
                }
                let yz = try m(z)
                let a = y.sliced(axis: 1, range: 0..<(i + 1)), b = yz.sliced(axis: 1, range: 0..<(i + 1))
                XCTAssertLessThanOrEqual(maxRelativeError(b, a), 1e-6, "L=\(l) cf=\(cf) i=\(i)")
                // …and it is not vacuous: later outputs do change.
                XCTAssertGreaterThan(maxRelativeError(yz, y), 1e-3)
            }
        }
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("memory-compressed")
        var sd = f.stateDict
        sd.tensors["null_v"] = nil
        sd.tensors["to_qkv.bias"] = Tensor(zeros: [72])
        sd.tensors["compress_fn.conv.weight"] = Tensor(zeros: [24, 24, 3])
        XCTAssertThrowsError(try Registry.make(id: "memory-compressed", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: null_v"), text)
            XCTAssertTrue(text.contains("unexpected keys: to_qkv.bias"), text)
            XCTAssertTrue(text.contains("size mismatch for compress_fn.conv.weight"), text)
        }
    }

    func testUntrainedCompressedKeysAreBlockMeans() throws {
        // Seeded: W_k = W_q and the conv averages each block, so with cf = 1 the compressed keys
        // are the keys themselves and the map is a symmetric-logit softmax over positions.
        let x = randomTensor([1, 6, 4], seed: 2)
        let m = try Registry.make(id: "memory-compressed", settings: ["heads": "1", "compression_factor": "1"],
                                  inputShape: x.shape, seed: 5)
        let rows = try [1, 4].map { try m.attentionMap(x, query: MapQuery(row: 0, column: $0)).values.scalars }
        // Within a row the softmax denominator cancels: log w(i→j) − log w(i→i) = s(qᵢ·qⱼ − qᵢ·qᵢ),
        // so for queries 1 and 4 the sum below is −s·|q₁ − q₄|² ≤ 0 exactly when keys are the queries.
        let lhs = log(rows[0][4]) - log(rows[0][1]) - log(rows[1][4]) + log(rows[1][1])
        XCTAssertLessThanOrEqual(lhs, 1e-5)
        XCTAssertEqual(try m(x).shape, [1, 6, 4])
    }

    func testShapeAndConfigErrors() throws {
        XCTAssertThrowsError(try Registry.make(id: "memory-compressed", settings: ["heads": "3"], inputShape: [1, 8, 16])) { e in
            XCTAssertTrue("\(e)".contains("dim=16 must be divisible by heads=3"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "memory-compressed", settings: ["compression_factor": "0"], inputShape: [1, 8, 16]))
        let m = try Registry.make(id: "memory-compressed", inputShape: [1, 10, 16])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 10, 8]))) { e in
            XCTAssertEqual("\(e)", "memory-compressed: expected input N×L×16, found 1×10×8")
        }
        XCTAssertEqual(try m(randomTensor([2, 7, 16])).shape, [2, 7, 16])      // any L
        XCTAssertThrowsError(try m.attentionMap(randomTensor([1, 7, 16]), query: MapQuery(row: 0, column: 7)))
        XCTAssertEqual(try m.map(onGrid: randomTensor([1, 16, 3, 5]), query: MapQuery(row: 1, column: 4)).values.shape, [1, 3, 5])
    }
}
