// The windowed rows of GMAT (tokens over memory + window) and ETC (long tokens over globals +
// local radius): one softmax per row over g side keys and the tokens within radius r, computed
// in query blocks so the work and memory are O(L·(g + 2r)) — nothing L×L is built.

import CKernels
import TensorCore

enum BandAttention {
    /// Query rows per block. A block of B queries reads the B + 2r keys around it.
    static let queryBlock = 32

    /// Additions to the logits (ETC's relative positions and hard l2g mask), all before `scale`:
    /// `local` [batch][L][heads][2r+1] indexed by the offset j − i + r; `side(b, i, h, logits)`
    /// adds to row i's g side logits in place (called once per row, from several threads); and
    /// `sideRange(i)`, the side keys row i may see (all when nil).
    struct Bias {
        var local: UnsafePointer<Float>?
        var side: ((_ b: Int, _ i: Int, _ h: Int, _ logits: UnsafeMutablePointer<Float>) -> Void)?
        var sideRange: ((Int) -> Range<Int>)?
    }

    /// out[b,h,i] = Σ softmax(scale·(logits + bias)) · values over the side keys sk (g rows) and
    /// the tokens j with |i − j| ≤ r (k, v: L rows), for every batch b, head h and token i.
    /// q, k are ·×d, v, sv ·×dv at their operands' strides; out at the given strides.
    static func forward(batch: Int, heads: Int, l: Int, g: Int, r: Int, d: Int, dv: Int,
                        q: AttentionOperand, k: AttentionOperand, v: AttentionOperand,
                        sk: AttentionOperand, sv: AttentionOperand,
                        out: UnsafeMutablePointer<Float>, outLd: Int, outBatchStride: Int, outHeadStride: Int,
                        scale: Float, bias: Bias = Bias()) {
        if l == 0 || dv == 0 { return }
        let bq = min(queryBlock, l)
        let blocks = (l + bq - 1) / bq
        let maxCols = g + min(l, bq + 2 * r)
        Threads.parallelFor(batch * heads * blocks) { range in
            var scratch = Tensor(uninitialized: [bq * maxCols])      // logits of one block
            scratch.withUnsafeMutableBufferPointer { buf in
                let s = buf.baseAddress!
                for item in range {
                    let blk = item % blocks, p = item / blocks, b = p / heads, h = p % heads
                    let i0 = blk * bq, rows = min(bq, l - i0)
                    let j0 = max(0, i0 - r), j1 = min(l, i0 + rows + r), w = j1 - j0, cols = g + w
                    let qp = q.pointer(b, h) + i0 * q.ld
                    // s[:, ..<g] = Q_blk · SKᵀ;  s[:, g...] = Q_blk · K[j0..<j1]ᵀ
                    if g > 0 {
                        BLAS.gemm(transB: true, m: rows, n: g, k: d, a: qp, lda: q.ld, b: sk.pointer(b, h), ldb: sk.ld,
                                  c: s, ldc: cols)
                    }
                    BLAS.gemm(transB: true, m: rows, n: w, k: d, a: qp, lda: q.ld, b: k.pointer(b, h) + j0 * k.ld,
                              ldb: k.ld, c: s + g, ldc: cols)
                    for rr in 0..<rows {
                        let i = i0 + rr, row = s + rr * cols, at = (b * l + i) * heads + h
                        bias.side?(b, i, h, row)
                        if let visible = bias.sideRange?(i) {
                            for c in 0..<g where !visible.contains(c) { row[c] = -.infinity }
                        }
                        let lb = bias.local.map { $0 + at * (2 * r + 1) }
                        for c in 0..<w {
                            let off = j0 + c - i
                            if off < -r || off > r {
                                row[g + c] = -.infinity
                            } else if let lb {
                                row[g + c] += lb[off + r]
                            }
                        }
                    }
                    fa_softmax_rows(s, rows, cols, cols, scale)
                    let op = out + b * outBatchStride + h * outHeadStride + i0 * outLd
                    // out = P[:, ..<g] · SV + P[:, g...] · V[j0..<j1]
                    if g > 0 {
                        BLAS.gemm(m: rows, n: dv, k: g, a: s, lda: cols, b: sv.pointer(b, h), ldb: sv.ld, c: op, ldc: outLd)
                    }
                    BLAS.gemm(m: rows, n: dv, k: w, a: s + g, lda: cols, b: v.pointer(b, h) + j0 * v.ld, ldb: v.ld,
                              beta: g > 0 ? 1 : 0, c: op, ldc: outLd)
                }
            }
        }
    }

    /// One row of the same attention, for maps: token i's weights over the g side keys and over
    /// all L tokens (zero outside its window), O((g + 2r+1)·d). Pointers are one head's: q the
    /// query row, k token keys (row stride ldk), sk side keys (ldsk); biases this row's, as in `Bias`.
    static func rowWeights(i: Int, l: Int, g: Int, r: Int, d: Int, q: UnsafePointer<Float>,
                           k: UnsafePointer<Float>, ldk: Int, sk: UnsafePointer<Float>, ldsk: Int, scale: Float,
                           localBias: UnsafePointer<Float>? = nil, sideBias: [Float]? = nil,
                           sideVisible: Range<Int>? = nil) -> (side: [Float], tokens: [Float]) {
        let j0 = max(0, i - r), j1 = min(l, i + r + 1), w = j1 - j0
        var logits = [Float](repeating: 0, count: g + w)
        for c in 0..<g {
            var s: Float = 0
            for e in 0..<d { s += q[e] * sk[c * ldsk + e] }
            logits[c] = s + (sideBias?[c] ?? 0)
            if let sideVisible, !sideVisible.contains(c) { logits[c] = -.infinity }
        }
        for c in 0..<w {
            let j = j0 + c
            var s: Float = 0
            for e in 0..<d { s += q[e] * k[j * ldk + e] }
            logits[g + c] = s + (localBias?[j - i + r] ?? 0)
        }
        logits.withUnsafeMutableBufferPointer { fa_softmax_rows($0.baseAddress!, 1, g + w, g + w, scale) }
        var tokens = [Float](repeating: 0, count: l)
        for c in 0..<w { tokens[j0 + c] = logits[g + c] }
        return (Array(logits[..<g]), tokens)
    }
}
