// Synthesizer: Rethinking Self-Attention in Transformer Models.
// Tay, Bahri, Metzler, Juan, Zhao, Zheng, ICML 2021. https://arxiv.org/abs/2005.00743
// Reference matched: leaderj1001/Synthesizer-Rethinking-Self-Attention-Transformer-Models
// `synthesizer.py` at 3ee5829 (SynthesizerDense, SynthesizerRandom, FactorizedSynthesizerDense,
// FactorizedSynthesizerRandom), read in full. The official Mesh-TF code was not available.

import CKernels
import Foundation
import TensorCore

/// Synthesizer attention: the attention weights are synthesised without query–key dot products —
/// from each token alone (dense) or as learned input-independent parameters (random) — and applied
/// to value_fc(x). Single head, no output projection, as the reference.
///
/// Variants, chosen by the weight names of the reference classes (or `variant` when untrained):
/// - `dense` (`SynthesizerDense(in_dims, sentence_length)`): Bᵢ = W₂·relu(W₁xᵢ + b₁) + b₂ ∈ R^L,
///   Y = softmax(B)·V. Run as softmax attention with qᵢ = [relu(W₁xᵢ + b₁), 1] and kⱼ = [W₂ⱼ, b₂ⱼ]
///   through `DenseAttention` (scale 1), so causal masking is the kernel's own.
/// - `random` (`SynthesizerRandom`): Y = R·V with R a learned 1×L×L parameter.
/// - `factorized_dense` (`FactorizedSynthesizerDense`): logits A(xᵢ)[j mod 4]·B(xᵢ)[j mod L/4].
/// - `factorized_random` (`FactorizedSynthesizerRandom(in_dims)`): softmax(q kᵀ)·V with rank-8
///   `query_fc`, `key_fc` (through `DenseAttention`).
///
/// - Input N×L×in_dims (L = sentence_length), output N×L×in_dims.
/// - Map (per-query): row i of the synthesised matrix the forward uses (softmax(Bᵢ), Rᵢ, ...), over
///   positions. For `dense` a row costs O(L·h) — W₂ is an L×h parameter — never O(L²) memory beyond it.
/// - Cost: O(L²·D) for random and the factorized variants (the paper's point is no QKᵀ, not
///   sub-quadratic cost). `dense` is O(L²·(h + D)) for a hidden layer h wide: the reference's is
///   L wide (h = L: W₂ is L×L and the cost O(L³), fitted exponent ≈ 2.9), the paper's W₁ is d×d
///   (`hidden_dims=<in_dims>`: O(L²·D), exponent 2).
///
/// Quirks of the reference, reproduced (seq-b.md quirk 4):
/// - `SynthesizerRandom` never applies softmax to R (`self.softmax` is unused): Y = R·V with R
///   xavier-uniform and signed. `random_softmax=true` gives the paper's softmax(R) instead (no parity).
/// - `FactorizedSynthesizerRandom` is input-dependent (a rank-8 QKᵀ with biases and no 1/√d), not
///   the paper's R₁R₂ᵀ.
/// - `FactorizedSynthesizerDense` tiles both factors with `.repeat` (index j mod a and j mod b, not
///   j div b), so with gcd(4, L/4) > 1 some (a, b) pairs never meet; it needs L % 4 == 0.
/// - `MixtureSynthesizers` (R + QKᵀ without 1/√d) is not ported; its weights are refused.
/// - The reference has no mask. `causal=true` masks the future as the paper does for decoding:
///   logits j > i are −∞ before the softmax; for the un-softmaxed R they are zeroed.
/// - Untrained: PyTorch-default Linear init, R xavier-uniform as torch draws it for a 1×L×L
///   tensor (bound √(6/(L² + L))), `key_fc = query_fc` for
///   factorized_random (similarity initialisation). Dense and random have no query/key to tie.
///
/// Keys: `value_fc.weight` (in×in), `value_fc.bias`, plus `dense.0.weight` (h×in), `dense.0.bias`,
/// `dense.2.weight` (L×h), `dense.2.bias` (h = `hidden_dims`, L unless set) | `attention` (1×L×L) | `a_proj.*` (4×in), `b_proj.*`
/// (L/4×in) | `query_fc.*`, `key_fc.*` (8×in).
public final class SynthesizerAttention: AttentionModule {
    public enum Variant: String, CaseIterable, Sendable {
        case dense, random
        case factorizedDense = "factorized_dense"
        case factorizedRandom = "factorized_random"
    }

