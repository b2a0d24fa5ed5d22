// Sub-Linear Memory: How to Make Performers SLiM.
// Likhosherstov, Choromanski, Davis, Song, Weller, 2020. https://arxiv.org/abs/2012.11346
// Reference matched: google-research performer/models/slim_performer/pytorch
// slim_performer_model.py `MultiHeadAttention.full_forward` + numerator_and_denominator.py
// (commit 0c1bbe5), read in full.

import CKernels
import Foundation
import TensorCore

/// SLiM Performer attention: always-causal kernelised attention by prefix sums, the state
/// S = Σφ(k)vᵀ carried chunk to chunk, so memory does not grow with the length.
///
/// - Input N×L×hidden_dim tokens, output N×L×hidden_dim: the heads' outputs concatenated,
///   **no output projection** (the reference has none).
/// - Features (`feature_type`): relu, elu+1, sqr, abs elementwise on q and k; favor+ and
///   favor+_K: φ(x) = exp(x′R_h − ‖x′‖²/2), x′ = d^-¼ x, R_h = K stacked d×d orthogonal
///   matrices × √d per head — no stabiliser and no m^-½ (unlike performer-pytorch).
/// - out_i = Σ_{j≤i} φ(q_i)·φ(k_j) v_j / (Σ_{j≤i} φ(q_i)·φ(k_j) + 1e-16).
/// - Map (per-query): the implicit causal weights φ(q_i)·φ(k_j) / (Σ_{j'≤i} … + 1e-16) over
///   j ≤ i (0 after the query), mean over heads unless a head is chosen, in O(L·m).
/// - Cost O(L·m·d) time; memory O(T·m + m·d) per head for chunk T (the kernel's chunked prefix
///   sums — the paper's point; `compute_type` ps / iter / parallel_ps all compute these sums).
///
/// Quirks of the reference:
/// - The random features `rfs` (n_heads × head_dim × M) are drawn by `sample_rfs` on every
///   `full_forward` call, not stored: here they are drawn once from the module's seed, or loaded
///   from the optional buffer `rfs` (how the fixtures inject the reference's draw).
/// - The orthogonal matrices come from `_sample_orth_matrix`: I − V S⁻¹ Vᵀ for the
///   column-normalised lower-triangular Gaussian V and S = triu(VᵀV) − ½I (compact-WY
///   Householder product), reproduced here.
///
/// Keys: `q_map`, `k_map`, `v_map` (`.weight`, `.bias`), optional buffer `rfs`. Untrained,
/// `k_map` = `q_map` (similarity initialisation).
public final class SlimPerformerAttention: AttentionModule, KernelFeatureModule {
    public static let info = ModuleInfo(
        id: "slim-performer", title: "Sub-Linear Memory: How to Make Performers SLiM", arxiv: "2012.11346", year: 2020,
        complexity: "O(N m D)", complexityExponent: 1, kind: .sequence, causal: true,
        reference: "google-research performer/models/slim_performer/pytorch MultiHeadAttention (commit 0c1bbe5)",
        mapKind: .perQuery,
        mapDescription: "implicit causal weights phi(q_i)·phi(k_j) / sum_{j'≤i} phi(q_i)·phi(k_j') over earlier positions (0 after the query), mean over heads unless a head is chosen",
        notes: ["always causal (prefix sums); no output projection",
                "favor+: exp(x'R - |x'|^2/2) with no stabiliser and no m^-1/2; denominator + 1e-16",
                "rfs are drawn per call in the reference: here once from the seed, or the optional buffer 'rfs'",
                "untrained: PyTorch-default random weights with k_map = q_map"])

    static let featureTypes = ["relu", "elu+1", "sqr", "abs", "favor+"] + (1...8).map { "favor+_\($0)" }

