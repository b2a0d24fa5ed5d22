// Linear Transformers Are Secretly Fast Weight Programmers (DPFP features, delta rule).
// Schlag, Irie, Schmidhuber, ICML 2021. https://arxiv.org/abs/2102.11174
// Reference matched: IDSIA/lmtool-fwms src/utils/cuda_fast_weight_layer.py
// `CudaNormFastWeightDPFPTransformerLayer` (commit 52ada3d) with the forward of its CUDA kernel
// fast_fast_weight/fast_weight_cuda.cu, both read in full.

import Foundation
import TensorCore

/// A fast-weight layer: DPFP-ν features, sum normalisation, and the delta update rule on the
/// kernelised core's recurrent state, inside lmtool-fwms's residual + LayerNorm block.
///
/// - Input N×L×d_model tokens (the reference is time-major L×N×d_model: transposed at the
///   boundary), output N×L×d_model: LayerNorm(x + o_net(attn)) (post-norm, default), or
///   LN(x) + o_net(attn(LN(x))) with `pre_lnorm` (the reference adds the *normalised* input).
/// - Per head: qkvβ = qkvb_net(x); φ(x) = DPFP_ν: r = [relu(x), relu(−x)],
///   φ = concat_{i=1..ν} r ⊙ roll(r, i) (2·d_head·ν features); q, k divided by their sums;
///   β = sigmoid. Unless `skip_attn_normalization`: z_t = Σ_{j≤t} k_j, key_denom_t = z_{t−1}·k_t
///   (1 at t = 0), β_t ← β_t·key_denom_t, k_t ← k_t/(key_denom_t + eps).
///   Delta rule (W = 0 at the start): v̄ = Wᵀk_t, W ← W + k_t ⊗ β_t(v_t − v̄), y_t = Wᵀq_t
///   (after the update); out_t = y_t/√d_head / (q_t·z_t + eps) (or y_t/√d_head).
/// - Map (per-query): the effective weights of the delta recurrence: y_i = Σ_{j≤i} c_ij v_j with
///   c_ij = β_j (k_j·u_j)·scale_i, u_i = q_i, u_{t−1} = u_t − β_t k_t (k_t·u_t) — the recurrence
///   run backwards from the query, O(i·m), exact (the layer is linear in v). Weights can be
///   negative (the delta rule overwrites) and need not sum to 1. Mean over heads unless a head
///   is chosen; before o_net, the residual and the LayerNorm.
/// - Cost O(L·m·d_head) time, O(m·d_head) state per head (m = 2·d_head·n_roll).
///
/// Quirks of the reference: the key_denom rescaling is on by default; the output scale
/// 1/√d_head is applied to the fast-weight read-out; `StepWiseDPFPLinearTransformerLayer` (the
/// reference's step-wise variant) cannot run, the CUDA layer is the one matched (its kernel
/// replaced by the same loop in Tools/reference/fast_weights.py).
///
/// Keys: `qkvb_net.weight` (H·(3·d_head+1) × d_model, per head [q, k, v, β], no bias),
/// `o_net.weight` (no bias), `layer_norm.weight`, `layer_norm.bias`. Untrained, each head's key
/// rows start equal to its query rows (similarity initialisation).
public final class FastWeightsAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "fast-weights", title: "Linear Transformers Are Secretly Fast Weight Memory Systems (DPFP, delta rule)",
        arxiv: "2102.11174", year: 2021, complexity: "O(N m D)", complexityExponent: 1, kind: .sequence, causal: true,
        reference: "IDSIA/lmtool-fwms CudaNormFastWeightDPFPTransformerLayer (CUDA delta kernel's math)", mapKind: .perQuery,
        mapDescription: "effective weights c_ij of v_j in head output i under the delta rule (the recurrence run backwards from the query; signed, j ≤ i), mean over heads unless a head is chosen",
        notes: ["always causal (a recurrence); time-major reference transposed to N×L×C",
                "DPFP-nu features, sum-normalised q and k, beta = sigmoid, key_denom rescaling (skip_attn_normalization=false)",
                "output = LayerNorm(x + o_net(attn)) (post-norm); pre_lnorm adds the normalised input",
                "untrained: PyTorch-default random weights with each head's key rows = query rows"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("n_head", .int(1...1024), default: .int(4), "number of heads"),
        ConfigKey("d_model", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("d_head", .int(1...4096), default: .none, "width per head (default d_model // n_head)"),
        ConfigKey("n_roll", .int(1...64), default: .int(2), "DPFP nu: rolls, features = 2·d_head·n_roll"),
        ConfigKey("pre_lnorm", .bool, default: .bool(false), "LayerNorm before the attention instead of after the residual"),
        ConfigKey("eps", .float(0...1), default: .float(1e-5), "added to key_denom and to the output denominator"),
        ConfigKey("skip_attn_normalization", .bool, default: .bool(false), "no key_denom rescaling, no output denominator"),
        ConfigKey("dropout", .float(0...1), default: .float(0), "accepted; eval mode"),
        ConfigKey("dropatt", .float(0...1), default: .float(0), "accepted; eval mode"),
        ConfigKey("layer_id", .int(0...1_000_000), default: .int(0), "accepted; bookkeeping in the reference"),
        ConfigKey("num_layer", .int(1...1_000_000), default: .int(1), "accepted; bookkeeping in the reference"),
    ]

    public let config: Config
    let nHead: Int, dModel: Int, dHead: Int, nRoll: Int, preLnorm: Bool, eps: Float, normalize: Bool
    let qkvbNet: Linear, oNet: Linear, layerNorm: LayerNorm

    public var expectedInput: String { "N×L×\(dModel)" }
    /// DPFP features per head.
    var m: Int { 2 * dHead * nRoll }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×C", found: inputShape)
        }
        try config.resolveChannels("d_model", from: inputShape[2])
        dModel = config.int("d_model")
        nHead = config.int("n_head")
        guard config.isSet("d_head") || dModel / nHead > 0 else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "n_head=\(nHead) > d_model=\(dModel): set d_head")
        }
        dHead = config.optionalInt("d_head") ?? dModel / nHead
        nRoll = config.int("n_roll")
        preLnorm = config.bool("pre_lnorm")
        eps = Float(config.float("eps"))
        normalize = !config.bool("skip_attn_normalization")
        self.config = config
        let per = 3 * dHead + 1
        var qkvb = Linear(p.scoped("qkvb_net"), inFeatures: dModel, outFeatures: nHead * per, bias: false)
        if !p.isLoading {
            // Similarity initialisation: each head's key rows = its query rows.
            let (d, c, heads) = (dHead, dModel, nHead)
            qkvb.weight.withUnsafeMutableBufferPointer { w in
                for h in 0..<heads {
                    let base = w.baseAddress! + h * per * c
                    (base + d * c).update(from: base, count: d * c)
                }
            }
        }
        qkvbNet = qkvb
        oNet = Linear(p.scoped("o_net"), inFeatures: nHead * dHead, outFeatures: dModel, bias: false)
        layerNorm = LayerNorm(p.scoped("layer_norm"), normalizedShape: dModel)
    }

    /// Runs the per-step inputs of one (batch, head) recurrence: for t in 0..<l calls
    /// `body(t, q_t, k_t, v_t, β_t, outScale_t)` with the DPFP, sum-normalised, key_denom-rescaled
    /// q, k (m values), v (d_head) and the output scale 1/√d_head / (q_t·z_t + eps).
    /// `qkvb` points at the batch item's first row (rows `ld` apart).
    func steps(qkvb: UnsafePointer<Float>, ld: Int, l: Int, head h: Int,
               _ body: (Int, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, Float, Float) -> Void) {
        let (d, m, per) = (dHead, self.m, 3 * dHead + 1)
        let scale = 1 / Float(d).squareRoot()
        var buf = [Float](repeating: 0, count: 2 * d + 3 * m)
        buf.withUnsafeMutableBufferPointer { bp in
            let r = bp.baseAddress!, q = r + 2 * d, k = q + m, z = k + m
            func dpfp(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
                for c in 0..<d { r[c] = max(x[c], 0); r[d + c] = max(-x[c], 0) }
                let n = 2 * d
                var sum: Float = 0
                for i in 1...nRoll {
                    for j in 0..<n {
                        let val = r[j] * r[((j - i) % n + n) % n]
                        out[(i - 1) * n + j] = val
                        sum += val
                    }
                }
                for j in 0..<m { out[j] /= sum }
            }
            for t in 0..<l {
                let row = qkvb + t * ld + h * per
                dpfp(row, into: q)
                dpfp(row + d, into: k)
                var beta = 1 / (1 + Foundation.exp(-row[3 * d]))
                var factor = scale
                if normalize {
                    var kd: Float = 0
                    for c in 0..<m { kd += z[c] * k[c] }
                    if t == 0 { kd = 1 }
                    var den: Float = 0
                    for c in 0..<m { z[c] += k[c]; den += z[c] * q[c] }   // z_t includes k_t (unscaled)
                    beta *= kd
                    let inv = 1 / (kd + eps)
                    for c in 0..<m { k[c] *= inv }
                    factor = scale / (den + eps)
                }
                body(t, q, k, row + 2 * d, beta, factor)
            }
        }
    }

    /// The heads' outputs before o_net: N×L×(H·d_head), and the block's input after the optional
    /// pre-LayerNorm.
    func attention(_ x: Tensor) throws -> (y: Tensor, h: Tensor) {
        let (n, l) = (x.shape[0], x.shape[1])
        let h = preLnorm ? try layerNorm(x) : x
        let qkvb = try qkvbNet(h)                                   // N, L, H·(3d+1)
        let (d, m, heads, ld) = (dHead, self.m, nHead, qkvb.shape[2])
        var y = Tensor(zeros: [n, l, heads * d])                    // N, L, H·d
        qkvb.withUnsafeBufferPointer { qp in
            y.withUnsafeMutableBufferPointer { yp in
                let ybase = yp.baseAddress!
                Threads.parallelFor(n * heads) { range in
                    var scratch = [Float](repeating: 0, count: d)
                    for p in range {
                        let b = p / heads, hh = p % heads
                        var state = KernelizedState(heads: 1, m: m, dv: d)
                        scratch.withUnsafeMutableBufferPointer { sp in
                            steps(qkvb: qp.baseAddress! + b * l * ld, ld: ld, l: l, head: hh) { t, q, k, v, beta, factor in
                                state.deltaUpdate(head: 0, key: k, value: v, beta: beta, scratch: sp.baseAddress!)
                                let out = ybase + (b * l + t) * heads * d + hh * d
                                state.retrieve(head: 0, q, into: out)
                                for c in 0..<d { out[c] *= factor }
                            }
                        }
                    }
                }
            }
        }
        return (y, h)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try KernelizedAttention.checkTokens(x, channels: dModel, module: Self.info.id)
        let (y, h) = try attention(x)
        let attnOut = try oNet(y)                                   // N, L, d_model
        return preLnorm ? h + attnOut : try layerNorm(x + attnOut)
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try KernelizedAttention.checkTokens(x, channels: dModel, module: Self.info.id)
        let i = try KernelizedAttention.checkQuery(query, length: x.shape[1], heads: nHead, module: Self.info.id)
        let x0 = x.batchItem(0)
        let h = preLnorm ? try layerNorm(x0) : x0
        let qkvb = try qkvbNet(h)                                   // 1, L, H·(3d+1)
        let (l, m, ld) = (x.shape[1], self.m, qkvb.shape[2])
        return KernelizedAttention.headMap(heads: nHead, length: l, head: query.head, label: "delta-rule effective weights") { hh in
            // The inputs of steps 0...i, then the recurrence backwards from u = q_i.
            var ks = [Float](repeating: 0, count: (i + 1) * m), betas = [Float](repeating: 0, count: i + 1)
            var u = [Float](repeating: 0, count: m), outScale: Float = 0
            qkvb.withUnsafeBufferPointer { qp in
                steps(qkvb: qp.baseAddress!, ld: ld, l: i + 1, head: hh) { t, q, k, _, beta, factor in
                    for c in 0..<m { ks[t * m + c] = k[c] }
                    betas[t] = beta
                    if t == i { for c in 0..<m { u[c] = q[c] }; outScale = factor }
                }
            }
            var w = [Float](repeating: 0, count: l)
            for t in stride(from: i, through: 0, by: -1) {
                var dot: Float = 0
                for c in 0..<m { dot += ks[t * m + c] * u[c] }
                let coef = betas[t] * dot
                w[t] = coef * outScale
                for c in 0..<m { u[c] -= coef * ks[t * m + c] }
            }
            return w
        }
    }
}
