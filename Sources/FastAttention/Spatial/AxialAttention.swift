// Axial Attention in Multidimensional Transformers.
// Ho, Kalchbrenner, Weissenborn, Salimans, 2019. https://arxiv.org/abs/1912.12180
// Reference matched: pip axial-attention 0.6.1 (lucidrains), axial_attention/axial_attention.py
// `AxialAttention`, `PermuteToFrom` and `SelfAttention`, read in full. The paper's own code is
// TF/JAX (tensor2tensor, trax); there is no authors' PyTorch.

import TensorCore

/// Axial attention: every pixel attends along its column and along its row, with a separate
/// softmax per axis, so no pixel ever scores all H·W others.
///
/// Matches `AxialAttention(dim, num_dimensions=2, heads=8, dim_heads=None, dim_index=1,
/// sum_axial_out=True)` in eval mode (it has no dropout or norm).
///
/// - Input N×dim×H×W, output N×dim×H×W. No residual, no norm, no positional embedding.
/// - `axial_attentions.0` attends along H (batch N·W columns of length H), `axial_attentions.1`
///   along W (batch N·H rows of length W). `sum_axial_out=True`: y = out₀(x) + out₁(x);
///   `false`: y = out₁(out₀(x)) — the row attention runs on the column attention's output.
/// - Per axis (`SelfAttention`): q = x·W_qᵀ, [k | v] = x·W_kvᵀ (k the FIRST half of `to_kv`'s
///   outputs, v the second), heads are contiguous slices of e = dim_heads channels (default
///   dim/heads; `dim % heads == 0` is required even when dim_heads is given), logits scaled by
///   e^−½, softmax along the axis, heads merged, `to_out` (with bias).
/// - Cost: O(N·(H+W)·hidden) for the two attentions plus O(N·dim·hidden) for the projections;
///   here both axes run through `DenseAttention` with strided operands (no permuted copies).
/// - Map (per-query, per head or the mean over heads): sum mode shows the query's column
///   softmax (1×H, on its column), its row softmax (1×W, on its row) and the cross they add to
///   (column + row, total weight 2: both branches enter the output with weight one).
///   Sequential mode shows the row softmax of the second hop, the column softmax of the query
///   pixel in the first hop, and the composed 2-hop map
///   M(h′, w′) = row(w′) · column₍r,w′₎(h′), the weight with which pixel (h′, w′) reaches the
///   query through the row pixel (r, w′) — every pixel, summing to 1. With the mean over heads,
///   each hop is averaged over heads before composing (attention rollout without residuals).
///   Computed in O((H+W)·e) per map row (O(N·e) for the 2-hop map), never N×N.
///
/// Quirks: `dim_index` only describes the layout; FastAttention is N×C×H×W, so 1 (or −3, the
/// same axis) is accepted and anything else refused (the reference's default −1 is
/// channels-last). `num_dimensions` must be 2. The reference's own default heads is 8.
/// Untrained (seeded) weights: PyTorch-default, with the key half of `to_kv` equal to `to_q`
/// (similarity initialisation), so an untrained map shows which pixels on the query's row and
/// column resemble it.
///
/// Keys, per axis i ∈ {0 (H), 1 (W)}: `axial_attentions.i.fn.to_q.weight` (hidden×dim),
/// `.fn.to_kv.weight` (2·hidden×dim), `.fn.to_out.weight` (dim×hidden), `.fn.to_out.bias` (dim),
/// hidden = heads·dim_heads.
public final class AxialAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "axial", title: "Axial Attention in Multidimensional Transformers", arxiv: "1912.12180", year: 2019,
        complexity: "O(N (H+W) D)", complexityExponent: 1.5, kind: .spatial, causal: false,
        reference: "axial_attention.AxialAttention (axial-attention 0.6.1), dim_index=1", mapKind: .perQuery,
        mapDescription: "per head (or their mean): the query's column softmax and row softmax and their sum (the cross); sequential mode: row (2nd hop), column (1st hop) and the composed 2-hop map",
        notes: ["axial_attentions.0 attends along H (columns), .1 along W (rows)",
                "k is the first half of to_kv, v the second; logits scaled by dim_heads^-0.5",
                "sum_axial_out=false applies the row attention to the column attention's output",
                "no residual, norm or positional embedding inside AxialAttention",
                "dim_index only names the channel axis: 1 (N×C×H×W) is accepted, the reference default -1 (channels-last) is not",
                "untrained: PyTorch-default weights with the key half of to_kv = to_q (similarity initialisation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "channels (taken from the input when unset)"),
        ConfigKey("num_dimensions", .int(1...8), default: .int(2), "axial dimensions; N×C×H×W maps need 2"),
        ConfigKey("heads", .int(1...4096), default: .int(8), "attention heads (dim % heads must be 0)"),
        ConfigKey("dim_heads", .int(1...65536), default: .none, "channels per head (default dim // heads)"),
        ConfigKey("dim_index", .int(-4...3), default: .int(1), "channel axis of the input: 1 (N×C×H×W; the reference's default -1 is channels-last)"),
        ConfigKey("sum_axial_out", .bool, default: .bool(true), "sum the two axes' outputs (false: rows after columns)"),
    ]

    public let config: Config
    let dim: Int, heads: Int, dimHeads: Int, sumAxialOut: Bool
    /// [along H, along W].
    let axes: [AxialSelfAttention]

    public var expectedInput: String { "N×\(dim)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 4 else {
            throw ModuleError.badInput(module: id, expected: "N×C×H×W", found: inputShape)
        }
        try config.resolveChannels("dim", from: inputShape[1])
        self.config = config
        guard config.int("num_dimensions") == 2 else {
            throw ModuleError.unsupported(module: id, message:
                "num_dimensions=\(config.int("num_dimensions")) is not supported: FastAttention maps are N×C×H×W (num_dimensions=2)")
        }
        let dimIndex = config.int("dim_index")
        guard dimIndex == 1 || dimIndex == -3 else {
            throw ModuleError.unsupported(module: id, message:
                "dim_index=\(dimIndex) puts the channels on axis \(dimIndex < 0 ? dimIndex + 4 : dimIndex); FastAttention maps are N×C×H×W: use dim_index=1 (the reference's default -1 is channels-last — permute such inputs to N×C×H×W)")
        }
        dim = config.int("dim")
        heads = config.int("heads")
        guard dim % heads == 0 else {
            throw ConfigError.inconsistent(module: id, message: "dim=\(dim) is not divisible by heads=\(heads) (the reference asserts it)")
        }
        let e = config.optionalInt("dim_heads") ?? dim / heads
        dimHeads = e
        sumAxialOut = config.bool("sum_axial_out")
        axes = [0, 1].map { [dim, heads] i in
            AxialSelfAttention(p.scoped("axial_attentions").scoped(String(i)).scoped("fn"),
                               dim: dim, heads: heads, dimHeads: e, alongHeight: i == 0)
        }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (_, _, h, w) = try checkMap(x, channels: dim, module: Self.info.id)
        let t = x.mapToTokens()                                   // N, H·W, C
        let y: Tensor
        if sumAxialOut {
            y = try axes[0](t, height: h, width: w) + axes[1](t, height: h, width: w)
        } else {
            y = try axes[1](axes[0](t, height: h, width: w), height: h, width: w)
        }
        return y.tokensToMap(height: h, width: w)                 // N, C, H, W
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, _, h, w) = try checkMap(x, channels: dim, module: Self.info.id)
        guard (0..<h).contains(query.row), (0..<w).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id,
                                       message: "query (row \(query.row), column \(query.column)) is outside the \(h)×\(w) grid")
        }
        if let hd = query.head, !(0..<heads).contains(hd) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(hd) is outside 0..<\(heads)")
        }
        let (r, c) = (query.row, query.column)
        let t0 = x.batchItem(0).mapToTokens()                     // 1, H·W, C
        let col = try axes[0].projections(t0)
        let row = try axes[1].projections(sumAxialOut ? t0 : try axes[0](t0, height: h, width: w))
        var column = [Float](repeating: 0, count: h * w), rowMap = column
        for (i, v) in axes[0].weights(col, query: r * w + c, line: c, height: h, width: w, head: query.head).enumerated() {
            column[i * w + c] = v
        }
        let rowWeights = axes[1].weights(row, query: r * w + c, line: r, height: h, width: w, head: query.head)
        for (j, v) in rowWeights.enumerated() { rowMap[r * w + j] = v }
        let who = query.head.map { "head \($0)" } ?? "mean of \(heads) heads"
        let maps: [[Float]], labels: [String]
        if sumAxialOut {
            maps = [column, rowMap, zip(column, rowMap).map(+)]
            labels = ["column softmax (\(who))", "row softmax (\(who))", "column + row (\(who))"]
        } else {
            // 2-hop: pixel (h′, w′) → (r, w′) by the first hop's column attention, → (r, c) by
            // the second hop's row attention.
            var composed = [Float](repeating: 0, count: h * w)
            for wp in 0..<w where rowWeights[wp] != 0 {
                let hop1 = axes[0].weights(col, query: r * w + wp, line: wp, height: h, width: w, head: query.head)
                for hp in 0..<h { composed[hp * w + wp] = rowWeights[wp] * hop1[hp] }
            }
            maps = [rowMap, column, composed]
            labels = ["row softmax, 2nd hop (\(who))", "column softmax, 1st hop (\(who))", "2-hop composed (\(who))"]
        }
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [3, h, w], scalars: maps.flatMap { $0 }),
                            labels: labels)
    }
}

