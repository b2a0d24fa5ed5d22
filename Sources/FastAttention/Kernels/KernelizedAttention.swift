// The kernelised (linear) attention core: out = φ(Q)(φ(K)ᵀV) / (φ(Q)·Σφ(K)), never forming
// the N×N matrix. Every kernel/linear-attention module (linear-transformer, performer,
// performer-favor, slim-performer, random-feature, fast-weights) is a feature map plus an
// update rule over this one core:
//
// Features are streamed: a module hands the kernel a `KernelFeatureFill` that produces φ for a
// chunk of positions of one head (projecting that chunk's rows inside it), so no N×m feature
// tensor is ever stored; each worker walks the positions chunk by chunk and, inside a chunk,
// its heads, while the chunk's rows are in cache.
//
// - non-causal: keys chunk by chunk into S = φ(K)ᵀV (m×dv) and z, then queries chunk by
//   chunk through φ(Q)S: O(N·m·dv);
// - causal: chunked prefix sums — per chunk of T positions, a T×T GEMM for the
//   lower-triangular intra-chunk part and the float32 running state S = Σφ(k)vᵀ, z = Σφ(k)
//   for everything before the chunk: O(N·T·m + N·m·dv), memory O(T² + m·dv) per worker.
//   An optional per-position log decay (gated RFA: S_t = g_t S_{t−1} + …) is folded into
//   both parts exactly;
// - recurrent: `KernelizedState`, one token at a time (decoding; the delta rule);
// - maps: `weights(...)`, the implicit row φ(qᵢ)·φ(kⱼ)/Σ of one query in O(N·m).
//
// Where each reference adds its eps differs, so the normaliser is a parameter:
// fast-transformers adds eps to the denominator, performer-pytorch's causal path adds it to
// every component of the key prefix sum (so the denominator gains eps·Σφ(q)), its non-causal
// path adds none, SLiM adds 1e-16 to the denominator, the JAX FAVOR code adds 2·eps only where
// |denominator| ≤ eps.

import CKernels
import Foundation
import TensorCore

/// How the numerator φ(q)ᵀS is divided by the normaliser φ(q)·z.
public enum KernelNormaliser: Sendable, Equatable {
    /// out = num / (φ(q)·z + eps) (fast-transformers eps 1e-6, SLiM 1e-16, performer
    /// non-causal eps 0).
    case denominator(eps: Float)
    /// out = num / (φ(q)·(z + eps)) = num / (φ(q)·z + eps·Σφ(q)) (performer-pytorch causal).
    case keySum(eps: Float)
    /// out = num / (d + 2·eps·[|d| ≤ eps]) with d = φ(q)·z: the google-research JAX FAVOR guard,
    /// for features that can make d vanish or change sign (trigonometric ones).
    case guarded(eps: Float)
    /// out = num: no normalisation.
    case none

    /// The divisor for a row whose φ(q)·z is `dot` and whose features sum to `qSum`.
    @inline(__always) func divisor(dot: Float, qSum: @autoclosure () -> Float) -> Float {
        switch self {
        case .denominator(let eps): return dot + eps
        case .keySum(let eps): return dot + eps * qSum()
        case .guarded(let eps): return Swift.abs(dot) <= eps ? dot + 2 * eps : dot
        case .none: return 1
        }
    }
}

/// Where each (batch, head) problem writes its output rows: problem (b, h) row i is at
/// `base + b·batchStride + h·headStride + i·ld`.
public struct KernelizedOutput {
    public let base: UnsafeMutablePointer<Float>
    public let ld: Int, batchStride: Int, headStride: Int
    public init(base: UnsafeMutablePointer<Float>, ld: Int, batchStride: Int, headStride: Int) {
        self.base = base
        self.ld = ld
        self.batchStride = batchStride
        self.headStride = headStride
    }
    @inline(__always) func pointer(_ b: Int, _ h: Int) -> UnsafeMutablePointer<Float> {
        base + b * batchStride + h * headStride
    }
}

/// Writes the features of `count` positions from `start` of problem (batch b, head h) into
/// `dst` (count×m, row-major), for queries or for keys. The kernel calls it chunk by chunk, so
/// a module's feature map runs on cache-sized blocks and no N×m feature tensor is ever stored.
/// Called concurrently for different problems: it must only read shared state.
public typealias KernelFeatureFill = (_ b: Int, _ h: Int, _ start: Int, _ count: Int, _ query: Bool,
                                      _ dst: UnsafeMutablePointer<Float>) -> Void

