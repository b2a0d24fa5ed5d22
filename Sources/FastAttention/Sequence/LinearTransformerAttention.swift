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
        let layer = try AttentionLayerProjections(config: &config, inputShape: inputShape, parameters: p, module: Self.info.id)
        (dModel, nHeads, dKeys, dValues) = (layer.dModel, layer.nHeads, layer.dKeys, layer.dValues)
        (queryProjection, keyProjection) = (layer.query, layer.key)
        (valueProjection, outProjection) = (layer.value, layer.out)
        causal = config.bool("causal")
        eps = Float(config.float("eps"))
        self.config = config
    }

    var normaliser: KernelNormaliser { .denominator(eps: eps) }

    /// Runs `body` with the feature producer φ = elu + 1 (projecting each chunk's rows of x per
    /// head inside the producer) and the values N×L×(H·d_values).
    func withFeatures<R>(_ x: Tensor, _ body: (@escaping KernelFeatureFill, Tensor) -> R) throws -> R {
        let v = try valueProjection(x)                                      // N, L, H·dv
        let (l, c, dk) = (x.shape[1], dModel, dKeys)
        return x.withUnsafeBufferPointer { xp in
            queryProjection.withWeightPointers { wq, bq in
                keyProjection.withWeightPointers { wk, bk in
                    body({ b, h, start, count, query, dst in
                        var t = [Float](repeating: 0, count: count * dk)
                        KernelizedAttention.projectHead(xp.baseAddress! + (b * l + start) * c, ldx: c, count: count, channels: c,
                                                        weight: query ? wq : wk, bias: query ? bq : bk, head: h, width: dk, dst: &t)
                        KernelizedAttention.eluPlusOne(t, dst, count * dk)
                    }, v)
                }
            }
        }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try KernelizedAttention.checkTokens(x, channels: dModel, module: Self.info.id)
        let y = try withFeatures(x) { phi, v in
            KernelizedAttention.run(batch: x.shape[0], heads: nHeads, length: x.shape[1], m: dKeys, v: v,
                                    normaliser: normaliser, causal: causal, features: phi)        // N, L, H·dv
        }
        return try outProjection(y)
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try KernelizedAttention.checkTokens(x, channels: dModel, module: Self.info.id)
        let i = try KernelizedAttention.checkQuery(query, length: x.shape[1], heads: nHeads, module: Self.info.id)
        return try withFeatures(x.batchItem(0)) { phi, _ in
            KernelizedAttention.headMap(heads: nHeads, length: x.shape[1], head: query.head) { h in
                KernelizedAttention.weights(features: phi, batch: 0, head: h, heads: nHeads, query: i, length: x.shape[1],
                                            m: dKeys, normaliser: normaliser, causal: causal)
            }
        }
    }
}
