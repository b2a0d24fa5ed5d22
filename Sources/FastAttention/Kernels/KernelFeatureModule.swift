// Modules that are a feature map over the kernelised core (performer, performer-favor,
// slim-performer): they supply φ and the values; the forward pass and the map are this one code.

import TensorCore

protocol KernelFeatureModule: AttentionModule {
    /// Input channels C of the N×L×C tokens.
    var kernelChannels: Int { get }
    var kernelHeads: Int { get }
    var kernelCausal: Bool { get }
    var normaliser: KernelNormaliser { get }
    /// Runs `body` with the streamed feature producer, the values N×L×(H·d) and the feature count m.
    func withFeatures<R>(_ x: Tensor, _ body: (@escaping KernelFeatureFill, Tensor, Int) -> R) throws -> R
}

extension KernelFeatureModule {
    /// φ(Q)(φ(K)ᵀV) with the module's normaliser: N×L×C → N×L×(H·d), before any output projection.
    func kernelForward(_ x: Tensor) throws -> Tensor {
        try KernelizedAttention.checkTokens(x, channels: kernelChannels, module: Self.info.id)
        return try withFeatures(x) { phi, v, m in
            KernelizedAttention.run(batch: x.shape[0], heads: kernelHeads, length: x.shape[1], m: m, v: v,
                                    normaliser: normaliser, causal: kernelCausal, features: phi)   // N, L, H·d
        }
    }

    /// The implicit weights φ(qᵢ)·φ(kⱼ)/Σ of batch item 0's query, per head or their mean: O(N·m).
    func kernelMap(_ x: Tensor, query: MapQuery, label: String = "implicit weights") throws -> AttentionMap {
        try KernelizedAttention.checkTokens(x, channels: kernelChannels, module: Self.info.id)
        let l = x.shape[1]
        let i = try KernelizedAttention.checkQuery(query, length: l, heads: kernelHeads, module: Self.info.id)
        return try withFeatures(x.batchItem(0)) { phi, _, m in
            KernelizedAttention.headMap(heads: kernelHeads, length: l, head: query.head, label: label) { h in
                KernelizedAttention.weights(features: phi, batch: 0, head: h, heads: kernelHeads, query: i, length: l,
                                            m: m, normaliser: normaliser, causal: kernelCausal)
            }
        }
    }
}
