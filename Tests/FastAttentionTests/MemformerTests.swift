import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// memformer against memformer 0.3.1 `Memformer(encoder_only=True)` through the committed
/// fixtures (Tools/reference/memformer_fixtures.py): two layers with log-spaced T5 buckets (L 37)
/// over 2 segments, and two memory updates per segment over 3 segments (batch 2).
final class MemformerTests: XCTestCase {
    static let cases = ["memformer", "memformer-updates"]

    func segments(_ f: Fixture) -> Int { f.file.tensors.keys.filter { $0.hasPrefix("mem_") }.count }

    func testSegmentsAndMemoryMatchReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try XCTUnwrap(try f.makeModule() as? Memformer)
            let s = segments(f), l = f.input.shape[1] / s
            var mem: Tensor? = nil
            for k in 0..<s {
                let (y, next) = try m.forward(f.input.sliced(axis: 1, range: k * l..<(k + 1) * l), memories: mem)
                let expected = f.output.sliced(axis: 1, range: k * l..<(k + 1) * l)
                print("\(name) segment \(k + 1): max relative error \(maxRelativeError(y, expected)), memory \(maxRelativeError(next, f.file.tensors["mem_\(k + 1)"]!))")
                assertClose(y, expected, rtol: 1e-4, "\(name) segment \(k + 1)")
                assertClose(next, f.file.tensors["mem_\(k + 1)"]!, rtol: 1e-4, "\(name) memory \(k + 1)")
                mem = next
            }
            let (all, last) = try m.runSegments(f.input, segments: s)
            assertClose(all, f.output, rtol: 1e-4, name)
            assertClose(last["mem"]!, f.file.tensors["mem_\(s)"]!, rtol: 1e-4, name)
        }
    }

    func testMapMatchesReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try XCTUnwrap(try f.makeModule() as? Memformer)
            let s = segments(f), l = f.input.shape[1] / s
            let map = try m.attentionMap(f.input.sliced(axis: 1, range: (s - 1) * l..<s * l),
                                         memories: f.file.tensors["mem_\(s - 1)"]!, query: try XCTUnwrap(f.mapQuery))
            assertClose(map.values, try XCTUnwrap(f.map), rtol: 1e-4, name)
            XCTAssertEqual(Array(map.values.scalars[0..<l]).reduce(0, +), 1, accuracy: 1e-5)
        }
    }

    /// The T5 buckets (the values are torch's `_relative_position_bucket(-n, causal=False)`): exact below 16, log-spaced to 31, and every key right of the query in
    /// bucket 0 (so without content a query weighs all keys to its right equally).
    func testRelativeBuckets() throws {
        XCTAssertEqual([0, 1, 15, 16, 17, 31, 32, 63, 64, 127, 128, 5000].map(Memformer.relativeBucket),
                       [0, 1, 15, 16, 16, 21, 21, 26, 26, 31, 31, 31])
        // Zero projections: logits are the bias only, and keys at j ≥ i share one weight.
        let x = randomTensor([1, 9, 4], seed: 1)
        var sd = try zeroStateDict(dim: 4, heads: 2, slots: 2)
        sd.tensors["encoder.layer_blocks.rel_pos_emb.relative_attention_bias.weight"] = randomTensor([32, 2], seed: 3)
        let m = try Registry.make(id: "memformer", settings: ["enc_heads": "2", "mem_update_attn_heads": "2", "num_memory_slots": "2"],
                                  inputShape: x.shape, weights: sd)
        let row = try m.attentionMap(x, query: MapQuery(row: 0, column: 3, head: 0)).values.scalars
        for j in 4..<9 { XCTAssertEqual(row[j], row[3], accuracy: 1e-7) }
        XCTAssertNotEqual(row[2], row[3])
    }

    func testStrictLoadingAndErrors() throws {
        let f = try Fixture.load("memformer")
        var sd = f.stateDict
        sd.tensors["encoder.token_emb.weight"] = nil              // optional: the input is embedded
        XCTAssertNoThrow(try Registry.make(id: "memformer", settings: f.settings, inputShape: f.input.shape, weights: sd))
        sd.tensors["gru.bias_hh"] = nil
        sd.tensors["encoder.layer_blocks.layers.2.0.fn.norm.weight"] = Tensor(zeros: [12])
        XCTAssertThrowsError(try Registry.make(id: "memformer", settings: f.settings, inputShape: f.input.shape, weights: sd)) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("missing keys: gru.bias_hh"), text)
            XCTAssertTrue(text.contains("unexpected keys: encoder.layer_blocks.layers.2.0.fn.norm.weight"), text)
        }
        XCTAssertThrowsError(try Registry.make(id: "memformer", settings: ["encoder_only": "false"], inputShape: [1, 4, 16]))
        XCTAssertThrowsError(try Registry.make(id: "memformer", settings: ["enc_heads": "3"], inputShape: [1, 4, 16]))
        let m = try XCTUnwrap(try f.makeModule() as? Memformer)
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 5, 8]))) { e in
            XCTAssertEqual("\(e)", "memformer: expected input N×L×12, found 1×5×8")
        }
        XCTAssertThrowsError(try m.forward(randomTensor([2, 5, 12]), memories: Tensor(zeros: [1, 5, 12])))
        XCTAssertEqual(try m.map(onGrid: randomTensor([1, 12, 3, 5]), query: MapQuery(row: 1, column: 4)).values.shape, [2, 3, 5])
    }

    private func zeroStateDict(dim: Int, heads: Int, slots: Int) throws -> StateDict {
        var sd = StateDict()
        for r in try Registry.parameterRecords(id: "memformer", settings: ["enc_heads": "\(heads)", "mem_update_attn_heads": "\(heads)",
                                                                         "num_memory_slots": "\(slots)"], inputShape: [1, 9, dim]) {
            sd.tensors[r.key] = r.key.hasSuffix("norm.weight") ? Tensor(shape: r.shape, repeating: 1) : Tensor(zeros: r.shape)
        }
        return sd
    }
}
