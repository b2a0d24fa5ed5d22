import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// big-bird against HF transformers' BigBirdBlockSparseAttention (Tools/reference/big_bird.py):
/// eval mode (random blocks = block 0), HF's train-mode random blocks loaded as `rand_attn`,
/// a ragged length (HF on masked padding) and the short-input switch to full attention.
final class BigBirdBlockSparseAttentionTests: XCTestCase {
    static let cases = ["big-bird", "big-bird-random", "big-bird-ragged", "big-bird-short"]

    func testParityWithHF() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            assertClose(try m(f.input), f.output, rtol: 1e-4, name)
            let map = try m.attentionMap(f.input, query: f.mapQuery!)
            assertClose(map.values, f.map!, rtol: 1e-4, name + " map")
            XCTAssertEqual(map.values.scalars.reduce(0, +), 1, accuracy: 1e-5, name)
        }
    }

    func testEvalLayoutCountsBlockZeroOnePlusRTimes() throws {
        let m = try Registry.make(id: "big-bird", settings: ["block_size": "4", "num_random_blocks": "2",
                                                             "num_attention_heads": "1"], inputShape: [1, 48, 8])
        let lay = try (m as! BigBirdBlockSparseAttention).layouts(length: 48)[0][0]
        let c = lay.denseCounts()
        // Query 21 (block 5): block 0 three times, blocks 4, 5, 6 and 11 once.
        for k in 0..<48 {
            let kb = k / 4
            XCTAssertEqual(c[21 * 48 + k], kb == 0 ? 3 : [4, 5, 6, 11].contains(kb) ? 1 : 0, "\(k)")
        }
        XCTAssertTrue(lay.rendered().contains("3"), lay.rendered())
    }

    func testSeededRandomBlocksFollowHFRules() throws {
        let settings = ["block_size": "4", "num_random_blocks": "2", "num_attention_heads": "3", "seed": "11"]
        let m = try Registry.make(id: "big-bird", settings: settings, inputShape: [1, 120, 6]) as! BigBirdBlockSparseAttention
        let lays = try m.layouts(length: 120)[0]
        let nb = 30
        var differ = false
        for (h, lay) in lays.enumerated() {
            for qb in 1..<(nb - 1) {
                let entries = lay.rows[qb].map { Int($0.keyBlock) }
                XCTAssertEqual(entries.count, (qb == 1 || qb == nb - 2 ? 4 : 5) + 2)
                let base: Set<Int> = qb == 1 ? [0, 1, 2, nb - 1] : qb == nb - 2 ? [0, nb - 3, nb - 2, nb - 1]
                    : [0, qb - 1, qb, qb + 1, nb - 1]
                var rest = entries
                for b in base { rest.remove(at: rest.firstIndex(of: b)!) }
                // Random blocks: outside the window and the global blocks, within the first 2r+5 = 9.
                for r in rest {
                    XCTAssertFalse(((qb - 1)...(qb + 1)).contains(r) || r == 0 || r == nb - 1, "h\(h) q\(qb) r\(r)")
                    XCTAssertLessThan(r, 9)
                }
                if h > 0 && rest != lays[0].rows[qb].map({ Int($0.keyBlock) }).filter({ !base.contains($0) }) { differ = true }
            }
        }
        XCTAssertTrue(differ, "heads draw their own blocks")
        let again = try Registry.make(id: "big-bird", settings: settings, inputShape: [1, 120, 6]) as! BigBirdBlockSparseAttention
        XCTAssertEqual(try again.layouts(length: 120)[0].map { $0.rows }, lays.map { $0.rows })
    }

    func testStrictLoadingAndBadInputs() throws {
        let f = try Fixture.load("big-bird-random")
        var sd = f.stateDict
        sd.tensors["rand_attn"] = Tensor(shape: [3, 13, 2], repeating: 99)
        XCTAssertThrowsError(try Registry.make(id: "big-bird", settings: f.settings, inputShape: f.input.shape, weights: sd))
        sd.tensors["rand_attn"] = nil
        sd.tensors["query.bias"] = nil
        XCTAssertThrowsError(try Registry.make(id: "big-bird", settings: f.settings, inputShape: f.input.shape, weights: sd)) { e in
            XCTAssertTrue(String(describing: e).contains("missing keys: query.bias"), String(describing: e))
        }
        let m = try f.makeModule()
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 64, 12])))          // rand_attn was loaded for L = 60
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 60, 8]))) { e in
            XCTAssertEqual(String(describing: e), "big-bird: expected input N×L×12, found 1×60×8")
        }
        XCTAssertThrowsError(try Registry.make(id: "big-bird", settings: ["num_attention_heads": "5"], inputShape: [1, 60, 12]))
    }

    func testCostIsLinear() throws {
        let m = try Registry.make(id: "big-bird", inputShape: [1, 16, 8]) as! BigBirdBlockSparseAttention
        let a = try m.layouts(length: 4096)[0][0].entryCount, b = try m.layouts(length: 16384)[0][0].entryCount
        XCTAssertLessThan(log(Double(b) / Double(a)) / log(4.0), 1.05)
    }
}
