import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// The block-sparse kernel against a dense masked softmax of exactly the same pattern
/// (`BlockLayout.denseCounts`, evaluated pair by pair) on random layouts.
final class BlockSparseAttentionTests: XCTestCase {
    /// A random layout: random key blocks per row, some full, some with random rules, an
    /// optional permutation and an occasional duplicated block.
    func randomLayout(length: Int, block: Int, seed: UInt64, permute: Bool) -> BlockLayout {
        var g = SeededGenerator(seed: seed)
        let order: [Int]? = permute ? Array(0..<length).shuffled(using: &g) : nil
        var b = BlockLayoutBuilder(length: length, blockSize: block, order: order)
        let rules: [PairRule] = [.causal, .band(-3, 2), PairRule(deltaStride: 3), PairRule(segment: 5),
                                 PairRule(keyPeriod: 4, keyPhases: 1..<3), PairRule(keys: 0..<2),
                                 PairRule(maxDelta: 0, deltaStride: 2), PairRule(queries: 3..<9)]
        for _ in 0..<b.blockCount {
            for kb in 0..<b.blockCount where g.nextUniform() < 0.5 {
                let r = g.nextUniform() < 0.4 ? nil : rules[g.nextInt(below: rules.count)]
                b.add(kb, rule: r)
                if g.nextUniform() < 0.3 { b.add(kb, rule: rules[g.nextInt(below: rules.count)]) }
            }
            if g.nextUniform() < 0.2 { b.extraCopy(g.nextInt(below: b.blockCount)) }
            b.endRow()
        }
        return b.build(name: "random")
    }

    func check(_ layouts: [BlockLayout], heads: Int, batch: Int = 2, d: Int = 5, dv: Int = 3, seed: UInt64,
               bias: PairBias? = nil, file: StaticString = #filePath, line: UInt = #line) {
        let l = layouts[0].length
        let q = randomTensor([batch, l, heads * d], seed: seed)
        let k = randomTensor([batch, l, heads * d], seed: seed + 1)
        let v = randomTensor([batch, l, heads * dv], seed: seed + 2)
        let scale: Float = 0.7
        let out = BlockSparseAttention.multiHead(q: q, k: k, v: v, heads: heads, layouts: layouts, scale: scale, bias: bias)
        var expected = [Float](repeating: 0, count: batch * l * heads * dv)
        for b in 0..<batch {
            for h in 0..<heads {
                let lay = layouts.count == 1 ? layouts[0] : layouts[h]
                func slice(_ t: Tensor, _ w: Int) -> [Float] {
                    let s = t.scalars, c = heads * w
                    var r: [Float] = []
                    for i in 0..<l {
                        let start: Int = (b * l + i) * c + h * w
                        r += s[start..<(start + w)]
                    }
                    return r
                }
                var pairBias: ((Int, Int) -> Float)?
                if let bias {
                    let scores = bias.scores.scalars, classes = bias.scores.shape[3]
                    pairBias = { i, j in scores[((b * l + i) * heads + h) * classes + bias.id(i, j)] }
                }
                let o = BlockSparseAttention.forwardNaive(counts: lay.denseCounts(), length: l, d: d, dv: dv,
                                                          q: slice(q, d), k: slice(k, d), v: slice(v, dv), scale: scale,
                                                          bias: pairBias)
                for i in 0..<l { for c in 0..<dv { expected[(b * l + i) * heads * dv + h * dv + c] = o[i * dv + c] } }
            }
        }
        let e = maxRelativeError(out, Tensor(shape: out.shape, scalars: expected))
        XCTAssertLessThanOrEqual(e, 1e-5, "layouts \(layouts.map(\.name))", file: file, line: line)
    }

    func testRandomLayoutsMatchDenseMaskedSoftmax() {
        for (i, (l, bs)) in [(37, 4), (40, 8), (23, 5), (16, 16), (9, 4), (1, 3)].enumerated() {
            let lay = randomLayout(length: l, block: bs, seed: UInt64(i), permute: false)
            check([lay], heads: 2, seed: UInt64(10 * i))
        }
    }

