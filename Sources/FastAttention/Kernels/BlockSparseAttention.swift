// The block-sparse softmax-attention kernel: out = softmax(scale · Q Kᵀ restricted to a
// BlockLayout) V, computed a query block at a time over the key blocks the layout lists, with
// the same online softmax (`fa_online_softmax_tile`) as DenseAttention. Only present blocks are
// multiplied; element masks are applied on the pattern's edges; nothing L×L is allocated.
// Edge masks cost a bit test per logit: each layout caches its edge entries' present pairs as
// bits on first use (`EdgeBitsCache`, O(edge pairs) once), interval masks on identity-order
// layouts are bounds per row, and a run that is one single-interval entry (a causal diagonal
// block) is softmaxed over each row's span only (`fa_online_softmax_tile_spans`, AVX-512 exp).
// Memory: per worker one query block of logits against a run of ≤ `maxRunColumns` keys, plus,
// for heads whose layout permutes positions, gathered copies of that head's q, k and v.

import CKernels
import Foundation
import TensorCore

/// An additive logit bias that depends on the query row and on a class of the (query, key)
/// pair — relative positions (ETC's clipped offsets and own/other-block ids): logit(q, k) +=
/// scores[b, q, h, class(q, k)], added before `scale` as part of the q·k product. q and k are
/// original positions; `scores` is batch × L × heads × classes.
public struct PairBias {
    public let scores: Tensor
    /// Writes the classes of the pairs (q, k), k ∈ `keys`, to classes[k − keys.lowerBound]: the
    /// kernel asks once per query row and run of consecutive keys.
    public let classes: (_ q: Int, _ keys: Range<Int>, _ classes: UnsafeMutablePointer<Int32>) -> Void

    public init(scores: Tensor, classes: @escaping (_ q: Int, _ keys: Range<Int>, _ classes: UnsafeMutablePointer<Int32>) -> Void) {
        precondition(scores.rank == 4, "pair-bias scores are batch × L × heads × classes")
        self.scores = scores
        self.classes = classes
    }

    /// A bias whose class is `id(q, k)`, asked pair by pair.
    public init(scores: Tensor, id: @escaping (_ q: Int, _ k: Int) -> Int) {
        self.init(scores: scores) { q, keys, out in
            for k in keys { out[k - keys.lowerBound] = Int32(id(q, k)) }
        }
    }

    /// The class of one pair.
    public func id(_ q: Int, _ k: Int) -> Int {
        var c: Int32 = 0
        classes(q, k..<(k + 1), &c)
        return Int(c)
    }

    /// Query p's row of scores (classes wide), batch item b, head h.
    func row(_ sp: UnsafePointer<Float>, b: Int, h: Int, query p: Int) -> UnsafePointer<Float> {
        let (l, heads, classes) = (scores.shape[1], scores.shape[2], scores.shape[3])
        return sp + ((b * l + p) * heads + h) * classes
    }
}

public enum BlockSparseAttention {
    /// Consecutive key blocks of a row are multiplied in one GEMM up to this many columns.
    public static var maxRunColumns = 512

