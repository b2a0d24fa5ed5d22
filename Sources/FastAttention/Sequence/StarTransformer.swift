// Star-Transformer. Guo, Qiu, Liu, Shao, Xue, Zhang, NAACL 2019. https://arxiv.org/abs/1902.09113
// Reference matched: fastNLP 1.0.1 `fastNLP/modules/torch/encoder/star_transformer.py`
// `StarTransformer` (with `_MSA1` ring and `_MSA2` star attention), read in full.

import Foundation
import TensorCore

/// The Star-Transformer encoder: every token (satellite) attends to a ring of five items, and
/// one relay node attends to all tokens, for `num_layers` rounds.
///
/// Matches `StarTransformer(hidden_size, num_layers, num_head, head_dim, dropout, max_len)` in
/// eval mode, returning the token outputs `nodes` with every token real (mask all ones; the
/// relay is internal).
///
/// - Input N×L×hidden_size, output N×L×hidden_size.
/// - Per layer t, token i: q = W_Q·LN_t(hᵢ); five keys/values: W_K·LN_t(h) at i−1, i, i+1,
///   W_K·eᵢ (the layer-0 embedding) and W_K·s (the relay); α = softmax(q·k/√head_dim) over the
///   five; hᵢ ← leaky_relu(W_O Σ α v). Then the relay: q = W_Q·s over [s, h₁…h_L] (the *new*
///   h), s ← leaky_relu(W_O Σ β v). Heads are contiguous channel slices of num_head·head_dim.
/// - Cost: O(L·D) per layer (five items a token, L+1 for the relay); nothing L×L.
/// - Map (per-query), two panels for the last layer: (1) the query's ring weights placed on
///   the tokens — α at i−1, i, i+1, α of eᵢ added at i — plus the relay-mediated reach:
///   α_relay × reach(s), where reach(s⁰) is uniform 1/L (s⁰ is the mean embedding) and
///   reach(sᵗ) = βᵗ_tokens + βᵗ_relay·reach(sᵗ⁻¹) unrolls the relay's own weight. It sums to 1
///   except at the ends, where the zero slot's weight goes nowhere. (2) The relay's star weights
///   βᵀ over all tokens in the last layer (its weight on itself not shown). A head, or the mean
///   over heads (the default); the label lists the five ring weights.
///
/// Quirks of the reference:
/// - The ring's out-of-range neighbours (i−1 at 0, i+1 at L−1) are F.unfold's zero padding
///   *after* projection: exact zero key and value vectors, logit 0, not masked.
/// - The embedding and relay keys/values use the ring's W_K, W_V on the *un-normalised* eᵢ
///   and s; only the ring's own tokens go through LayerNorm (eps 1e-6). The star attention
///   uses no LayerNorm at all.
/// - No residual and no FFN: each layer's output is leaky_relu (slope 0.01) of W_O.
/// - s⁰ = mean of the embeddings (padding included in the reference's mean).
/// - Logits scale 1/√head_dim; num_head·head_dim need not equal hidden_size.
/// - `max_len` adds a learned position embedding `pos_emb` (L ≤ max_len); dropout only acts on
///   the embeddings in training (accepted, no effect here).
/// - Untrained here: W_K = W_Q in every ring and star attention (similarity initialisation).
///
/// Keys: `norm.{t}.{weight,bias}`, `ring_att.{t}.{WQ,WK,WV,WO}.{weight,bias}` (1×1 conv
/// weights out×in×1×1), `star_att.{t}.*` likewise, `pos_emb.weight` with max_len.
public final class StarTransformer: AttentionModule {
    public static let info = ModuleInfo(
        id: "star-transformer", title: "Star-Transformer", arxiv: "1902.09113", year: 2019,
        complexity: "O(N D)", complexityExponent: 1, kind: .sequence, causal: false,
        reference: "fastNLP 1.0.1 StarTransformer (modules/torch/encoder/star_transformer.py)", mapKind: .perQuery,
        mapDescription: "last layer: the query's ring weights (i-1, i, i+1, e_i at i) plus its relay weight spread by the relay's reach; and the relay's weights over all tokens",
        notes: ["output: the token outputs nodes (no padding mask: every token real)",
                "ring ends: zero key/value vectors with logit 0, not masked (F.unfold padding after projection)",
                "embedding and relay keys use the ring's W_K on un-normalised e_i and s; LayerNorm eps 1e-6 on the ring tokens only",
                "no residual, no FFN: leaky_relu(W_O ...) per layer",
                "max_len adds a learned position embedding (L <= max_len); dropout has no effect in eval",
                "untrained: W_K = W_Q (similarity initialisation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("hidden_size", .int(1...65536), default: .none, "token width (taken from the input when unset)"),
        ConfigKey("num_layers", .int(1...64), default: .int(2), "rounds of ring + star attention"),
        ConfigKey("num_head", .int(1...1024), default: .int(4), "heads"),
        ConfigKey("head_dim", .int(1...4096), default: .int(16), "width of each head"),
        ConfigKey("dropout", .float(0...1), default: .float(0.1), "embedding dropout (training only; no effect here)"),
        ConfigKey("max_len", .int(1...1_000_000), default: .none, "with a value: learned position embedding for L <= max_len"),
    ]

    public let config: Config
    let hidden: Int, layers: Int, heads: Int, headDim: Int
    let norms: [LayerNorm]
    let ring: [StarProjections], star: [StarProjections]
    let posEmb: Tensor?          // max_len, hidden

    public var expectedInput: String {
        "N×L×\(hidden)" + (posEmb.map { " with L ≤ \($0.shape[0])" } ?? "")
    }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×C", found: inputShape)
        }
        try config.resolveChannels("hidden_size", from: inputShape[2])
        self.config = config
        hidden = config.int("hidden_size")
        layers = config.int("num_layers")
        heads = config.int("num_head")
        headDim = config.int("head_dim")
        let (c, inner, t) = (hidden, heads * headDim, layers)
        norms = (0..<t).map { LayerNorm(p.scoped("norm").scoped("\($0)"), normalizedShape: c, eps: 1e-6) }
        ring = (0..<t).map { StarProjections(p.scoped("ring_att").scoped("\($0)"), hidden: c, inner: inner) }
        star = (0..<t).map { StarProjections(p.scoped("star_att").scoped("\($0)"), hidden: c, inner: inner) }
        posEmb = config.optionalInt("max_len").map {
            Embedding(p.scoped("pos_emb"), numEmbeddings: $0, embeddingDim: c).weight
        }
    }

    func checkTokens(_ x: Tensor) throws -> (n: Int, l: Int) {
        guard x.rank == 3, x.shape[2] == hidden, x.shape[0] > 0, x.shape[1] > 0,
              x.shape[1] <= (posEmb?.shape[0] ?? Int.max) else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        return (x.shape[0], x.shape[1])
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        _ = try checkTokens(x)
        return try encode(x, trace: nil)
    }

    /// What the map needs from one forward pass of batch item 0.
    final class Trace {
        let token: Int
        /// Per layer: the token's five ring weights, heads × 5.
        var ring: [[Float]] = []
        /// Per layer: the relay's weights over [s, h₁…h_L], heads × (1 + L).
        var star: [[Float]] = []
        init(token: Int) { self.token = token }
    }

    /// The encoder's forward pass; with `trace`, records the weights of batch item 0.
    func encode(_ x: Tensor, trace: Trace?) throws -> Tensor {
        let l = x.shape[1]
        var e = x                                                                  // N, L, C
        if let posEmb { e += posEmb.sliced(axis: 0, range: 0..<l) }               // + L, C
        var nodes = e
        var relay = e.mean(axis: 1, keepDims: true)                               // N, 1, C
        let scale = 1 / Float(headDim).squareRoot()
        for t in 0..<layers {
            let r = ring[t], xn = try norms[t](nodes)
            let q = r.wq(xn), k = r.wk(xn), v = r.wv(xn)                          // N, L, D′
            let ke = r.wk(e), ve = r.wv(e)                                        // N, L, D′
            let ks = r.wk(relay), vs = r.wv(relay)                                // N, 1, D′
            let (att, alpha) = ringAttention(q: q, k: k, v: v, ke: ke, ve: ve, ks: ks, vs: vs, scale: scale,
                                             recordToken: trace?.token)                 // N, L, D′
            nodes = r.wo(att).leakyRelu()                                          // N, L, C
            trace?.ring.append(alpha)

            let s = star[t]
            let y = Tensor.concatenated([relay, nodes], axis: 1)                  // N, 1+L, C
            let sq = s.wq(relay), sk = s.wk(y), sv = s.wv(y)                      // N, 1, D′ / N, 1+L, D′
            if let trace {
                trace.star.append(sq.withUnsafeBufferPointer { qp in
                    sk.withUnsafeBufferPointer { kp in
                        (0..<heads).flatMap { h in
                            DenseAttention.weights(query: qp.baseAddress! + h * headDim, keys: kp.baseAddress! + h * headDim,
                                                   ldk: heads * headDim, lk: l + 1, d: headDim, scale: scale)
                        }
                    }
                })
            }
            let sa = DenseAttention.multiHead(q: sq, k: sk, v: sv, heads: heads, scale: scale)   // N, 1, D′
            relay = s.wo(sa).leakyRelu()                                           // N, 1, C
        }
        return nodes
    }

    /// The ring: for each token, softmax over (i−1, i, i+1, eᵢ, s) per head, and Σ α v.
    /// q, k, v, ke, ve: N×L×D′; ks, vs: N×1×D′ → N×L×D′, and the five weights per head
    /// (heads × 5) of token `recordToken` of batch item 0 (empty without it).
    func ringAttention(q: Tensor, k: Tensor, v: Tensor, ke: Tensor, ve: Tensor, ks: Tensor, vs: Tensor,
                       scale: Float, recordToken: Int?) -> (Tensor, [Float]) {
        let n = q.shape[0], l = q.shape[1], dp = q.shape[2], hd = headDim, nh = heads
        var out = Tensor(zeros: [n, l, dp])
        var recorded = [Float](repeating: 0, count: recordToken == nil ? 0 : nh * 5)
        q.withUnsafeBufferPointer { qb in k.withUnsafeBufferPointer { kb in v.withUnsafeBufferPointer { vb in
        ke.withUnsafeBufferPointer { keb in ve.withUnsafeBufferPointer { veb in
        ks.withUnsafeBufferPointer { ksb in vs.withUnsafeBufferPointer { vsb in
        out.withUnsafeMutableBufferPointer { ob in
        recorded.withUnsafeMutableBufferPointer { rec in
            let (qp, kp, vp, kep, vep) = (qb.baseAddress!, kb.baseAddress!, vb.baseAddress!, keb.baseAddress!, veb.baseAddress!)
            let (ksp, vsp, op) = (ksb.baseAddress!, vsb.baseAddress!, ob.baseAddress!)
            @inline(__always) func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) -> Float {
                var s: Float = 0
                for c in 0..<hd { s += a[c] * b[c] }
                return s
            }
            @inline(__always) func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
                for c in 0..<hd { y[c] += a * x[c] }
            }
            Threads.parallelFor(n * l, minChunk: 64) { rows in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: 5) { s in
                    for row in rows {
                        let b = row / l, i = row % l, base = row * dp
                        let first = i > 0, last = i == l - 1
                        for h in 0..<nh {
                            let off = base + h * hd, relayOff = b * dp + h * hd
                            let qh = qp + off
                            // Items i−1, i, i+1 (zero slots at the ends: logit 0), eᵢ, s.
                            s[0] = first ? dot(qh, kp + off - dp) * scale : 0
                            s[1] = dot(qh, kp + off) * scale
                            s[2] = last ? 0 : dot(qh, kp + off + dp) * scale
                            s[3] = dot(qh, kep + off) * scale
                            s[4] = dot(qh, ksp + relayOff) * scale
                            var mx = s[0]
                            for u in 1..<5 { mx = max(mx, s[u]) }
                            var z: Float = 0
                            for u in 0..<5 { s[u] = Foundation.exp(s[u] - mx); z += s[u] }
                            for u in 0..<5 { s[u] /= z }
                            let oh = op + off
                            if first { axpy(s[0], vp + off - dp, oh) }
                            axpy(s[1], vp + off, oh)
                            if !last { axpy(s[2], vp + off + dp, oh) }
                            axpy(s[3], vep + off, oh)
                            axpy(s[4], vsp + relayOff, oh)
                            if b == 0, i == recordToken {
                                for u in 0..<5 { rec[h * 5 + u] = s[u] }
                            }
                        }
                    }
                }
            }
        }}}}}}}}}
        return (out, recorded)
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, l) = try checkTokens(x)
        guard query.row == 0, (0..<l).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query token \(query.column) (row \(query.row)) is outside 0..<\(l)")
        }
        if let h = query.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        let i = query.column
        let trace = Trace(token: i)
        _ = try encode(x.batchItem(0), trace: trace)
        let hs = query.head.map { [$0] } ?? Array(0..<heads)
        let w = 1 / Float(hs.count)
        // reach(s⁰) = 1/L; reach(sᵗ) = β_tokens + β_relay · reach(sᵗ⁻¹), mean over the heads.
        var reach = [Float](repeating: 1 / Float(l), count: l)
        for t in 0..<(layers - 1) { reach = relayReach(trace.star[t], previous: reach, heads: hs) }
        var alpha = [Float](repeating: 0, count: 5)
        for h in hs { for u in 0..<5 { alpha[u] += w * trace.ring[layers - 1][h * 5 + u] } }
        var composed = reach.map { $0 * alpha[4] }
        if i > 0 { composed[i - 1] += alpha[0] }
        composed[i] += alpha[1] + alpha[3]
        if i < l - 1 { composed[i + 1] += alpha[2] }
        var relayRow = [Float](repeating: 0, count: l)
        for h in hs {
            for j in 0..<l { relayRow[j] += w * trace.star[layers - 1][h * (l + 1) + 1 + j] }
        }
        let names = ["i-1", "i", "i+1", "e_i", "relay"]
        let ringText = zip(names, alpha).map { String(format: "%@ %.2f", $0.0, $0.1) }.joined(separator: " ")
        let who = query.head.map { "head \($0) " } ?? ""
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [2, 1, l], scalars: composed + relayRow),
                            labels: ["\(who)ring+relay (\(ringText))", "\(who)relay over tokens"])
    }

    /// One relay step of the reach: β over [s, tokens] (heads × (1+L)), mean over `hs`.
    func relayReach(_ beta: [Float], previous: [Float], heads hs: [Int]) -> [Float] {
        let l = previous.count, w = 1 / Float(hs.count)
        var out = [Float](repeating: 0, count: l)
        for h in hs {
            let row = h * (l + 1)
            for j in 0..<l { out[j] += w * (beta[row + 1 + j] + beta[row] * previous[j]) }
        }
        return out
    }
}

