// The causal variant of SinkhornSelfAttention: sinkhorn-transformer 0.11.4
// `SinkhornCausalAttention` with `CausalAttentionSortNet`.
//
// Per head (the second half of the heads works on the sequence rotated left by b−1, so that its
// blocks straddle the first half's block boundaries; outputs are rotated back):
//   sort net: sq_u = cumulative average of q at the first position of block u, sk_v = sum over
//   block v of the cumulative averages of k, n_top null buckets (sk = 0) in front;
//   R[u, c] = sq_u·sk_c·d^-½, masked (−finfo.max) for real blocks v ≥ u; soft top-n_top at
//   `temperature` (each pick scaled by its probability);
//   block u attends to [picked blocks (null blocks = the learned null key/value repeated b
//   times); its own block], own block causal (key j > query row i masked), and in the rotated
//   heads' last block, whose rows 1… are the sequence's first b−1 tokens, those rows see only
//   their own block's keys 1…row (−finfo.max elsewhere). Reordered values are the reordered
//   values here (the non-causal value bug is not in this class).
// Causality is exact: outputs at i do not depend on inputs after i.

import Foundation
import TensorCore

extension SinkhornSelfAttention {
    /// Position in the sequence of rotated index `i` for head `h`.
    @inline(__always) func original(_ i: Int, head h: Int, l: Int) -> Int {
        h >= heads / 2 ? (i + bucket - 1) % l : i
    }

    /// Soft top-k sort weights of one problem: nb·n_top rows over n_top + nb columns (nulls first).
    func causalSortWeights(q: UnsafePointer<Float>, k: UnsafePointer<Float>, head h: Int, l: Int, nTop: Int) -> [Float] {
        let nb = l / bucket, d = dimHead, hd = heads * dimHead, cols = nTop + nb
        var sq = [Float](repeating: 0, count: nb * d), sk = [Float](repeating: 0, count: nb * d)
        var cq = [Float](repeating: 0, count: d), ck = [Float](repeating: 0, count: d)
        for i in 0..<l {
            let o = original(i, head: h, l: l)
            for e in 0..<d { cq[e] += q[o * hd + e]; ck[e] += k[o * hd + e] }
            let inv = 1 / Float(i + 1)
            if i % bucket == 0 { for e in 0..<d { sq[(i / bucket) * d + e] = cq[e] * inv } }
            for e in 0..<d { sk[(i / bucket) * d + e] += ck[e] * inv }
        }
        var r = [Float](repeating: 0, count: nb * cols)
        for u in 0..<nb {
            for v in 0..<nb {
                if v >= u { r[u * cols + nTop + v] = -.greatestFiniteMagnitude; continue }
                var acc: Float = 0
                for e in 0..<d { acc += sq[u * d + e] * sk[v * d + e] }
                r[u * cols + nTop + v] = acc * scale
            }
        }
        return Self.softTopK(r, rows: nb, k: nTop, temperature: temperature, cols: cols)
    }

    /// Block u of one problem: the probabilities of its b rows over [picked keys; own keys]
    /// (rows × (n_top·b + b)), and its outputs (rows × d) when `out` is given.
    func causalBlock(u: Int, weights w: [Float], q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                     head h: Int, l: Int, nTop: Int) -> (probs: [Float], out: [Float]) {
        let nb = l / bucket, d = dimHead, hd = heads * dimHead, b = bucket, cols = nTop + nb
        let shift = nTop * b, total = shift + b
        var keys = [Float](repeating: 0, count: total * d), vals = [Float](repeating: 0, count: total * d)
        let nk = nullKeys!.scalars, nv = nullValues!.scalars
        for i in 0..<nTop {
            let row = (u * nTop + i) * cols
            for c in 0..<cols where w[row + c] != 0 {
                let wc = w[row + c]
                for t in 0..<b {
                    let dst = (i * b + t) * d
                    if c < nTop {
                        for e in 0..<d { keys[dst + e] += wc * nk[h * d + e]; vals[dst + e] += wc * nv[h * d + e] }
                    } else {
                        let o = original((c - nTop) * b + t, head: h, l: l)
                        for e in 0..<d { keys[dst + e] += wc * k[o * hd + e]; vals[dst + e] += wc * v[o * hd + e] }
                    }
                }
            }
        }
        for t in 0..<b {
            let o = original(u * b + t, head: h, l: l)
            for e in 0..<d { keys[(shift + t) * d + e] = k[o * hd + e]; vals[(shift + t) * d + e] = v[o * hd + e] }
        }
        var qs = [Float](repeating: 0, count: b * d)
        for r in 0..<b {
            let o = original(u * b + r, head: h, l: l)
            for e in 0..<d { qs[r * d + e] = q[o * hd + e] }
        }
        var s = [Float](repeating: 0, count: b * total)
        qs.withUnsafeBufferPointer { qp in keys.withUnsafeBufferPointer { kp in s.withUnsafeMutableBufferPointer { sp in
            // s (b × total) = scale · Q_u [picked; own]ᵀ
            BLAS.gemm(transB: true, m: b, n: total, k: d, alpha: scale, a: qp.baseAddress!, lda: d, b: kp.baseAddress!, ldb: d,
                      c: sp.baseAddress!, ldc: total)
        } } }
        let lastRotated = h >= heads / 2 && u == nb - 1
        let neg = -Float.greatestFiniteMagnitude
        for r in 0..<b {
            for j in (r + 1)..<b { s[r * total + shift + j] = neg }               // own block causal
            if lastRotated && r > 0 { for c in 0...shift { s[r * total + c] = neg } }
            let row = Array(s[(r * total)..<((r + 1) * total)])
            let mx = row.max()!
            var z: Float = 0
            for c in 0..<total { s[r * total + c] = Foundation.exp(row[c] - mx); z += s[r * total + c] }
            for c in 0..<total { s[r * total + c] /= z }
        }
        var out = [Float](repeating: 0, count: b * d)
        s.withUnsafeBufferPointer { sp in vals.withUnsafeBufferPointer { vp in out.withUnsafeMutableBufferPointer { op in
            // out (b × d) = P [picked; own] values
            BLAS.gemm(m: b, n: d, k: total, a: sp.baseAddress!, lda: total, b: vp.baseAddress!, ldb: d, c: op.baseAddress!, ldc: d)
        } } }
        return (s, out)
    }