    /// out[b,h] = block-sparse softmax(scale · q[b,h] k[b,h]ᵀ) v[b,h] for every batch b and
    /// head h (self-attention: q, k, v and out all have `layout.length` rows). `layouts` holds one
    /// layout per head, or one for all heads. A query with no present key gets a zero row.
    /// With `lse` (batch × heads × L, original positions), each row's log-sum-exp of its present
    /// scaled logits is written there (−inf for an empty row), so outputs over disjoint layouts
    /// can be merged exactly (`multiHead(parts:)`). With `bias`, each present logit gets its
    /// pair's bias (see `PairBias`) before the scale.
    public static func forward(
        layouts: [BlockLayout], batch: Int, heads: Int, d: Int, dv: Int,
        q: AttentionOperand, k: AttentionOperand, v: AttentionOperand,
        out: UnsafeMutablePointer<Float>, outLd: Int, outBatchStride: Int, outHeadStride: Int,
        scale: Float, lse: UnsafeMutablePointer<Float>? = nil, bias: PairBias? = nil
    ) {
        precondition(layouts.count == 1 || layouts.count == heads, "one layout, or one per head")
        let length = layouts[0].length
        precondition(layouts.allSatisfy { $0.length == length }, "layouts of one call share the length")
        precondition(bias.map { $0.scores.shape[0] == batch && $0.scores.shape[1] == length && $0.scores.shape[2] == heads } ?? true,
                     "pair-bias scores must be batch × L × heads × classes")
        if length == 0 || dv == 0 || batch * heads == 0 { return }
        (bias?.scores ?? Tensor(zeros: [1])).withUnsafeBufferPointer { biasBuf in
        let biasScores = bias == nil ? nil : biasBuf.baseAddress
        func layout(_ h: Int) -> BlockLayout { layouts.count == 1 ? layouts[0] : layouts[h] }

        // Heads with a permuted order read gathered copies (batch × L × d, contiguous); one
        // tensor holds them all.
        let permuted = (0..<heads).filter { layout($0).order != nil }
        let perHead = batch * length * (2 * d + dv)
        var work = Tensor(uninitialized: [max(permuted.count * perHead, 1)])
        work.withUnsafeMutableBufferPointer { wbuf in
        // Per-head operands: base pointers for batch item 0 and strides.
        struct HeadOps { var q, k, v: UnsafePointer<Float>; var qld, kld, vld, qbs, kbs, vbs: Int
                         var o: UnsafeMutablePointer<Float>; var old, obs: Int }
        var ops: [HeadOps] = []
        for h in 0..<heads {
            if let slot = permuted.firstIndex(of: h) {
                let order = layout(h).order!
                let gq = wbuf.baseAddress! + slot * perHead, gk = gq + batch * length * d
                let gv = gk + batch * length * d
                gather(q, into: gq, h: h, batch: batch, order: order, width: d)
                gather(k, into: gk, h: h, batch: batch, order: order, width: d)
                gather(v, into: gv, h: h, batch: batch, order: order, width: dv)
                // Output rows are scattered back to their original positions as they are written.
                ops.append(HeadOps(q: gq, k: gk, v: gv, qld: d, kld: d, vld: dv,
                                   qbs: length * d, kbs: length * d, vbs: length * dv,
                                   o: out + h * outHeadStride, old: outLd, obs: outBatchStride))
            } else {
                ops.append(HeadOps(q: q.pointer(0, h), k: k.pointer(0, h), v: v.pointer(0, h),
                                   qld: q.ld, kld: k.ld, vld: v.ld,
                                   qbs: q.batchStride, kbs: k.batchStride, vbs: v.batchStride,
                                   o: out + h * outHeadStride, old: outLd, obs: outBatchStride))
            }
        }
        // Edge entries' present pairs as bits, once per layout (cached in the layout).
        let edgeBits = (0..<layouts.count).map { layouts[$0].edgeCache.bits(layouts[$0]) }
        let bsMax = layouts.map(\.blockSize).max()!
        let cols = max(maxRunColumns, bsMax)
        let items = batch * heads * layouts.map(\.blockCount).max()!
        Threads.parallelFor(items) { range in
            var scratch = Tensor(uninitialized: [bsMax * cols + bsMax * dv + 3 * bsMax])
            var spans = [Int32](repeating: 0, count: 2 * bsMax)          // per-row key spans
            var classes = [Int32](repeating: 0, count: cols)           // a run's pair-bias classes
            classes.withUnsafeMutableBufferPointer { cbuf in
            spans.withUnsafeMutableBufferPointer { spbuf in
            let ids = cbuf.baseAddress!, spanLo = spbuf.baseAddress!, spanHi = spanLo + bsMax
            scratch.withUnsafeMutableBufferPointer { buf in
                let s = buf.baseAddress!, o = s + bsMax * cols, m = o + bsMax * dv, l = m + bsMax, corr = l + bsMax
                let perProblem = items / (batch * heads)
                for item in range {
                    let p = item / perProblem, qb = item % perProblem
                    let b = p / heads, h = p % heads
                    let lay = layout(h), eb = edgeBits[layouts.count == 1 ? 0 : h]
                    guard qb < lay.blockCount else { continue }
                    let hop = ops[h]
                    let qr = lay.blockRange(qb), rows = qr.count
                    m.update(repeating: -.infinity, count: rows)
                    l.update(repeating: 0, count: rows)
                    o.update(repeating: 0, count: rows * dv)
                    let qp = hop.q + b * hop.qbs + qr.lowerBound * hop.qld
                    let kp = hop.k + b * hop.kbs, vp = hop.v + b * hop.vbs
                    let entries = lay.rows[qb]
                    var e0 = 0
                    while e0 < entries.count {
                        // A run: entries with consecutive key blocks, up to `cols` columns.
                        let k0 = Int(entries[e0].keyBlock) * lay.blockSize
                        var e1 = e0 + 1
                        while e1 < entries.count, entries[e1].keyBlock == entries[e1 - 1].keyBlock + 1,
                              (Int(entries[e1].keyBlock) + 1) * lay.blockSize - k0 <= cols { e1 += 1 }
                        let kEnd = min(lay.length, (Int(entries[e1 - 1].keyBlock) + 1) * lay.blockSize)
                        let n = kEnd - k0
                        // s (rows×n) = scale · Q_block K_runᵀ
                        BLAS.gemm(transB: true, m: rows, n: n, k: d, alpha: scale, a: qp, lda: hop.qld,
                                  b: kp + k0 * hop.kld, ldb: hop.kld, c: s, ldc: n)
                        if let bias, let biasScores {
                            // s += scale · bias, before the masks.
                            for (r, qi) in qr.enumerated() {
                                let qpos = lay.position(qi), row = s + r * n
                                let bp = bias.row(biasScores, b: b, h: h, query: qpos)
                                if lay.order == nil {
                                    bias.classes(qpos, k0..<kEnd, ids)
                                    for j in 0..<n { row[j] += scale * bp[Int(ids[j])] }
                                } else {
                                    for kj in k0..<kEnd { row[kj - k0] += scale * bp[bias.id(qpos, lay.position(kj))] }
                                }
                            }
                        }
                        // One entry whose mask is a single key interval per row (identity order):
                        // the softmax runs over each row's span only (no −inf writes, no exp of them).
                        var spanned = false
                        if e1 == e0 + 1, entries[e0].mask >= 0, lay.order == nil {
                            let mask = lay.masks[Int(entries[e0].mask)]
                            if mask.rules.count == 1 && mask.isInterval {
                                for (r, qi) in qr.enumerated() {
                                    let (lo, hi) = mask.rules[0].keyInterval(query: qi)
                                    let a = min(max(lo, k0), kEnd), z = max(min(hi + 1, kEnd), a)
                                    spanLo[r] = Int32(a - k0)
                                    spanHi[r] = Int32(z - k0)
                                }
                                spanned = true
                            }
                        }
                        if !spanned {
                            for ei in e0..<e1 where entries[ei].mask >= 0 {
                                let e = entries[ei]
                                let mask = lay.masks[Int(e.mask)]
                                let kr = lay.blockRange(Int(e.keyBlock))
                                let off = eb.offsets[qb][ei]
                                if off < 0 {                           // interval mask, identity order
                                    for (r, qi) in qr.enumerated() { maskOutside(mask, query: qi, keys: kr, row: s + r * n - k0) }
                                    continue
                                }
                                eb.bits.withUnsafeBufferPointer { bp in
                                    for r in 0..<rows {
                                        fa_mask_bits(s + r * n + (kr.lowerBound - k0), bp.baseAddress! + off + r * eb.words, kr.count)
                                    }
                                }
                            }
                            // Every column counts (masked ones are −inf): the span tile with full
                            // spans, for its AVX-512 exp.
                            spanLo.update(repeating: 0, count: rows)
                            spanHi.update(repeating: Int32(n), count: rows)
                        }
                        fa_online_softmax_tile_spans(s, rows, n, n, spanLo, spanHi, m, l, corr)
                        for r in 0..<rows where corr[r] != 1 {
                            let c = corr[r], row = o + r * dv
                            for j in 0..<dv { row[j] *= c }
                        }
                        // o += s V_run
                        BLAS.gemm(m: rows, n: dv, k: n, a: s, lda: n, b: vp + k0 * hop.vld, ldb: hop.vld,
                                  beta: 1, c: o, ldc: dv)
                        e0 = e1
                    }
                    if let lse {
                        let lp = lse + (b * heads + h) * lay.length
                        for (r, qi) in qr.enumerated() {
                            lp[lay.position(qi)] = l[r] > 0 ? m[r] + Foundation.log(l[r]) : -.infinity
                        }
                    }
                    let op = hop.o + b * hop.obs
                    for (r, qi) in qr.enumerated() {
                        let inv: Float = l[r] > 0 ? 1 / l[r] : 0, dst = op + lay.position(qi) * hop.old
                        for j in 0..<dv { dst[j] = o[r * dv + j] * inv }
                    }
                }
            }
            }
            }
        }
        }
        }
    }

