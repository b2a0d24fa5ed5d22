// Longformer: The Long-Document Transformer — sliding-window + global attention.
// Beltagy, Peters, Cohan, 2020. https://arxiv.org/abs/2004.05150
// Reference matched: HF transformers 5.23.0 `LongformerSelfAttention(config, layer_id=0)`
// (models/longformer/modeling_longformer.py, read in full; a port of allenai/longformer's
// `sliding_chunks` mode).

import Foundation
import TensorCore

/// Longformer self-attention: each token attends to a window of ±w = attention_window/2 tokens
/// and to the global tokens; global tokens attend to everything with their own projections.
///
/// - Input N×L×C, output N×L×C: HF's `attn_output` (before `LongformerSelfOutput`).
/// - Local rows (i ≥ g): softmax over {j : |i − j| ≤ w} ∪ {j < g} — each key once (HF masks
///   global keys out of the band and adds them back as separate columns) — of q_i·k_j with
///   q = query(x)/√d_head, k = key(x), v = value(x). Band positions past either end of the
///   sequence are excluded.
/// - Global rows (i < g, `global_tokens=g` marks positions 0..g−1 as `LongformerModel` does):
///   **overwritten** by full attention over all positions with query_global (scaled),
///   key_global, value_global.
/// - Cost O(N·(2w+1+g)·d) through the block-sparse kernel, plus O(g·N·d) for the global rows.
/// - Quirks: HF needs L % attention_window == 0 (`LongformerModel` pads with masked tokens);
///   any L works here and equals that padded computation on the real tokens. `attention_window`
///   is one even int (HF's per-layer list, layer 0). HF has **no dilation** (only allenai's
///   CUDA kernel has `attention_dilation`); the toolkit key `attention_dilation=d` gives the
///   paper's dilated window (j = i + d·m, |m| ≤ w), checked against a dense masked reference
///   written from the paper (Tools/reference/longformer.py), computed on residue classes mod d
///   (the kernel's permuted order) so blocks stay dense. HF is bidirectional; `autoregressive=true`
///   (allenai's config key, whose TVM kernel has the mode) keeps keys i − w·d … i, and global
///   rows attend to k ≤ i only (this package's choice: the module stays strictly causal).
/// - Map (per-query): the query's softmax row — band (dilated) plus global columns for a local
///   query, the full global row for a global query; mean over heads.
/// - Keys: `query, key, value, query_global, key_global, value_global` `.weight (C,C)/.bias (C)`.
///   Untrained: key = query and key_global = query_global (similarity initialisation).
public final class LongformerSelfAttention: BlockSparseModule {
    public static let info = ModuleInfo(
        id: "longformer", title: "Longformer: The Long-Document Transformer (sliding window + global)",
        arxiv: "2004.05150", year: 2020, complexity: "O(N (k+g) D)", complexityExponent: 1,
        kind: .sequence, causal: true,
        reference: "transformers 5.23.0 LongformerSelfAttention(config, layer_id=0)", mapKind: .perQuery,
        mapDescription: "softmax weights of the query over its window of ±attention_window/2 tokens (dilated with attention_dilation) and the global tokens 0..g-1; a global query's row covers every position",
        notes: ["global_tokens=g makes positions 0..g-1 global (as LongformerModel marks them); their rows use the *_global projections over all positions",
                "any L (HF needs L % attention_window == 0; LongformerModel pads with masked tokens, which this equals)",
                "HF has no dilation; attention_dilation (toolkit key, allenai's name) follows the paper, reference written from it",
                "autoregressive=true (allenai's key; HF has none): one-sided window, global rows causal too; untrained key = query, key_global = query_global"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("hidden_size", .int(1...65536), default: .none, "channels C (taken from the input when unset)"),
        ConfigKey("num_attention_heads", .int(1...1024), default: .int(4), "heads (HF default 12; C divisible by heads)"),
        ConfigKey("attention_window", .int(2...1_000_000), default: .int(64), "window size 2w (even): each token sees ±w (HF default 512; 64 keeps a photo map's window within about a grid row)"),
        ConfigKey("global_tokens", .int(0...1_000_000), default: .int(0), "positions 0..g-1 are global (toolkit key)"),
        ConfigKey("attention_dilation", .int(1...1024), default: .int(1), "window dilation d (toolkit key; HF has none)"),
        ConfigKey("autoregressive", .bool, default: .bool(false), "causal: keys i-w·d..i, global rows see k ≤ i (allenai's key; HF has none)"),
    ]

    public let config: Config
    let channels: Int, heads: Int, window: Int, globals: Int, dilation: Int, autoregressive: Bool
    let query: Linear, key: Linear, value: Linear
    let queryGlobal: Linear, keyGlobal: Linear, valueGlobal: Linear

    public var expectedInput: String { "N×L×\(channels)" }
    public var exampleLength: Int { 16 * blockSize }
    /// Kernel block: the one-sided window, between 16 and 64.
    var blockSize: Int { min(64, max(16, window)) }
    var scale: Float { 1 / Float(channels / heads).squareRoot() }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        (channels, heads) = try config.resolveTokenHeads("hidden_size", heads: "num_attention_heads", inputShape: inputShape)
        self.config = config
        let aw = config.int("attention_window")
        guard aw % 2 == 0 else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "attention_window=\(aw) must be even (HF asserts it)")
        }
        window = aw / 2
        globals = config.int("global_tokens")
        dilation = config.int("attention_dilation")
        autoregressive = config.bool("autoregressive")
        let c = channels
        query = Linear(p.scoped("query"), inFeatures: c, outFeatures: c)
        let k = Linear(p.scoped("key"), inFeatures: c, outFeatures: c)
        value = Linear(p.scoped("value"), inFeatures: c, outFeatures: c)
        queryGlobal = Linear(p.scoped("query_global"), inFeatures: c, outFeatures: c)
        let kg = Linear(p.scoped("key_global"), inFeatures: c, outFeatures: c)
        valueGlobal = Linear(p.scoped("value_global"), inFeatures: c, outFeatures: c)
        // Similarity initialisation (a checkpoint overrides it).
        key = p.isLoading ? k : Linear(weight: query.weight, bias: query.bias)
        keyGlobal = p.isLoading ? kg : Linear(weight: queryGlobal.weight, bias: queryGlobal.bias)
    }

    let cache = LayoutCache()

    public func layouts(length: Int) throws -> [[BlockLayout]] {
        try cache.layouts(length: length) { try buildLayouts(length: length) }
    }

    func buildLayouts(length: Int) throws -> [[BlockLayout]] {
        guard length >= 1 else { throw ModuleError.badInput(module: Self.info.id, expected: "L ≥ 1", found: [length]) }
        return [[Self.slidingWindow(length: length, block: blockSize, window: window, dilation: dilation,
                                    globals: min(globals, length), causal: autoregressive)]]
    }

    /// {|i − j| ≤ w·d, (i − j) mod d = 0} ∪ {j < g}; with d > 1 on residue classes mod d.
    static func slidingWindow(length: Int, block: Int, window w: Int, dilation d: Int, globals g: Int,
                              causal: Bool = false) -> BlockLayout {
        let order: [Int]? = d == 1 ? nil : (0..<d).flatMap { c in Swift.stride(from: c, to: length, by: d) }
        var b = BlockLayoutBuilder(length: length, blockSize: block, order: order)
        let band = PairRule(minDelta: -w * d, maxDelta: causal ? 0 : w * d, deltaStride: d)
        // Global keys j < g: causal rows (all i ≥ g here, the global rows are recomputed) see them all.
        let global = PairRule(keys: 0..<g)
        var globalBlocks = Set<Int>()
        if let order {
            for (j, p) in order.enumerated() where p < g { globalBlocks.insert(j / block) }
        } else if g > 0 {
            globalBlocks = Set(0...((g - 1) / block))
        }
        for qb in 0..<b.blockCount {
            // In permuted order a class's neighbours at ±w·d are ±w indices away.
            let j0 = qb * block, j1 = min(length, j0 + block) - 1
            b.add(max(0, j0 - w) / block..<(min(length - 1, causal ? j1 : j1 + w) / block + 1), rule: band)
            for kb in globalBlocks.sorted() { b.add(kb, rule: global) }
            b.endRow()
        }
        let dil = d == 1 ? "" : ", dilation \(d) (residue classes)"
        return b.build(name: (causal ? "causal window -\(w)" : "window ±\(w)") + dil + (g > 0 ? " + \(g) global" : ""))
    }

    func check(_ x: Tensor) throws -> Int {
        guard x.rank == 3, x.shape[2] == channels, x.shape[0] > 0, x.shape[1] > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        guard globals <= x.shape[1] else {
            throw ModuleError.badInput(module: Self.info.id, expected: "L ≥ global_tokens=\(globals)", found: x.shape)
        }
        return x.shape[1]
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let l = try check(x)
        let q = try query(x), k = try key(x), v = try value(x)                    // N, L, C each
        var out = BlockSparseAttention.multiHead(q: q, k: k, v: v, heads: heads, layouts: try layouts(length: l)[0],
                                                 scale: scale)                    // N, L, C
        guard globals > 0 else { return out }
        // Global rows: full attention with the global projections, overwriting rows 0..g−1.
        let xg = x.sliced(axis: 1, range: 0..<globals)                                  // N, g, C
        let og = DenseAttention.multiHead(q: try queryGlobal(xg), k: try keyGlobal(x), v: try valueGlobal(x),
                                          heads: heads, scale: scale, causal: autoregressive)  // N, g, C
        let n = x.shape[0], c = channels
        out.withUnsafeMutableBufferPointer { op in
            og.withUnsafeBufferPointer { gp in
                for b in 0..<n {
                    (op.baseAddress! + b * l * c).update(from: gp.baseAddress! + b * globals * c, count: globals * c)
                }
            }
        }
        return out
    }

    public func attentionMap(_ x: Tensor, query mq: MapQuery) throws -> AttentionMap {
        let l = try check(x)
        guard mq.row == 0, (0..<l).contains(mq.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(mq.column) is outside 0..<\(l)")
        }
        if let h = mq.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        let x0 = x.batchItem(0), i = mq.column
        let headLabel = mq.head.map { "head \($0)" } ?? "mean of \(heads) heads"
        if i < globals {
            let q = try queryGlobal(x0), k = try keyGlobal(x0)                    // 1, L, C
            let d = channels / heads
            var acc = [Float](repeating: 0, count: l)
            let hs = mq.head.map { [$0] } ?? Array(0..<heads)
            q.withUnsafeBufferPointer { qp in
                k.withUnsafeBufferPointer { kp in
                    for h in hs {
                        // One query row: copy its head slice, keys read in place (ld = C).
                        let qrow = Array(qp[(i * channels + h * d)..<(i * channels + (h + 1) * d)])
                        let w = DenseAttention.weights(query: qrow, keys: kp.baseAddress! + h * d, ldk: channels,
                                                       lk: l, d: d, scale: scale, visible: autoregressive ? i + 1 : nil)
                        for j in 0..<l { acc[j] += w[j] / Float(hs.count) }
                    }
                }
            }
            return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: acc),
                                labels: ["global token: full row, \(headLabel)"])
        }
        let q = try query(x0), k = try key(x0)
        let w = BlockSparseAttention.mapRow(q: q, k: k, heads: heads, layouts: try layouts(length: l)[0], query: i,
                                            head: mq.head, scale: scale)
        let dil = dilation > 1 ? " dilation \(dilation)" : ""
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: w),
                            labels: ["window +-\(window)\(dil)" + (globals > 0 ? " + \(globals) global" : "") + ", \(headLabel)"])
    }
}
