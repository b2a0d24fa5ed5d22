// The dense softmax-attention kernel: out = softmax(scale · Q Kᵀ) V, computed in tiles of
// queries against tiles of keys with an online softmax, so memory stays O(tile²) however long
// the sequence, and nothing N×N is ever allocated (wide heads use taller tiles, still capped at
// 8 MiB of logits per worker: `tileShape`). Every module that takes a softmax over full
// rows (non-local, and later the sequence baselines) calls this one kernel.

import CKernels
import Foundation
import TensorCore

/// A row-major matrix operand inside a larger buffer, for a batch of (batch × heads) problems:
/// problem `b·heads + h` starts at `base + b·batchStride + h·headStride`, rows `ld` apart.
public struct AttentionOperand {
    public let base: UnsafePointer<Float>
    public let ld: Int
    public let batchStride: Int
    public let headStride: Int

    public init(base: UnsafePointer<Float>, ld: Int, batchStride: Int, headStride: Int) {
        self.base = base
        self.ld = ld
        self.batchStride = batchStride
        self.headStride = headStride
    }

    @inline(__always) func pointer(_ b: Int, _ h: Int) -> UnsafePointer<Float> {
        base + b * batchStride + h * headStride
    }
}

public enum DenseAttention {
    /// Query rows per tile; key rows per tile. 64 queries × 2048 keys is 512 KiB of logits per
    /// worker: it stays in L2 while the two GEMMs around it run.
    public static var queryTile = 64
    public static var keyTile = 2048
    /// Wide heads (d ≥ `wideHead`, e.g. the synthesizer's dense variant at d = L + 1): every
    /// logits GEMM packs its whole key tile (tk×d) for only `queryTile` query rows, which for
    /// d = 4097 cost a third of the GEMM itself. There the logits block grows to whole rows of
    /// keys (up to `wideKeyTile`) and taller query tiles, up to `wideLogits` floats per worker
    /// (8 MiB: bounded whatever the length), so each key is packed lq/tq times instead of lq/64.
    public static var wideHead = 512
    public static var wideKeyTile = 4096
    public static var wideLogits = 1 << 21

    /// The (query, key) tile shape for a problem set: the narrow default, or for wide heads
    /// the tall one above, still leaving every worker at least one tile.
    static func tileShape(problems: Int, lq: Int, lk: Int, d: Int) -> (tq: Int, tk: Int) {
        let lk1 = max(lk, 1)
        guard d >= wideHead else { return (min(queryTile, lq), min(keyTile, lk1)) }
        let tk = min(max(keyTile, wideKeyTile), lk1)
        var tq = max(queryTile, wideLogits / tk)
        let splits = (Threads.count + problems - 1) / max(problems, 1)      // tiles each problem needs
        tq = min(tq, max(queryTile, (lq + splits - 1) / splits))
        return (min(tq, lq), tk)
    }

    /// out[b,h] = softmax(scale · q[b,h] k[b,h]ᵀ + causal mask) v[b,h] for every batch b and
    /// head h. q is lq×d, k is lk×d, v is lk×dv, out lq×dv (each at its operand's strides).
    /// With `causal`, query i sees keys j ≤ i (top-left aligned, as torch's `is_causal`).
    /// A row with no visible key (only possible when lq > lk with causal) is zero.
    public static func forward(
        batch: Int, heads: Int, lq: Int, lk: Int, d: Int, dv: Int,
        q: AttentionOperand, k: AttentionOperand, v: AttentionOperand,
        out: UnsafeMutablePointer<Float>, outLd: Int, outBatchStride: Int, outHeadStride: Int,
        scale: Float, causal: Bool = false
    ) {
        if lq == 0 || dv == 0 { return }
        let problems = batch * heads
        let (tq, tk) = tileShape(problems: problems, lq: lq, lk: lk, d: d)
        let qTiles = (lq + tq - 1) / tq
        // Work items: (problem, query tile). Each worker owns its scratch for its whole range.
        Threads.parallelFor(problems * qTiles) { range in
            // Scratch as tensor storage, so `attend bench` counts it: logits, output rows, and
            // the running max, sum and correction per row.
            var scratch = Tensor(uninitialized: [tq * tk + tq * dv + 3 * tq])
            scratch.withUnsafeMutableBufferPointer { buf in
            let s = buf.baseAddress!, o = s + tq * tk, m = o + tq * dv, l = m + tq, corr = l + tq
            for item in range {
                let p = item / qTiles, t = item % qTiles
                let b = p / heads, h = p % heads
                let q0 = t * tq, rows = min(tq, lq - q0)
                let qp = q.pointer(b, h) + q0 * q.ld
                let kp = k.pointer(b, h), vp = v.pointer(b, h)
                m.update(repeating: -.infinity, count: rows)
                l.update(repeating: 0, count: rows)
                o.update(repeating: 0, count: rows * dv)
                // Keys beyond the last query of this tile are all masked when causal.
                let kEnd = causal ? min(lk, q0 + rows) : lk
                var k0 = 0
                while k0 < kEnd {
                    let cols = min(tk, kEnd - k0)
                    // s (rows×cols) = scale · Q_tile K_tileᵀ
                    BLAS.gemm(transB: true, m: rows, n: cols, k: d, alpha: scale,
                              a: qp, lda: q.ld, b: kp + k0 * k.ld, ldb: k.ld, c: s, ldc: cols)
                    if causal && k0 + cols > q0 {
                        for r in 0..<rows {
                            let firstMasked = q0 + r + 1 - k0      // key index j > i is masked
                            if firstMasked < cols {
                                (s + r * cols + max(firstMasked, 0)).update(repeating: -.infinity,
                                                                             count: cols - max(firstMasked, 0))
                            }
                        }
                    }
                    fa_online_softmax_tile(s, rows, cols, cols, m, l, corr)
                    for r in 0..<rows where corr[r] != 1 {
                        let c = corr[r], row = o + r * dv
                        for j in 0..<dv { row[j] *= c }
                    }
                    // o += s V_tile
                    BLAS.gemm(m: rows, n: dv, k: cols, a: s, lda: cols, b: vp + k0 * v.ld, ldb: v.ld,
                              beta: 1, c: o, ldc: dv)
                    k0 += cols
                }
                let op = out + b * outBatchStride + h * outHeadStride + q0 * outLd
                for r in 0..<rows {
                    let inv: Float = l[r] > 0 ? 1 / l[r] : 0
                    for j in 0..<dv { op[r * outLd + j] = o[r * dv + j] * inv }
                }
            }
            }
        }
    }