/// One axis of `AxialAttention`: lucidrains' `SelfAttention` run on the columns (along H) or
/// the rows (along W) of a token map, read in place through strides.
struct AxialSelfAttention {
    let toQ: Linear, toKV: Linear, toOut: Linear
    let heads: Int, dimHeads: Int, alongHeight: Bool
    var hidden: Int { heads * dimHeads }
    var scale: Float { 1 / Float(dimHeads).squareRoot() }

    init(_ p: Parameters, dim: Int, heads: Int, dimHeads: Int, alongHeight: Bool) {
        self.heads = heads
        self.dimHeads = dimHeads
        self.alongHeight = alongHeight
        let hidden = heads * dimHeads
        toQ = Linear(p.scoped("to_q"), inFeatures: dim, outFeatures: hidden, bias: false)
        var kv = Linear(p.scoped("to_kv"), inFeatures: dim, outFeatures: 2 * hidden, bias: false)
        if !p.isLoading {
            // Similarity initialisation: the key half (rows 0..<hidden) starts equal to W_q.
            let halves = kv.weight.split(sizes: [hidden, hidden], axis: 0)
            kv.weight = Tensor.concatenated([toQ.weight, halves[1]], axis: 0)
        }
        toKV = kv
        toOut = Linear(p.scoped("to_out"), inFeatures: hidden, outFeatures: dim)
    }

