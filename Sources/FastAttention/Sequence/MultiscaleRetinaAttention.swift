// Multi-scale Transformer Language Models — the "retina" attention: fine tokens nearby, pooled
// (coarse) tokens further away. Subramanian, Collobert, Ranzato, Boureau, 2020.
// https://arxiv.org/abs/2005.00581
// No code was released; this module and Tools/reference/multiscale_transformer.py (a PyTorch
// masked-dense reference) are written from the paper, in the two-scale form described below.

import Foundation
import TensorCore

/// Retina-style multi-scale self-attention (two scales): each query attends to the fine tokens
/// of its recent window and to coarse tokens — means of `pool` consecutive input tokens — for
/// the spans of the past that the window does not cover.
///
/// - Input N×L×dim, output N×L×dim: `out(attention)`.
/// - Tokens z = [x₀ … x_{L−1}; c₀ … c_{M−1}], c_m = mean(x[m·pool ..< min(L, (m+1)·pool)]),
///   M = ⌈L/pool⌉ (shifted pooling: a causal query only sees spans that end before its window,
///   so no future token leaks into a coarse key). q, k, v = query/key/value(z), logits
///   q·k/√d_head, one softmax over the query's fine and coarse keys:
///   - fine: q − window < j ≤ q (causal) or |q − j| < window;
///   - coarse: span m with (m+1)·pool − 1 ≤ q − window (and, not causal, m·pool ≥ q + window).
/// - This is the paper's retina idea (high resolution near the query, span summaries further
///   away) in its simplest two-scale form; the paper's stacks (top-down, bottom-up, retina over
///   several pooling levels) combine such layers. Written from the paper: details such as the
///   number of scales and how spans are pooled are this package's choices, stated here.
/// - Cost O(N·(window + N/pool)·d): quadratic with a 1/pool factor (the paper's O(N²·D)), run
///   through the block-sparse kernel on the L + M concatenated tokens (no L×L matrix).
/// - Map (per-query): fine weights at their positions, each coarse weight spread evenly over its
///   span's positions; mean over heads.
/// - Keys: `query, key, value, out` `.weight (dim,dim)/.bias (dim)`. Untrained: key = query.
public final class MultiscaleRetinaAttention: BlockSparseModule {
    public static let info = ModuleInfo(
        id: "multiscale-transformer", title: "Multi-scale Transformer Language Models (retina attention)",
        arxiv: "2005.00581", year: 2020, complexity: "O(N^2 D)", complexityExponent: 2,
        kind: .sequence, causal: true,
        reference: "no code released: written from the paper (PyTorch masked-dense reference in Tools/reference/multiscale_transformer.py)",
        mapKind: .perQuery,
        mapDescription: "softmax weights of the query over its recent fine tokens and, further back, pooled spans of `pool` tokens (each span's weight spread evenly over it); mean over heads",
        notes: ["two scales: a fine window of `window` tokens and coarse means of `pool` tokens for the spans the window does not cover",
                "shifted pooling: a causal query sees only spans that end before its window",
                "cost N·(window + N/pool): quadratic with a 1/pool factor, as the paper's O(N^2 D)",
                "written from the paper (no released code); untrained key = query"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "channels (taken from the input when unset)"),
        ConfigKey("heads", .int(1...1024), default: .int(4), "heads"),
        ConfigKey("window", .int(1...1_000_000), default: .int(32), "fine window (tokens)"),
        ConfigKey("pool", .int(1...1_000_000), default: .int(8), "tokens per coarse span"),
        ConfigKey("causal", .bool, default: .bool(true), "language-model masking"),
    ]

    public let config: Config
    let dim: Int, heads: Int, window: Int, pool: Int, causal: Bool
    let query: Linear, key: Linear, value: Linear, out: Linear
    let cache = LayoutCache()

