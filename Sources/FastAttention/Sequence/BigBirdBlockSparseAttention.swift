// Big Bird: Transformers for Longer Sequences — block-sparse ITC attention (global, window, random).
// Zaheer et al., 2020. https://arxiv.org/abs/2007.14062
// Reference matched: HF transformers 5.23.0 `BigBirdBlockSparseAttention(config)` in eval mode
// (models/big_bird/modeling_big_bird.py, read in full; a port of google-research/bigbird).

import Foundation
import TensorCore

/// Big Bird block-sparse self-attention (ITC: internal transformer construction).
///
/// - Input N×L×C, output N×L×C: HF's `context_layer` (before `BigBirdSelfOutput`).
/// - Layout over nb = ⌈L/b⌉ blocks (b = `block_size`), per head: query blocks 0 and nb−1 are
///   global (all keys); block 1 meets {0, 1, 2, nb−1}, block nb−2 meets {0, nb−3, nb−2, nb−1},
///   blocks 2..nb−3 meet {0, i−1, i, i+1, nb−1}; blocks 1..nb−2 also meet r = `num_random_blocks`
///   random blocks, each a separate softmax term (a random block that repeats another counts
///   twice). Logits q·k/√d_head.
/// - **Eval mode has no random blocks in HF**: its `rand_attn` is all zeros, so every "random"
///   block is key block 0, counted 1 + r times in the softmax. That is the default here (HF
///   parity). `seed=s` draws the toolkit's own random blocks (HF's train-mode rule: per head, a
///   permutation of the legal blocks — not the window, not the first/last block, the plan that
///   keeps random blocks within the first 2r+5 blocks for long inputs — from a generator seeded
///   with s). A buffer `rand_attn` (heads, L/b − 2, r) in the weights file is used as given
///   (how HF's train-mode draw is reproduced exactly).
/// - Quirks: HF needs L % block_size == 0 (`BigBirdModel` pads with masked tokens): any L works
///   here, the last block ragged, equal to that padded computation. `BigBirdModel` switches to
///   full attention (`original_full`) when L ≤ (5 + 2r)·b; so does this module.
///   HF's dense `attention_probs` loses mass in eval mode (duplicated block 0 overwrites);
///   the map here is the true softmax row.
/// - Cost O(N·b·(5 + r)·d) (global rows O(b·N·d)): linear in N.
/// - Map (per-query): the query's softmax row over its blocks (global blocks, window, random
///   blocks with their multiplicity summed), mean over heads.
/// - Keys: `query.weight (C,C)`, `query.bias (C)` (with use_bias), `key.*`, `value.*`, optional
///   buffer `rand_attn`. Untrained: key = query (similarity initialisation).
public final class BigBirdBlockSparseAttention: BlockSparseModule {
    public static let info = ModuleInfo(
        id: "big-bird", title: "Big Bird: Transformers for Longer Sequences (block-sparse ITC)",
        arxiv: "2007.14062", year: 2020, complexity: "O((g^2 + N (k+g+r)) D)", complexityExponent: 1,
        kind: .sequence, causal: false,
        reference: "transformers 5.23.0 BigBirdBlockSparseAttention(config), eval mode", mapKind: .perQuery,
        mapDescription: "softmax weights of the query over its key blocks: the first and last block (global), the 3-block window and r random blocks (eval default: every random block is block 0); first/last query blocks see everything; mean over heads",
        notes: ["HF eval mode uses no random blocks: every random block is key block 0, counted 1+r times (default, for HF parity)",
                "seed=s: the toolkit's own random blocks (HF's train-mode legality rule and plan, seeded generator); a rand_attn buffer (heads, L/b-2, r) in the weights is used as given",
                "HF's plan quirk, kept: for L > (2r+5)*block_size every random block lies within the first 2r+5 key blocks",
                "any L (last block ragged = BigBirdModel's masked padding); L <= (5+2r)*block_size runs full attention as BigBirdModel does",
                "HF's dense attention_probs loses mass in eval mode; the map is the true softmax row",
                "untrained: key = query (similarity initialisation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("hidden_size", .int(1...65536), default: .none, "channels C (taken from the input when unset)"),
        ConfigKey("num_attention_heads", .int(1...1024), default: .int(4), "heads (HF default 12; C divisible by heads)"),
        ConfigKey("block_size", .int(1...4096), default: .int(16), "block size b (HF default 64)"),
        ConfigKey("num_random_blocks", .int(0...1024), default: .int(3), "random key blocks per query block"),
        ConfigKey("attention_type", .choice(["block_sparse", "original_full"]), default: .string("block_sparse"),
                  "block_sparse, or full attention with the same weights"),
        ConfigKey("use_bias", .bool, default: .bool(true), "bias in query/key/value"),
        ConfigKey("seed", .int(0...Int(Int32.max)), default: .none, "draw the toolkit's own random blocks (unset: HF eval, all block 0)"),
    ]

    public let config: Config
    let channels: Int, heads: Int, blockSize: Int, randomBlocks: Int, sparse: Bool
    let query: Linear, key: Linear, value: Linear
    /// Loaded random blocks: heads × (nb − 2) × r, for one length.
    let loadedRandom: (length: Int, blocks: [[[Int]]])?
    let cache = LayoutCache()

    public var expectedInput: String { "N×L×\(channels)" }
    public var exampleLength: Int { 16 * blockSize }
    var scale: Float { 1 / Float(channels / heads).squareRoot() }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        (channels, heads) = try config.resolveTokenHeads("hidden_size", heads: "num_attention_heads", inputShape: inputShape)
        self.config = config
        blockSize = config.int("block_size")
        randomBlocks = config.int("num_random_blocks")
        sparse = config.string("attention_type") == "block_sparse"
        let bias = config.bool("use_bias")
        query = Linear(p.scoped("query"), inFeatures: channels, outFeatures: channels, bias: bias)
        let k = Linear(p.scoped("key"), inFeatures: channels, outFeatures: channels, bias: bias)
        key = p.isLoading ? k : Linear(weight: query.weight, bias: query.bias)
        value = Linear(p.scoped("value"), inFeatures: channels, outFeatures: channels, bias: bias)
        let l = inputShape[1], nb = (l + blockSize - 1) / blockSize
        if nb >= 2, let t = p.optionalBuffer("rand_attn", shape: [heads, nb - 2, randomBlocks]) {
            let v = t.scalars.map { Int($0) }
            guard v.allSatisfy({ (0..<nb).contains($0) }) else {
                throw ConfigError.inconsistent(module: Self.info.id, message: "rand_attn holds block indices outside 0..<\(nb)")
            }
            let (hs, r) = (heads, randomBlocks)
            loadedRandom = (l, (0..<hs).map { h in
                (0..<(nb - 2)).map { i in Array(v[((h * (nb - 2) + i) * r)..<((h * (nb - 2) + i + 1) * r)]) }
            })
        } else {
            loadedRandom = nil
        }
    }

