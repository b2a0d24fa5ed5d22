import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// compressive against compressive-transformer-pytorch 0.4.0 `SelfAttention` through the
/// committed fixtures (Tools/reference/compressive.py): several segments with the memories
/// carried from call to call, from empty or random starting memories, and without cmem.
final class CompressiveAttentionTests: XCTestCase {
    static let cases = ["compressive", "compressive-memories", "compressive-nocmem"]

    func start(_ f: Fixture) -> [String: Tensor] {
        ["mem": f.file.tensors["mem_in"]!, "cmem": f.file.tensors["cmem_in"]!]
    }

    func testSegmentsAndMemoriesMatchReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try XCTUnwrap(try f.makeModule() as? CompressiveAttention)
            let seqLen = Int(f.settings["seq_len"]!)!, segments = f.input.shape[1] / seqLen
            var state = start(f)
            for s in 0..<segments {
                let x = f.input.sliced(axis: 1, range: s * seqLen..<(s + 1) * seqLen)
                let (y, next) = try m.step(x, memories: state)
                let expected = f.output.sliced(axis: 1, range: s * seqLen..<(s + 1) * seqLen)
                print("\(name) segment \(s + 1): max relative error \(maxRelativeError(y, expected))")
                assertClose(y, expected, rtol: 1e-4, "\(name) segment \(s + 1)")
                for key in ["mem", "cmem"] {
                    let want = f.file.tensors["\(key)_\(s + 1)"]!
                    XCTAssertEqual(next[key]!.shape, want.shape, "\(name) \(key) after segment \(s + 1)")
                    if want.count > 0 { assertClose(next[key]!, want, rtol: 1e-4, "\(name) \(key)_\(s + 1)") }
                }
                state = next
            }
            // runSegments does the same in one call.
            let (all, last) = try m.runSegments(f.input, segments: segments, memories: start(f))
            assertClose(all, f.output, rtol: 1e-4, name)
            XCTAssertEqual(last["cmem"]!.shape, f.file.tensors["cmem_\(segments)"]!.shape)
        }
    }

    func testMapRowMatchesReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try XCTUnwrap(try f.makeModule() as? CompressiveAttention)
            let seqLen = Int(f.settings["seq_len"]!)!, segments = f.input.shape[1] / seqLen
            // The memories the last segment starts from.
            let before = segments > 1 ? CompressiveMemories(mem: f.file.tensors["mem_\(segments - 1)"]!,
                                                            cmem: f.file.tensors["cmem_\(segments - 1)"]!)
                : CompressiveMemories(mem: f.file.tensors["mem_in"]!, cmem: f.file.tensors["cmem_in"]!)
            let x = f.input.sliced(axis: 1, range: (segments - 1) * seqLen..<segments * seqLen)
            let q = try XCTUnwrap(f.mapQuery)
            let row = try m.attentionRow(x, memories: before, query: q)
            let expected = f.file.tensors["map_row"]!
            assertClose(Tensor(shape: [expected.count], scalars: row.cmem + row.mem + row.segment), expected, rtol: 1e-4, name)
            let map = try m.attentionMap(x, memories: before, query: q)
            assertClose(map.values, f.map!, rtol: 1e-4, name)
            XCTAssertEqual(map.values.shape, [1, 1, seqLen])
        }
    }

    /// From empty memories one segment is plain causal multi-head attention.
    func testEmptyMemoriesIsCausalAttention() throws {
        let x = randomTensor([2, 7, 8], seed: 3)
        var sd = StateDict()
        sd.tensors["to_q.weight"] = randomTensor([8, 8], seed: 1)
        sd.tensors["to_kv.weight"] = randomTensor([16, 8], seed: 2)
        sd.tensors["to_out.weight"] = randomTensor([8, 8], seed: 4)
        sd.tensors["to_out.bias"] = randomTensor([8], seed: 5)
        sd.tensors["compress_mem_fn.conv.weight"] = randomTensor([8, 8, 4], seed: 6)
        sd.tensors["compress_mem_fn.conv.bias"] = randomTensor([8], seed: 7)
        let m = try Registry.make(id: "compressive", settings: ["heads": "2"], inputShape: x.shape, weights: sd)
        let kv = x.matmul(sd.tensors["to_kv.weight"]!, transposeOther: true).split(sizes: [8, 8], axis: 2)
        let ctx = DenseAttention.multiHead(q: x.matmul(sd.tensors["to_q.weight"]!, transposeOther: true),
                                           k: kv[0], v: kv[1], heads: 2, scale: 0.5, causal: true)
        let expected = ctx.matmul(sd.tensors["to_out.weight"]!, transposeOther: true) + sd.tensors["to_out.bias"]!
        assertClose(try m(x), expected, rtol: 1e-5)
    }

    func testCausalWithMemories() throws {
        let l = 8, x = randomTensor([2, l, 8], seed: 9)
        let m = try XCTUnwrap(try Registry.make(id: "compressive", settings: ["heads": "2", "cmem_ratio": "2"],
                                                inputShape: x.shape, seed: 1) as? CompressiveAttention)
        let mems = CompressiveMemories(mem: randomTensor([2, 5, 8], seed: 10), cmem: randomTensor([2, 3, 8], seed: 11))
        let (y, _) = try m.forward(x, memories: mems)
        for i in [0, 3, 6] {
            var z = x
            z.withUnsafeMutableBufferPointer { p in
                for b in 0..<2 { for t in (i + 1)..<l { for c in 0..<8 { p[(b * l + t) * 8 + c] += 4 } } }
            }
            let (yz, _) = try m.forward(z, memories: mems)
            XCTAssertLessThanOrEqual(maxRelativeError(yz.sliced(axis: 1, range: 0..<(i + 1)),
                                                      y.sliced(axis: 1, range: 0..<(i + 1))), 1e-6)
            XCTAssertGreaterThan(maxRelativeError(yz, y), 1e-3)
        }
        // Memories matter: the output changes with them.
        XCTAssertGreaterThan(maxRelativeError(try m(x), y), 1e-3)
    }

    func testMemoryBookkeeping() throws {
        // seq_len 4, mem_len 6, cmem_len 2, ratio 2, starting empty: after 3 segments of 4 the
        // FIFO has pushed out 2 then 4 rows → cmem rows 1 then 2 (capped at 2).
        let x = randomTensor([1, 12, 4], seed: 2)
        let m = try XCTUnwrap(try Registry.make(id: "compressive",
            settings: ["heads": "1", "seq_len": "4", "mem_len": "6", "cmem_len": "2", "cmem_ratio": "2"],
            inputShape: [1, 4, 4], seed: 1) as? CompressiveAttention)
        var state: [String: Tensor]? = nil
        var sizes: [[Int]] = []
        for s in 0..<3 {
            state = try m.step(x.sliced(axis: 1, range: 4 * s..<4 * s + 4), memories: state).memories
            sizes.append([state!["mem"]!.shape[1], state!["cmem"]!.shape[1]])
        }
        XCTAssertEqual(sizes, [[4, 0], [6, 1], [6, 2]])
        // The newest memory rows are the last inputs; untrained, a compressed row is a block mean.
        XCTAssertEqual(state!["mem"]!.scalars, x.sliced(axis: 1, range: 6..<12).scalars)
        let blockMean = (x.sliced(axis: 1, range: 2..<3) + x.sliced(axis: 1, range: 3..<4)) / 2
        assertClose(state!["cmem"]!.sliced(axis: 1, range: 0..<1), blockMean, rtol: 1e-5)
        // A segment shorter than seq_len leaves the memories unchanged.
        let short = try m.step(x.sliced(axis: 1, range: 0..<3), memories: state).memories
        XCTAssertEqual(short["mem"]!.scalars, state!["mem"]!.scalars)
    }

    func testStrictLoadingAndErrors() throws {
        let f = try Fixture.load("compressive")
        var sd = f.stateDict
        sd.tensors["to_q.bias"] = Tensor(zeros: [12])
        sd.tensors["compress_mem_fn.conv.bias"] = nil
        XCTAssertThrowsError(try Registry.make(id: "compressive", settings: f.settings, inputShape: f.input.shape, weights: sd)) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("missing keys: compress_mem_fn.conv.bias"), text)
            XCTAssertTrue(text.contains("unexpected keys: to_q.bias"), text)
        }
        XCTAssertThrowsError(try Registry.make(id: "compressive", settings: ["heads": "5"], inputShape: [1, 4, 12]))
        let m = try XCTUnwrap(try f.makeModule() as? CompressiveAttention)
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 10, 8]))) { e in
            XCTAssertEqual("\(e)", "compressive: expected input N×L×12, found 1×10×8")
        }
        XCTAssertThrowsError(try m.forward(randomTensor([2, 10, 12]), memories: .init(mem: Tensor(zeros: [1, 3, 12]), cmem: Tensor(zeros: [2, 0, 12]))))
        XCTAssertThrowsError(try m.step(randomTensor([2, 10, 12]), memories: ["mem": Tensor(zeros: [2, 3, 12])]))
        XCTAssertThrowsError(try m.runSegments(randomTensor([2, 10, 12]), segments: 3))
        XCTAssertEqual(try m.map(onGrid: randomTensor([1, 12, 3, 5]), query: MapQuery(row: 1, column: 4)).values.shape, [1, 3, 5])
    }
}