    public var expectedInput: String { "N×L×\(dim)" }
    public var exampleLength: Int { 8 * window }
    var scale: Float { 1 / Float(dim / heads).squareRoot() }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        (dim, heads) = try config.resolveTokenHeads("dim", heads: "heads", inputShape: inputShape)
        self.config = config
        window = config.int("window")
        pool = config.int("pool")
        causal = config.bool("causal")
        query = Linear(p.scoped("query"), inFeatures: dim, outFeatures: dim)
        let k = Linear(p.scoped("key"), inFeatures: dim, outFeatures: dim)
        key = p.isLoading ? k : Linear(weight: query.weight, bias: query.bias)
        value = Linear(p.scoped("value"), inFeatures: dim, outFeatures: dim)
        out = Linear(p.scoped("out"), inFeatures: dim, outFeatures: dim)
    }

    func spans(_ l: Int) -> Int { (l + pool - 1) / pool }

    /// The layout over the L + M concatenated tokens (rows of coarse queries are empty).
    public func layouts(length: Int) throws -> [[BlockLayout]] {
        try cache.layouts(length: length) { try buildLayouts(length: length) }
    }

    func buildLayouts(length l: Int) throws -> [[BlockLayout]] {
        guard l >= 1 else { throw ModuleError.badInput(module: Self.info.id, expected: "L ≥ 1", found: [l]) }
        let m = spans(l), total = l + m, block = 32, w = window
        var b = BlockLayoutBuilder(length: total, blockSize: block)
        let fine = PairRule(minDelta: -(w - 1), maxDelta: causal ? 0 : w - 1, keys: 0..<l, queries: 0..<l)
        let coarse = PairRule(coarseBase: l, coarsePool: pool, coarseLag: w, coarseTwoSided: !causal)
        for qb in 0..<b.blockCount {
            let q0 = qb * block, q1 = min(total, q0 + block) - 1
            if q0 < l {
                let qEnd = min(q1, l - 1)
                let kEnd = causal ? qEnd : min(l - 1, qEnd + w - 1)
                b.add(max(0, q0 - w + 1) / block..<(kEnd / block + 1), rule: fine)
                // Coarse spans: up to the last one ending before the window of the block's last
                // query (causal), or all of them.
                let lastSpan = causal ? (qEnd - w + 1) / pool - 1 : m - 1
                if lastSpan >= 0 && (causal ? qEnd - w + 1 >= pool : true) {
                    b.add(l / block..<((l + lastSpan) / block + 1), rule: coarse)
                }
            }
            b.endRow()
        }
        return [[b.build(name: "retina: fine window \(w) + coarse spans of \(pool) (L+M = \(l)+\(m) tokens; coarse keys sit after the fine ones, so causality is by span end, not index)")]]
    }

    func check(_ x: Tensor) throws -> Int {
        guard x.rank == 3, x.shape[2] == dim, x.shape[0] > 0, x.shape[1] > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        return x.shape[1]
    }

    /// [x; span means]: N×(L+M)×dim.
    func withCoarse(_ x: Tensor) -> Tensor {
        let (n, l, c) = (x.shape[0], x.shape[1], x.shape[2]), m = spans(l)
        var z = Tensor(zeros: [n, l + m, c])
        z.withUnsafeMutableBufferPointer { zp in
            x.withUnsafeBufferPointer { xp in
                for b in 0..<n {
                    let src = xp.baseAddress! + b * l * c, dst = zp.baseAddress! + b * (l + m) * c
                    dst.update(from: src, count: l * c)
                    for s in 0..<m {
                        let lo = s * pool, hi = min(l, lo + pool), row = dst + (l + s) * c
                        for t in lo..<hi { for ch in 0..<c { row[ch] += src[t * c + ch] } }
                        let inv = 1 / Float(hi - lo)
                        for ch in 0..<c { row[ch] *= inv }
                    }
                }
            }
        }
        return z
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let l = try check(x)
        let z = withCoarse(x)                                                   // N, L+M, dim
        let a = BlockSparseAttention.multiHead(q: try query(z), k: try key(z), v: try value(z), heads: heads,
                                               parts: try layouts(length: l), scale: scale)   // N, L+M, dim
        return try out(a.sliced(axis: 1, range: 0..<l))                         // N, L, dim
    }

    public func attentionMap(_ x: Tensor, query mq: MapQuery) throws -> AttentionMap {
        let l = try check(x)
        guard mq.row == 0, (0..<l).contains(mq.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(mq.column) is outside 0..<\(l)")
        }
        if let h = mq.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        let z = withCoarse(x.batchItem(0))
        let wz = BlockSparseAttention.mapRow(q: try query(z), k: try key(z), heads: heads, parts: try layouts(length: l),
                                             query: mq.column, head: mq.head, scale: scale)
        // Fine weights stay; each coarse weight is spread over its span.
        var w = Array(wz[0..<l])
        for s in 0..<spans(l) where wz[l + s] != 0 {
            let lo = s * pool, hi = min(l, lo + pool)
            for t in lo..<hi { w[t] += wz[l + s] / Float(hi - lo) }
        }
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: w),
                            labels: ["retina: window \(window) + spans of \(pool), " + (mq.head.map { "head \($0)" } ?? "mean of \(heads) heads")])
    }
}
