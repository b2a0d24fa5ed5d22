// The block-sparse softmax-attention kernel: out = softmax(scale · Q Kᵀ restricted to a
// BlockLayout) V, computed a query block at a time over the key blocks the layout lists, with
// the same online softmax (`fa_online_softmax_tile`) as DenseAttention. Only present blocks are
// multiplied; element masks are applied on the pattern's edges; nothing L×L is allocated.
// Memory: per worker one query block of logits against a run of ≤ `maxRunColumns` keys, plus,
// for heads whose layout permutes positions, gathered copies of that head's q, k, v and output.

import CKernels
import Foundation
import TensorCore

public enum BlockSparseAttention {
    /// Consecutive key blocks of a row are multiplied in one GEMM up to this many columns.
    public static var maxRunColumns = 512

    /// out[b,h] = block-sparse softmax(scale · q[b,h] k[b,h]ᵀ) v[b,h] for every batch b and
    /// head h (self-attention: q, k, v and out all have `layout.length` rows). `layouts` holds one
    /// layout per head, or one for all heads. A query with no present key gets a zero row.
    public static func forward(
        layouts: [BlockLayout], batch: Int, heads: Int, d: Int, dv: Int,
        q: AttentionOperand, k: AttentionOperand, v: AttentionOperand,
        out: UnsafeMutablePointer<Float>, outLd: Int, outBatchStride: Int, outHeadStride: Int,
        scale: Float
    ) {
        precondition(layouts.count == 1 || layouts.count == heads, "one layout, or one per head")
        let length = layouts[0].length
        precondition(layouts.allSatisfy { $0.length == length }, "layouts of one call share the length")
        if length == 0 || dv == 0 || batch * heads == 0 { return }
        func layout(_ h: Int) -> BlockLayout { layouts.count == 1 ? layouts[0] : layouts[h] }

        // Heads with a permuted order read gathered copies (batch × L × d, contiguous) and write
        // a gathered output that is scattered back at the end; one tensor holds them all.
        let permuted = (0..<heads).filter { layout($0).order != nil }
        let perHead = batch * length * (2 * d + 2 * dv)
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
                let gv = gk + batch * length * d, go = gv + batch * length * dv
                gather(q, into: gq, h: h, batch: batch, order: order, width: d)
                gather(k, into: gk, h: h, batch: batch, order: order, width: d)
                gather(v, into: gv, h: h, batch: batch, order: order, width: dv)
                ops.append(HeadOps(q: gq, k: gk, v: gv, qld: d, kld: d, vld: dv,
                                   qbs: length * d, kbs: length * d, vbs: length * dv,
                                   o: go, old: dv, obs: length * dv))
            } else {
                ops.append(HeadOps(q: q.pointer(0, h), k: k.pointer(0, h), v: v.pointer(0, h),
                                   qld: q.ld, kld: k.ld, vld: v.ld,
                                   qbs: q.batchStride, kbs: k.batchStride, vbs: v.batchStride,
                                   o: out + h * outHeadStride, old: outLd, obs: outBatchStride))
            }
        }
        let bsMax = layouts.map(\.blockSize).max()!
        let cols = max(maxRunColumns, bsMax)
        let items = batch * heads * layouts.map(\.blockCount).max()!
        Threads.parallelFor(items) { range in
            var scratch = Tensor(uninitialized: [bsMax * cols + bsMax * dv + 3 * bsMax])
            scratch.withUnsafeMutableBufferPointer { buf in
                let s = buf.baseAddress!, o = s + bsMax * cols, m = o + bsMax * dv, l = m + bsMax, corr = l + bsMax
                let perProblem = items / (batch * heads)
                for item in range {
                    let p = item / perProblem, qb = item % perProblem
                    let b = p / heads, h = p % heads
                    let lay = layout(h)
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
                        for e in entries[e0..<e1] where e.mask >= 0 {
                            let mask = lay.masks[Int(e.mask)]
                            let kr = lay.blockRange(Int(e.keyBlock))
                            for (r, qi) in qr.enumerated() {
                                let qpos = lay.position(qi), row = s + r * n
                                for kj in kr where !mask.contains(qpos, lay.position(kj)) { row[kj - k0] = -.infinity }
                            }
                        }
                        fa_online_softmax_tile(s, rows, n, n, m, l, corr)
                        for r in 0..<rows where corr[r] != 1 {
                            let c = corr[r], row = o + r * dv
                            for j in 0..<dv { row[j] *= c }
                        }
                        // o += s V_run
                        BLAS.gemm(m: rows, n: dv, k: n, a: s, lda: n, b: vp + k0 * hop.vld, ldb: hop.vld,
                                  beta: 1, c: o, ldc: dv)
                        e0 = e1
                    }
                    let op = hop.o + b * hop.obs + qr.lowerBound * hop.old
                    for r in 0..<rows {
                        let inv: Float = l[r] > 0 ? 1 / l[r] : 0
                        for j in 0..<dv { op[r * hop.old + j] = o[r * dv + j] * inv }
                    }
                }
            }
        }
        // Scatter permuted outputs back: original position order[j] gets gathered row j.
        for h in permuted {
            let order = layout(h).order!, src = UnsafePointer(ops[h].o)
            for b in 0..<batch {
                for (j, pos) in order.enumerated() {
                    let to = out + b * outBatchStride + h * outHeadStride + Int(pos) * outLd
                    to.update(from: src + (b * length + j) * dv, count: dv)
                }
            }
        }
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
    /// a block counted twice counts twice), from that head's q and k rows (row-major, `ld`
    /// apart, original order). O(support·d): this is row p of the pattern's attention matrix.
    public static func weights(layout: BlockLayout, query p: Int, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                               ld: Int, d: Int, scale: Float) -> [Float] {
        let keys = layout.support(ofQuery: p)
        var w = [Float](repeating: 0, count: layout.length)
        guard !keys.isEmpty else { return w }
        let qp = q + p * ld
        var logits = keys.map { kpos -> Float in
            var s: Float = 0
            let kp = k + kpos * ld
            for c in 0..<d { s += qp[c] * kp[c] }
            return s
        }
        logits.withUnsafeMutableBufferPointer { fa_softmax_rows($0.baseAddress!, 1, keys.count, keys.count, scale) }
        for (kpos, x) in zip(keys, logits) { w[kpos] += x }
        return w
    }

    /// Naive reference: softmax over the dense count matrix (pairs weighted by how many times
    /// the layout lists them), in Double. q, k are L×d, v L×dv, one head. For tests only.
    public static func forwardNaive(counts: [Int32], length: Int, d: Int, dv: Int, q: [Float], k: [Float],
                                    v: [Float], scale: Float) -> [Float] {
        var out = [Float](repeating: 0, count: length * dv)
        for i in 0..<length {
            var logits = [Double](repeating: -.infinity, count: length)
            for j in 0..<length where counts[i * length + j] > 0 {
                var s = 0.0
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
                                 scale: Float) -> Tensor {
        precondition(q.rank == 3 && k.shape == q.shape && v.rank == 3, "attention needs B×L×C operands")
        let (b, l, c, cv) = (q.shape[0], q.shape[1], q.shape[2], v.shape[2])
        precondition(layouts[0].length == l && c % heads == 0 && cv % heads == 0)
        let d = c / heads, dv = cv / heads
        var out = Tensor(uninitialized: [b, l, cv])
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        forward(layouts: layouts, batch: b, heads: heads, d: d, dv: dv,
                                q: .init(base: qp.baseAddress!, ld: c, batchStride: l * c, headStride: d),
                                k: .init(base: kp.baseAddress!, ld: c, batchStride: l * c, headStride: d),
                                v: .init(base: vp.baseAddress!, ld: cv, batchStride: l * cv, headStride: dv),
                                out: op.baseAddress!, outLd: cv, outBatchStride: l * cv, outHeadStride: dv,
                                scale: scale)
                    }
                }
            }
        }
        return out
    }

    /// Per-head weights of query position `p` from B×L×(H·d) q and k (batch item 0), heads as
    /// channel slices; `head` nil gives the mean over heads. Returns one L-vector.
    public static func mapRow(q: Tensor, k: Tensor, heads: Int, layouts: [BlockLayout], query p: Int,
                              head: Int?, scale: Float) -> [Float] {
        let l = q.shape[1], c = q.shape[2], d = c / heads
        let hs = head.map { [$0] } ?? Array(0..<heads)
        var acc = [Float](repeating: 0, count: l)
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                for h in hs {
                    let w = weights(layout: layouts.count == 1 ? layouts[0] : layouts[h], query: p,
                                    q: qp.baseAddress! + h * d, k: kp.baseAddress! + h * d, ld: c, d: d, scale: scale)
                    for j in 0..<l { acc[j] += w[j] / Float(hs.count) }
                }
            }
        }
        return acc
    }
}