    /// The weights one query row gives every key: softmax_j(scale · q·k_j), O(lk·d).
    /// This is row i of the attention matrix, computed without the matrix (for maps).
    public static func weights(query: UnsafePointer<Float>, keys: UnsafePointer<Float>, ldk: Int,
                               lk: Int, d: Int, scale: Float, visible: Int? = nil) -> [Float] {
        var w = [Float](repeating: 0, count: lk)
        let n = min(visible ?? lk, lk)
        if n == 0 { return w }
        w.withUnsafeMutableBufferPointer { wp in
            // w (1×n) = q (1×d) · K(n×d)ᵀ
            BLAS.gemm(transB: true, m: 1, n: n, k: d, alpha: 1, a: query, lda: d, b: keys, ldb: ldk,
                      c: wp.baseAddress!, ldc: n)
            fa_softmax_rows(wp.baseAddress!, 1, n, n, scale)
        }
        return w
    }

    /// Naive reference: the full lq×lk matrix in Double, for tests only.
    public static func forwardNaive(lq: Int, lk: Int, d: Int, dv: Int, q: [Float], k: [Float], v: [Float],
                                    scale: Float, causal: Bool = false) -> [Float] {
        var out = [Float](repeating: 0, count: lq * dv)
        for i in 0..<lq {
            var logits = [Double](repeating: -.infinity, count: lk)
            for j in 0..<lk where !causal || j <= i {
                var s = 0.0
                for c in 0..<d { s += Double(q[i * d + c]) * Double(k[j * d + c]) }
                logits[j] = s * Double(scale)
            }
            let mx = logits.max() ?? -.infinity
            if mx == -.infinity { continue }
            let e = logits.map { $0 == -.infinity ? 0 : _exp($0 - mx) }
            let z = e.reduce(0, +)
            for c in 0..<dv {
                var acc = 0.0
                for j in 0..<lk { acc += e[j] * Double(v[j * dv + c]) }
                out[i * dv + c] = Float(acc / z)
            }
        }
        return out
    }
}

@inline(__always) func _exp(_ x: Double) -> Double { Foundation.exp(x) }

extension DenseAttention {
    /// Multi-head attention on token tensors, heads as contiguous channel slices (as
    /// `nn.MultiheadAttention` and most references split them): q B×Lq×(H·d), k B×Lk×(H·d),
    /// v B×Lk×(H·dv) → B×Lq×(H·dv). No copies: heads are read in place through strides.
    public static func multiHead(q: Tensor, k: Tensor, v: Tensor, heads: Int, scale: Float,
                                 causal: Bool = false) -> Tensor {
        precondition(q.rank == 3 && k.rank == 3 && v.rank == 3, "attention needs B×L×C operands")
        let (b, lq, cq) = (q.shape[0], q.shape[1], q.shape[2])
        let (lk, ck, cv) = (k.shape[1], k.shape[2], v.shape[2])
        precondition(k.shape[0] == b && v.shape[0] == b && v.shape[1] == lk && cq == ck)
        precondition(cq % heads == 0 && cv % heads == 0, "channels not divisible by heads")
        let d = cq / heads, dv = cv / heads
        var out = Tensor(uninitialized: [b, lq, cv])
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        forward(batch: b, heads: heads, lq: lq, lk: lk, d: d, dv: dv,
                                q: .init(base: qp.baseAddress!, ld: cq, batchStride: lq * cq, headStride: d),
                                k: .init(base: kp.baseAddress!, ld: ck, batchStride: lk * ck, headStride: d),
                                v: .init(base: vp.baseAddress!, ld: cv, batchStride: lk * cv, headStride: dv),
                                out: op.baseAddress!, outLd: cv, outBatchStride: lq * cv, outHeadStride: dv,
                                scale: scale, causal: causal)
                    }
                }
            }
        }
        return out
    }
}