    /// q N×L×hidden and kv N×L×2·hidden (k in columns 0..<hidden, v after).
    func projections(_ t: Tensor) throws -> (q: Tensor, kv: Tensor) {
        (try toQ(t), try toKV(t))
    }

    /// Tokens N×(H·W)×dim in raster order → N×(H·W)×dim.
    func callAsFunction(_ t: Tensor, height h: Int, width w: Int) throws -> Tensor {
        let (q, kv) = try projections(t)
        let n = t.shape[0], l = h * w, hd = hidden, e = dimHeads
        var o = Tensor(uninitialized: [n, l, hd])                 // N, L, hidden
        q.withUnsafeBufferPointer { qp in
            kv.withUnsafeBufferPointer { kvp in
                o.withUnsafeMutableBufferPointer { op in
                    for b in 0..<n {
                        let qb = qp.baseAddress! + b * l * hd, kb = kvp.baseAddress! + b * l * 2 * hd
                        let ob = op.baseAddress! + b * l * hd
                        // Columns: W sequences of length H, rows W·C apart, sequences C apart.
                        // Rows: H sequences of length W, rows C apart, sequences W·C apart.
                        let (count, length) = alongHeight ? (w, h) : (h, w)
                        let (step, next) = alongHeight ? (w, 1) : (1, w)   // in tokens: along, between
                        DenseAttention.forward(
                            batch: count, heads: heads, lq: length, lk: length, d: e, dv: e,
                            q: .init(base: qb, ld: step * hd, batchStride: next * hd, headStride: e),
                            k: .init(base: kb, ld: step * 2 * hd, batchStride: next * 2 * hd, headStride: e),
                            v: .init(base: kb + hd, ld: step * 2 * hd, batchStride: next * 2 * hd, headStride: e),
                            out: ob, outLd: step * hd, outBatchStride: next * hd, outHeadStride: e,
                            scale: scale)
                    }
                }
            }
        }
        return try toOut(o)                                       // N, L, dim
    }

    /// The softmax weights token `query` (of batch item 0) gives the `line`-th column (along H)
    /// or row (along W): one head's, or the mean over heads when `head` is nil. O(length·e·heads).
    func weights(_ p: (q: Tensor, kv: Tensor), query: Int, line: Int, height h: Int, width w: Int,
                 head: Int?) -> [Float] {
        let hd = hidden, e = dimHeads
        let (length, first, step) = alongHeight ? (h, line, w) : (w, line * w, 1)  // in tokens
        let chosen = head.map { [$0] } ?? Array(0..<heads)
        var out = [Float](repeating: 0, count: length)
        p.q.withUnsafeBufferPointer { qp in
            p.kv.withUnsafeBufferPointer { kvp in
                for hh in chosen {
                    let wts = DenseAttention.weights(query: qp.baseAddress! + query * hd + hh * e,
                                                     keys: kvp.baseAddress! + first * 2 * hd + hh * e,
                                                     ldk: step * 2 * hd, lk: length, d: e, scale: scale)
                    for j in 0..<length { out[j] += wts[j] / Float(chosen.count) }
                }
            }
        }
        return out
    }
}