    func testWideRaggedBlocksMatchDenseMaskedSoftmax() {
        // Blocks of 70 (edge bits over two 64-bit words, a ragged last block), permuted and not.
        // Each on every kernel path this CPU has (KernelISA).
        for isa in KernelISA.available {
            KernelISA.limited(to: isa) {
                for (i, permute) in [false, true].enumerated() {
                    let lay = randomLayout(length: 163, block: 70, seed: UInt64(40 + i), permute: permute)
                    check([lay], heads: 1, batch: 1, seed: UInt64(50 + i))
                }
                // One causal block per row (the span path), as Jukebox's row attention.
                var b = BlockLayoutBuilder(length: 90, blockSize: 45)
                for qb in 0..<b.blockCount { b.add(qb, rule: .causal); b.endRow() }
                check([b.build(name: "row")], heads: 2, seed: 60)
            }
        }
    }

    func testPermutedAndPerHeadLayouts() {
        let a = randomLayout(length: 29, block: 4, seed: 7, permute: true)
        let b = randomLayout(length: 29, block: 4, seed: 8, permute: false)
        let c = randomLayout(length: 29, block: 6, seed: 9, permute: true)
        check([a, b, c], heads: 3, seed: 3)
    }

    func testPartsMergeAsOneSoftmaxOverTheUnion() {
        // Two parts in different orders; the merged output equals one softmax over the summed counts.
        let a = randomLayout(length: 26, block: 4, seed: 31, permute: true)
        let b = randomLayout(length: 26, block: 3, seed: 32, permute: false)
        let q = randomTensor([2, 26, 6], seed: 1), k = randomTensor([2, 26, 6], seed: 2), v = randomTensor([2, 26, 4], seed: 3)
        let out = BlockSparseAttention.multiHead(q: q, k: k, v: v, heads: 2, parts: [[a], [b]], scale: 0.6)
        let counts = zip(a.denseCounts(), b.denseCounts()).map { $0 + $1 }
        for bi in 0..<2 {
            for h in 0..<2 {
                func slice(_ t: Tensor, _ w: Int) -> [Float] {
                    var r: [Float] = []
                    for i in 0..<26 { let s0: Int = (bi * 26 + i) * 2 * w + h * w; r += t.scalars[s0..<(s0 + w)] }
                    return r
                }
                let o = BlockSparseAttention.forwardNaive(counts: counts, length: 26, d: 3, dv: 2, q: slice(q, 3),
                                                          k: slice(k, 3), v: slice(v, 2), scale: 0.6)
                XCTAssertEqual(Double(maxRelativeError(Tensor(shape: [26, 2], scalars: slice(out, 2)),
                                                      Tensor(shape: [26, 2], scalars: o))), 0, accuracy: 1e-5)
            }
        }
    }

    func testLongRunsSplitAtMaxRunColumns() {
        let saved = BlockSparseAttention.maxRunColumns
        BlockSparseAttention.maxRunColumns = 8
        defer { BlockSparseAttention.maxRunColumns = saved }
        let lay = randomLayout(length: 45, block: 4, seed: 21, permute: false)
        check([lay], heads: 1, seed: 5)
    }

    func testCausalLayoutAndRaggedLastBlock() {
        // Causal band of width 6 at L = 27 (block 4: last block has 3 rows).
        var b = BlockLayoutBuilder(length: 27, blockSize: 4)
        for qb in 0..<b.blockCount { b.add((qb - 2)..<(qb + 1), rule: .band(-5, 0)); b.endRow() }
        let lay = b.build(name: "causal band")
        XCTAssertTrue(lay.causal)
        let counts = lay.denseCounts()
        for i in 0..<27 { for j in 0..<27 { XCTAssertEqual(counts[i * 27 + j], (i - 5...i).contains(j) ? 1 : 0) } }
        check([lay], heads: 2, seed: 4)
        // Interior blocks are full, edges masked, out-of-band blocks dropped.
        XCTAssertTrue(lay.rows[4].contains { $0.keyBlock == 3 && $0.mask >= 0 })
        XCTAssertEqual(lay.rows[4].count, 3)
        var nb = BlockLayoutBuilder(length: 8, blockSize: 4)
        nb.add(0..<2); nb.endRow(); nb.add(0..<2); nb.endRow()
        XCTAssertFalse(nb.build(name: "dense").causal)
    }

    func testCausalOutputIgnoresTheFuture() {
        var b = BlockLayoutBuilder(length: 30, blockSize: 4)
        for qb in 0..<b.blockCount { b.add(0..<(qb + 1), rule: .causal); b.endRow() }
        let lay = b.build(name: "causal")
        var x = randomTensor([1, 30, 8], seed: 2)
        let y0 = BlockSparseAttention.multiHead(q: x, k: x, v: x, heads: 2, layouts: [lay], scale: 0.5)
        x.withUnsafeMutableBufferPointer { p in for i in (17 * 8)..<(30 * 8) { p[i] = 100 } }
        let y1 = BlockSparseAttention.multiHead(q: x, k: x, v: x, heads: 2, layouts: [lay], scale: 0.5)
        XCTAssertEqual(Array(y0.scalars[0..<(17 * 8)]), Array(y1.scalars[0..<(17 * 8)]))
    }

