// Masked Language Modeling for Proteins via Linearly Scalable Long-Context Transformers (FAVOR).
// Choromanski, Likhosherstov, Dohan, Song, Davis, Sarlos, Belanger, Colwell, Weller, 2020.
// https://arxiv.org/abs/2006.03555
// No PyTorch implementation exists (performer-pytorch has only the later FAVOR+): the reference
// is Tools/reference/performer_favor.py, written from the paper and the math of the official
// JAX code (google-research performer/fast_attention/jax/fast_attention.py,
// `make_fast_softmax_attention`, read in full).

import Foundation
import TensorCore

/// FAVOR: softmax attention approximated by orthogonal random features — the paper's
/// trigonometric features, or positive ones — over the kernelised core.
///
/// - Input N×L×dim tokens, output N×L×dim (`to_out` included, no residual).
/// - x′ = d^-¼ x, u = x′Wᵀ with W the m×d `projection_matrix` (orthogonal Gaussian blocks).
///   Trigonometric (default, `nonnegative_features=false`): φ(x) = m^-½ [cos u, sin u] ·
///   exp(‖x′‖²/2 − max_positions ‖x′‖²/2), 2m features, so E[φ(q)·φ(k)] ∝ exp(q·k/√d).
///   Positive: φ(x) = m^-½ (exp(u − ‖x′‖²/2 − stab) + numerical_stabilizer) (FAVOR+ form).
/// - out = φ(Q)(φ(K)ᵀV) / R, R = φ(Q)·Σφ(K) (+2·numerical_stabilizer where |R| ≤ it), prefix
///   sums when `unidirectional`; `renormalize_attention=false` leaves out the division.
/// - Map (per-query): the implicit weights φ(q_i)·φ(k_j)/R_i (j ≤ i when unidirectional), mean
///   over heads unless a head is chosen, in O(L·m). With trigonometric features single weights
///   can be negative: it is an unbiased estimate of the softmax row, not a distribution.
/// - Cost O(L·m·d) time (m ≈ d log d in the paper: O(N D² log D)), O(m·d) state.
///
/// Quirks (of the JAX code, kept):
/// - The trigonometric features divide by exp(max over positions of ‖x′‖²/2), a per-sequence
///   constant: it cancels in the renormalised ratio, so `unidirectional` is causal up to
///   rounding and the guard; without renormalisation the future changes that scale.
/// - Positive features stabilise keys by the max over all positions and features (as
///   performer-pytorch), and put `numerical_stabilizer` (1e-6, not 1e-4) inside the features.
///   So `unidirectional` with `nonnegative_features` is not strictly causal: the future moves
///   the keys' common scale, which the additive stabiliser does not follow (a small leak, as
///   performer's causal mode; the JAX code has it too).
///
/// Keys: `to_q.weight` (+bias with qkv_bias), `to_k.*`, `to_v.*`, `to_out.weight`/`.bias`,
/// buffer `fast_attention.projection_matrix` (nb_features × dim_head). Untrained, to_k = to_q.
public final class PerformerFavorAttention: AttentionModule, KernelFeatureModule {
    public static let info = ModuleInfo(
        id: "performer-favor",
        title: "Masked Language Modeling for Proteins via Linearly Scalable Long-Context Transformers (FAVOR)",
        arxiv: "2006.03555", year: 2020, complexity: "O(N D^2 log(D))", complexityExponent: 1, kind: .sequence,
        causal: true,
        reference: "Tools/reference/performer_favor.py FavorAttention (written from the paper and google-research's JAX fast_attention.py)",
        mapKind: .perQuery,
        mapDescription: "implicit FAVOR weights phi(q_i)·phi(k_j) / R_i with orthogonal random features (trigonometric by default: can be negative), mean over heads unless a head is chosen",
        notes: ["trigonometric features [cos u, sin u]·exp(|x'|^2/2 - max_positions |x'|^2/2); positive features as FAVOR+ with eps 1e-6",
                "unidirectional + nonnegative_features leaks slightly: the keys' stabiliser is a max over all positions (as the JAX code); trigonometric unidirectional is causal up to rounding and the guard",
                "denominator guard: +2·numerical_stabilizer where |R| <= numerical_stabilizer (JAX)",
                "projection_matrix is a buffer; seeded: orthogonal Gaussian blocks (chi norms, or sqrt(d) with ortho_scaling=1)",
                "untrained: PyTorch-default random weights with to_k = to_q"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("heads", .int(1...1024), default: .int(8), "number of heads"),
        ConfigKey("dim_head", .int(1...4096), default: .int(64), "width per head"),
        ConfigKey("nb_features", .int(1...65536), default: .int(256), "random projections m (2m trigonometric features)"),
        ConfigKey("ortho_features", .bool, default: .bool(true), "orthogonal blocks (false: i.i.d. Gaussian rows)"),
        ConfigKey("ortho_scaling", .int(0...1), default: .int(0), "row norms: 0 chi-distributed, 1 sqrt(dim_head)"),
        ConfigKey("nonnegative_features", .bool, default: .bool(false), "positive exp features instead of sin/cos"),
        ConfigKey("unidirectional", .bool, default: .bool(false), "causal: prefix sums"),
        ConfigKey("renormalize_attention", .bool, default: .bool(true), "divide by the approximate partition function R"),
        ConfigKey("numerical_stabilizer", .float(0...1), default: .float(1e-6), "denominator guard (and eps of positive features)"),
        ConfigKey("qkv_bias", .bool, default: .bool(false), "bias in to_q, to_k, to_v"),
        ConfigKey("attn_out_bias", .bool, default: .bool(true), "bias in to_out"),
    ]

    public let config: Config
    let dim: Int, heads: Int, dimHead: Int, nbFeatures: Int
    let nonnegative: Bool, unidirectional: Bool, renormalize: Bool, stabilizer: Float
    let toQ: Linear, toK: Linear, toV: Linear, toOut: Linear
    let projectionMatrix: Tensor    // nb_features × dim_head

    public var expectedInput: String { "N×L×\(dim)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×C", found: inputShape)
        }
        try config.resolveChannels("dim", from: inputShape[2])
        dim = config.int("dim")
        heads = config.int("heads")
        dimHead = config.int("dim_head")
        nbFeatures = config.int("nb_features")
        nonnegative = config.bool("nonnegative_features")
        unidirectional = config.bool("unidirectional")
        renormalize = config.bool("renormalize_attention")
        stabilizer = Float(config.float("numerical_stabilizer"))
        self.config = config
        let (m, d, inner, bias) = (nbFeatures, dimHead, heads * dimHead, config.bool("qkv_bias"))
        let ortho = config.bool("ortho_features"), scaling = config.int("ortho_scaling")
        projectionMatrix = p.scoped("fast_attention").buffer("projection_matrix", shape: [m, d], initializer: .tensor(
            p.withGenerator { g in
                ortho ? PerformerAttention.gaussianOrthogonalRandomMatrix(rows: m, columns: d, scaling: scaling, generator: &g)
                      : Tensor.randomNormal([m, d], generator: &g)
            }))
        toQ = Linear(p.scoped("to_q"), inFeatures: dim, outFeatures: inner, bias: bias)
        var k = Linear(p.scoped("to_k"), inFeatures: dim, outFeatures: inner, bias: bias)
        if !p.isLoading {
            k.weight = toQ.weight                      // similarity initialisation
            k.bias = toQ.bias
        }
        toK = k
        toV = Linear(p.scoped("to_v"), inFeatures: dim, outFeatures: inner, bias: bias)
        toOut = Linear(p.scoped("to_out"), inFeatures: inner, outFeatures: dim, bias: config.bool("attn_out_bias"))
    }

    /// Runs `body` with the feature producer (projecting each chunk's rows of x per head inside
    /// it), the values N×L×(H·d) and the feature count per head.
    func withFeatures<R>(_ x: Tensor, _ body: (@escaping KernelFeatureFill, Tensor, Int) -> R) throws -> R {
        let v = try toV(x)                                                  // N, L, H·d
        let (n, l, d, c, hs, m, eps, nonnegative) = (x.shape[0], x.shape[1], dimHead, dim, heads, nbFeatures, stabilizer, nonnegative)
        return x.withUnsafeBufferPointer { xp in
            toQ.withWeightPointers { wq, bq in
                toK.withWeightPointers { wk, bk in
                    projectionMatrix.withUnsafeBufferPointer { pp in
                        let w = pp.baseAddress!
                        let rows = { (b: Int, h: Int, start: Int, count: Int, query: Bool, dst: UnsafeMutablePointer<Float>) in
                            KernelizedAttention.projectHead(xp.baseAddress! + (b * l + start) * c, ldx: c, count: count,
                                                            channels: c, weight: query ? wq : wk, bias: query ? bq : bk,
                                                            head: h, width: d, dst: dst)
                        }
                        if nonnegative {
                            let stab = PerformerAttention.keyStabilisers(n: n, heads: hs, l: l, d: d, w: w, m: m, rows: rows)
                            return body({ b, h, start, count, query, dst in
                                var xr = [Float](repeating: 0, count: count * d)
                                rows(b, h, start, count, query, &xr)
                                PerformerAttention.softmaxFeatures(xr, ld: d, count: count, d: d, w: w, m: m,
                                                                   stab: query ? nil : stab[b * hs + h], eps: eps, dst: dst)
                            }, v, m)
                        }
                        let qTop = Self.maxHalfSquaredNorms(n: n, heads: hs, l: l, d: d, query: true, rows: rows)
                        let kTop = Self.maxHalfSquaredNorms(n: n, heads: hs, l: l, d: d, query: false, rows: rows)
                        return body({ b, h, start, count, query, dst in
                            var xr = [Float](repeating: 0, count: count * d)
                            rows(b, h, start, count, query, &xr)
                            Self.trigonometricFeatures(xr, ld: d, count: count, d: d, w: w, m: m,
                                                       top: (query ? qTop : kTop)[b * hs + h], dst: dst)
                        }, v, 2 * m)
                    }
                }
            }
        }
    }

    /// max over positions of ‖x′‖²/2 (x′ = d^-¼ x) of the queries or keys, per batch item and
    /// head (N·H values), streamed in chunks.
    static func maxHalfSquaredNorms(n: Int, heads: Int, l: Int, d: Int, query: Bool,
                                    rows: PerformerAttention.HeadRows) -> [Float] {
        let dn2 = 1 / Float(d).squareRoot(), t = KernelizedAttention.chunk
        var out = [Float](repeating: -.infinity, count: n * heads), buf = [Float](repeating: 0, count: t * d)
        for p in 0..<(n * heads) {
            var c0 = 0
            while c0 < l {
                let r = min(t, l - c0)
                buf.withUnsafeMutableBufferPointer { rows(p / heads, p % heads, c0, r, query, $0.baseAddress!) }
                for i in 0..<r {
                    var sq: Float = 0
                    for j in 0..<d { sq += buf[i * d + j] * buf[i * d + j] }
                    out[p] = max(out[p], sq / 2 * dn2)
                }
                c0 += r
            }
        }
        return out
    }

    /// The paper's trigonometric features of `count` rows: dst count×2m,
    /// m^-½ [cos u, sin u] · exp(‖x′‖²/2 − top), u = x′Wᵀ, x′ = d^-¼ x.
    static func trigonometricFeatures(_ x: UnsafePointer<Float>, ld: Int, count: Int, d: Int, w: UnsafePointer<Float>,
                                      m: Int, top: Float, dst: UnsafeMutablePointer<Float>) {
        let dn2 = 1 / Float(d).squareRoot(), ratio = 1 / Float(m).squareRoot()
        var u = [Float](repeating: 0, count: count * m)
        u.withUnsafeMutableBufferPointer { up in
            PerformerAttention.project(x, ld: ld, count: count, d: d, w: w, m: m, dst: up.baseAddress!)
            for r in 0..<count {
                let xi = x + r * ld
                var sq: Float = 0
                for c in 0..<d { sq += xi[c] * xi[c] }
                let scale = ratio * Foundation.exp(sq / 2 * dn2 - top), ur = up.baseAddress! + r * m, o = dst + r * 2 * m
                for j in 0..<m {
                    o[j] = scale * Foundation.cos(ur[j])
                    o[m + j] = scale * Foundation.sin(ur[j])
                }
            }
        }
    }

    var normaliser: KernelNormaliser { renormalize ? .guarded(eps: stabilizer) : .none }

    var kernelChannels: Int { dim }
    var kernelHeads: Int { heads }
    var kernelCausal: Bool { unidirectional }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try toOut(try kernelForward(x))
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try kernelMap(x, query: query)
    }
}
