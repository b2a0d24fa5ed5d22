// One ETC layer (etcmodel GlobalLocalTransformerLayers, one step): the fused global-local
// attention in a residual block, then the feed-forward residual block, for long and global.

import CKernels
import TensorCore

struct ETCLayer {
    struct Options {
        let hidden: Int, heads: Int, intermediate: Int, vocab: Int
        let shareFF: Bool, shareKV: Bool, shareQKV: Bool, shareOutput: Bool, pre: Bool
    }

    // Projections per piece; shared ones are the same weights (etcmodel aliases the layers).
    let longQuery: Linear, l2lKey: Linear, l2lValue: Linear, l2gKey: Linear, l2gValue: Linear
    let globalQuery: Linear, g2gKey: Linear, g2gValue: Linear, g2lKey: Linear, g2lValue: Linear
    let longOut: Linear, globalOut: Linear
    /// Relative tables: emb V×H×d, bias V×H.
    let longRel: (emb: Tensor, bias: Tensor)?, globalRel: (emb: Tensor, bias: Tensor)?
    let norm0: LayerNorm, norm1: LayerNorm              // long, global
    let longFF: ETCFeedForward, globalFF: ETCFeedForward
    let heads: Int, pre: Bool, shareQKV: Bool, shareKV: Bool

    init(_ p: Parameters, _ o: Options) {
        let a = p.scoped("fused_att"), c = o.hidden
        func lin(_ name: String, like query: Linear? = nil) -> Linear {
            var l = Linear(a.scoped(name), inFeatures: c, outFeatures: c)
            if let query, !p.isLoading { (l.weight, l.bias) = (query.weight, query.bias) }  // similarity initialisation
            return l
        }
        longQuery = lin("long_query_projection")
        l2lKey = lin("l2l_key_projection", like: longQuery)
        l2lValue = lin("l2l_value_projection")
        if o.shareQKV || o.shareKV {
            (l2gKey, l2gValue) = (l2lKey, l2lValue)
        } else {
            l2gKey = lin("l2g_key_projection", like: longQuery)
            l2gValue = lin("l2g_value_projection")
        }
        if o.shareQKV {
            (globalQuery, g2gKey, g2gValue, g2lKey, g2lValue) = (longQuery, l2lKey, l2lValue, l2lKey, l2lValue)
        } else {
            let gq = lin("global_query_projection")
            globalQuery = gq
            g2gKey = lin("g2g_key_projection", like: gq)
            g2gValue = lin("g2g_value_projection")
            if o.shareKV {
                (g2lKey, g2lValue) = (g2gKey, g2gValue)
            } else {
                g2lKey = lin("g2l_key_projection", like: gq)
                g2lValue = lin("g2l_value_projection")
            }
        }
        longOut = lin("long_output_projection")
        globalOut = o.shareOutput ? longOut : lin("global_output_projection")
        let d = c / o.heads
        func table(_ side: String) -> (emb: Tensor, bias: Tensor)? {
            guard o.vocab > 0 else { return nil }
            return (a.parameter("\(side)_relative_emb_table", shape: [o.vocab, o.heads, d], initializer: .normal(std: 0.5)),
                    a.parameter("\(side)_relative_bias_table", shape: [o.vocab, o.heads], initializer: .zeros))
        }
        longRel = table("long")
        globalRel = table("global")
        norm0 = LayerNorm(p.scoped("layer_norm_0"), normalizedShape: c, eps: 1e-12)
        norm1 = LayerNorm(p.scoped("layer_norm_1"), normalizedShape: c, eps: 1e-12)
        if o.shareFF {
            longFF = ETCFeedForward(p.scoped("feed_forward"), hidden: c, intermediate: o.intermediate)
            globalFF = longFF
        } else {
            longFF = ETCFeedForward(p.scoped("long_feed_forward"), hidden: c, intermediate: o.intermediate)
            globalFF = ETCFeedForward(p.scoped("global_feed_forward"), hidden: c, intermediate: o.intermediate)
        }
        (heads, pre, shareQKV, shareKV) = (o.heads, o.pre, o.shareQKV, o.shareKV)
    }