    /// Sets row[k] = −inf for the keys k ∈ `keys` outside every rule's key interval of query q
    /// (masks of interval rules, `ElementMask.isInterval`): bounds per row, not a test per pair.
    @inline(__always) static func maskOutside(_ mask: ElementMask, query q: Int, keys: Range<Int>,
                                              row: UnsafeMutablePointer<Float>) {
        if mask.rules.count == 1 {
            let (lo, hi) = mask.rules[0].keyInterval(query: q)
            for k in keys where k < lo || k > hi { row[k] = -.infinity }
            return
        }
        for k in keys {
            var inside = false
            for rule in mask.rules {
                let (lo, hi) = rule.keyInterval(query: q)
                if lo <= k && k <= hi { inside = true; break }
            }
            if !inside { row[k] = -.infinity }
        }
    }

    /// Head h's rows of `x` in permuted order into `dst`: batch × L × width, contiguous.
    static func gather(_ x: AttentionOperand, into dst: UnsafeMutablePointer<Float>, h: Int, batch: Int,
                       order: [Int32], width: Int) {
        let length = order.count
        for b in 0..<batch {
            let src = x.pointer(b, h)
            for (j, pos) in order.enumerated() {
                (dst + (b * length + j) * width).update(from: src + Int(pos) * x.ld, count: width)
            }
        }
    }

