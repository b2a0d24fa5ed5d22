// Random Feature Attention.
// Peng, Pappas, Yogatama, Schwartz, Smith, Kong, ICLR 2021. https://arxiv.org/abs/2103.02143
// No official code exists: the reference is Tools/reference/random_feature.py, written from the
// paper's §2–3 (random Fourier features, learned σ, the gated recurrence).

import Foundation
import TensorCore

/// RFA: softmax attention approximated by random Fourier features of unit-norm queries and
/// keys, optionally gated (gated RFA: a learned per-head forget gate gives recency bias).
///
/// - Input N×L×embed_dim tokens, output N×L×embed_dim (`out_proj` included, no residual).
/// - Per head: q, k ℓ2-normalised, φ(x) = D^-½ [sin(Wx), cos(Wx)] with W = random_matrices ∘ σ
///   (w_i = σ ∘ w̃_i); `feature_map=arccos`: φ(x) = D^-½ ReLU(Wx).
/// - RFA: out_t = φ(q_t)ᵀΣ_j φ(k_j)v_jᵀ / (φ(q_t)·Σ_j φ(k_j)) (j ≤ t when causal).
///   Gated (`gate`, causal): g_t = sigmoid(gate_proj(x_t)) per head,
///   S_t = g_t S_{t−1} + (1 − g_t) φ(k_t)v_tᵀ, z_t likewise, out_t = φ(q_t)ᵀS_t / φ(q_t)·z_t —
///   computed by the kernelised core's chunked prefix sums with a per-position log decay
///   (log g_t) and keys weighted by (1 − g_t): equal to the recurrence, never N×N.
/// - Map (per-query): the effective weights the recurrence gives,
///   a_ij = φ(q_i)·φ(k_j)·(1 − g_j)·Π_{j<t≤i} g_t / den_i (without the gate: φ(q_i)·φ(k_j)/den_i),
///   mean over heads unless a head is chosen, in O(L·D). Sin/cos features make single weights
///   possibly negative: an estimate of a softmax row, decayed towards recent positions.
/// - Cost O(L·D·d) time, O(D·d) state per head.
///
/// Choices the paper leaves open (documented, shared with the reference script): the
/// denominator guard +2·eps where |den| ≤ eps (eps 1e-6); σ initialised to ones; one gate per
/// head; the random matrices drawn once (the paper redraws them per training batch and fixes them
/// for evaluation).
///
/// Keys: `q_proj`, `k_proj`, `v_proj`, `out_proj` (`.weight`, `.bias`), `gate_proj.*` (with
/// gate), `sigma` (num_heads × head_dim), optional buffer `random_matrices`
/// (num_heads × num_features × head_dim, seeded N(0, 1) otherwise). Untrained, k_proj = q_proj.
public final class RandomFeatureAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "random-feature", title: "Random Feature Attention (gated RFA)", arxiv: "2103.02143", year: 2021,
        complexity: "O(N D)", complexityExponent: 1, kind: .sequence, causal: true,
        reference: "Tools/reference/random_feature.py RandomFeatureAttention (written from the paper; no official code)",
        mapKind: .perQuery,
        mapDescription: "effective weights of the (gated) recurrence: phi(q_i)·phi(k_j)·(1-g_j)·prod_{j<t≤i} g_t / den_i over j ≤ i, mean over heads unless a head is chosen",
        notes: ["q and k are l2-normalised per head; phi = D^-1/2 [sin(Wx), cos(Wx)], W = random_matrices ∘ sigma",
                "gated RFA runs as decayed chunked prefix sums (equal to the recurrence)",
                "denominator guard +2·eps where |den| <= eps (not in the paper)",
                "untrained: PyTorch-default random weights with k_proj = q_proj, sigma = 1; the untrained gate is about 0.5, which halves the past at every position, so the gated map sits on the last few positions (--set gate=false --set causal=false shows the kernel's similarity)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("embed_dim", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("num_heads", .int(1...1024), default: .int(4), "number of heads"),
        ConfigKey("num_features", .int(1...65536), default: .int(64), "random features D (2D sin/cos features)"),
        ConfigKey("causal", .bool, default: .bool(true), "causal (decoder) attention"),
        ConfigKey("gate", .bool, default: .bool(true), "gated RFA (needs causal)"),
        ConfigKey("feature_map", .choice(["sincos", "arccos"]), default: .string("sincos"), "random Fourier or arc-cosine features"),
        ConfigKey("eps", .float(0...1), default: .float(1e-6), "denominator guard"),
    ]

    public let config: Config
    let embedDim: Int, numHeads: Int, headDim: Int, numFeatures: Int, causal: Bool, gated: Bool, arccos: Bool, eps: Float
    let qProj: Linear, kProj: Linear, vProj: Linear, outProj: Linear, gateProj: Linear?
    let sigma: Tensor            // H, d
    let randomMatrices: Tensor   // H, D, d

    public var expectedInput: String { "N×L×\(embedDim)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×C", found: inputShape)
        }
        try config.resolveChannels("embed_dim", from: inputShape[2])
        embedDim = config.int("embed_dim")
        numHeads = config.int("num_heads")
        guard embedDim % numHeads == 0 else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "embed_dim=\(embedDim) is not divisible by num_heads=\(numHeads)")
        }
        headDim = embedDim / numHeads
        numFeatures = config.int("num_features")
        causal = config.bool("causal")
        gated = config.bool("gate")
        guard causal || !gated else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "gate=true needs causal=true (the gate is a recurrence)")
        }
        arccos = config.string("feature_map") == "arccos"
        eps = Float(config.float("eps"))
        self.config = config
        let c = embedDim
        qProj = Linear(p.scoped("q_proj"), inFeatures: c, outFeatures: c)
        var k = Linear(p.scoped("k_proj"), inFeatures: c, outFeatures: c)
        if !p.isLoading {
            k.weight = qProj.weight                      // similarity initialisation
            k.bias = qProj.bias
        }
        kProj = k
        vProj = Linear(p.scoped("v_proj"), inFeatures: c, outFeatures: c)
        outProj = Linear(p.scoped("out_proj"), inFeatures: c, outFeatures: c)
        gateProj = gated ? Linear(p.scoped("gate_proj"), inFeatures: c, outFeatures: numHeads) : nil
        sigma = p.parameter("sigma", shape: [numHeads, headDim], initializer: .ones)
        let shape = [numHeads, numFeatures, headDim]
        randomMatrices = p.optionalBuffer("random_matrices", shape: shape)
            ?? p.withGenerator { Tensor.randomNormal(shape, generator: &$0) }
    }

    /// Runs `body` with the feature producer over the projected queries and keys (N×L×C,
    /// read in place per head; keys weighted by 1 − g when gated), the values N×L×C, the
    /// feature count per head and log g (N×H×L) when gated.
    func withFeatures<R>(_ x: Tensor, _ body: (@escaping KernelFeatureFill, Tensor, Int, Tensor?) -> R) throws -> R {
        let v = try vProj(x)                                                // N, L, C
        let (l, d, c, hs, dd, arccos) = (x.shape[1], headDim, embedDim, numHeads, numFeatures, arccos)
        let m = arccos ? dd : 2 * dd
        var logDecay: Tensor?, keep: Tensor?
        if let gateProj {
            let z = try gateProj(x)                                         // N, L, H: gate logits
            // log g = log sigmoid(z) = −softplus(−z) (N×H×L for the kernel); 1 − g = sigmoid(−z).
            logDecay = z.permuted([0, 2, 1]).map { $0 >= 0 ? -Foundation.log1p(Foundation.exp(-$0)) : $0 - Foundation.log1p(Foundation.exp($0)) }
            keep = z.map { 1 / (1 + Foundation.exp($0)) }                   // N, L, H
        }
        let keepT = keep ?? Tensor(zeros: [1]), gated = keep != nil
        return x.withUnsafeBufferPointer { xp in
            qProj.withWeightPointers { wq, bq in
                kProj.withWeightPointers { wk, bk in
                    sigma.withUnsafeBufferPointer { sp in
                        randomMatrices.withUnsafeBufferPointer { wp in
                            keepT.withUnsafeBufferPointer { gp in
                                body({ b, h, start, count, query, dst in
                                    // One head's q or k rows, projected inside the chunk (count×d).
                                    var xs = [Float](repeating: 0, count: count * d), u = [Float](repeating: 0, count: count * dd)
                                    KernelizedAttention.projectHead(xp.baseAddress! + (b * l + start) * c, ldx: c, count: count,
                                                                    channels: c, weight: query ? wq : wk, bias: query ? bq : bk,
                                                                    head: h, width: d, dst: &xs)
                                    let scale = 1 / Float(dd).squareRoot(), s = sp.baseAddress! + h * d
                                    for r in 0..<count {                // ℓ2-normalise, then σ_h
                                        var sq: Float = 0
                                        for j in 0..<d { sq += xs[r * d + j] * xs[r * d + j] }
                                        let inv = 1 / sq.squareRoot()
                                        for j in 0..<d { xs[r * d + j] *= inv * s[j] }
                                    }
                                    // u (count×D) = X (count×d) · W̃_hᵀ (d×D)
                                    BLAS.gemm(transB: true, m: count, n: dd, k: d, a: xs, lda: d, b: wp.baseAddress! + h * dd * d,
                                              ldb: d, c: &u, ldc: dd)
                                    for r in 0..<count {
                                        let w = !query && gated ? gp[(b * l + start + r) * hs + h] : 1
                                        let o = dst + r * m
                                        for j in 0..<dd {
                                            let uj = u[r * dd + j]
                                            if arccos { o[j] = max(uj, 0) * scale * w } else {
                                                o[j] = Foundation.sin(uj) * scale * w
                                                o[dd + j] = Foundation.cos(uj) * scale * w
                                            }
                                        }
                                    }
                                }, v, m, logDecay)
                            }
                        }
                    }
                }
            }
        }
    }

    var normaliser: KernelNormaliser { .guarded(eps: eps) }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try KernelizedAttention.checkTokens(x, channels: embedDim, module: Self.info.id)
        let y = try withFeatures(x) { phi, v, m, lg in
            KernelizedAttention.run(batch: x.shape[0], heads: numHeads, length: x.shape[1], m: m, v: v,
                                    normaliser: normaliser, causal: causal, logDecay: lg, features: phi)   // N, L, C
        }
        return try outProj(y)
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try KernelizedAttention.checkTokens(x, channels: embedDim, module: Self.info.id)
        let i = try KernelizedAttention.checkQuery(query, length: x.shape[1], heads: numHeads, module: Self.info.id)
        return try withFeatures(x.batchItem(0)) { phi, _, m, lg in
            KernelizedAttention.headMap(heads: numHeads, length: x.shape[1], head: query.head,
                                        label: gated ? "gated effective weights" : "implicit weights") { h in
                KernelizedAttention.weights(features: phi, batch: 0, head: h, heads: numHeads, query: i, length: x.shape[1],
                                            m: m, normaliser: normaliser, causal: causal, logDecay: lg)
            }
        }
    }
}