    /// long N×L×C, glob N×g×C → the layer's (long, glob).
    func callAsFunction(_ long: Tensor, _ glob: Tensor, _ geo: ETCGeometry, trace: AttentionTrace?) throws -> (Tensor, Tensor) {
        if pre {
            let (la, ga) = try attention(try norm0(long), try norm1(glob), geo, trace: trace)
            return (try longFF(long + la, pre: true), try globalFF(glob + ga, pre: true))
        }
        let (la, ga) = try attention(long, glob, geo, trace: trace)
        return (try longFF(try norm0(long + la), pre: false), try globalFF(try norm1(glob + ga), pre: false))
    }

    /// The fused attention over the concatenated sequence [globals; long] (T = g + L rows, as
    /// `BlockLayout.globalBand` places them): global rows over all T keys (g2g, g2l), long rows
    /// over the globals and their window (l2g, l2l), relative positions as a `PairBias`. With
    /// shared q/k/v projections it is one block-sparse call; otherwise the two kinds of rows meet
    /// different keys and run as two calls.
    func attention(_ x: Tensor, _ gl: Tensor, _ geo: ETCGeometry, trace: AttentionTrace?) throws -> (Tensor, Tensor) {
        let n = x.shape[0], l = x.shape[1], g = gl.shape[1], d = x.shape[2] / heads, t = g + l
        let scale = 1 / Float(d).squareRoot()
        let tokens = Tensor.concatenated([gl, x], axis: 1)                             // N, T, C
        /// Global rows through `global`, long rows through `long`: one GEMM when they are shared.
        func project(_ global: Linear, _ long: Linear, shared: Bool) throws -> Tensor {  // N, T, C
            shared ? try long(tokens) : Tensor.concatenated([try global(gl), try long(x)], axis: 1)
        }
        let q = try project(globalQuery, longQuery, shared: shareQKV)
        // Long rows' keys and values: l2g for the globals, l2l for the long tokens.
        let kl = try project(l2gKey, l2lKey, shared: shareQKV || shareKV)
        let vl = try project(l2gValue, l2lValue, shared: shareQKV || shareKV)
        var bias: PairBias?
        if let longRel, let globalRel {
            var scores = Tensor(zeros: [n, t, heads, longRel.emb.shape[0]])           // N, T, H, V
            relativeScores(q, globalRel, rows: 0..<g, into: &scores)
            relativeScores(q, longRel, rows: g..<t, into: &scores)
            bias = PairBias(scores: scores) { [geo] q, keys, ids in geo.relativeIds(query: q, keys: keys, into: ids) }
        }
        let ctx: Tensor, kg: Tensor                                                     // N, T, C
        let (globalRows, longRows) = shareQKV ? (geo.layout(.all), geo.layout(.all)) : (geo.layout(.globals), geo.layout(.tokens))
        if shareQKV {
            kg = kl
            ctx = BlockSparseAttention.multiHead(q: q, k: kl, v: vl, heads: heads, layouts: [globalRows], scale: scale,
                                                 bias: bias)
        } else {
            // Global rows' keys and values: g2g for the globals, g2l for the long tokens.
            kg = try project(g2gKey, g2lKey, shared: shareKV)
            let vg = try project(g2gValue, g2lValue, shared: shareKV)
            let cg = BlockSparseAttention.multiHead(q: q, k: kg, v: vg, heads: heads, layouts: [globalRows], scale: scale,
                                                    bias: bias)
            let cl = BlockSparseAttention.multiHead(q: q, k: kl, v: vl, heads: heads, layouts: [longRows], scale: scale,
                                                    bias: bias)
            ctx = Tensor.concatenated([cg.sliced(axis: 1, range: 0..<g), cl.sliced(axis: 1, range: g..<t)], axis: 1)
        }
        if let trace {
            func row(_ i: Int, _ k: Tensor, _ layout: BlockLayout) -> [Float] {
                BlockSparseAttention.mapRow(q: q, k: k, heads: heads, layouts: [layout], query: i, head: trace.head,
                                            scale: scale, bias: bias)
            }
            trace.sideRowsPerLayer.append((0..<g).flatMap { row($0, kg, globalRows) })
            trace.queryRows.append(row(trace.row, kl, longRows))
        }
        return (try longOut(ctx.sliced(axis: 1, range: g..<t)), try globalOut(ctx.sliced(axis: 1, range: 0..<g)))
    }

