// The efficient-attention core (Shen et al., "Efficient Attention: Attention with Linear
// Complexities", arXiv 1812.01243), shared by the 2-D module (`EfficientAttention`) and any
// sequence form built on it:
//
//     K̂ = softmax over positions (K_h),  Q̂ = softmax over the head's channels (Q_h)
//     O_h = Q̂_h · (K̂_hᵀ V_h)            — a d_k×d_v context, never the n×n matrix
//
// Operands come per batch item in one of two layouts, so callers never transpose:
//   - `.channels`: C×L (a flattened N×C×H×W map, element (c, j) at c·L + j);
//   - `.tokens`:   L×C (an N×L×C sequence,        element (c, j) at j·C + c).
// Heads are contiguous channel slices of d_k/h key and d_v/h value channels; with a key
// channel count not divisible by the heads, the last `d_k mod h` key channels are unused, as
// in cmsflash's reference (it slices `i·(d_k//h) ..< (i+1)·(d_k//h)`).
//
// Cost: O(L·d_k·d_v/h) time, O(L·(d_k + d_v) + d_k·d_v/h) memory.

import CKernels
import Foundation
import TensorCore

public enum EfficientAttentionCore {
    /// Where channels and positions sit in each batch item of an operand.
    public enum Layout: Sendable {
        /// C×L per item (maps: N×C×H×W).
        case channels
        /// L×C per item (tokens: N×L×C).
        case tokens
    }

    /// Channels per head: key channels (integer division, as the reference) and value channels.
    public static func headChannels(keyChannels: Int, valueChannels: Int, heads: Int) -> (dk: Int, dv: Int) {
        (keyChannels / heads, valueChannels / heads)
    }

    /// In place: keys softmaxed over positions (every key channel, used or not — a column of
    /// the reference's `softmax(dim=2)` does not depend on the head), queries softmaxed over
    /// each head's channel slice. `keys` and `queries` are N×C×L (or N×C×H×W) for
    /// `.channels`, N×L×C for `.tokens`.
    public static func normalise(keys: inout Tensor, queries: inout Tensor, heads: Int, layout: Layout) {
        normaliseKeys(&keys, layout: layout)
        normaliseQueries(&queries, heads: heads, layout: layout)
    }

    /// softmax over positions of every channel.
    public static func normaliseKeys(_ keys: inout Tensor, layout: Layout) {
        let (n, c, l) = dims(keys, layout)
        keys.withUnsafeMutableBufferPointer { kp in
            let base = kp.baseAddress!
            switch layout {
            case .channels:
                fa_softmax_rows(base, n * c, l, l, 1)          // rows are channels, contiguous over L
            case .tokens:
                for b in 0..<n { softmaxColumns(base + b * l * c, rows: l, ld: c, count: c) }
            }
        }
    }

    /// softmax over the channels of each head (channels `h·dk ..< (h+1)·dk`).
    public static func normaliseQueries(_ queries: inout Tensor, heads: Int, layout: Layout) {
        let (n, c, l) = dims(queries, layout)
        let dk = c / heads
        precondition(dk > 0, "fewer key channels than heads")
        queries.withUnsafeMutableBufferPointer { qp in
            let base = qp.baseAddress!
            for b in 0..<n {
                switch layout {
                case .channels:
                    for h in 0..<heads { softmaxColumns(base + (b * c + h * dk) * l, rows: dk, ld: l, count: l) }
                case .tokens:
                    for h in 0..<heads { fa_softmax_rows(base + b * l * c + h * dk, l, dk, c, 1) }
                }
            }
        }
    }

    /// O = per head Q̂_h (K̂_hᵀ V_h), heads concatenated along channels: N×dv·h×L (`.channels`)
    /// or N×L×dv·h (`.tokens`). `keys` and `queries` must already be normalised; `values` has
    /// the same layout with `valueChannels` = heads·dv channels.
    public static func attend(keys: Tensor, queries: Tensor, values: Tensor, heads: Int, layout: Layout) -> Tensor {
        let (n, ck, l) = dims(keys, layout)
        let (_, cv, lv) = dims(values, layout)
        precondition(queries.shape == keys.shape && lv == l && values.shape[0] == n)
        let (dk, dv) = headChannels(keyChannels: ck, valueChannels: cv, heads: heads)
        precondition(dk > 0 && dv * heads == cv, "value channels \(cv) not divisible by \(heads) heads")
        var out = Tensor(uninitialized: layout == .channels ? [n, cv, l] : [n, l, cv])
        var context = [Float](repeating: 0, count: dk * dv)       // dk × dv, reused per head
        keys.withUnsafeBufferPointer { kp in
        queries.withUnsafeBufferPointer { qp in
        values.withUnsafeBufferPointer { vp in
        out.withUnsafeMutableBufferPointer { op in
        context.withUnsafeMutableBufferPointer { gp in
            let g = gp.baseAddress!
            for b in 0..<n {
                let k = kp.baseAddress! + b * ck * l, q = qp.baseAddress! + b * ck * l
                let v = vp.baseAddress! + b * cv * l, o = op.baseAddress! + b * cv * l
                for h in 0..<heads {
                    switch layout {
                    case .channels:
                        // G (dk×dv) = K̂_h (dk×L) · V_hᵀ (L×dv)
                        BLAS.gemm(transB: true, m: dk, n: dv, k: l, a: k + h * dk * l, lda: l,
                                  b: v + h * dv * l, ldb: l, c: g, ldc: dv)
                        // O_h (dv×L) = Gᵀ (dv×dk) · Q̂_h (dk×L)
                        BLAS.gemm(transA: true, m: dv, n: l, k: dk, a: g, lda: dv,
                                  b: q + h * dk * l, ldb: l, c: o + h * dv * l, ldc: l)
                    case .tokens:
                        // G (dk×dv) = K̂_hᵀ (dk×L) · V_h (L×dv)
                        BLAS.gemm(transA: true, m: dk, n: dv, k: l, a: k + h * dk, lda: ck,
                                  b: v + h * dv, ldb: cv, c: g, ldc: dv)
                        // O_h (L×dv) = Q̂_h (L×dk) · G (dk×dv)
                        BLAS.gemm(m: l, n: dv, k: dk, a: q + h * dk, lda: ck,
                                  b: g, ldb: dv, c: o + h * dv, ldc: cv)
                    }
                }
            }
        }
        }
        }
        }
        }
        return out
    }