    /// The weights query position `p` gives every position (length L, zero off the support,
    /// a pair listed twice counts twice) under the union of `layouts` (the parts of one head's
    /// pattern), from that head's q and k rows (row-major, `ld` apart, original order).
    /// O(support·d): this is row p of the pattern's attention matrix. `bias(k)`, when given, is
    /// added to the pair's logit before the scale (a `PairBias` row).
    public static func weights(layouts: [BlockLayout], query p: Int, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                               ld: Int, d: Int, scale: Float, bias: ((_ key: Int) -> Float)? = nil) -> [Float] {
        let keys = layouts.flatMap { $0.support(ofQuery: p) }
        var w = [Float](repeating: 0, count: layouts[0].length)
        guard !keys.isEmpty else { return w }
        let qp = q + p * ld
        var logits = keys.map { kpos -> Float in
            var s: Float = 0
            let kp = k + kpos * ld
            for c in 0..<d { s += qp[c] * kp[c] }
            return s + (bias?(kpos) ?? 0)
        }
        logits.withUnsafeMutableBufferPointer { fa_softmax_rows($0.baseAddress!, 1, keys.count, keys.count, scale) }
        for (kpos, x) in zip(keys, logits) { w[kpos] += x }
        return w
    }

    /// Naive reference: softmax over the dense count matrix (pairs weighted by how many times
    /// the layout lists them), in Double. q, k are L×d, v L×dv, one head; `bias(i, j)` is added
    /// to the logit of the pair before the scale. For tests only.
    public static func forwardNaive(counts: [Int32], length: Int, d: Int, dv: Int, q: [Float], k: [Float],
                                    v: [Float], scale: Float, bias: ((_ q: Int, _ k: Int) -> Float)? = nil) -> [Float] {
        var out = [Float](repeating: 0, count: length * dv)
        for i in 0..<length {
            var logits = [Double](repeating: -.infinity, count: length)
            for j in 0..<length where counts[i * length + j] > 0 {
                var s = Double(bias?(i, j) ?? 0)
                for c in 0..<d { s += Double(q[i * d + c]) * Double(k[j * d + c]) }
                logits[j] = s * Double(scale)
            }
            let mx = logits.max() ?? -.infinity
            if mx == -.infinity { continue }
            let e = (0..<length).map { j in logits[j] == -.infinity ? 0 : Double(counts[i * length + j]) * _exp(logits[j] - mx) }
            let z = e.reduce(0, +)
            for c in 0..<dv {
                var acc = 0.0
                for j in 0..<length { acc += e[j] * Double(v[j * dv + c]) }
                out[i * dv + c] = Float(acc / z)
            }
        }
        return out
    }