    /// Rows `rows` of q·E[v] + b[v] for every head and relative id: q N×T×(H·d), emb V×H×d,
    /// bias V×H → those rows of `scores` (N×T×H×V), one GEMM per batch item and head.
    func relativeScores(_ q: Tensor, _ rel: (emb: Tensor, bias: Tensor), rows: Range<Int>, into scores: inout Tensor) {
        let (n, t, c) = (q.shape[0], q.shape[1], q.shape[2]), d = c / heads, v = rel.emb.shape[0]
        guard !rows.isEmpty else { return }
        q.withUnsafeBufferPointer { qb in rel.emb.withUnsafeBufferPointer { eb in rel.bias.withUnsafeBufferPointer { bb in
        scores.withUnsafeMutableBufferPointer { ob in
            for b in 0..<n {
                let first = b * t + rows.lowerBound
                for h in 0..<heads {
                    // (rows × d) · (V × d)ᵀ → rows × V, into the head's slice of each row
                    let o = ob.baseAddress! + first * heads * v + h * v
                    BLAS.gemm(transB: true, m: rows.count, n: v, k: d, a: qb.baseAddress! + first * c + h * d, lda: c,
                              b: eb.baseAddress! + h * d, ldb: heads * d, c: o, ldc: heads * v)
                    for r in 0..<rows.count {
                        for id in 0..<v { o[r * heads * v + id] += bb[id * heads + h] }
                    }
                }
            }
        }}}}
    }
}

/// etcmodel's feed-forward ResidualBlock: Dense(intermediate, gelu tanh form) → Dense(hidden),
/// post-LayerNorm (or pre with use_pre_activation_order). Keys `dense_0`, `dense_1`, `layer_norm`.
struct ETCFeedForward {
    let dense0: Linear, dense1: Linear, norm: LayerNorm

    init(_ p: Parameters, hidden: Int, intermediate: Int) {
        dense0 = Linear(p.scoped("dense_0"), inFeatures: hidden, outFeatures: intermediate)
        dense1 = Linear(p.scoped("dense_1"), inFeatures: intermediate, outFeatures: hidden)
        norm = LayerNorm(p.scoped("layer_norm"), normalizedShape: hidden, eps: 1e-12)
    }

    func callAsFunction(_ x: Tensor, pre: Bool) throws -> Tensor {
        if pre { return x + (try dense1(geluTanh(try dense0(try norm(x))))) }
        return try norm(x + (try dense1(geluTanh(try dense0(x)))))
    }
}

/// gelu in its tanh form, x/2·(1 + tanh u) with u = √(2/π)(x + 0.044715x³), written as
/// x·(1 − 1/(e^{2u} + 1)) over the vectorised exp: libm's tanhf per element was most of an
/// ETC layer's time. Saturates correctly (e^{2u} = ∞ gives x, 0 gives 0).
func geluTanh(_ x: Tensor) -> Tensor {
    var out = Tensor(uninitialized: x.shape)
    x.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { op in
            let n = xp.count, c: Float = 2 * 0.79788456080286536
            for i in 0..<n {
                let v = xp[i]
                op[i] = c * (v + 0.044715 * v * v * v)
            }
            fa_exp(op.baseAddress!, op.baseAddress!, n)
            for i in 0..<n { op[i] = xp[i] * (1 - 1 / (op[i] + 1)) }
        }
    }
    return out
}