    func testMapRowIsTheKernelsRow() {
        let lay = randomLayout(length: 31, block: 4, seed: 3, permute: true)
        let q = randomTensor([1, 31, 4], seed: 1), k = randomTensor([1, 31, 4], seed: 2)
        let counts = lay.denseCounts()
        for p in [0, 13, 30] {
            let w = BlockSparseAttention.mapRow(q: q, k: k, heads: 1, layouts: [lay], query: p, head: nil, scale: 0.9)
            // Row p of the naive softmax, with values = identity, is the weights.
            var eye = [Float](repeating: 0, count: 31 * 31)
            for i in 0..<31 { eye[i * 31 + i] = 1 }
            let o = BlockSparseAttention.forwardNaive(counts: counts, length: 31, d: 4, dv: 31, q: q.scalars,
                                                      k: k.scalars, v: eye, scale: 0.9)
            for j in 0..<31 {
                XCTAssertEqual(w[j], o[p * 31 + j], accuracy: 1e-6)
                if counts[p * 31 + j] == 0 { XCTAssertEqual(w[j], 0) }
            }
        }
    }

    /// Global tokens before a band (GMAT's memory, ETC's global-local attention) across block
    /// edges: the layout holds exactly the pattern's pairs — all rows or one kind, with ETC's hard
    /// masks — the kernel matches the naive softmax with and without a relative pair bias, and the
    /// computed blocks grow linearly with the length.
    func testGlobalBandLayoutAndPairBias() {
        let (g, l, r, owned) = (3, 70, 5, 30)                  // token i belongs to global i / 30
        let t = g + l
        func present(_ q: Int, _ k: Int, _ rows: BlockLayout.GlobalBandRows, _ hardL2G: Bool, _ hardG2L: Bool) -> Bool {
            if q < g { return rows != .tokens && (k < g || !hardG2L || (k - g) / owned == q) }
            if rows == .globals { return false }
            return k < g ? !hardL2G || (q - g) / owned == k : abs(k - q) <= r
        }
        let scores = randomTensor([2, t, 2, 4], seed: 41)
        let bias = PairBias(scores: scores) { q, k in (k - q + 2 * t) % 4 }
        let cases: [(BlockLayout.GlobalBandRows, Bool, Bool, Int)] = [(.all, false, false, 16), (.all, true, true, 32),
                                                                      (.globals, false, true, 16), (.tokens, true, false, 8)]
        for (n, (rows, hardL2G, hardG2L, block)) in cases.enumerated() {
            let lay = BlockLayout.globalBand(globals: g, tokens: l, radius: r, block: block, rows: rows, globalBlock: owned,
                                             hardTokenToGlobal: hardL2G, hardGlobalToToken: hardG2L)
            let counts = lay.denseCounts()
            let wrong = (0..<(t * t)).filter { counts[$0] != (present($0 / t, $0 % t, rows, hardL2G, hardG2L) ? 1 : 0) }
            XCTAssertEqual(wrong.map { [$0 / t, $0 % t] }, [], lay.name)
            check([lay], heads: 2, seed: UInt64(50 + n))
            check([lay], heads: 2, seed: UInt64(60 + n), bias: bias)
        }
        let a = BlockLayout.globalBand(globals: 8, tokens: 4096, radius: 8).entryCount
        let b = BlockLayout.globalBand(globals: 8, tokens: 16384, radius: 8).entryCount
        XCTAssertLessThan(Double(b) / Double(a), 4.1)
    }

    func testRenderingShowsBlocks() {
        var b = BlockLayoutBuilder(length: 10, blockSize: 4)
        b.add(0, rule: .causal); b.endRow()
        b.add(0); b.add(1, rule: .causal); b.endRow()
        b.add(0); b.extraCopy(0); b.add(2, rule: .causal); b.endRow()
        let text = b.build(name: "demo").rendered()
        XCTAssertTrue(text.contains("L=10, block 4 (3×3 blocks, last ragged)"), text)
        XCTAssertTrue(text.contains("  +..\n  #+.\n  2.+"), text)
        XCTAssertTrue(text.contains("causal"), text)
    }
}