    /// Multi-head block-sparse attention on token tensors, heads as contiguous channel slices:
    /// q, k B×L×(H·d), v B×L×(H·dv) → B×L×(H·dv).
    public static func multiHead(q: Tensor, k: Tensor, v: Tensor, heads: Int, layouts: [BlockLayout],
                                 scale: Float, bias: PairBias? = nil) -> Tensor {
        multiHead(q: q, k: k, v: v, heads: heads, parts: [layouts], scale: scale, bias: bias)
    }

    /// As `multiHead(layouts:)` over a pattern given as `parts`: pair sets (each one layout per
    /// head, or one shared) whose softmax is taken jointly, i.e. over the union counted with
    /// multiplicity. Each part runs through the kernel with its own order and its row
    /// log-sum-exps, and the outputs are merged exactly: o = Σₚ exp(lseₚ − lse) oₚ. This is how
    /// a pattern that is contiguous in two different orders (Sparse Transformer's merged
    /// local ∪ strided head) stays block-dense in both.
    public static func multiHead(q: Tensor, k: Tensor, v: Tensor, heads: Int, parts: [[BlockLayout]],
                                 scale: Float, bias: PairBias? = nil) -> Tensor {
        precondition(q.rank == 3 && k.shape == q.shape && v.rank == 3, "attention needs B×L×C operands")
        precondition(!parts.isEmpty, "at least one layout part")
        let (b, l, c, cv) = (q.shape[0], q.shape[1], q.shape[2], v.shape[2])
        precondition(parts.allSatisfy { $0[0].length == l } && c % heads == 0 && cv % heads == 0)
        let d = c / heads, dv = cv / heads
        var outs: [Tensor] = [], lses: [Tensor] = []
        for layouts in parts {
            var out = Tensor(uninitialized: [b, l, cv])                   // B, L, H·dv
            var lse = Tensor(uninitialized: [b, heads, l])                // B, H, L
            q.withUnsafeBufferPointer { qp in
                k.withUnsafeBufferPointer { kp in
                    v.withUnsafeBufferPointer { vp in
                        out.withUnsafeMutableBufferPointer { op in
                            lse.withUnsafeMutableBufferPointer { lp in
                                forward(layouts: layouts, batch: b, heads: heads, d: d, dv: dv,
                                        q: .init(base: qp.baseAddress!, ld: c, batchStride: l * c, headStride: d),
                                        k: .init(base: kp.baseAddress!, ld: c, batchStride: l * c, headStride: d),
                                        v: .init(base: vp.baseAddress!, ld: cv, batchStride: l * cv, headStride: dv),
                                        out: op.baseAddress!, outLd: cv, outBatchStride: l * cv, outHeadStride: dv,
                                        scale: scale, lse: parts.count > 1 ? lp.baseAddress! : nil, bias: bias)
                            }
                        }
                    }
                }
            }
            outs.append(out)
            lses.append(lse)
        }
        guard parts.count > 1 else { return outs[0] }
        // Merge into the first part's output, in place: o = Σₚ exp(lseₚ − max) oₚ / Σₚ exp(lseₚ − max).
        var merged = outs.removeFirst()
        let others = outs
        outs = []
        // Raw pointers to every part's lse and the other parts' outputs, taken once.
        let lsePtrs = lses.map { t in t.withUnsafeBufferPointer { $0.baseAddress! } }
        let otherPtrs = others.map { t in t.withUnsafeBufferPointer { $0.baseAddress! } }
        withExtendedLifetime((lses, others)) {
        merged.withUnsafeMutableBufferPointer { mp in
            Threads.parallelFor(b * heads * l, minChunk: 256) { range in
                var w = [Float](repeating: 0, count: parts.count)
                for item in range {
                    let i = item % l, bh = item / l, bi = bh / heads, h = bh % heads
                    var mx = lsePtrs[0][bh * l + i]                     // as Array.max(): first of the largest
                    for p in 1..<parts.count where mx < lsePtrs[p][bh * l + i] { mx = lsePtrs[p][bh * l + i] }
                    let dst = mp.baseAddress! + (bi * l + i) * cv + h * dv
                    if mx == -.infinity { continue }
                    var z: Float = 0
                    for p in 0..<parts.count { w[p] = Foundation.exp(lsePtrs[p][bh * l + i] - mx); z += w[p] }
                    let a0 = w[0] / z
                    for j in 0..<dv { dst[j] *= a0 }
                    for p in 1..<parts.count where w[p] > 0 {
                        let a = w[p] / z, src = otherPtrs[p - 1] + (bi * l + i) * cv + h * dv
                        for j in 0..<dv { dst[j] += a * src[j] }
                    }
                }
            }
        }
        }
        return merged
    }

