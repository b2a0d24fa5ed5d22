// Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention.
// Katharopoulos, Vyas, Pappas, Fleuret, ICML 2020. https://arxiv.org/abs/2006.16236
// Reference matched: pytorch-fast-transformers 0.4.0 (idiap, the authors' library)
// `AttentionLayer(LinearAttention(d_keys), d_model, n_heads, d_keys, d_values)`, its causal
// counterpart `CausalLinearAttention` and the recurrent `RecurrentLinearAttention` — all read.

import Foundation
import TensorCore

/// Linear attention with φ(x) = elu(x) + 1, multi-head, as fast-transformers' attention layer.
///
/// - Input N×L×d_model tokens, output N×L×d_model (no residual: the layer alone).
/// - out_i = φ(q_i)ᵀ(Σ_j φ(k_j)v_jᵀ) / (φ(q_i)·Σ_j φ(k_j) + eps), then `out_projection`;
///   with `causal`, sums over j ≤ i (the kernel's chunked prefix sums; the reference's C++
///   `causal_product` and its recurrent form compute the same sums).
/// - Map (per-query): the implicit weights φ(q_i)·φ(k_j) / (Σ_j' φ(q_i)·φ(k_j') + eps) over
///   every position (j ≤ i when causal), for the chosen head or the mean over heads, computed
///   in O(L·d_keys) — the output row is exactly Σ_j w_j v_j.
/// - Cost O(N·d_keys·d_values) time and O(d_keys·d_values) state per head.
///
/// Quirks of the reference:
/// - eps = 1e-6 is added to the denominator (not inside the feature map); no 1/√d scaling.
/// - d_keys and d_values default to d_model // n_heads.
/// - Padding is by a key-length mask only; every token here is real, so none is applied.
/// - Fixtures were made on the unbuilt source tree (the C++ extensions stubbed; see
///   Tools/reference/linear_transformer.py): the causal oracle is the recurrent form.
///
/// Keys: `query_projection`, `key_projection`, `value_projection`, `out_projection`
/// (`.weight`, `.bias`: nn.Linear). Untrained, `key_projection` starts equal to
/// `query_projection` (similarity initialisation).
public final class LinearTransformerAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "linear-transformer", title: "Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention",
        arxiv: "2006.16236", year: 2020, complexity: "O(N D^2)", complexityExponent: 1, kind: .sequence, causal: true,
        reference: "pytorch-fast-transformers 0.4.0 AttentionLayer(LinearAttention / CausalLinearAttention)",
        mapKind: .perQuery,
        mapDescription: "implicit linear-attention weights phi(q_i)·phi(k_j) / sum_j' phi(q_i)·phi(k_j') with phi = elu+1 (j ≤ i when causal), mean over heads unless a head is chosen",
        notes: ["phi(x) = elu(x) + 1; eps = 1e-6 added to the denominator; no 1/sqrt(d) scaling",
                "causal: chunked prefix sums (the reference's C++ causal_product / recurrent form)",
                "untrained: PyTorch-default random weights with key_projection = query_projection"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("d_model", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("n_heads", .int(1...1024), default: .int(4), "number of heads"),
        ConfigKey("d_keys", .int(1...65536), default: .none, "query/key width per head (default d_model // n_heads)"),
        ConfigKey("d_values", .int(1...65536), default: .none, "value width per head (default d_model // n_heads)"),
        ConfigKey("causal", .bool, default: .bool(false), "CausalLinearAttention: position i sees j ≤ i"),
        ConfigKey("eps", .float(0...1), default: .float(1e-6), "added to the denominator (LinearAttention's eps)"),
    ]

    public let config: Config
    let dModel: Int, nHeads: Int, dKeys: Int, dValues: Int, causal: Bool, eps: Float
    let queryProjection: Linear, keyProjection: Linear, valueProjection: Linear, outProjection: Linear

    public var expectedInput: String { "N×L×\(dModel)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×C", found: inputShape)
        }
        try config.resolveChannels("d_model", from: inputShape[2])
        dModel = config.int("d_model")
        nHeads = config.int("n_heads")
        guard config.isSet("d_keys") && config.isSet("d_values") || dModel / nHeads > 0 else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "n_heads=\(nHeads) > d_model=\(dModel) leaves d_model // n_heads = 0")
        }
        dKeys = config.optionalInt("d_keys") ?? dModel / nHeads
        dValues = config.optionalInt("d_values") ?? dModel / nHeads
        causal = config.bool("causal")
        eps = Float(config.float("eps"))
        self.config = config
        queryProjection = Linear(p.scoped("query_projection"), inFeatures: dModel, outFeatures: dKeys * nHeads)
        var key = Linear(p.scoped("key_projection"), inFeatures: dModel, outFeatures: dKeys * nHeads)
        if !p.isLoading {
            key.weight = queryProjection.weight      // similarity initialisation
            key.bias = queryProjection.bias
        }
        keyProjection = key
        valueProjection = Linear(p.scoped("value_projection"), inFeatures: dModel, outFeatures: dValues * nHeads)
        outProjection = Linear(p.scoped("out_projection"), inFeatures: dValues * nHeads, outFeatures: dModel)
    }

    var normaliser: KernelNormaliser { .denominator(eps: eps) }

    /// φ(Q), φ(K) as N×H×L×d_keys and V as N×L×(H·d_values).
    func features(_ x: Tensor) throws -> (q: Tensor, k: Tensor, v: Tensor) {
        let q = KernelizedAttention.splitHeads(try queryProjection(x), heads: nHeads)   // N, H, L, dk
        let k = KernelizedAttention.splitHeads(try keyProjection(x), heads: nHeads)     // N, H, L, dk
        return (Self.eluPlusOne(q), Self.eluPlusOne(k), try valueProjection(x))
    }

    /// elu(x) + 1 = exp(min(x, 0)) + max(x, 0), branch-free with the vectorised `exp`.
    /// (A per-element closure `x > 0 ? x + 1 : exp(x)` through `Tensor.map` took half the
    /// forward: an indirect call, a scalar expf and a sign branch mispredicted on every other
    /// element.) NaN stays NaN; −inf gives 0 and +inf gives +inf, as torch.
    static func eluPlusOne(_ t: Tensor) -> Tensor {
        var negative = Tensor(uninitialized: t.shape)
        t.withUnsafeBufferPointer { s in
            negative.withUnsafeMutableBufferPointer { d in
                let sp = s.baseAddress!, dp = d.baseAddress!
                for i in 0..<s.count { dp[i] = Swift.min(sp[i], 0) }
            }
        }
        var out = exp(negative)
        t.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                let sp = s.baseAddress!, dp = d.baseAddress!
                for i in 0..<s.count { dp[i] += Swift.max(sp[i], 0) }
            }
        }
        return out
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try KernelizedAttention.checkTokens(x, channels: dModel, module: Self.info.id)
        let (q, k, v) = try features(x)
        let y = KernelizedAttention.multiHead(phiQ: q, phiK: k, v: v, normaliser: normaliser, causal: causal)  // N, L, H·dv
        return try outProjection(y)
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try KernelizedAttention.checkTokens(x, channels: dModel, module: Self.info.id)
        let i = try KernelizedAttention.checkQuery(query, length: x.shape[1], heads: nHeads, module: Self.info.id)
        let (q, k, _) = try features(x.batchItem(0))
        return KernelizedAttention.headMap(heads: nHeads, length: x.shape[1], head: query.head) { h in
            KernelizedAttention.weights(phiQ: q, phiK: k, batch: 0, head: h, query: i, normaliser: normaliser, causal: causal)
        }
    }
}