    /// Whether length L runs block-sparse (BigBirdModel's switch to full attention otherwise).
    func isSparse(length l: Int) -> Bool { sparse && l > (5 + 2 * randomBlocks) * blockSize }

    public func layouts(length: Int) throws -> [[BlockLayout]] {
        try cache.layouts(length: length) { try buildLayouts(length: length) }
    }

    func buildLayouts(length l: Int) throws -> [[BlockLayout]] {
        guard l >= 1 else { throw ModuleError.badInput(module: Self.info.id, expected: "L ≥ 1", found: [l]) }
        guard isSparse(length: l) else {
            var b = BlockLayoutBuilder(length: l, blockSize: min(blockSize, 64))
            for _ in 0..<b.blockCount { b.add(0..<b.blockCount); b.endRow() }
            return [[b.build(name: sparse ? "full (L <= (5+2r)·block_size, as BigBirdModel)" : "original_full")]]
        }
        let nb = (l + blockSize - 1) / blockSize
        let random: [[[Int]]]
        if let loaded = loadedRandom {
            guard loaded.length == l else {
                throw ModuleError.badInput(module: Self.info.id,
                    expected: "L = \(loaded.length) (the loaded rand_attn is for \(loaded.blocks[0].count + 2) blocks)", found: [l])
            }
            random = loaded.blocks
        } else if let seed = config.optionalInt("seed") {
            var g = SeededGenerator(seed: UInt64(seed))
            random = Self.drawRandomBlocks(blocks: nb, r: randomBlocks, heads: heads, generator: &g)
        } else {
            random = Array(repeating: Array(repeating: Array(repeating: 0, count: randomBlocks), count: nb - 2), count: heads)
        }
        let mode = loadedRandom != nil ? "loaded random blocks" : config.isSet("seed") ? "seeded random blocks"
            : "eval: random blocks = block 0"
        return [(0..<heads).map { h in
            var b = BlockLayoutBuilder(length: l, blockSize: blockSize)
            for qb in 0..<nb {
                if qb == 0 || qb == nb - 1 {
                    b.add(0..<nb)
                } else {
                    let window = qb == 1 ? [0, 1, 2] : qb == nb - 2 ? [nb - 3, nb - 2, nb - 1] : [qb - 1, qb, qb + 1]
                    for kb in Set([0, nb - 1] + window) { b.add(kb) }
                    for kb in random[h][qb - 1] { b.extraCopy(kb) }
                }
                b.endRow()
            }
            return b.build(name: "big-bird r=\(randomBlocks) (\(mode))")
        }]
    }

