// Rethinking Attention with Performers (FAVOR+).
// Choromanski, Likhosherstov, Dohan, Song, Gane, Sarlos, Hawkins, Davis, Mohiuddin, Kaiser,
// Belanger, Colwell, Weller, ICLR 2021. https://arxiv.org/abs/2009.14794
// Reference matched: pip performer-pytorch 1.1.4 `SelfAttention` / `FastAttention` (a
// transcription of google-research performer/fast_attention/jax/fast_attention.py), read in full.

import CKernels
import Foundation
import TensorCore

/// Performer self-attention with FAVOR+ positive orthogonal random features.
///
/// - Input N×L×dim tokens, output N×L×dim (`to_out` included, no residual).
/// - φ(x) = m^-½ (exp(x′Wᵀ − ‖x′‖²/2 − stab) + 1e-4) with x′ = d^-¼ x and W the m×d
///   `projection_matrix` (orthogonal d×d blocks, rows scaled by χ_d norms); out = φ(Q)(φ(K)ᵀV)
///   / (φ(Q)·Σφ(K)) per head (kernelised core; causal by prefix sums).
/// - Map (per-query): the implicit weights φ(q_i)·φ(k_j) / Σ_j' φ(q_i)·φ(k_j') (j ≤ i when
///   causal; the causal normaliser includes the reference's 1e-6·Σφ(q_i)), for the chosen head
///   or the mean over heads, in O(L·m).
/// - Cost O(L·m·d) time; beyond the projections, O(T·m + m·d) memory per worker (features
///   are made chunk by chunk, never stored for the whole sequence; performer-pytorch stores
///   L×m per head).
///
/// Quirks of the reference (matched):
/// - The stabiliser `stab` is the max over features for each query, but for keys the max over
///   **all positions and features** of the (batch, head). With `causal` this lets the future
///   move the keys' common scale: the 1e-4 added after the exp does not scale with it, so
///   outputs at i depend very slightly on inputs after i (seq-b.md measured 1.2e-3). This port
///   reproduces that; it is not strictly causal.
/// - The non-causal denominator has no eps; the causal one is φ(q_i)·(Σ_{j≤i}φ(k_j) + 1e-6).
/// - nb_features defaults to int(dim_head · ln dim_head); the projection is drawn at
///   construction and never redrawn in eval (`feature_redraw_interval` acts in training only).
/// - `generalized_attention`: φ(x) = ReLU(x′Wᵀ) + 1e-3 (the default `kernel_fn`).
///   `no_projection`: softmax(q) over features, softmax(k) over positions (exp(k) when causal).
/// - `local_heads` > 0 (LocalAttention heads) is not supported.
///
/// Keys: `to_q.weight` (+`.bias` with qkv_bias), `to_k.*`, `to_v.*`, `to_out.weight`
/// (+`.bias` with attn_out_bias), and the buffer `fast_attention.projection_matrix` (m×dim_head),
/// which a checkpoint carries like PyTorch's state_dict; seeded, it is drawn from the module's
/// generator as the reference draws it (QR of Gaussian blocks). Untrained, `to_k` = `to_q`.
public final class PerformerAttention: AttentionModule, KernelFeatureModule {
    public static let info = ModuleInfo(
        id: "performer", title: "Rethinking Attention with Performers (FAVOR+)", arxiv: "2009.14794", year: 2021,
        complexity: "O(N m D)", complexityExponent: 1, kind: .sequence, causal: true,
        reference: "performer-pytorch 1.1.4 SelfAttention (FastAttention, softmax kernel)", mapKind: .perQuery,
        mapDescription: "implicit FAVOR+ weights phi(q_i)·phi(k_j) / sum_j' phi(q_i)·phi(k_j') with positive random features (j ≤ i when causal), mean over heads unless a head is chosen",
        notes: ["key stabiliser = max over all positions and features: with causal=true the future shifts the keys' scale slightly (the reference's non-strict causality, reproduced)",
                "non-causal denominator without eps; causal phi(q)·(cumsum phi(k) + 1e-6)",
                "projection_matrix is a buffer in the state_dict; seeded: orthogonal Gaussian blocks scaled by chi norms",
                "untrained: PyTorch-default random weights with to_k = to_q"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("causal", .bool, default: .bool(false), "prefix-sum causal attention"),
        ConfigKey("heads", .int(1...1024), default: .int(8), "number of heads"),
        ConfigKey("dim_head", .int(1...4096), default: .int(64), "width per head"),
        ConfigKey("local_heads", .int(0...0), default: .int(0), "LocalAttention heads (not supported: 0)"),
        ConfigKey("local_window_size", .int(1...65536), default: .int(256), "accepted; only used with local_heads"),
        ConfigKey("nb_features", .int(1...65536), default: .none, "random features m (default int(dim_head·ln dim_head))"),
        ConfigKey("feature_redraw_interval", .int(0...1_000_000_000), default: .int(1000), "accepted; redraws happen in training only"),
        ConfigKey("generalized_attention", .bool, default: .bool(false), "ReLU(x′Wᵀ) + 1e-3 features instead of the softmax kernel"),
        ConfigKey("dropout", .float(0...1), default: .float(0), "accepted; eval mode"),
        ConfigKey("no_projection", .bool, default: .bool(false), "softmax(q) over features, softmax(k) over positions"),
        ConfigKey("qkv_bias", .bool, default: .bool(false), "bias in to_q, to_k, to_v"),
        ConfigKey("attn_out_bias", .bool, default: .bool(true), "bias in to_out"),
    ]

    public let config: Config
    let dim: Int, heads: Int, dimHead: Int, nbFeatures: Int, causal: Bool, generalized: Bool, noProjection: Bool
    let toQ: Linear, toK: Linear, toV: Linear, toOut: Linear
    /// nb_features × dim_head
    let projectionMatrix: Tensor

    public var expectedInput: String { "N×L×\(dim)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×C", found: inputShape)
        }
        try config.resolveChannels("dim", from: inputShape[2])
        dim = config.int("dim")
        heads = config.int("heads")
        guard dim % heads == 0 else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "dim=\(dim) is not divisible by heads=\(heads) (the reference asserts it)")
        }
        dimHead = config.int("dim_head")
        nbFeatures = config.optionalInt("nb_features") ?? Int(Double(dimHead) * Foundation.log(Double(dimHead)))
        guard nbFeatures > 0 else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "dim_head=\(dimHead) gives int(dim_head·ln dim_head) = 0 features: set nb_features")
        }
        causal = config.bool("causal")
        generalized = config.bool("generalized_attention")
        noProjection = config.bool("no_projection")
        self.config = config
        let inner = heads * dimHead, qkvBias = config.bool("qkv_bias")
        let m = nbFeatures, d = dimHead
        projectionMatrix = p.scoped("fast_attention").buffer("projection_matrix", shape: [m, d], initializer:
            .tensor(p.withGenerator { Self.gaussianOrthogonalRandomMatrix(rows: m, columns: d, generator: &$0) }))
        toQ = Linear(p.scoped("to_q"), inFeatures: dim, outFeatures: inner, bias: qkvBias)
        var k = Linear(p.scoped("to_k"), inFeatures: dim, outFeatures: inner, bias: qkvBias)
        if !p.isLoading {
            k.weight = toQ.weight                      // similarity initialisation
            k.bias = toQ.bias
        }
        toK = k
        toV = Linear(p.scoped("to_v"), inFeatures: dim, outFeatures: inner, bias: qkvBias)
        toOut = Linear(p.scoped("to_out"), inFeatures: inner, outFeatures: dim, bias: config.bool("attn_out_bias"))
    }

    /// performer-pytorch's `gaussian_orthogonal_random_matrix(rows, columns, scaling=0)`:
    /// ⌊rows/columns⌋ blocks Qᵀ of the QR of a columns×columns Gaussian, the remaining rows from
    /// one more block, each row scaled by the norm of a fresh Gaussian vector (χ_columns), or
    /// by √columns with `scaling` 1.
    public static func gaussianOrthogonalRandomMatrix(rows: Int, columns d: Int, scaling: Int = 0,
                                                      generator g: inout SeededGenerator) -> Tensor {
        var out = [Float]()
        out.reserveCapacity(rows * d)
        while out.count < rows * d {
            let q = Tensor.randomNormal([d, d], generator: &g).qr().q.transposed().scalars   // Qᵀ, d×d
            out += q.prefix(min(d * d, rows * d - out.count))
        }
        let norms = scaling == 0 ? Tensor.randomNormal([rows, d], generator: &g).norm(axis: 1).scalars
                                 : [Float](repeating: Float(d).squareRoot(), count: rows)
        for r in 0..<rows { for c in 0..<d { out[r * d + c] *= norms[r] } }
        return Tensor(shape: [rows, d], scalars: out)
    }

    /// Runs `body` with the feature producer (projecting each chunk's rows of x per head inside
    /// it), the values N×L×(H·d) and the feature count per head.
    func withFeatures<R>(_ x: Tensor, _ body: (@escaping KernelFeatureFill, Tensor, Int) -> R) throws -> R {
        let v = try toV(x)                                                  // N, L, H·d
        let (n, l, d, c, hs, m) = (x.shape[0], x.shape[1], dimHead, dim, heads, nbFeatures)
        let (causal, generalized, noProjection) = (self.causal, self.generalized, self.noProjection)
        return x.withUnsafeBufferPointer { xp in
            toQ.withWeightPointers { wq, bq in
                toK.withWeightPointers { wk, bk in
                    projectionMatrix.withUnsafeBufferPointer { pp in
                        // One head's q or k rows (count×d) of batch item b from position start.
                        let rows = { (b: Int, h: Int, start: Int, count: Int, query: Bool, dst: UnsafeMutablePointer<Float>) in
                            KernelizedAttention.projectHead(xp.baseAddress! + (b * l + start) * c, ldx: c, count: count,
                                                            channels: c, weight: query ? wq : wk, bias: query ? bq : bk,
                                                            head: h, width: d, dst: dst)
                        }
                        if noProjection {
                            // softmax(q) over features; keys: exp (causal) or softmax over positions,
                            // whose per-column max and sum are gathered first.
                            let (colMax, colSum) = causal ? ([], []) : Self.columnSoftmaxStatistics(n: n, heads: hs, l: l, d: d, rows: rows)
                            return body({ b, h, start, count, query, dst in
                                rows(b, h, start, count, query, dst)
                                for r in 0..<count {
                                    let out = dst + r * d
                                    if query {
                                        var mx = -Float.infinity
                                        for j in 0..<d { mx = max(mx, out[j]) }
                                        var sum: Float = 0
                                        for j in 0..<d { out[j] = Foundation.exp(out[j] - mx); sum += out[j] }
                                        for j in 0..<d { out[j] /= sum }
                                    } else if causal {
                                        for j in 0..<d { out[j] = Foundation.exp(out[j]) }
                                    } else {
                                        let base = (b * hs + h) * d
                                        for j in 0..<d { out[j] = Foundation.exp(out[j] - colMax[base + j]) / colSum[base + j] }
                                    }
                                }
                            }, v, d)
                        }
                        let w = pp.baseAddress!
                        let stab = generalized ? [] : Self.keyStabilisers(n: n, heads: hs, l: l, d: d, w: w, m: m, rows: rows)
                        return body({ b, h, start, count, query, dst in
                            var xr = [Float](repeating: 0, count: count * d)
                            rows(b, h, start, count, query, &xr)
                            if generalized {
                                Self.project(xr, ld: d, count: count, d: d, w: w, m: m, dst: dst)
                                for j in 0..<(count * m) { dst[j] = max(dst[j], 0) + 1e-3 }
                            } else {
                                Self.softmaxFeatures(xr, ld: d, count: count, d: d, w: w, m: m,
                                                     stab: query ? nil : stab[b * hs + h], eps: 1e-4, dst: dst)
                            }
                        }, v, m)
                    }
                }
            }
        }
    }

    typealias HeadRows = (Int, Int, Int, Int, Bool, UnsafeMutablePointer<Float>) -> Void

    /// Per batch item, head and key column: the max over positions and Σ exp(k − max) (for
    /// no_projection's softmax over positions), streamed in chunks.
    static func columnSoftmaxStatistics(n: Int, heads: Int, l: Int, d: Int, rows: HeadRows) -> ([Float], [Float]) {
        var mx = [Float](repeating: -.infinity, count: n * heads * d), sum = [Float](repeating: 0, count: n * heads * d)
        let t = KernelizedAttention.chunk
        var buf = [Float](repeating: 0, count: t * d)
        for p in 0..<(n * heads) {
            for pass in 0..<2 {
                var c0 = 0
                while c0 < l {
                    let r = min(t, l - c0)
                    buf.withUnsafeMutableBufferPointer { rows(p / heads, p % heads, c0, r, false, $0.baseAddress!) }
                    for i in 0..<r {
                        for j in 0..<d {
                            if pass == 0 { mx[p * d + j] = max(mx[p * d + j], buf[i * d + j]) }
                            else { sum[p * d + j] += Foundation.exp(buf[i * d + j] - mx[p * d + j]) }
                        }
                    }
                    c0 += r
                }
            }
        }
        return (mx, sum)
    }

    /// dst (count×m) = d^-¼ X (count×d, rows `ld` apart) · Wᵀ (W m×d).
    static func project(_ x: UnsafePointer<Float>, ld: Int, count: Int, d: Int, w: UnsafePointer<Float>, m: Int,
                        dst: UnsafeMutablePointer<Float>) {
        BLAS.gemm(transB: true, m: count, n: m, k: d, alpha: Foundation.pow(Float(d), -0.25), a: x, lda: ld, b: w, ldb: d,
                  c: dst, ldc: m)
    }

    /// performer-pytorch `softmax_kernel` on `count` rows: m^-½ (exp(u − ‖x′‖²/2 − stab) + eps),
    /// u = x′Wᵀ, x′ = d^-¼ x; stab = the row's max (queries, `stab` nil) or the given value (keys:
    /// the max over all positions and features of the batch item and head).
    static func softmaxFeatures(_ x: UnsafePointer<Float>, ld: Int, count: Int, d: Int, w: UnsafePointer<Float>, m: Int,
                                stab: Float?, eps: Float, dst: UnsafeMutablePointer<Float>) {
        project(x, ld: ld, count: count, d: d, w: w, m: m, dst: dst)
        let dn2 = 1 / Float(d).squareRoot(), ratio = 1 / Float(m).squareRoot()
        for r in 0..<count {
            let xi = x + r * ld, row = dst + r * m
            // Vectorised reductions (a Swift `max`/`+=` loop stays scalar: strict FP order).
            let sq = fa_sum_squares(xi, d)
            let st = stab ?? fa_max(row, m)
            let shift = sq / 2 * dn2 + st
            for j in 0..<m { row[j] -= shift }
            fa_exp(row, row, m)
            for j in 0..<m { row[j] = ratio * (row[j] + eps) }
        }
    }

    /// The keys' stabilisers: max over positions and features of d^-¼ k Wᵀ, per batch item and
    /// head (N·H values), streamed in chunks (`rows` projects one head's key rows).
    static func keyStabilisers(n: Int, heads: Int, l: Int, d: Int, w: UnsafePointer<Float>, m: Int, rows: HeadRows) -> [Float] {
        var out = [Float](repeating: -.infinity, count: n * heads)
        out.withUnsafeMutableBufferPointer { op in
            let outBase = op.baseAddress!
            Threads.parallelFor(n * heads) { range in
                let t = KernelizedAttention.chunk
                var u = [Float](repeating: 0, count: t * m), xr = [Float](repeating: 0, count: t * d)
                for p in range {
                    var mx = -Float.infinity, c0 = 0
                    while c0 < l {
                        let r = min(t, l - c0)
                        xr.withUnsafeMutableBufferPointer { rows(p / heads, p % heads, c0, r, false, $0.baseAddress!) }
                        project(xr, ld: d, count: r, d: d, w: w, m: m, dst: &u)
                        mx = max(mx, fa_max(u, r * m))
                        c0 += r
                    }
                    outBase[p] = mx
                }
            }
        }
        return out
    }

    var normaliser: KernelNormaliser { causal ? .keySum(eps: 1e-6) : .denominator(eps: 0) }

    var kernelChannels: Int { dim }
    var kernelHeads: Int { heads }
    var kernelCausal: Bool { causal }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try toOut(try kernelForward(x))
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try kernelMap(x, query: query)
    }
}