    /// Weights of query position `p` from B×L×(H·d) q and k (batch item 0), heads as channel
    /// slices, under `parts` (as in `multiHead(parts:)`); `head` nil gives the mean over heads.
    public static func mapRow(q: Tensor, k: Tensor, heads: Int, parts: [[BlockLayout]], query p: Int,
                              head: Int?, scale: Float, bias: PairBias? = nil) -> [Float] {
        let l = q.shape[1], c = q.shape[2], d = c / heads
        let hs = head.map { [$0] } ?? Array(0..<heads)
        var acc = [Float](repeating: 0, count: l)
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                (bias?.scores ?? Tensor(zeros: [1])).withUnsafeBufferPointer { bb in
                    for h in hs {
                        let lays = parts.map { $0.count == 1 ? $0[0] : $0[h] }
                        let rowBias = bias.map { bias in
                            let bp = bias.row(bb.baseAddress!, b: 0, h: h, query: p)
                            return { (key: Int) -> Float in bp[bias.id(p, key)] }
                        }
                        let w = weights(layouts: lays, query: p, q: qp.baseAddress! + h * d, k: kp.baseAddress! + h * d,
                                        ld: c, d: d, scale: scale, bias: rowBias)
                        for j in 0..<l { acc[j] += w[j] / Float(hs.count) }
                    }
                }
            }
        }
        return acc
    }

    /// `mapRow` for a pattern of one part.
    public static func mapRow(q: Tensor, k: Tensor, heads: Int, layouts: [BlockLayout], query p: Int,
                              head: Int?, scale: Float, bias: PairBias? = nil) -> [Float] {
        mapRow(q: q, k: k, heads: heads, parts: [layouts], query: p, head: head, scale: scale, bias: bias)
    }
}