    public static let configSchema: [ConfigKey] = [
        ConfigKey("feature_type", .choice(featureTypes), default: .string("favor+"), "kernel features"),
        ConfigKey("n_heads", .int(1...1024), default: .int(2), "number of heads"),
        ConfigKey("hidden_dim", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("compute_type", .choice(["ps", "iter", "parallel_ps"]), default: .string("ps"),
                  "how the reference evaluates the prefix sums (same result; here always the chunked kernel)"),
    ]

    public let config: Config
    let hiddenDim: Int, nHeads: Int, headDim: Int, featureType: String
    let qMap: Linear, kMap: Linear, vMap: Linear
    /// n_heads × head_dim × M (favor+ only)
    let rfs: Tensor?

    public var expectedInput: String { "N×L×\(hiddenDim)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×C", found: inputShape)
        }
        try config.resolveChannels("hidden_dim", from: inputShape[2])
        hiddenDim = config.int("hidden_dim")
        nHeads = config.int("n_heads")
        guard hiddenDim % nHeads == 0 else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "hidden_dim=\(hiddenDim) is not divisible by n_heads=\(nHeads)")
        }
        headDim = hiddenDim / nHeads
        featureType = config.string("feature_type")
        self.config = config
        qMap = Linear(p.scoped("q_map"), inFeatures: hiddenDim, outFeatures: hiddenDim)
        var k = Linear(p.scoped("k_map"), inFeatures: hiddenDim, outFeatures: hiddenDim)
        if !p.isLoading {
            k.weight = qMap.weight                    // similarity initialisation
            k.bias = qMap.bias
        }
        kMap = k
        vMap = Linear(p.scoped("v_map"), inFeatures: hiddenDim, outFeatures: hiddenDim)
        if featureType.hasPrefix("favor+") {
            let factor = featureType == "favor+" ? 1 : Int(featureType.dropFirst(7))!
            let (h, d) = (nHeads, headDim)
            rfs = p.optionalBuffer("rfs", shape: [h, d, factor * d]) ?? p.withGenerator { g in
                Self.sampleRandomFeatures(heads: h, headDim: d, factor: factor, generator: &g)
            }
        } else {
            rfs = nil
        }
    }

    /// The reference's `sample_rfs`: per head, `factor` orthogonal d×d matrices side by side,
    /// times √d → heads × d × factor·d.
    static func sampleRandomFeatures(heads: Int, headDim d: Int, factor: Int, generator g: inout SeededGenerator) -> Tensor {
        let m = factor * d
        var out = [Float](repeating: 0, count: heads * d * m)
        for h in 0..<heads {
            for f in 0..<factor {
                let o = sampleOrthogonalMatrix(d, generator: &g)
                for r in 0..<d { for c in 0..<d { out[(h * d + r) * m + f * d + c] = Float(o[r * d + c] * Double(d).squareRoot()) } }
            }
        }
        return Tensor(shape: [heads, d, m], scalars: out)
    }

    /// `_sample_orth_matrix`: V = tril(Gaussian) with unit columns, S = triu(VᵀV) − ½I,
    /// Q = I − V S⁻¹ Vᵀ (a product of Householder reflections in compact-WY form), in Double.
    public static func sampleOrthogonalMatrix(_ d: Int, generator g: inout SeededGenerator) -> [Double] {
        var v = [Double](repeating: 0, count: d * d)
        for r in 0..<d { for c in 0..<d { let z = g.nextNormal(); if c <= r { v[r * d + c] = z } } }
        for c in 0..<d {
            var s = 0.0
            for r in 0..<d { s += v[r * d + c] * v[r * d + c] }
            let inv = 1 / s.squareRoot()
            for r in 0..<d { v[r * d + c] *= inv }
        }
        var s = [Double](repeating: 0, count: d * d)          // upper triangle of VᵀV − ½I
        for i in 0..<d {
            for j in i..<d {
                var acc = 0.0
                for r in 0..<d { acc += v[r * d + i] * v[r * d + j] }
                s[i * d + j] = acc - (i == j ? 0.5 : 0)
            }
        }
        // x = S⁻¹ Vᵀ by back substitution, column by column of Vᵀ.
        var x = [Double](repeating: 0, count: d * d)
        for col in 0..<d {
            for i in stride(from: d - 1, through: 0, by: -1) {
                var acc = v[col * d + i]                       // Vᵀ[i, col]
                for j in (i + 1)..<max(i + 1, d) { acc -= s[i * d + j] * x[j * d + col] }
                x[i * d + col] = acc / s[i * d + i]
            }
        }
        var q = [Double](repeating: 0, count: d * d)
        for r in 0..<d {
            for c in 0..<d {
                var acc = 0.0
                for k in 0..<d { acc += v[r * d + k] * x[k * d + c] }
                q[r * d + c] = (r == c ? 1 : 0) - acc
            }
        }
        return q
    }

    /// Runs `body` with the feature producer over the projected queries and keys
    /// (N×L×hidden, read in place per head), the values N×L×hidden and the feature count per head.
    func withFeatures<R>(_ x: Tensor, _ body: (@escaping KernelFeatureFill, Tensor, Int) -> R) throws -> R {
        let v = try vMap(x)                                                 // N, L, hidden
        let (l, d, c, type) = (x.shape[1], headDim, hiddenDim, featureType)
        let rfs = self.rfs ?? Tensor(zeros: [1])
        let m = self.rfs?.shape[2] ?? d
        return x.withUnsafeBufferPointer { xp in
            qMap.withWeightPointers { wq, bq in
                kMap.withWeightPointers { wk, bk in
                    rfs.withUnsafeBufferPointer { rp in
                        body({ b, h, start, count, query, dst in
                            // One head's q or k rows, projected inside the chunk (count×d).
                            var xr = [Float](repeating: 0, count: count * d)
                            KernelizedAttention.projectHead(xp.baseAddress! + (b * l + start) * c, ldx: c, count: count,
                                                            channels: c, weight: query ? wq : wk, bias: query ? bq : bk,
                                                            head: h, width: d, dst: &xr)
                            xr.withUnsafeBufferPointer { xb in
                                Self.features(type, xb.baseAddress!, count: count, d: d, rfs: rp.baseAddress! + h * d * m, m: m,
                                              dst: dst)
                            }
                        }, v, m)
                    }
                }
            }
        }
    }

    /// φ of `count` projected rows x (count×d) into dst (count×m): elementwise types, or favor+
    /// exp(d^-¼ x R_h − ‖d^-¼ x‖²/2) with R_h (d×m).
    static func features(_ type: String, _ x: UnsafePointer<Float>, count: Int, d: Int, rfs: UnsafePointer<Float>, m: Int,
                         dst: UnsafeMutablePointer<Float>) {
        if type.hasPrefix("favor+") {
            let dn = Foundation.pow(Float(d), -0.25)
            // u (count×M) = d^-¼ X (count×d) · R_h (d×M)
            BLAS.gemm(m: count, n: m, k: d, alpha: dn, a: x, lda: d, b: rfs, ldb: m, c: dst, ldc: m)
            for r in 0..<count {
                let xi = x + r * d, row = dst + r * m
                var sq: Float = 0
                for c in 0..<d { sq += xi[c] * xi[c] }
                let half = sq * dn * dn / 2
                for j in 0..<m { row[j] -= half }
                fa_exp(row, row, m)
            }
            return
        }
        let n = count * d
        switch type {
        case "relu": for j in 0..<n { dst[j] = max(x[j], 0) }
        case "elu+1": KernelizedAttention.eluPlusOne(x, dst, n)
        case "sqr": for j in 0..<n { dst[j] = x[j] * x[j] }
        default: for j in 0..<n { dst[j] = Swift.abs(x[j]) }
        }
    }

    static let normaliser = KernelNormaliser.denominator(eps: 1e-16)

    var kernelChannels: Int { hiddenDim }
    var kernelHeads: Int { nHeads }
    var kernelCausal: Bool { true }
    var normaliser: KernelNormaliser { Self.normaliser }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try kernelForward(x)
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try kernelMap(x, query: query, label: "causal implicit weights")
    }
}