/// One attention's four 1×1 convs (`WQ`, `WK`, `WV`: hidden → num_head·head_dim, `WO` back),
/// applied to tokens N×L×C directly; W_K starts equal to W_Q when seeded.
struct StarProjections {
    let wqConv: PointwiseConv, wkConv: PointwiseConv, wvConv: PointwiseConv, woConv: PointwiseConv

    init(_ p: Parameters, hidden: Int, inner: Int) {
        wqConv = PointwiseConv(p.scoped("WQ"), inChannels: hidden, outChannels: inner)
        wkConv = PointwiseConv(p.scoped("WK"), inChannels: hidden, outChannels: inner,
                               weight: wqConv.weight, initialBias: wqConv.bias)
        wvConv = PointwiseConv(p.scoped("WV"), inChannels: hidden, outChannels: inner)
        woConv = PointwiseConv(p.scoped("WO"), inChannels: inner, outChannels: hidden)
    }

    func wq(_ x: Tensor) -> Tensor { tokenConv(wqConv, x) }
    func wk(_ x: Tensor) -> Tensor { tokenConv(wkConv, x) }
    func wv(_ x: Tensor) -> Tensor { tokenConv(wvConv, x) }
    func wo(_ x: Tensor) -> Tensor { tokenConv(woConv, x) }
}

/// A 1×1 conv on tokens: N×L×in → N×L×out, x·Wᵀ + b in one GEMM (W out×in×1×1 read as out×in).
func tokenConv(_ c: PointwiseConv, _ x: Tensor) -> Tensor {
    let rows = x.count / c.inChannels
    var out = Tensor(uninitialized: Array(x.shape.dropLast()) + [c.outChannels])
    x.withUnsafeBufferPointer { xp in
        c.weight.withUnsafeBufferPointer { wp in
            out.withUnsafeMutableBufferPointer { op in
                BLAS.gemm(transB: true, m: rows, n: c.outChannels, k: c.inChannels, a: xp.baseAddress!, lda: c.inChannels,
                          b: wp.baseAddress!, ldb: c.inChannels, c: op.baseAddress!, ldc: c.outChannels)
                if let bias = c.bias { addRowBias(op.baseAddress!, rows: rows, cols: c.outChannels, bias) }
            }
        }
    }
    return out
}