    /// The toolkit's own random blocks, heads × (nb − 2) × r, by HF's train-mode rule
    /// (`_bigbird_block_rand_mask_with_head` with its plan), permutations from `generator`.
    static func drawRandomBlocks(blocks nb: Int, r: Int, heads: Int, generator g: inout SeededGenerator) -> [[[Int]]] {
        // The plan: (end block, random blocks) regions.
        var plan: [(end: Int, r: Int)]
        if 2 * r + 5 < nb { plan = [(2 * r + 5, r), (nb, 0)] }
        else if r + 5 < nb { plan = [(r + 5, r / 2), (nb, r - r / 2)] }
        else { plan = [(nb, r)] }
        let total = plan.reduce(0) { $0 + $1.r }
        var rand = Array(repeating: Array(repeating: Array(repeating: 0, count: total), count: nb), count: heads)
        func prefix(_ i: Int) -> Int { plan[..<i].reduce(0) { $0 + $1.r } }
        func single(_ block: Int, _ from: Int, _ to: Int, _ n: Int) -> [Int] {
            var perm = Array(from..<to)
            perm.shuffle(using: &g)
            var illegal = Set((block - 1)...(block + 1))
            illegal.insert(0)
            illegal.insert(to - 1)
            if block == 1 { illegal.insert(to - 2) }
            if block == to - 2 { illegal.insert(1) }
            var picked = perm.filter { !illegal.contains($0) }.prefix(n).map { $0 }
            while picked.count < n { picked.append(0) }    // too few legal blocks: block 0, as eval
            return picked
        }
        func assign(rows: Range<Int>, cols: Range<Int>, from: Int, to: Int, n: Int) {
            for row in rows { for h in 0..<heads { rand[h][row].replaceSubrange(cols, with: single(row, from, to, n)) } }
        }
        for pi in plan.indices {
            if pi > 0 {
                if plan[pi].r > 0 {
                    assign(rows: 1..<plan[pi - 1].end, cols: prefix(pi)..<prefix(pi + 1), from: plan[pi - 1].end,
                           to: plan[pi].end, n: plan[pi].r)
                }
                for pl in 0..<pi where plan[pl].r > 0 {
                    assign(rows: plan[pi - 1].end..<plan[pi].end, cols: prefix(pl)..<prefix(pl + 1),
                           from: pl > 0 ? plan[pl - 1].end : 0, to: plan[pl].end, n: plan[pl].r)
                }
            }
            if plan[pi].r == 0 { continue }
            let start = pi > 0 ? plan[pi - 1].end : 1
            assign(rows: start..<plan[pi].end, cols: prefix(pi)..<prefix(pi + 1), from: pi > 0 ? plan[pi - 1].end : 0,
                   to: plan[pi].end, n: plan[pi].r)
        }
        return rand.map { Array($0[1..<(nb - 1)]) }
    }

    func check(_ x: Tensor) throws -> Int {
        guard x.rank == 3, x.shape[2] == channels, x.shape[0] > 0, x.shape[1] > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        return x.shape[1]
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let l = try check(x)
        let parts = try layouts(length: l)
        let q = try query(x), k = try key(x), v = try value(x)                     // N, L, C each
        return BlockSparseAttention.multiHead(q: q, k: k, v: v, heads: heads, parts: parts, scale: scale)
    }

    public func attentionMap(_ x: Tensor, query mq: MapQuery) throws -> AttentionMap {
        let l = try check(x)
        guard mq.row == 0, (0..<l).contains(mq.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(mq.column) is outside 0..<\(l)")
        }
        if let h = mq.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        let x0 = x.batchItem(0)
        let q = try query(x0), k = try key(x0)
        let w = BlockSparseAttention.mapRow(q: q, k: k, heads: heads, parts: try layouts(length: l), query: mq.column,
                                            head: mq.head, scale: scale)
        let kind = !isSparse(length: l) ? "full attention" : loadedRandom != nil ? "loaded random blocks"
            : config.isSet("seed") ? "seeded random blocks" : "eval: random = block 0"
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: w),
                            labels: ["big-bird b=\(blockSize) r=\(randomBlocks) (\(kind)), " + (mq.head.map { "head \($0)" } ?? "mean of \(heads) heads")])
    }
}