    public static let info = ModuleInfo(
        id: "synthesizer", title: "Synthesizer: Rethinking Self-Attention in Transformer Models", arxiv: "2005.00743",
        year: 2020, complexity: "O(N^2 D)", complexityExponent: 2, kind: .sequence, causal: true,
        reference: "leaderj1001/Synthesizer-Rethinking-Self-Attention-Transformer-Models synthesizer.py @ 3ee5829 (SynthesizerDense; Random, Factorized* by weight names)",
        mapKind: .perQuery,
        mapDescription: "row i of the synthesised attention matrix: softmax(W2 relu(W1 x_i)) for dense, R_i for random (signed, no softmax as the reference)",
        notes: ["variant from the weight names: dense.* (dense), attention (random), a_proj/b_proj (factorized_dense), query_fc/key_fc (factorized_random)",
                "random: the reference applies no softmax to R (random_softmax=true follows the paper)",
                "factorized_random is the reference's rank-8 input-dependent QK^T without scale, not R1 R2^T",
                "factorized_dense tiles both factors (j mod 4, j mod L/4) and needs L % 4 == 0",
                "single head, no output projection; L must equal sentence_length",
                "dense: the reference's hidden layer is L wide (the paper's is d), so it costs O(L^3) and holds an L x L W2; hidden_dims=<in_dims> gives the paper's O(L^2 d)",
                "causal (not in the reference): future logits masked before the softmax, or zeroed in R",
                "untrained: PyTorch-default weights, so dense and random maps are position-wise noise (no query/key to tie); factorized_random starts with key_fc = query_fc"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("in_dims", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("sentence_length", .int(1...1 << 20), default: .none, "sequence length L (taken from the input when unset)"),
        ConfigKey("variant", .choice(Variant.allCases.map(\.rawValue)), default: .string("dense"),
                  "which reference class (loaded weights decide; an explicit value must agree)"),
        ConfigKey("hidden_dims", .int(1...1 << 20), default: .none,
                  "dense: width h of dense.0 (unset: sentence_length, the reference's; in_dims: the paper's W1)"),
        ConfigKey("causal", .bool, default: .bool(false), "mask the future (the paper's decoder setting)"),
        ConfigKey("fixed", .bool, default: .bool(false), "SynthesizerRandom's frozen R (training only; no effect here)"),
        ConfigKey("random_softmax", .bool, default: .bool(false), "random: softmax(R) as the paper (the reference uses R as is)"),
    ]

    public let config: Config
    public let variant: Variant
    let inDims: Int, length: Int, hidden: Int, causal: Bool
    let valueFC: Linear
    let dense0: Linear?              // dense.0: in → h
    let denseKeys: Tensor?           // L × (h+1): [W₂ | b₂], the keys of the dense variant
    let mixing: Tensor?              // L × L: R (masked / softmaxed as configured) for random
    let aProj: Linear?, bProj: Linear?
    let queryFC: Linear?, keyFC: Linear?

    public var expectedInput: String { "N×\(length)×\(inDims)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: id, expected: "N×L×C tokens", found: inputShape)
        }
        try config.resolveChannels("in_dims", from: inputShape[2])
        let l = inputShape[1], c = config.int("in_dims")
        if let s = config.optionalInt("sentence_length"), s != l {
            throw ConfigError.inconsistent(module: id,
                message: "sentence_length=\(s) but the input has L=\(l) tokens (they must be equal)")
        }
        config.setDerived("sentence_length", .int(l))
        let h = config.optionalInt("hidden_dims") ?? l
        config.setDerived("hidden_dims", .int(h))
        (inDims, length, hidden, causal) = (c, l, h, config.bool("causal"))
        variant = try Self.variant(config: config, parameters: p, l: l, c: c, h: h)
        self.config = config
        if variant == .factorizedDense, l % 4 != 0 {
            throw ConfigError.inconsistent(module: id,
                message: "factorized_dense needs sentence_length divisible by 4 (a = 4 tiles of b = L/4), found \(l)")
        }

        var (dense0, denseKeys, mixing): (Linear?, Tensor?, Tensor?) = (nil, nil, nil)
        var (aProj, bProj, queryFC, keyFC): (Linear?, Linear?, Linear?, Linear?) = (nil, nil, nil, nil)
        switch variant {
        case .dense:
            dense0 = Linear(p.scoped("dense.0"), inFeatures: c, outFeatures: h)
            let w2 = Linear(p.scoped("dense.2"), inFeatures: h, outFeatures: l)
            denseKeys = Tensor.concatenated([w2.weight, w2.bias!.reshaped([l, 1])], axis: 1)   // L, h+1
        case .random:
            // xavier_uniform_ on the 1×L×L parameter: torch's fan_in = size(1)·L = L², fan_out = size(0)·L = L.
            let bound = (6 / Float(l * l + l)).squareRoot()
            let r = p.parameter("attention", shape: [1, l, l], initializer: .uniform(bound: bound)).reshaped([l, l])
            mixing = Self.effectiveRandom(r, causal: causal, softmax: config.bool("random_softmax"))
        case .factorizedDense:
            aProj = Linear(p.scoped("a_proj"), inFeatures: c, outFeatures: 4)
            bProj = Linear(p.scoped("b_proj"), inFeatures: c, outFeatures: l / 4)
        case .factorizedRandom:
            let q = Linear(p.scoped("query_fc"), inFeatures: c, outFeatures: 8)
            var k = Linear(p.scoped("key_fc"), inFeatures: c, outFeatures: 8)
            if !p.isLoading { (k.weight, k.bias) = (q.weight, q.bias) }     // similarity initialisation
            (queryFC, keyFC) = (q, k)
        }
        valueFC = Linear(p.scoped("value_fc"), inFeatures: c, outFeatures: c)
        (self.dense0, self.denseKeys, self.mixing) = (dense0, denseKeys, mixing)
        (self.aProj, self.bProj, self.queryFC, self.keyFC) = (aProj, bProj, queryFC, keyFC)
    }

    /// The variant the weights' names call for (probing one distinctive key per class, in order,
    /// so keys of a second class stay unexpected), or the configured one when seeded.
    static func variant(config: Config, parameters p: Parameters, l: Int, c: Int, h: Int) throws -> Variant {
        let configured = Variant(rawValue: config.string("variant"))!
        guard p.isLoading else { return configured }
        let probes: [(String, [Int], Variant)] = [("dense.0.weight", [h, c], .dense), ("attention", [1, l, l], .random),
                                                  ("a_proj.weight", [4, c], .factorizedDense),
                                                  ("query_fc.weight", [8, c], .factorizedRandom)]
        var found: Variant?
        for (key, shape, v) in probes where p.optionalBuffer(key, shape: shape) != nil {
            found = v
            break
        }
        if found == .random, p.optionalBuffer("query_fc.weight", shape: [c, c]) != nil {
            throw ModuleError.unsupported(module: info.id,
                message: "these weights are MixtureSynthesizers' (attention + query_fc/key_fc), which is not ported")
        }
        guard let found else { return configured }
        if config.explicit.contains("variant"), found != configured {
            throw ConfigError.inconsistent(module: info.id,
                message: "variant=\(configured.rawValue) but the weights are \(found.rawValue)'s")
        }
        return found
    }

    /// R as the forward applies it: as is (the reference), or softmax(R) (the paper), with the
    /// future zeroed or masked when causal.
    static func effectiveRandom(_ r: Tensor, causal: Bool, softmax: Bool) -> Tensor {
        let l = r.shape[0]
        var m = r
        m.withUnsafeMutableBufferPointer { p in
            if causal {
                for i in 0..<l { for j in (i + 1)..<max(l, i + 1) { p[i * l + j] = softmax ? -.infinity : 0 } }
            }
            if softmax { fa_softmax_rows(p.baseAddress!, l, l, l, 1) }
        }
        return m
    }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] == length, x.shape[2] == inDims else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
    }

    /// Dense-variant queries [relu(W₁xᵢ + b₁), 1]: N×L×(h+1), written in place.
    func denseQueries(_ x: Tensor) -> Tensor {
        let n = x.shape[0], l = length, h = hidden, w = h + 1, d0 = dense0!
        var q = Tensor(uninitialized: [n, l, w])
        q.withUnsafeMutableBufferPointer { qp in
            let o = qp.baseAddress!
            d0.bias!.withUnsafeBufferPointer { bp in
                for r in 0..<(n * l) {
                    (o + r * w).update(from: bp.baseAddress!, count: h)
                    o[r * w + h] = 1
                }
            }
            x.withUnsafeBufferPointer { xp in
                d0.weight.withUnsafeBufferPointer { wp in
                    // (N·L)×in · (h×in)ᵀ accumulated onto the bias, rows h+1 apart
                    BLAS.gemm(transB: true, m: n * l, n: h, k: inDims, a: xp.baseAddress!, lda: inDims,
                              b: wp.baseAddress!, ldb: inDims, beta: 1, c: o, ldc: w)
                }
            }
        }
        q.formRelu()           // a select, not a mispredicting branch; the column of ones stays
        return q
    }

    /// Factorized-dense logits for rows `i0..<i0+rows` of batch item b: A_i[j mod 4]·B_i[j mod L/4],
    /// −∞ for j > i when causal. `a` is N×L×4, `bb` N×L×(L/4).
    func factorizedLogits(_ a: UnsafePointer<Float>, _ bb: UnsafePointer<Float>, b: Int, i0: Int, rows: Int,
                          into s: UnsafeMutablePointer<Float>) {
        let l = length, nb = l / 4
        for r in 0..<rows {
            let i = i0 + r, ai = a + (b * l + i) * 4, bi = bb + (b * l + i) * nb
            for j in 0..<l { s[r * l + j] = causal && j > i ? -.infinity : ai[j % 4] * bi[j % nb] }
        }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        let v = try valueFC(x)                                               // N, L, in
        switch variant {
        case .dense:
            let q = denseQueries(x)                                          // N, L, h+1
            let n = x.shape[0], l = length, w = hidden + 1
            var out = Tensor(uninitialized: [n, l, inDims])                  // N, L, in
            q.withUnsafeBufferPointer { qp in
                denseKeys!.withUnsafeBufferPointer { kp in
                    v.withUnsafeBufferPointer { vp in
                        out.withUnsafeMutableBufferPointer { op in
                            DenseAttention.forward(
                                batch: n, heads: 1, lq: l, lk: l, d: w, dv: inDims,
                                q: .init(base: qp.baseAddress!, ld: w, batchStride: l * w, headStride: 0),
                                k: .init(base: kp.baseAddress!, ld: w, batchStride: 0, headStride: 0),
                                v: .init(base: vp.baseAddress!, ld: inDims, batchStride: l * inDims, headStride: 0),
                                out: op.baseAddress!, outLd: inDims, outBatchStride: l * inDims, outHeadStride: 0,
                                scale: 1, causal: causal)
                        }
                    }
                }
            }
            return out
        case .random:
            return mixing!.matmul(v)                                         // N, L, in
        case .factorizedRandom:
            return DenseAttention.multiHead(q: try queryFC!(x), k: try keyFC!(x), v: v, heads: 1, scale: 1, causal: causal)
        case .factorizedDense:
            return try factorizedDense(x, v)
        }
    }

    /// softmax(factorized logits)·V in tiles of 64 rows: O(64·L) scratch per worker.
    func factorizedDense(_ x: Tensor, _ v: Tensor) throws -> Tensor {
        let a = try aProj!(x), bb = try bProj!(x)                            // N, L, 4 and N, L, L/4
        let n = x.shape[0], l = length, tile = 64, tiles = (l + tile - 1) / tile
        var out = Tensor(uninitialized: [n, l, inDims])                      // N, L, in
        a.withUnsafeBufferPointer { ap in
            bb.withUnsafeBufferPointer { bp in
                v.withUnsafeBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        let o = op.baseAddress!
                        Threads.parallelFor(n * tiles) { range in
                            var s = [Float](repeating: 0, count: tile * l)
                            s.withUnsafeMutableBufferPointer { sp in
                                for item in range {
                                    let b = item / tiles, i0 = (item % tiles) * tile, rows = min(tile, l - i0)
                                    factorizedLogits(ap.baseAddress!, bp.baseAddress!, b: b, i0: i0, rows: rows,
                                                     into: sp.baseAddress!)
                                    fa_softmax_rows(sp.baseAddress!, rows, l, l, 1)
                                    BLAS.gemm(m: rows, n: inDims, k: l, a: sp.baseAddress!, lda: l,
                                              b: vp.baseAddress! + b * l * inDims, ldb: inDims,
                                              c: o + (b * l + i0) * inDims, ldc: inDims)
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try check(x)
        guard query.row == 0, (0..<length).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(query.column) is outside 0..<\(length)")
        }
        let x0 = x.batchItem(0), i = query.column, l = length
        let visible = causal ? i + 1 : l
        var row: [Float]
        switch variant {
        case .dense:
            let q = denseQueries(x0)
            row = q.withUnsafeBufferPointer { qp in
                denseKeys!.withUnsafeBufferPointer { kp in
                    DenseAttention.weights(query: qp.baseAddress! + i * (hidden + 1), keys: kp.baseAddress!,
                                           ldk: hidden + 1, lk: l, d: hidden + 1, scale: 1, visible: visible)
                }
            }
        case .random:
            row = Array(mixing!.scalars[(i * l)..<((i + 1) * l)])
        case .factorizedRandom:
            let q = try queryFC!(x0), k = try keyFC!(x0)
            row = q.withUnsafeBufferPointer { qp in
                k.withUnsafeBufferPointer { kp in
                    DenseAttention.weights(query: qp.baseAddress! + i * 8, keys: kp.baseAddress!, ldk: 8, lk: l, d: 8,
                                           scale: 1, visible: visible)
                }
            }
        case .factorizedDense:
            let a = try aProj!(x0), bb = try bProj!(x0)
            row = [Float](repeating: 0, count: l)
            a.withUnsafeBufferPointer { ap in
                bb.withUnsafeBufferPointer { bp in
                    row.withUnsafeMutableBufferPointer { rp in
                        factorizedLogits(ap.baseAddress!, bp.baseAddress!, b: 0, i0: i, rows: 1, into: rp.baseAddress!)
                        fa_softmax_rows(rp.baseAddress!, 1, l, l, 1)
                    }
                }
            }
        }
        let label = variant == .random && !config.bool("random_softmax") ? "random: row of R (no softmax)" : "\(variant.rawValue): synthesised weights"
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: row), labels: [label])
    }
}
