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
    let heads: Int, pre: Bool

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
        (heads, pre) = (o.heads, o.pre)
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

    /// The fused attention: long rows over [window, globals], global rows over [globals, long].
    func attention(_ x: Tensor, _ gl: Tensor, _ geo: ETCGeometry, trace: AttentionTrace?) throws -> (Tensor, Tensor) {
        let n = x.shape[0], l = x.shape[1], g = gl.shape[1], c = x.shape[2], d = c / heads
        let r = geo.radius, w = 2 * r + 1, bs = geo.blockSize, vocab = longRel?.emb.shape[0] ?? 0
        let scale = 1 / Float(d).squareRoot()

        // Long rows.
        let q = try longQuery(x), kl = try l2lKey(x), vl = try l2lValue(x)          // N, L, C
        let ks = try l2gKey(gl), vs = try l2gValue(gl)                               // N, g, C
        // Relative positions: q·E + b for every id (N, L, H, V); the window's ids gathered per
        // offset (N, L, H, 2r+1); l2g takes the own/other-block ids, row by row in the kernel.
        var scores: [Float] = [], localBias: [Float] = []
        let (ownId, otherId) = (geo.blockId(own: true), geo.blockId(own: false))
        if let rel = longRel {
            scores = relativeScores(q, rel)
            let ids = (0..<w).map { geo.relativeId($0 - r) }
            localBias = [Float](repeating: 0, count: n * l * heads * w)
            for row in 0..<(n * l * heads) {
                for o in 0..<w { localBias[row * w + o] = scores[row * vocab + ids[o]] }
            }
        }
        var ctx = Tensor(uninitialized: [n, l, c])                                   // N, L, C
        q.withUnsafeBufferPointer { qb in kl.withUnsafeBufferPointer { kb in vl.withUnsafeBufferPointer { vb in
        ks.withUnsafeBufferPointer { ksb in vs.withUnsafeBufferPointer { vsb in
        localBias.withUnsafeBufferPointer { lbb in scores.withUnsafeBufferPointer { scb in
        ctx.withUnsafeMutableBufferPointer { cb in
            let lbp = localBias.isEmpty ? nil : lbb.baseAddress, scp = scores.isEmpty ? nil : scb.baseAddress
            // l2g relative ids: "own block" for the row's global token, "other block" for the rest.
            func sideScores(_ b: Int, _ i: Int, _ h: Int, _ row: UnsafeMutablePointer<Float>) {
                guard let scp else { return }
                let sp = scp + ((b * l + i) * heads + h) * vocab, own = i / bs
                for k in 0..<g { row[k] += sp[k == own ? ownId : otherId] }
            }
            func operand(_ p: UnsafeBufferPointer<Float>, rows: Int) -> AttentionOperand {
                AttentionOperand(base: p.baseAddress!, ld: c, batchStride: rows * c, headStride: d)
            }
            let sideRange: ((Int) -> Range<Int>)? = geo.hardL2G ? { i in (i / bs)..<(i / bs + 1) } : nil
            BandAttention.forward(batch: n, heads: heads, l: l, g: g, r: r, d: d, dv: d,
                                  q: operand(qb, rows: l), k: operand(kb, rows: l), v: operand(vb, rows: l),
                                  sk: operand(ksb, rows: g), sv: operand(vsb, rows: g),
                                  out: cb.baseAddress!, outLd: c, outBatchStride: l * c, outHeadStride: d, scale: scale,
                                  bias: BandAttention.Bias(local: lbp, side: scp == nil ? nil : sideScores,
                                                           sideRange: sideRange))
            if let trace {
                let i = trace.row, wt = 1 / Float(trace.heads.count)
                var row = [Float](repeating: 0, count: g + l)
                var sideRow = [Float](repeating: 0, count: g)
                for h in trace.heads {
                    let at = i * heads + h                                           // batch item 0
                    sideRow.withUnsafeMutableBufferPointer { sr in
                        sr.update(repeating: 0)
                        sideScores(0, i, h, sr.baseAddress!)
                    }
                    let (s, t) = BandAttention.rowWeights(
                        i: i, l: l, g: g, r: r, d: d, q: qb.baseAddress! + i * c + h * d, k: kb.baseAddress! + h * d, ldk: c,
                        sk: ksb.baseAddress! + h * d, ldsk: c, scale: scale,
                        localBias: lbp.map { $0 + at * w }, sideBias: sideRow,
                        sideVisible: geo.hardL2G ? (i / bs)..<(i / bs + 1) : nil)
                    for k in 0..<g { row[k] += wt * s[k] }
                    for j in 0..<l { row[g + j] += wt * t[j] }
                }
                trace.queryRows.append(row)
            }
        }}}}}}}}
        let longAtt = try longOut(ctx)

        // Global rows.
        let qg = try globalQuery(gl), kgg = try g2gKey(gl), vgg = try g2gValue(gl)   // N, g, C
        let kgl = try g2lKey(x), vgl = try g2lValue(x)                               // N, L, C
        let relG = globalRel.map { relativeScores(qg, $0) } ?? []                    // N, g, H, V
        var ctxg: Tensor                                                             // N, g, C
        if relG.isEmpty && !geo.hardG2L {
            // Plain rows over all g + L keys: the dense kernel.
            ctxg = DenseAttention.multiHead(q: qg, k: Tensor.concatenated([kgg, kgl], axis: 1),
                                            v: Tensor.concatenated([vgg, vgl], axis: 1), heads: heads, scale: scale)
        } else {
            ctxg = Tensor(uninitialized: [n, g, c])
        }
        let cols = g + l, hd = heads
        qg.withUnsafeBufferPointer { qb in kgg.withUnsafeBufferPointer { kgb in kgl.withUnsafeBufferPointer { klb in
        vgg.withUnsafeBufferPointer { vgb in vgl.withUnsafeBufferPointer { vlb in relG.withUnsafeBufferPointer { rb in
        ctxg.withUnsafeMutableBufferPointer { cb in
            let rel = relG.isEmpty ? nil : rb.baseAddress
            func probs(_ b: Int, _ h: Int, _ rows: Range<Int>, _ s: UnsafeMutablePointer<Float>) {
                ETCLayer.globalProbs(b: b, h: h, rows: rows, g: g, l: l, c: c, d: d, heads: hd, vocab: vocab,
                                     qg: qb.baseAddress!, kgg: kgb.baseAddress!, kgl: klb.baseAddress!, rel: rel, geo: geo,
                                     scale: scale, s: s)
            }
            if !(relG.isEmpty && !geo.hardG2L) {
                // Rows with relative positions or the hard g2l mask: logits + bias, softmax, two
                // GEMMs, in tiles of global rows so the scratch is O(tile·(g+L)).
                let tile = min(g, BandAttention.queryBlock), tiles = (g + tile - 1) / tile
                Threads.parallelFor(n * hd * tiles) { range in
                    var scratch = Tensor(uninitialized: [tile * cols])
                    scratch.withUnsafeMutableBufferPointer { sb in
                        let s = sb.baseAddress!
                        for item in range {
                            let t = item % tiles, b = item / tiles / hd, h = (item / tiles) % hd
                            let k0 = t * tile, rows = min(tile, g - k0)
                            probs(b, h, k0..<(k0 + rows), s)
                            let out = cb.baseAddress! + (b * g + k0) * c + h * d
                            BLAS.gemm(m: rows, n: d, k: g, a: s, lda: cols, b: vgb.baseAddress! + b * g * c + h * d, ldb: c,
                                      c: out, ldc: c)
                            BLAS.gemm(m: rows, n: d, k: l, a: s + g, lda: cols, b: vlb.baseAddress! + b * l * c + h * d,
                                      ldb: c, beta: 1, c: out, ldc: c)
                        }
                    }
                }
            }
            if let trace {
                var side = [Float](repeating: 0, count: g * cols), s = [Float](repeating: 0, count: g * cols)
                let wt = 1 / Float(trace.heads.count)
                for h in trace.heads {
                    s.withUnsafeMutableBufferPointer { probs(0, h, 0..<g, $0.baseAddress!) }
                    for e in 0..<(g * cols) { side[e] += wt * s[e] }
                }
                trace.sideRowsPerLayer.append(side)
            }
        }}}}}}}
        return (longAtt, try globalOut(ctxg))
    }

    /// Probabilities of global rows `rows` for batch b, head h: s (rows × (g+L)) = softmax over
    /// [globals, long] of scale·(q·k + relative), with the hard g2l mask.
    static func globalProbs(b: Int, h: Int, rows: Range<Int>, g: Int, l: Int, c: Int, d: Int, heads: Int, vocab: Int,
                            qg: UnsafePointer<Float>, kgg: UnsafePointer<Float>, kgl: UnsafePointer<Float>,
                            rel: UnsafePointer<Float>?, geo: ETCGeometry, scale: Float, s: UnsafeMutablePointer<Float>) {
        let cols = g + l, bs = geo.blockSize, qp = qg + (b * g + rows.lowerBound) * c + h * d, m = rows.count
        BLAS.gemm(transB: true, m: m, n: g, k: d, a: qp, lda: c, b: kgg + b * g * c + h * d, ldb: c, c: s, ldc: cols)
        BLAS.gemm(transB: true, m: m, n: l, k: d, a: qp, lda: c, b: kgl + b * l * c + h * d, ldb: c, c: s + g, ldc: cols)
        for k in rows {
            let row = s + (k - rows.lowerBound) * cols
            if let rel {
                let rp = rel + ((b * g + k) * heads + h) * vocab
                for k2 in 0..<g { row[k2] += rp[geo.relativeId(k2 - k)] }
                let own = rp[geo.blockId(own: true)], other = rp[geo.blockId(own: false)]
                for j in 0..<l { row[g + j] += j / bs == k ? own : other }
            }
            if geo.hardG2L {
                for j in 0..<l where j / bs != k { row[g + j] = -.infinity }
            }
        }
        fa_softmax_rows(s, m, cols, cols, scale)
    }

    /// q·E[v] + b[v] for every row, head and relative id: q N×T×(H·d), emb V×H×d, bias V×H →
    /// N·T·H·V scores (row-major N, T, H, V), one GEMM per head.
    func relativeScores(_ q: Tensor, _ rel: (emb: Tensor, bias: Tensor)) -> [Float] {
        let rows = q.shape[0] * q.shape[1], c = q.shape[2], d = c / heads, v = rel.emb.shape[0]
        var out = [Float](repeating: 0, count: rows * heads * v)
        q.withUnsafeBufferPointer { qb in rel.emb.withUnsafeBufferPointer { eb in rel.bias.withUnsafeBufferPointer { bb in
        out.withUnsafeMutableBufferPointer { ob in
            for h in 0..<heads {
                // (rows × d) · (V × d)ᵀ → rows × V, into the head's slice of each row
                BLAS.gemm(transB: true, m: rows, n: v, k: d, a: qb.baseAddress! + h * d, lda: c,
                          b: eb.baseAddress! + h * d, ldb: heads * d, c: ob.baseAddress! + h * v, ldc: heads * v)
                for r in 0..<rows {
                    let o = ob.baseAddress! + (r * heads + h) * v
                    for id in 0..<v { o[id] += bb[id * heads + h] }
                }
            }
        }}}}
        return out
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
