// Nyströmformer: A Nyström-Based Algorithm for Approximating Self-Attention.
// Xiong, Zeng, Chakraborty, Tan, Fung, Li, Singh, AAAI 2021. https://arxiv.org/abs/2102.03902
// Reference matched: Hugging Face transformers 5.23.0 `NystromformerSelfAttention`
// (models/nystromformer/modeling_nystromformer.py), read in full; it ports the authors'
// mlpen/Nystromformer `code/attention_nystrom.py`. Not matched: pip nystrom-attention
// (lucidrains: other pinv start, q scaled by 1/√d, front padding, residual conv by default).

import CKernels
import Foundation
import TensorCore

/// Nyström self-attention: m landmarks (means of contiguous segments of L/m queries and keys)
/// stand in for the L×L softmax matrix, approximated as K1·pinv(K2)·K3 with
/// K1 = softmax(q k̃ᵀ) (L×m), K2 = softmax(q̃ k̃ᵀ) (m×m), K3 = softmax(q̃ kᵀ) (m×L).
///
/// Matches `NystromformerSelfAttention(NystromformerConfig(hidden_size, num_attention_heads,
/// num_landmarks, segment_means_seq_len, conv_kernel_size, inv_coeff_init_option))` in eval mode:
///   q, k, v = x Wᵀ + b (heads as channel slices), q and k divided by dh^¼ each;
///   out = (K1 · Z) · (K3 · v) + depthwise_conv_L(v), Z ≈ pinv(K2);
/// no output projection (HF's `NystromformerSelfOutput` is a separate layer).
///
/// - Input N×L×hidden_size (L = segment_means_seq_len), output N×L×hidden_size.
/// - Map (per-query): row i of the implicit L×L matrix K1·Z·K3 (mean over heads unless one is
///   chosen), computed as (K1[i]·Z)·K3 in O(m·L·dh) without any L×L matrix. The conv residual
///   is not part of the map. With num_landmarks = L it is the exact softmax row.
/// - Cost: O(L·m·dh + m³) per head; m is fixed, so the exponent in L is 1. The two products
///   K3·v and K1·(Z·K3v) are softmax attentions of m landmark queries over L keys and of L
///   queries over m landmark keys: both run through `DenseAttention`.
///
/// Quirks of the reference:
/// - Z comes from 6 iterations Z ← ¼Z(13I − K2Z(15I − K2Z(7I − K2Z))) from Z0 = K2ᵀ/c, where c is
///   the largest column sum of K2 over the **whole batch and all heads** ("original"): a batch
///   item's output depends on the other items (reproduced here, maps included).
/// - `inv_coeff_init_option=True` crashes in HF (it reads `config["inv_init_coeff_option"]`);
///   here it gives the intended start, c per (batch item, head). No parity for it.
/// - num_landmarks = L falls back to exact softmax attention (conv residual still added).
/// - L must equal segment_means_seq_len and be divisible by num_landmarks (HF reshapes).
/// - The conv is a depthwise Conv2d (H→H, groups=H, kernel (K,1), padding K//2, no bias) over v,
///   the same filter for every channel of a head. HF 5.x validates conv_kernel_size as an int;
///   0 here stands for the `None` (no conv) that older configs and the model code accept. An even
///   kernel would change the length (HF then fails), so it is refused.
///
/// Defaults where HF's would not run on a feature map: num_attention_heads unset is 12 when
/// hidden_size allows it, else the largest divisor of hidden_size below 12; num_landmarks unset is
/// 64 when L allows it, else the largest divisor of L below 64. Untrained: PyTorch-default Linear
/// and Conv init, with key = query (similarity initialisation).
///
/// Keys: `query.weight`, `query.bias`, `key.*`, `value.*` (hidden×hidden, hidden),
/// `conv.weight` (H×1×K×1) when conv_kernel_size > 0.
public final class NystromformerAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "nystromformer", title: "Nystromformer: A Nystrom-Based Algorithm for Approximating Self-Attention",
        arxiv: "2102.03902", year: 2021, complexity: "O(N D)", complexityExponent: 1, kind: .sequence, causal: false,
        reference: "transformers.NystromformerSelfAttention (transformers 5.23.0, random weights from a config)",
        mapKind: .perQuery,
        mapDescription: "row i of the Nystrom approximation softmax(Q Kl^T) pinv(softmax(Ql Kl^T)) softmax(Ql K^T) over positions",
        notes: ["landmarks are means of contiguous segments of L/num_landmarks tokens; L must equal segment_means_seq_len",
                "pinv by 6 Newton-Schulz steps from K2^T / c, c = largest column sum over the whole batch and all heads (a batch item depends on the others)",
                "q and k are each divided by dim_head^(1/4); no output projection",
                "conv_kernel_size > 0 adds a depthwise conv over v along L (not part of the map); 0 means None",
                "num_landmarks = L gives exact softmax attention",
                "defaults when unset: 12 heads (else the largest divisor of hidden_size below 12), 64 landmarks (else the largest divisor of L below 64)",
                "untrained: PyTorch-default weights with key = query (similarity initialisation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("hidden_size", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("num_attention_heads", .int(1...4096), default: .none,
                  "heads (unset: 12, or the largest divisor of hidden_size below 12)"),
        ConfigKey("num_landmarks", .int(1...1 << 24), default: .none,
                  "landmarks m, a divisor of L (unset: 64, or the largest divisor of L below 64)"),
        ConfigKey("segment_means_seq_len", .int(1...1 << 24), default: .none, "sequence length L (taken from the input when unset)"),
        ConfigKey("conv_kernel_size", .int(0...4095), default: .int(65), "depthwise conv over v along L, odd (0: no conv, HF's None)"),
        ConfigKey("inv_coeff_init_option", .bool, default: .bool(false),
                  "pinv start K2^T / c with c per batch item and head (HF crashes on true; false: one c for all)"),
    ]

    public let config: Config
    let hidden: Int, heads: Int, dimHead: Int, seqLen: Int, landmarks: Int, kernel: Int
    let perProblemCoefficient: Bool
    let query: Linear, key: Linear, value: Linear
    let conv: Tensor?                   // H, 1, K, 1

    public var expectedInput: String { "N×\(seqLen)×\(hidden)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: id, expected: "N×L×C tokens", found: inputShape)
        }
        let l = inputShape[1]
        try config.resolveChannels("hidden_size", from: inputShape[2])
        hidden = config.int("hidden_size")
        if let s = config.optionalInt("segment_means_seq_len"), s != l {
            throw ConfigError.inconsistent(module: id,
                message: "segment_means_seq_len=\(s) but the input has L=\(l) tokens (they must be equal)")
        }
        config.setDerived("segment_means_seq_len", .int(l))
        seqLen = l
        if let h = config.optionalInt("num_attention_heads") {
            guard hidden % h == 0 else {
                throw ConfigError.inconsistent(module: id,
                    message: "hidden_size=\(hidden) is not a multiple of num_attention_heads=\(h)")
            }
            heads = h
        } else {
            heads = largestDivisor(of: hidden, atMost: 12)
            config.setDerived("num_attention_heads", .int(heads))
        }
        dimHead = hidden / heads
        if let m = config.optionalInt("num_landmarks") {
            guard m <= l, l % m == 0 else {
                throw ConfigError.inconsistent(module: id,
                    message: "num_landmarks=\(m) must divide L=\(l) (landmarks are means of L/num_landmarks contiguous tokens)")
            }
            landmarks = m
        } else {
            landmarks = largestDivisor(of: l, atMost: 64)
            config.setDerived("num_landmarks", .int(landmarks))
        }
        kernel = config.int("conv_kernel_size")
        guard kernel == 0 || kernel % 2 == 1 else {
            throw ConfigError.inconsistent(module: id,
                message: "conv_kernel_size=\(kernel) must be odd (padding K//2 keeps the length only for odd K), or 0 for no conv")
        }
        perProblemCoefficient = config.bool("inv_coeff_init_option")
        self.config = config

        query = Linear(p.scoped("query"), inFeatures: hidden, outFeatures: hidden)
        var key = Linear(p.scoped("key"), inFeatures: hidden, outFeatures: hidden)
        if !p.isLoading {
            // Similarity initialisation: keys start as the queries.
            key.weight = query.weight
            key.bias = query.bias
        }
        self.key = key
        value = Linear(p.scoped("value"), inFeatures: hidden, outFeatures: hidden)
        conv = kernel > 0
            ? p.parameter("conv.weight", shape: [heads, 1, kernel, 1], initializer: .pytorchDefault(fanIn: kernel))
            : nil
    }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] == seqLen, x.shape[2] == hidden else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
    }

    var exact: Bool { landmarks == seqLen }

    /// Everything up to the pseudo-inverse: scaled q, k (N×L×hidden), v, landmark means
    /// q̃, k̃ (N×m×hidden) and Z ≈ pinv(K2) (N×H×m×m). Landmarks and Z are empty when exact.
    struct Prepared {
        let q: Tensor, k: Tensor, v: Tensor
        let qLand: Tensor, kLand: Tensor, z: Tensor
    }

    func prepare(_ x: Tensor) throws -> Prepared {
        let n = x.shape[0], l = seqLen, m = landmarks
        let root = Float(Double(dimHead).squareRoot().squareRoot())
        let q = try query(x) / root                                    // N, L, hidden
        let k = try key(x) / root                                      // N, L, hidden
        let v = try value(x)                                           // N, L, hidden
        if exact {
            return Prepared(q: q, k: k, v: v, qLand: Tensor(zeros: [0]), kLand: Tensor(zeros: [0]), z: Tensor(zeros: [0]))
        }
        let qLand = q.reshaped([n, m, l / m, hidden]).mean(axis: 2)    // N, m, hidden
        let kLand = k.reshaped([n, m, l / m, hidden]).mean(axis: 2)    // N, m, hidden
        let z = pseudoInverse(kernel2(qLand, kLand))                   // N, H, m, m
        return Prepared(q: q, k: k, v: v, qLand: qLand, kLand: kLand, z: z)
    }

    /// K2 = softmax(q̃_h k̃_hᵀ) for every batch item and head: N×H×m×m.
    func kernel2(_ qLand: Tensor, _ kLand: Tensor) -> Tensor {
        let n = qLand.shape[0], m = landmarks, (h, dh) = (heads, dimHead)
        var k2 = Tensor(uninitialized: [n, h, m, m])
        qLand.withUnsafeBufferPointer { qp in
            kLand.withUnsafeBufferPointer { kp in
                k2.withUnsafeMutableBufferPointer { cp in
                    for b in 0..<n {
                        for hi in 0..<h {
                            let off = b * m * hidden + hi * dh, c = cp.baseAddress! + (b * h + hi) * m * m
                            // c (m×m) = q̃ (m×dh) · k̃ (m×dh)ᵀ
                            BLAS.gemm(transB: true, m: m, n: m, k: dh, a: qp.baseAddress! + off, lda: hidden,
                                      b: kp.baseAddress! + off, ldb: hidden, c: c, ldc: m)
                            fa_softmax_rows(c, m, m, m, 1)
                        }
                    }
                }
            }
        }
        return k2
    }

    /// HF's `iterative_inv` on every N×H problem: Z0 = K2ᵀ/c, then 6 steps
    /// Z ← ¼Z(13I − K2Z(15I − K2Z(7I − K2Z))).
    func pseudoInverse(_ k2: Tensor) -> Tensor {
        let problems = k2.shape[0] * k2.shape[1], m = landmarks
        // Column sums of each K2; c is their maximum over everything, or per problem.
        var colMax = [Float](repeating: -.infinity, count: problems)
        k2.withUnsafeBufferPointer { kp in
            for p in 0..<problems {
                var sums = [Float](repeating: 0, count: m)
                for r in 0..<m { for j in 0..<m { sums[j] += kp[p * m * m + r * m + j] } }
                colMax[p] = sums.max()!
            }
        }
        let global = colMax.max()!
        var z = Tensor(uninitialized: k2.shape)
        k2.withUnsafeBufferPointer { kp in
            z.withUnsafeMutableBufferPointer { zp in
                Threads.parallelFor(problems) { range in
                    var scratch = [Float](repeating: 0, count: 4 * m * m)
                    scratch.withUnsafeMutableBufferPointer { sp in
                        let kz = sp.baseAddress!, t = kz + m * m, u = t + m * m, zNew = u + m * m
                        for p in range {
                            let key = kp.baseAddress! + p * m * m, zz = zp.baseAddress! + p * m * m
                            let inv = 1 / (perProblemCoefficient ? colMax[p] : global)
                            for r in 0..<m { for j in 0..<m { zz[r * m + j] = inv * key[j * m + r] } }
                            for _ in 0..<6 {
                                BLAS.gemm(m: m, n: m, k: m, a: key, lda: m, b: zz, ldb: m, c: kz, ldc: m)   // K2 Z
                                subtractFromScaledIdentity(7, kz, into: t, m)                            // 7I − K2Z
                                BLAS.gemm(m: m, n: m, k: m, a: kz, lda: m, b: t, ldb: m, c: u, ldc: m)
                                subtractFromScaledIdentity(15, u, into: t, m)                           // 15I − K2Z(…)
                                BLAS.gemm(m: m, n: m, k: m, a: kz, lda: m, b: t, ldb: m, c: u, ldc: m)
                                subtractFromScaledIdentity(13, u, into: t, m)                           // 13I − K2Z(…)
                                BLAS.gemm(m: m, n: m, k: m, alpha: 0.25, a: zz, lda: m, b: t, ldb: m, c: zNew, ldc: m)
                                zz.update(from: zNew, count: m * m)
                            }
                        }
                    }
                }
            }
        }
        return z
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        let s = try prepare(x)
        var out: Tensor                                                // N, L, hidden
        if exact {
            out = DenseAttention.multiHead(q: s.q, k: s.k, v: s.v, heads: heads, scale: 1)
        } else {
            // K3·v: the m landmark queries attend over all L keys.
            let landV = DenseAttention.multiHead(q: s.qLand, k: s.k, v: s.v, heads: heads, scale: 1)  // N, m, hidden
            let w = applyZ(s.z, landV)                                                               // N, m, hidden
            // K1·(Z·K3v): every query attends over the m landmark keys with values Z·K3v.
            out = DenseAttention.multiHead(q: s.q, k: s.kLand, v: w, heads: heads, scale: 1)
        }
        if let conv { addDepthwiseConv(conv, s.v, to: &out) }
        return out
    }

    /// Z_bh (m×m) · y_bh (m×dh) per batch item and head; heads are channel slices of y.
    func applyZ(_ z: Tensor, _ y: Tensor) -> Tensor {
        let n = y.shape[0], m = landmarks, (h, dh) = (heads, dimHead)
        var out = Tensor(uninitialized: y.shape)                       // N, m, hidden
        z.withUnsafeBufferPointer { zp in
            y.withUnsafeBufferPointer { yp in
                out.withUnsafeMutableBufferPointer { op in
                    for b in 0..<n {
                        for hi in 0..<h {
                            let off = b * m * hidden + hi * dh
                            BLAS.gemm(m: m, n: dh, k: m, a: zp.baseAddress! + (b * h + hi) * m * m, lda: m,
                                      b: yp.baseAddress! + off, ldb: hidden, c: op.baseAddress! + off, ldc: hidden)
                        }
                    }
                }
            }
        }
        return out
    }

    /// out[b, i, h·dh + c] += Σ_t w[h, t] · v[b, i + t − K/2, h·dh + c] (zero padding): the
    /// reference's Conv2d(H, H, (K, 1), padding=(K//2, 0), groups=H, bias=False) on v (B, H, L, dh).
    func addDepthwiseConv(_ w: Tensor, _ v: Tensor, to out: inout Tensor) {
        let n = v.shape[0], l = seqLen, kk = kernel, pad = kernel / 2, dh = dimHead, hid = hidden
        // One coefficient row per tap: cw[t][h·dh + c] = w[h, t], so every channel of a row
        // takes its head's tap in one vector step (`fa_rowconv_add`).
        var cw = [Float](repeating: 0, count: kk * hid)
        w.withUnsafeBufferPointer { wp in
            for t in 0..<kk { for hi in 0..<heads { for c in 0..<dh { cw[t * hid + hi * dh + c] = wp[hi * kk + t] } } }
        }
        cw.withUnsafeBufferPointer { cp in
            v.withUnsafeBufferPointer { vp in
                out.withUnsafeMutableBufferPointer { op in
                    Threads.parallelFor(n * l, minChunk: 16) { range in
                        var item = range.lowerBound
                        while item < range.upperBound {
                            let b = item / l, r0 = item % l, r1 = Swift.min(l, r0 + range.upperBound - item)
                            fa_rowconv_add(vp.baseAddress! + b * l * hid, cp.baseAddress!, op.baseAddress! + b * l * hid,
                                           l, hid, hid, kk, pad, r0, r1)
                            item += r1 - r0
                        }
                    }
                }
            }
        }
    }

    public func attentionMap(_ x: Tensor, query q: MapQuery) throws -> AttentionMap {
        try check(x)
        guard q.row == 0, (0..<seqLen).contains(q.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(q.column) is outside 0..<\(seqLen)")
        }
        if let h = q.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        // The whole batch: Z's start coefficient is shared by every item. Item 0 is mapped.
        let s = try prepare(x)
        let i = q.column, l = seqLen, m = landmarks, dh = dimHead
        let chosen = q.head.map { [$0] } ?? Array(0..<heads)
        var row = [Float](repeating: 0, count: l)
        s.q.withUnsafeBufferPointer { qp in
            s.k.withUnsafeBufferPointer { kp in
                for h in chosen {
                    let qi = qp.baseAddress! + i * hidden + h * dh, keys = kp.baseAddress! + h * dh
                    if exact {
                        let w = DenseAttention.weights(query: qi, keys: keys, ldk: hidden, lk: l, d: dh, scale: 1)
                        for j in 0..<l { row[j] += w[j] }
                        continue
                    }
                    // r (1×m) = K1[i] · Z, then row += Σ_s r[s] · K3[s, :], one landmark row at a time.
                    let k1 = s.kLand.withUnsafeBufferPointer { lp in
                        DenseAttention.weights(query: qi, keys: lp.baseAddress! + h * dh, ldk: hidden, lk: m, d: dh, scale: 1)
                    }
                    var r = [Float](repeating: 0, count: m)
                    s.z.withUnsafeBufferPointer { zp in
                        for a in 0..<m { for c in 0..<m { r[c] += k1[a] * zp[h * m * m + a * m + c] } }
                    }
                    s.qLand.withUnsafeBufferPointer { lp in
                        for a in 0..<m {
                            let k3 = DenseAttention.weights(query: lp.baseAddress! + a * hidden + h * dh, keys: keys,
                                                            ldk: hidden, lk: l, d: dh, scale: 1)
                            for j in 0..<l { row[j] += r[a] * k3[j] }
                        }
                    }
                }
            }
        }
        let scale = 1 / Float(chosen.count)
        let label = q.head.map { "head \($0): Nystrom row" } ?? (heads == 1 ? "Nystrom row" : "Nystrom row (mean of \(heads) heads)")
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: row.map { $0 * scale }),
                            labels: [exact ? label.replacingOccurrences(of: "Nystrom", with: "softmax") : label])
    }
}

/// t = s·I − a for m×m matrices.
private func subtractFromScaledIdentity(_ s: Float, _ a: UnsafePointer<Float>, into t: UnsafeMutablePointer<Float>, _ m: Int) {
    for r in 0..<m {
        for c in 0..<m { t[r * m + c] = (r == c ? s : 0) - a[r * m + c] }
    }
}

/// The largest divisor of n that is ≤ limit (1 at least).
private func largestDivisor(of n: Int, atMost limit: Int) -> Int {
    for d in stride(from: min(n, limit), through: 1, by: -1) where n % d == 0 { return d }
    return 1
}
