// Efficient Attention: Attention with Linear Complexities.
// Zhuoran Shen, Mingyuan Zhang, Haiyu Zhao, Shuai Yi, Hongsheng Li — WACV 2021.
// https://arxiv.org/abs/1812.01243
// Reference matched: cmsflash/efficient-attention efficient_attention.py `EfficientAttention`
// (the authors' code, commit 46a5f9e), read in full.

import TensorCore

/// Efficient attention: softmax-normalised keys and queries multiplied in the cheap order,
/// Q̂(K̂ᵀV), so the n×n attention matrix is never formed.
///
/// Matches `EfficientAttention(in_channels, key_channels, head_count, value_channels)` in eval
/// mode (it has no mode-dependent layer).
///
/// - Input N×in_channels×H×W → output N×in_channels×H×W (y = reprojection(O) + x), or tokens
///   N×L×in_channels → N×L×in_channels: every projection is a 1×1 conv, so a sequence is the
///   same computation on a 1×L map (the weights are the same tensors).
/// - Map (per-query): the implicit weights the query gives every position,
///   w[j] = Σ_c Q̂[c,i]·K̂[c,j] over a head's channels — each head's row sums to 1; the mean
///   over heads, or one head with `MapQuery.head`. O(n·d_k) per query.
/// - Cost: O(n·d_k·d_v/h) time, O(n·(d_k + d_v)) memory (the paper's O(d_k·d_v·n)).
///
/// Quirks of the reference:
/// - Keys are softmaxed over positions (dim 2), queries over each head's channels (dim 1);
///   no 1/√d scale, no norm layer; the residual is always on.
/// - Heads are contiguous channel slices of `key_channels // head_count` key channels and
///   `value_channels // head_count` value channels: key channels past `head_count·(key_channels
///   // head_count)` are projected but never used; value_channels must be divisible by
///   head_count (the reference's reprojection fails otherwise).
/// - Multi-head is the repository's addition; the paper has one head.
/// - The reference has no defaults; here unset key/value channel counts follow in_channels
///   and head_count defaults to 1.
/// - Untrained: PyTorch-default random 1×1 convs with `queries` = `keys` (similarity
///   initialisation), so an untrained map shows pixels whose dominant key channels match the
///   query's.
///
/// Keys: `keys.{weight,bias}`, `queries.{weight,bias}`, `values.{weight,bias}`,
/// `reprojection.{weight,bias}` (1×1 conv weights out×in×1×1).
public final class EfficientAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "efficient-attention", title: "Efficient Attention: Attention with Linear Complexities",
        arxiv: "1812.01243", year: 2018, complexity: "O(N D^2)", complexityExponent: 1, kind: .both,
        causal: false, reference: "cmsflash/efficient-attention EfficientAttention (commit 46a5f9e)",
        mapKind: .perQuery,
        mapDescription: "implicit weights sum_c Qhat[c,i]*Khat[c,j] of the query over every position (each head's row sums to 1; mean over heads)",
        notes: ["keys softmaxed over positions, queries over each head's channels; no scale; residual always on",
                "heads are contiguous channel slices of key_channels//head_count (leftover key channels unused)",
                "runs on N×C×H×W maps and on N×L×C tokens with the same weights",
                "untrained: PyTorch-default random 1x1 convs with queries = keys (similarity initialisation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("in_channels", .int(1...65536), default: .none, "input channels (taken from the input when unset)"),
        ConfigKey("key_channels", .int(1...65536), default: .none, "key/query channels, all heads (in_channels when unset)"),
        ConfigKey("head_count", .int(1...4096), default: .int(1), "heads (contiguous channel slices)"),
        ConfigKey("value_channels", .int(1...65536), default: .none, "value channels, all heads (in_channels when unset)"),
    ]

    public let config: Config
    let inChannels: Int, keyChannels: Int, headCount: Int, valueChannels: Int
    let keys: PointwiseConv, queries: PointwiseConv, values: PointwiseConv, reprojection: PointwiseConv

    public var expectedInput: String { "N×\(inChannels)×H×W or N×L×\(inChannels)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 4 || inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×C×H×W or N×L×C", found: inputShape)
        }
        let c = inputShape.count == 4 ? inputShape[1] : inputShape[2]
        try config.resolveChannels("in_channels", from: c)
        if !config.isSet("key_channels") { try config.resolveChannels("key_channels", from: c) }
        if !config.isSet("value_channels") { try config.resolveChannels("value_channels", from: c) }
        self.config = config
        inChannels = c
        keyChannels = config.int("key_channels")
        headCount = config.int("head_count")
        valueChannels = config.int("value_channels")
        guard headCount <= keyChannels, valueChannels % headCount == 0 else {
            throw ConfigError.inconsistent(module: Self.info.id,
                message: "head_count=\(headCount) needs key_channels ≥ head_count and value_channels divisible by it (key_channels=\(keyChannels), value_channels=\(valueChannels))")
        }
        keys = PointwiseConv(p.scoped("keys"), inChannels: c, outChannels: keyChannels)
        // Similarity initialisation: queries start equal to keys; a checkpoint overrides both.
        queries = PointwiseConv(p.scoped("queries"), inChannels: c, outChannels: keyChannels,
                                weight: keys.weight, initialBias: keys.bias)
        values = PointwiseConv(p.scoped("values"), inChannels: c, outChannels: valueChannels)
        reprojection = PointwiseConv(p.scoped("reprojection"), inChannels: valueChannels, outChannels: c)
    }

    /// Checks x (a map or tokens) and returns its layout.
    func layout(of x: Tensor) throws -> EfficientAttentionCore.Layout {
        if x.rank == 4, x.shape[1] == inChannels, x.shape[0] > 0, x.shape[2] > 0, x.shape[3] > 0 { return .channels }
        if x.rank == 3, x.shape[2] == inChannels, x.shape[0] > 0, x.shape[1] > 0 { return .tokens }
        throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
    }

    /// Normalised keys and queries and the values: N×C×H×W maps, or N×L×C tokens.
    func projections(_ x: Tensor, _ layout: EfficientAttentionCore.Layout) -> (k: Tensor, q: Tensor, v: Tensor) {
        var k: Tensor, q: Tensor, v: Tensor
        switch layout {
        case .channels: (k, q, v) = (keys(x), queries(x), values(x))                   // N, C′, H, W
        case .tokens: (k, q, v) = (keys.onTokens(x), queries.onTokens(x), values.onTokens(x))  // N, L, C′
        }
        EfficientAttentionCore.normalise(keys: &k, queries: &q, heads: headCount, layout: layout)
        return (k, q, v)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let layout = try layout(of: x)
        let (k, q, v) = projections(x, layout)
        let o = EfficientAttentionCore.attend(keys: k, queries: q, values: v, heads: headCount, layout: layout)
        var y: Tensor
        switch layout {
        case .channels:
            y = reprojection(o.reshaped([x.shape[0], valueChannels, x.shape[2], x.shape[3]]))  // N, C, H, W
        case .tokens:
            y = reprojection.onTokens(o)                                                      // N, L, C
        }
        y += x
        return y
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let layout = try layout(of: x)
        let (h, w) = layout == .channels ? (x.shape[2], x.shape[3]) : (1, x.shape[1])
        guard (0..<h).contains(query.row), (0..<w).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id,
                                       message: "query (row \(query.row), column \(query.column)) is outside the \(h)×\(w) grid")
        }
        if let head = query.head, !(0..<headCount).contains(head) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(head) is outside 0..<\(headCount)")
        }
        let (k, q, _) = projections(x.batchItem(0), layout)
        let weights = EfficientAttentionCore.weights(keys: k, queries: q, heads: headCount, layout: layout,
                                                     batch: 0, position: query.row * w + query.column, head: query.head)
        let label = query.head.map { "head \($0)" } ?? (headCount == 1 ? "implicit weights" : "mean of \(headCount) heads")
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, h, w], scalars: weights), labels: [label])
    }
}

extension PointwiseConv {
    /// The same 1×1 conv on tokens: N×L×in → N×L×out, out = t Wᵀ + b, one GEMM over all N·L rows.
    func onTokens(_ t: Tensor) -> Tensor {
        let n = t.shape[0], l = t.shape[1]
        precondition(t.shape[2] == inChannels)
        var out = Tensor(uninitialized: [n, l, outChannels])
        t.withUnsafeBufferPointer { tp in
            weight.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in
                    BLAS.gemm(transB: true, m: n * l, n: outChannels, k: inChannels,
                              a: tp.baseAddress!, lda: inChannels, b: wp.baseAddress!, ldb: inChannels,
                              c: op.baseAddress!, ldc: outChannels)
                    if let bias { addRowBias(op.baseAddress!, rows: n * l, cols: outChannels, bias) }
                }
            }
        }
        return out   // N, L, out
    }
}