    func causalForward(_ x: Tensor) throws -> Tensor {
        let (n, l) = (x.shape[0], x.shape[1])
        let hd = heads * dimHead, d = dimHead, nb = l / bucket, top = min(nTop, nb)
        let (q, k, v) = try projections(x)
        var out = Tensor(uninitialized: [n, l, hd])                  // N, L, H·d
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            out.withUnsafeMutableBufferPointer { op in
                Threads.parallelFor(n * heads) { range in
                    for p in range {
                        let b = p / heads, h = p % heads, off = b * l * hd + h * d
                        let w = causalSortWeights(q: qp.baseAddress! + off, k: kp.baseAddress! + off, head: h, l: l, nTop: top)
                        for u in 0..<nb {
                            let o = causalBlock(u: u, weights: w, q: qp.baseAddress! + off, k: kp.baseAddress! + off,
                                                v: vp.baseAddress! + off, head: h, l: l, nTop: top).out
                            for r in 0..<bucket {
                                let dst = op.baseAddress! + off + original(u * bucket + r, head: h, l: l) * hd
                                for e in 0..<d { dst[e] = o[r * d + e] }
                            }
                        }
                    }
                }
            }
        } } }
        return try toOut(out)                                        // N, L, dim
    }

    /// Query i's weights over positions (batch 0): own-block keys at their positions, picked
    /// blocks' keys spread over the positions they mix (null buckets dropped).
    func causalMapRow(_ x: Tensor, position i: Int, heads chosen: [Int]) throws -> [Float] {
        let l = x.shape[1], nb = l / bucket, b = bucket, top = min(nTop, nb), cols = top + nb, shift = top * b
        let (q, k, v) = try projections(x.batchItem(0))
        var row = [Float](repeating: 0, count: l)
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            for h in chosen {
                let off = h * dimHead
                let ri = h >= heads / 2 ? (i - (b - 1) + l) % l : i, u = ri / b, r = ri % b
                let w = causalSortWeights(q: qp.baseAddress! + off, k: kp.baseAddress! + off, head: h, l: l, nTop: top)
                let probs = causalBlock(u: u, weights: w, q: qp.baseAddress! + off, k: kp.baseAddress! + off,
                                        v: vp.baseAddress! + off, head: h, l: l, nTop: top).probs
                let pr = Array(probs[(r * (shift + b))..<((r + 1) * (shift + b))])
                let scaleHeads = 1 / Float(chosen.count)
                for t in 0..<b { row[original(u * b + t, head: h, l: l)] += pr[shift + t] * scaleHeads }
                for pick in 0..<top {
                    let wr = Array(w[((u * top + pick) * cols)..<((u * top + pick + 1) * cols)])
                    let total = wr.reduce(0, +)
                    guard total > 0 else { continue }
                    for t in 0..<b {
                        for c in top..<cols where wr[c] != 0 {
                            row[original((c - top) * b + t, head: h, l: l)] += pr[pick * b + t] * wr[c] / total * scaleHeads
                        }
                    }
                }
            }
        } } }
        return row
    }
}