public enum KernelizedAttention {
    /// Positions per chunk: the feature blocks, and in the causal form the T×T intra-chunk GEMM
    /// against the m×dv state GEMMs. 64 keeps the intra part ≈ the state part for m ≈ dv ≈ 64.
    nonisolated(unsafe) public static var chunk = 64

    /// out[b,h] = φq[b,h] (φk[b,h]ᵀ v[b,h]) / normaliser, for every batch b and head h, with
    /// φ produced chunk by chunk by `features` (m per position). v is lk×dv at its operand's
    /// strides. With `causal` (lq == lk) row i sees keys j ≤ i through chunked prefix sums.
    /// `logDecay` (causal only) holds log g_t per position (`ld` = position stride): the state
    /// decays as S_t = g_t S_{t−1} + φ(k_t)v_tᵀ, i.e. key j reaches query i with weight
    /// Π_{t=j+1..i} g_t. Memory: O(T·(T + m) + m·dv) per worker, whatever the length.
    public static func forward(
        batch: Int, heads: Int, lq: Int, lk: Int, m: Int, dv: Int, features: KernelFeatureFill,
        v: AttentionOperand, out: KernelizedOutput, normaliser: KernelNormaliser, causal: Bool = false,
        logDecay: AttentionOperand? = nil
    ) {
        precondition(!causal || lq == lk, "causal kernelised attention needs lq == lk")
        precondition(logDecay == nil || causal, "a decay needs the causal form")
        if lq == 0 || dv == 0 { return }
        let t = max(1, chunk)
        // Work items: a batch item and a group of its heads. Each worker walks the positions
        // chunk by chunk and, inside a chunk, its heads — so the rows a chunk's features come
        // from are read once, while in cache, for all heads. Groups split the heads only as far
        // as the threads need; a single item leaves BLAS its threads.
        let groups = min(heads, max(1, Threads.count / max(batch, 1)))
        Threads.parallelFor(batch * groups) { range in
            let most = (heads + groups - 1) / groups
            // Scratch as tensor storage, so `attend bench` counts it: per head S (m×dv) and z (m),
            // then shared chunk buffers.
            var scratch = Tensor(zeros: [most * (m * dv + m) + 2 * t * m + t * t + t * m + t * dv + 3 * t])
            scratch.withUnsafeMutableBufferPointer { buf in
                let states = buf.baseAddress!, qb = states + most * (m * dv + m), kb = qb + t * m, work = kb + t * m
                for item in range {
                    let b = item / groups, g = item % groups
                    let hs = (heads * g / groups)..<(heads * (g + 1) / groups)
                    func state(_ h: Int) -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) {
                        let sp = states + (h - hs.lowerBound) * (m * dv + m)
                        return (sp, sp + m * dv)
                    }
                    states.update(repeating: 0, count: hs.count * (m * dv + m))
                    if causal {
                        var c0 = 0
                        while c0 < lq {
                            let r = min(t, lq - c0)
                            for h in hs {
                                let (sp, zp) = state(h)
                                features(b, h, c0, r, true, qb)
                                features(b, h, c0, r, false, kb)
                                causalChunk(c0: c0, r: r, m: m, dv: dv, t: t, qc: qb, kc: kb, vc: v.pointer(b, h) + c0 * v.ld,
                                            ldv: v.ld, oc: out.pointer(b, h) + c0 * out.ld, ldo: out.ld, normaliser: normaliser,
                                            logDecay: logDecay.map { ($0.pointer(b, h), $0.ld) }, s: sp, z: zp, work: work)
                            }
                            c0 += r
                        }
                    } else {
                        var c0 = 0
                        while c0 < lk {
                            let r = min(t, lk - c0)
                            for h in hs {
                                let (sp, zp) = state(h)
                                features(b, h, c0, r, false, kb)
                                accumulateKeys(r: r, m: m, dv: dv, kc: kb, vc: v.pointer(b, h) + c0 * v.ld, ldv: v.ld, s: sp, z: zp)
                            }
                            c0 += r
                        }
                        c0 = 0
                        while c0 < lq {
                            let r = min(t, lq - c0)
                            for h in hs {
                                let (sp, zp) = state(h)
                                features(b, h, c0, r, true, qb)
                                readQueries(r: r, m: m, dv: dv, qc: qb, oc: out.pointer(b, h) + c0 * out.ld, ldo: out.ld,
                                            normaliser: normaliser, s: sp, z: zp)
                            }
                            c0 += r
                        }
                    }
                }
            }
        }
    }

    /// The same on feature operands already in memory (φq lq×m, φk lk×m at their strides).
    public static func forward(
        batch: Int, heads: Int, lq: Int, lk: Int, m: Int, dv: Int,
        q: AttentionOperand, k: AttentionOperand, v: AttentionOperand, out: KernelizedOutput,
        normaliser: KernelNormaliser, causal: Bool = false, logDecay: AttentionOperand? = nil
    ) {
        forward(batch: batch, heads: heads, lq: lq, lk: lk, m: m, dv: dv, features: { b, h, start, count, query, dst in
            let src = query ? q : k
            let base = src.pointer(b, h) + start * src.ld
            for r in 0..<count { (dst + r * m).update(from: base + r * src.ld, count: m) }
        }, v: v, out: out, normaliser: normaliser, causal: causal, logDecay: logDecay)
    }

    /// Non-causal, one chunk of r keys (φK_c r×m, V_c): S += φK_cᵀV_c, z += Σφk.
    static func accumulateKeys(r: Int, m: Int, dv: Int, kc: UnsafePointer<Float>, vc: UnsafePointer<Float>, ldv: Int,
                               s: UnsafeMutablePointer<Float>, z: UnsafeMutablePointer<Float>) {
        // s (m×dv) += φK_cᵀ (m×r) · V_c (r×dv)
        BLAS.gemm(transA: true, m: m, n: dv, k: r, a: kc, lda: m, b: vc, ldb: ldv, beta: 1, c: s, ldc: dv)
        for j in 0..<r { let row = kc + j * m; for c in 0..<m { z[c] += row[c] } }
    }

    /// Non-causal, one chunk of r queries: out_c = φQ_c S / normaliser(φQ_c·z).
    static func readQueries(r: Int, m: Int, dv: Int, qc: UnsafePointer<Float>, oc: UnsafeMutablePointer<Float>, ldo: Int,
                            normaliser: KernelNormaliser, s: UnsafePointer<Float>, z: UnsafePointer<Float>) {
        // out_c (r×dv) = φQ_c (r×m) · s (m×dv)
        BLAS.gemm(m: r, n: dv, k: m, a: qc, lda: m, b: s, ldb: dv, c: oc, ldc: ldo)
        if normaliser == .none { return }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: r) { dots in
            // dots (r) = φQ_c z: one GEMV, not r scalar (strict-order) dot loops.
            BLAS.gemm(m: r, n: 1, k: m, a: qc, lda: m, b: z, ldb: 1, c: dots.baseAddress!, ldc: 1)
            for i in 0..<r {
                let qi = qc + i * m
                let inv = 1 / normaliser.divisor(dot: dots[i], qSum: fa_sum(qi, m))
                let oi = oc + i * ldo
                for c in 0..<dv { oi[c] *= inv }
            }
        }
    }

    /// Causal, one chunk of r positions from c0: the intra-chunk lower-triangular part by a
    /// T×T GEMM, everything before through the state, then the state update. `work` holds
    /// t·t + t·m + t·dv + 3t floats.
    static func causalChunk(c0: Int, r: Int, m: Int, dv: Int, t: Int, qc: UnsafePointer<Float>, kc: UnsafePointer<Float>,
                            vc: UnsafePointer<Float>, ldv: Int, oc: UnsafeMutablePointer<Float>, ldo: Int,
                            normaliser: KernelNormaliser, logDecay: (UnsafePointer<Float>, Int)?,
                            s: UnsafeMutablePointer<Float>, z: UnsafeMutablePointer<Float>, work: UnsafeMutablePointer<Float>) {
        let a = work, kw = a + t * t, tmp = kw + t * m, den = tmp + t * dv, cum = den + t, qz = cum + t
        let (ldq, ldk) = (m, m)
        // a (r×r) = φQ_c φK_cᵀ, then keep j ≤ i (with the decay Π_{j<t≤i} g_t).
        BLAS.gemm(transB: true, m: r, n: r, k: m, a: qc, lda: ldq, b: kc, ldb: ldk, c: a, ldc: r)
        if let (lg, stride) = logDecay {
            var acc: Float = 0
            for i in 0..<r { acc += lg[(c0 + i) * stride]; cum[i] = acc }
        }
        for i in 0..<r {
            let row = a + i * r
            if i + 1 < r { (row + i + 1).update(repeating: 0, count: r - i - 1) }
            if logDecay != nil { for j in 0...i { row[j] *= Foundation.exp(cum[i] - cum[j]) } }
            var sum: Float = 0
            for j in 0...i { sum += row[j] }
            den[i] = sum
        }
        // out_c (r×dv) = a V_c
        BLAS.gemm(m: r, n: dv, k: r, a: a, lda: r, b: vc, ldb: ldv, c: oc, ldc: ldo)
        if c0 > 0 {
            // Everything before the chunk, through the state: φQ_c S and φQ_c·z.
            BLAS.gemm(m: r, n: 1, k: m, a: qc, lda: ldq, b: z, ldb: 1, c: qz, ldc: 1)
            if logDecay == nil {
                BLAS.gemm(m: r, n: dv, k: m, a: qc, lda: ldq, b: s, ldb: dv, beta: 1, c: oc, ldc: ldo)
                for i in 0..<r { den[i] += qz[i] }
            } else {
                BLAS.gemm(m: r, n: dv, k: m, a: qc, lda: ldq, b: s, ldb: dv, c: tmp, ldc: dv)
                for i in 0..<r {
                    let g = Foundation.exp(cum[i]), oi = oc + i * ldo, ti = tmp + i * dv
                    for c in 0..<dv { oi[c] += g * ti[c] }
                    den[i] += g * qz[i]
                }
            }
        }
        if normaliser != .none {
            for i in 0..<r {
                let qi = qc + i * ldq
                let inv = 1 / normaliser.divisor(dot: den[i], qSum: {
                    var qs: Float = 0
                    for c in 0..<m { qs += qi[c] }
                    return qs
                }())
                let oi = oc + i * ldo
                for c in 0..<dv { oi[c] *= inv }
            }
        }
        // State update: S ← G·S + Σ_j w_j φk_j v_jᵀ, z ← G·z + Σ_j w_j φk_j, with
        // G = Π_chunk g and w_j = Π_{j<t≤end} g_t (1 without a decay).
        if logDecay == nil {
            BLAS.gemm(transA: true, m: m, n: dv, k: r, a: kc, lda: ldk, b: vc, ldb: ldv, beta: 1, c: s, ldc: dv)
            for j in 0..<r { let row = kc + j * ldk; for c in 0..<m { z[c] += row[c] } }
        } else {
            let last = cum[r - 1], g = Foundation.exp(last)
            for c in 0..<(m * dv) { s[c] *= g }
            for c in 0..<m { z[c] *= g }
            for j in 0..<r {
                let w = Foundation.exp(last - cum[j]), src = kc + j * ldk, dst = kw + j * m
                for c in 0..<m { dst[c] = w * src[c]; z[c] += dst[c] }
            }
            BLAS.gemm(transA: true, m: m, n: dv, k: r, a: kw, lda: m, b: vc, ldb: ldv, beta: 1, c: s, ldc: dv)
        }
    }

    /// The implicit weights query φq gives keys 0..<visible (later keys get 0): row i of the
    /// kernelised attention matrix, φq·φk_j (· Π_{j<t≤i} g_t with a decay) / normaliser, in
    /// O(lk·m) — the output row is exactly Σ_j w_j v_j. `logDecay` (stride `decayStride`)
    /// is indexed by position, and the query sits at position `visible − 1`.
    public static func weights(query: UnsafePointer<Float>, keys: UnsafePointer<Float>, ldk: Int, lk: Int, m: Int,
                               normaliser: KernelNormaliser, visible: Int? = nil,
                               logDecay: UnsafePointer<Float>? = nil, decayStride: Int = 1) -> [Float] {
        var w = [Float](repeating: 0, count: lk)
        let n = min(visible ?? lk, lk)
        if n == 0 { return w }
        w.withUnsafeMutableBufferPointer { wp in
            // w (1×n) = φq (1×m) · φK (n×m)ᵀ
            BLAS.gemm(transB: true, m: 1, n: n, k: m, a: query, lda: m, b: keys, ldb: ldk, c: wp.baseAddress!, ldc: n)
            if let lg = logDecay {
                var acc: Float = 0                       // Σ_{j<t≤i} log g_t, from j = i down
                for j in stride(from: n - 1, through: 0, by: -1) {
                    wp[j] *= Foundation.exp(acc)
                    acc += lg[j * decayStride]
                }
            }
            var dot: Float = 0, qs: Float = 0
            for j in 0..<n { dot += wp[j] }
            for c in 0..<m { qs += query[c] }
            let inv = 1 / normaliser.divisor(dot: dot, qSum: qs)
            for j in 0..<n { wp[j] *= inv }
        }
        return w
    }
}