    /// The implicit attention row of position `position` in batch item `batch`: for each head
    /// h, w_h[j] = Σ_{c∈h} Q̂[c,i]·K̂[c,j] (sums to 1 over j); the mean over heads, or one head.
    /// O(L·d_k); `keys` and `queries` normalised. Returns L weights in raster order.
    public static func weights(keys: Tensor, queries: Tensor, heads: Int, layout: Layout,
                               batch: Int, position i: Int, head: Int? = nil) -> [Float] {
        let (_, ck, l) = dims(keys, layout)
        let dk = ck / heads
        let chosen = head.map { [$0] } ?? Array(0..<heads)
        var w = [Float](repeating: 0, count: l)
        keys.withUnsafeBufferPointer { kp in
            queries.withUnsafeBufferPointer { qp in
                let k = kp.baseAddress! + batch * ck * l, q = qp.baseAddress! + batch * ck * l
                let scale = 1 / Float(chosen.count)
                for h in chosen {
                    for c in (h * dk)..<((h + 1) * dk) {
                        let qc = scale * (layout == .channels ? q[c * l + i] : q[i * ck + c])
                        switch layout {
                        case .channels:
                            let row = k + c * l
                            for j in 0..<l { w[j] += qc * row[j] }
                        case .tokens:
                            for j in 0..<l { w[j] += qc * k[j * ck + c] }
                        }
                    }
                }
            }
        }
        return w
    }

    /// Naive reference for one batch item in `.channels` layout, in Double, straight from the
    /// paper's formula with the n×n matrix Q̂ᵀK̂ per head (tests only). k, q: ck×L, v: cv×L.
    public static func forwardNaive(keys k: [Float], queries q: [Float], values v: [Float],
                                    keyChannels ck: Int, valueChannels cv: Int, length l: Int, heads: Int) -> [Float] {
        let dk = ck / heads, dv = cv / heads
        var out = [Float](repeating: 0, count: cv * l)
        for h in 0..<heads {
            var kh = [[Double]](repeating: [Double](repeating: 0, count: l), count: dk)
            var qh = kh
            for c in 0..<dk {
                let row = (0..<l).map { Double(k[(h * dk + c) * l + $0]) }
                let m = row.max()!, e = row.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
                kh[c] = e.map { $0 / z }
            }
            for j in 0..<l {
                let col = (0..<dk).map { Double(q[(h * dk + $0) * l + j]) }
                let m = col.max()!, e = col.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
                for c in 0..<dk { qh[c][j] = e[c] / z }
            }
            for i in 0..<l {
                for j in 0..<l {
                    var a = 0.0
                    for c in 0..<dk { a += qh[c][i] * kh[c][j] }
                    for c in 0..<dv { out[(h * dv + c) * l + i] += Float(a * Double(v[(h * dv + c) * l + j])) }
                }
            }
        }
        return out
    }

    /// (batch, channels, positions) of an operand in `layout` (maps may be N×C×H×W).
    static func dims(_ t: Tensor, _ layout: Layout) -> (Int, Int, Int) {
        switch layout {
        case .channels: return (t.shape[0], t.shape[1], t.count / max(t.shape[0] * t.shape[1], 1))
        case .tokens:   return (t.shape[0], t.shape[2], t.shape[1])
        }
    }
}

/// Softmax down the columns of a matrix of `rows` rows (row stride ld), for its first `count`
/// columns: each column is normalised over its rows. Rows are walked contiguously.
func softmaxColumns(_ x: UnsafeMutablePointer<Float>, rows: Int, ld: Int, count: Int) {
    var mx = [Float](repeating: -.infinity, count: count)
    var sum = [Float](repeating: 0, count: count)
    for r in 0..<rows {
        let row = x + r * ld
        for j in 0..<count where row[j] > mx[j] { mx[j] = row[j] }
    }
    for r in 0..<rows {
        let row = x + r * ld
        for j in 0..<count { row[j] -= mx[j] }
        fa_exp(row, row, count)
        for j in 0..<count { sum[j] += row[j] }
    }
    for j in 0..<count { sum[j] = 1 / sum[j] }
    for r in 0..<rows {
        let row = x + r * ld
        for j in 0..<count { row[j] *= sum[j] }
    }
}
