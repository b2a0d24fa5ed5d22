// Kronecker Attention Networks.
// Gao, Wang, Ji, KDD 2020. https://arxiv.org/abs/2007.08442
// Reference matched: pip kronecker-attention-pytorch 0.0.6 (lucidrains),
// kronecker_attention_pytorch/kronecker_attention_pytorch.py `KroneckerSelfAttention`, read in
// full. No authors' code was found; this is the paper's KAO_QKV operator with averages.

import CKernels
import TensorCore

/// Kronecker attention (KAO_QKV): the map is summarised by its H row means and W column means,
/// dense attention runs among those H+W summary tokens, and the output is rebuilt as the outer
/// (Kronecker) sum of the row and column results — no pixel-to-pixel scores at all.
///
/// Matches `KroneckerSelfAttention(dim, heads, dim_heads=32)` in eval mode (no dropout/norm).
///
/// - Input N×dim×H×W, output N×dim×H×W; NO residual.
/// - s = [mean over W of x (C×H, the row means) ; mean over H of x (C×W, the column means)],
///   C×(H+W), in that order. [q; k; v] = Conv1d(s) (no bias), channels laid out (qkv, head, d),
///   qkv outermost. A = softmax_j(q_i·k_j) per head with NO 1/√d scale; o = A v, heads merged,
///   `to_out` Conv1d (with bias). y[c, i, j] = o[c, i] + o[c, H + j] (so to_out's bias counts
///   twice).
/// - Cost: O(N·C) for the means and the outer sum, O((H+W)·C·hidden) for the projections and
///   O((H+W)²·hidden) for the attention (through `DenseAttention`), against O(N²) dense.
/// - Map (per-query, mean over heads or one head): the (H+W)×(H+W) summary attention drawn back
///   on H×W as the paper's outer-sum reconstruction implies. Output pixel (i, j) is rebuilt
///   from summary token i (its row) and token H+j (its column); each of their attention rows
///   is spread over the pixels the attended tokens average — row token a's weight over row a
///   divided by W, column token H+b's over column b divided by H — so pixel (a, b) gets
///   A[t, a]/W + A[t, H+b]/H. Panels: row token i's row, column token H+j's row, and their sum,
///   which is exactly the weight input pixel (a, b)'s value carries in y[:, i, j]
///   (total mass 2: two softmax rows). O((H+W)·hidden + N) per query.
///   `summaryAttention(_:)` returns the raw heads×(H+W)×(H+W) matrix.
///
/// Quirks: `heads` has no default in the reference (8 here, its README's); the README's `chan=`
/// keyword is `dim` in 0.0.6. Untrained (seeded) weights: PyTorch-default Conv1d, with the key
/// rows of `to_qkv` equal to the query rows (similarity initialisation).
///
/// Keys: `to_qkv.weight` (3·heads·dim_heads × dim × 1), `to_out.weight` (dim × heads·dim_heads × 1),
/// `to_out.bias` (dim).
public final class KroneckerSelfAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "kronecker", title: "Kronecker Attention Networks", arxiv: "2007.08442", year: 2020,
        complexity: "O((H+W)^2 D)", complexityExponent: 1, kind: .spatial, causal: false,
        reference: "kronecker_attention_pytorch.KroneckerSelfAttention (kronecker-attention-pytorch 0.0.6)",
        mapKind: .perQuery,
        mapDescription: "the (H+W)x(H+W) attention over row means and column means, drawn back on HxW: the query's row token and column token attention rows spread over the rows/columns they average, and their sum (each pixel's exact weight, total 2)",
        notes: ["KAO_QKV with averages: queries, keys and values all come from the H row means and W column means",
                "no 1/sqrt(d) scale in the softmax; no residual; output = outer sum o[:, i] + o[:, H+j] (to_out bias counted twice)",
                "cost O(N C) for means and outer sum plus O((H+W)^2 D) attention: linear in N for square maps",
                "untrained: PyTorch-default weights with the key rows of to_qkv = the query rows (similarity initialisation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "channels (taken from the input when unset)"),
        ConfigKey("heads", .int(1...4096), default: .int(8), "attention heads (no default in the reference)"),
        ConfigKey("dim_heads", .int(1...65536), default: .int(32), "channels per head"),
    ]

    public let config: Config
    let dim: Int, heads: Int, dimHeads: Int
    /// Conv1d weights as matrices: to_qkv 3·hidden×dim, to_out dim×hidden (+ bias dim).
    let toQKV: Tensor, toOut: Tensor, toOutBias: Tensor
    var hidden: Int { heads * dimHeads }

    public var expectedInput: String { "N×\(dim)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 4 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×C×H×W", found: inputShape)
        }
        try config.resolveChannels("dim", from: inputShape[1])
        self.config = config
        dim = config.int("dim")
        heads = config.int("heads")
        dimHeads = config.int("dim_heads")
        let hd = heads * dimHeads
        // Similarity initialisation: the key rows start equal to the query rows.
        let (wq, wv) = p.withGenerator { [dim] g -> (Tensor, Tensor) in
            let bound = 1 / Float(dim).squareRoot()                   // PyTorch's Conv1d default
            return (Tensor.randomUniform([hd, dim, 1], low: -bound, high: bound, generator: &g),
                    Tensor.randomUniform([hd, dim, 1], low: -bound, high: bound, generator: &g))
        }
        let qkv = p.scoped("to_qkv").parameter("weight", shape: [3 * hd, dim, 1],
                                               initializer: .tensor(Tensor.concatenated([wq, wq, wv], axis: 0)))
        toQKV = qkv.reshaped([3 * hd, dim])
        let out = p.scoped("to_out")
        toOut = out.parameter("weight", shape: [dim, hd, 1], initializer: .pytorchDefault(fanIn: hd)).reshaped([dim, hd])
        toOutBias = out.parameter("bias", shape: [dim], initializer: .pytorchDefault(fanIn: hd))
    }

    /// x N×C×H×W → summary tokens N×(H+W)×C: the H row means, then the W column means.
    func summaries(_ x: Tensor) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        var s = Tensor(zeros: [n, h + w, c])                          // N, H+W, C
        x.withUnsafeBufferPointer { xp in
            s.withUnsafeMutableBufferPointer { sp in
                var sums = [Float](repeating: 0, count: h + w)             // H row sums, then W column sums
                sums.withUnsafeMutableBufferPointer { rp in
                    for b in 0..<n { for ch in 0..<c {
                        fa_row_col_sums(xp.baseAddress! + (b * c + ch) * h * w, h, w, rp.baseAddress!, rp.baseAddress! + h)
                        let tokens = sp.baseAddress! + b * (h + w) * c + ch
                        for i in 0..<h { tokens[i * c] = rp[i] / Float(w) }
                        for j in 0..<w { tokens[(h + j) * c] = rp[h + j] / Float(h) }
                    } }
                }
            }
        }
        return s
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (n, c, h, w) = try checkMap(x, channels: dim, module: Self.info.id)
        let l = h + w, hd = hidden
        let qkv = projectTokens(summaries(x), toQKV)                  // N, H+W, 3·hidden
        var o = Tensor(uninitialized: [n, l, hd])                     // N, H+W, hidden
        qkv.withUnsafeBufferPointer { qp in
            o.withUnsafeMutableBufferPointer { op in
                let base = qp.baseAddress!
                DenseAttention.forward(
                    batch: n, heads: heads, lq: l, lk: l, d: dimHeads, dv: dimHeads,
                    q: .init(base: base, ld: 3 * hd, batchStride: l * 3 * hd, headStride: dimHeads),
                    k: .init(base: base + hd, ld: 3 * hd, batchStride: l * 3 * hd, headStride: dimHeads),
                    v: .init(base: base + 2 * hd, ld: 3 * hd, batchStride: l * 3 * hd, headStride: dimHeads),
                    out: op.baseAddress!, outLd: hd, outBatchStride: l * hd, outHeadStride: dimHeads, scale: 1)
            }
        }
        let summary = projectTokens(o, toOut, bias: toOutBias).permuted(0, 2, 1)   // N, C, H+W
        var y = Tensor(uninitialized: [n, c, h, w])                   // N, C, H, W
        summary.withUnsafeBufferPointer { sp in
            y.withUnsafeMutableBufferPointer { yp in
                for plane in 0..<(n * c) {
                    let s = sp.baseAddress! + plane * l
                    fa_outer_add(s, s + h, yp.baseAddress! + plane * h * w, h, w)
                }
            }
        }
        return y
    }

    /// The summary attention of batch item 0: heads×(H+W)×(H+W), row t the softmax of summary
    /// token t (rows 0..<H the row means, then the column means). O((H+W)²·hidden).
    public func summaryAttention(_ x: Tensor) throws -> Tensor {
        let (_, _, h, w) = try checkMap(x, channels: dim, module: Self.info.id)
        let qkv = projectTokens(summaries(x.batchItem(0)), toQKV)     // 1, H+W, 3·hidden
        return Tensor(shape: [heads, h + w, h + w],
                      scalars: (0..<heads).flatMap { hh in (0..<(h + w)).flatMap { row(qkv, token: $0, head: hh) } })
    }

    /// Softmax row of summary token `token` in head `head` (qkv of one item, 1×(H+W)×3·hidden).
    func row(_ qkv: Tensor, token: Int, head: Int) -> [Float] {
        let hd = hidden, l = qkv.shape[1]
        return qkv.withUnsafeBufferPointer { qp in
            DenseAttention.weights(query: qp.baseAddress! + token * 3 * hd + head * dimHeads,
                                   keys: qp.baseAddress! + hd + head * dimHeads, ldk: 3 * hd, lk: l,
                                   d: dimHeads, scale: 1)
        }
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
        let qkv = projectTokens(summaries(x.batchItem(0)), toQKV)     // 1, H+W, 3·hidden
        let chosen = query.head.map { [$0] } ?? Array(0..<heads)
        var panels = [[Float]](repeating: [Float](repeating: 0, count: h * w), count: 3)
        for (p, token) in [query.row, h + query.column].enumerated() {
            var a = [Float](repeating: 0, count: h + w)               // mean over the chosen heads
            for hh in chosen { for (t, v) in row(qkv, token: token, head: hh).enumerated() { a[t] += v / Float(chosen.count) } }
            for i in 0..<h { for j in 0..<w {
                let v = a[i] / Float(w) + a[h + j] / Float(h)
                panels[p][i * w + j] = v
                panels[2][i * w + j] += v
            } }
        }
        let who = query.head.map { "head \($0)" } ?? "mean of \(heads) heads"
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [3, h, w], scalars: panels.flatMap { $0 }),
                            labels: ["row token \(query.row) drawn back (\(who))", "column token \(query.column) drawn back (\(who))",
                                     "pixel weights: row + column tokens (\(who))"])
    }
}

/// Tokens B×L×in through a kernel-size-1 Conv1d (weight out×in, optional bias) → B×L×out.
fileprivate func projectTokens(_ t: Tensor, _ weight: Tensor, bias: Tensor? = nil) -> Tensor {
    let (o, c) = (weight.shape[0], weight.shape[1]), rows = t.count / c
    var y = t.reshaped([rows, c]).matmul(weight, transposeOther: true)   // rows, out
    if let bias { y.withUnsafeMutableBufferPointer { addRowBias($0.baseAddress!, rows: rows, cols: o, bias) } }
    return y.reshaped(Array(t.shape.dropLast()) + [o])
}
