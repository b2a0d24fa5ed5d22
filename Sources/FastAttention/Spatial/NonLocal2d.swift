// Non-local Neural Networks — the dense baseline every efficient module is measured against.
// Wang, Girshick, Gupta, He, CVPR 2018. https://arxiv.org/abs/1711.07971
// Reference matched: mmcv 2.1 `mmcv.cnn.NonLocal2d` (mmcv/cnn/bricks/non_local.py), read in full.

import Foundation
import TensorCore

/// The non-local block: every position attends to every position.
///
/// Matches `mmcv.cnn.NonLocal2d(in_channels, reduction=2, use_scale=True, norm_cfg=None,
/// mode='embedded_gaussian', sub_sample=False)` in eval mode.
///
/// - Input N×C×H×W, output N×C×H×W (residual included: y = x + conv_out(A·g)).
/// - Map (per-query): row i of the HW×HW matrix A, the weights the query pixel gives every
///   pixel (on the pooled (H/2)×(W/2) grid with `sub_sample`). Computed in O(HW·C′) per query.
/// - Cost: O((HW)²·C′) time; memory O(HW·C′) here — the kernel tiles the rows with an online
///   softmax, so the HW×HW matrix is never stored (mmcv stores it).
///
/// Quirks of the reference:
/// - `inter_channels = max(in_channels // reduction, 1)`; θ, φ, g are 1×1 convs with bias.
/// - embedded_gaussian scales logits by 1/√inter_channels (timm's NonLocalAttn uses √in_channels).
/// - dot_product divides by the number of keys; gaussian uses θ = φ = x and no scale;
///   concatenation is ReLU(w·[θᵢ; φⱼ]) / number of keys, with a bias-free 1×1 `concat_project`.
/// - `sub_sample` max-pools (2×2, floor) φ and g after their convs (φ = maxpool(x) in gaussian).
/// - `norm_cfg=BN` gives conv_out no bias and a BatchNorm `conv_out.bn`.
/// - mmcv zero-initialises conv_out, so an untrained block is the identity; seeded weights
///   here are PyTorch-default random instead, with φ = θ (similarity initialisation).
///
/// Keys: `g.conv.{weight,bias}`, `theta.conv.*`, `phi.conv.*` (absent in gaussian mode),
/// `conv_out.conv.weight` (+ `.bias`, or `conv_out.bn.*` with BN), `concat_project.conv.weight`;
/// with `sub_sample`, `g.0.conv.*` and `phi.0.conv.*`.
public final class NonLocal2d: AttentionModule {
    public static let info = ModuleInfo(
        id: "non-local", title: "Non-local Neural Networks (dense baseline)", arxiv: "1711.07971", year: 2018,
        complexity: "O(N^2 D)", complexityExponent: 2, kind: .spatial, causal: false,
        reference: "mmcv.cnn.NonLocal2d (mmcv-lite 2.1.0)", mapKind: .perQuery,
        mapDescription: "softmax weights of the query pixel over every pixel (row i of the dense HW×HW matrix)",
        notes: ["embedded_gaussian scales by 1/sqrt(inter_channels)",
                "sub_sample max-pools phi and g by 2 (floor), so the map lives on the (H/2)×(W/2) grid",
                "untrained: PyTorch-default random weights with phi = theta (similarity initialisation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("in_channels", .int(1...65536), default: .none, "input channels (taken from the input when unset)"),
        ConfigKey("reduction", .int(1...65536), default: .int(2), "inter_channels = max(in_channels // reduction, 1)"),
        ConfigKey("use_scale", .bool, default: .bool(true), "scale logits by 1/sqrt(inter_channels) (embedded_gaussian)"),
        ConfigKey("mode", .choice(["embedded_gaussian", "gaussian", "dot_product", "concatenation"]),
                  default: .string("embedded_gaussian"), "pairwise function"),
        ConfigKey("sub_sample", .bool, default: .bool(false), "max-pool phi and g by 2"),
        ConfigKey("norm_cfg", .choice(["None", "BN"]), default: .string("None"), "norm after conv_out (BN: BatchNorm2d, no conv bias)"),
        ConfigKey("zeros_init", .bool, default: .bool(true), "accepted for compatibility; only affects training-time init"),
    ]

    public let config: Config
    let inChannels: Int, interChannels: Int
    let mode: String, useScale: Bool, subSample: Bool
    let g: PointwiseConv
    let theta: PointwiseConv?, phi: PointwiseConv?
    let concatProject: Tensor?            // 1, 2·C′, 1, 1
    let convOut: PointwiseConv
    let bn: (weight: Tensor, bias: Tensor, mean: Tensor, variance: Tensor)?

    public var expectedInput: String { "N×\(inChannels)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 4 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×C×H×W", found: inputShape)
        }
        try config.resolveChannels("in_channels", from: inputShape[1])
        self.config = config
        inChannels = config.int("in_channels")
        interChannels = max(inChannels / config.int("reduction"), 1)
        mode = config.string("mode")
        useScale = config.bool("use_scale")
        subSample = config.bool("sub_sample")
        let c = inChannels, ci = interChannels
        let sub = subSample ? ".0" : ""
        g = PointwiseConv(p.scoped("g" + sub).scoped("conv"), inChannels: c, outChannels: ci)
        if mode != "gaussian" {
            let th = PointwiseConv(p.scoped("theta").scoped("conv"), inChannels: c, outChannels: ci)
            theta = th
            // Similarity initialisation: phi starts equal to theta, so an untrained map shows
            // which pixels resemble the query. A checkpoint overrides both.
            phi = PointwiseConv(p.scoped("phi" + sub).scoped("conv"), inChannels: c, outChannels: ci,
                                weight: th.weight, initialBias: th.bias)
        } else {
            theta = nil
            phi = nil
        }
        concatProject = mode == "concatenation"
            ? p.scoped("concat_project").scoped("conv").parameter("weight", shape: [1, 2 * ci, 1, 1],
                                                                   initializer: .pytorchDefault(fanIn: 2 * ci))
            : nil
        let withBN = config.string("norm_cfg") == "BN"
        convOut = PointwiseConv(p.scoped("conv_out").scoped("conv"), inChannels: ci, outChannels: c, bias: !withBN)
        if withBN {
            let q = p.scoped("conv_out").scoped("bn")
            bn = (q.parameter("weight", shape: [c], initializer: .ones),
                  q.parameter("bias", shape: [c], initializer: .zeros),
                  q.buffer("running_mean", shape: [c], initializer: .zeros),
                  q.buffer("running_var", shape: [c], initializer: .ones))
            q.ignored("num_batches_tracked")
        } else {
            bn = nil
        }
    }

    /// Query, key and value tokens: N×L×Cq, N×Lk×Cq, N×Lk×C′ (Lk = L, or L/4 pooled).
    func projections(_ x: Tensor) -> (q: Tensor, k: Tensor, v: Tensor, kh: Int, kw: Int) {
        let h = x.shape[2], w = x.shape[3]
        let q = theta?.tokens(x) ?? x.mapToTokens()
        var k = phi?.tokens(x) ?? x.mapToTokens()
        var v = g.tokens(x)
        var kh = h, kw = w
        if subSample {
            k = maxPool2Tokens(k, height: h, width: w)
            v = maxPool2Tokens(v, height: h, width: w)
            kh = h / 2; kw = w / 2
        }
        return (q, k, v, kh, kw)
    }

    var scale: Float {
        switch mode {
        case "embedded_gaussian": return useScale ? 1 / Float(interChannels).squareRoot() : 1
        default: return 1
        }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (n, _, h, w) = try checkMap(x, channels: inChannels, module: Self.info.id)
        let (q, k, v, kh, kw) = projections(x)
        guard kh * kw > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "H, W ≥ 2 with sub_sample", found: x.shape)
        }
        let y: Tensor       // N, L, C′
        switch mode {
        case "embedded_gaussian", "gaussian":
            y = DenseAttention.multiHead(q: q, k: k, v: v, heads: 1, scale: scale)
        case "dot_product":
            // (θᵀφ / Lk) g = θ (φᵀ g) / Lk: the same product, associated the cheap way.
            let kv = k.matmul(v, transposeSelf: true)             // N, Cq, C′
            y = q.matmul(kv, alpha: 1 / Float(kh * kw))            // N, L, C′
        default:
            y = concatenationAttention(q: q, k: k, v: v)
        }
        var out = convOut.map(fromTokens: y, height: h, width: w)  // N, C, H, W
        out.withUnsafeMutableBufferPointer { op in
            x.withUnsafeBufferPointer { xp in
                let l = h * w
                let affine = bn.map { bnAffine($0) }
                for i in 0..<(n * inChannels * l) {
                    var val = op[i]
                    if let (sc, sh) = affine { let ch = (i / l) % inChannels; val = val * sc[ch] + sh[ch] }
                    op[i] = val + xp[i]
                }
            }
        }
        return out
    }

    /// BatchNorm (eval) as a per-channel scale and shift.
    func bnAffine(_ p: (weight: Tensor, bias: Tensor, mean: Tensor, variance: Tensor)) -> ([Float], [Float]) {
        let w = p.weight.scalars, b = p.bias.scalars, m = p.mean.scalars, v = p.variance.scalars
        var sc = [Float](repeating: 0, count: w.count), sh = sc
        for i in 0..<w.count {
            sc[i] = w[i] / (v[i] + 1e-5).squareRoot()
            sh[i] = b[i] - m[i] * sc[i]
        }
        return (sc, sh)
    }

    /// ReLU(a·θᵢ + b·φⱼ) / Lk weights applied to g, one query row at a time (O(L·Lk) time,
    /// O(Lk) memory per row).
    func concatenationAttention(q: Tensor, k: Tensor, v: Tensor) -> Tensor {
        let n = q.shape[0], l = q.shape[1], ci = q.shape[2], lk = k.shape[1]
        let (a, b) = concatProjections(q: q, k: k)
        var out = Tensor(zeros: [n, l, ci])
        out.withUnsafeMutableBufferPointer { op in
            v.withUnsafeBufferPointer { vp in
                for bi in 0..<n {
                    var row = [Float](repeating: 0, count: lk)
                    for i in 0..<l {
                        let ai = a[bi * l + i]
                        for j in 0..<lk { row[j] = max(ai + b[bi * lk + j], 0) / Float(lk) }
                        row.withUnsafeBufferPointer { rp in
                            BLAS.gemm(m: 1, n: ci, k: lk, a: rp.baseAddress!, lda: lk,
                                      b: vp.baseAddress! + bi * lk * ci, ldb: ci,
                                      c: op.baseAddress! + (bi * l + i) * ci, ldc: ci)
                        }
                    }
                }
            }
        }
        return out
    }

    /// The two halves of concat_project applied to θ and φ tokens: aᵢ = w₁·θᵢ, bⱼ = w₂·φⱼ.
    func concatProjections(q: Tensor, k: Tensor) -> ([Float], [Float]) {
        let w = concatProject!.scalars, ci = q.shape[2]
        func dot(_ t: Tensor, offset: Int) -> [Float] {
            let rows = t.shape[0] * t.shape[1]
            return t.withUnsafeBufferPointer { p in
                (0..<rows).map { r in
                    var s: Float = 0
                    for c in 0..<ci { s += p[r * ci + c] * w[offset + c] }
                    return s
                }
            }
        }
        return (dot(q, offset: 0), dot(k, offset: ci))
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (n, _, h, w) = try checkMap(x, channels: inChannels, module: Self.info.id)
        guard (0..<h).contains(query.row), (0..<w).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id,
                                       message: "query (row \(query.row), column \(query.column)) is outside the \(h)×\(w) grid")
        }
        _ = n
        let x0 = x.batchItem(0)
        let (q, k, _, kh, kw) = projections(x0)
        let i = query.row * w + query.column, ci = q.shape[2], lk = kh * kw
        var weights: [Float]
        switch mode {
        case "embedded_gaussian", "gaussian":
            weights = q.withUnsafeBufferPointer { qp in
                k.withUnsafeBufferPointer { kp in
                    DenseAttention.weights(query: qp.baseAddress! + i * ci, keys: kp.baseAddress!, ldk: ci,
                                           lk: lk, d: ci, scale: scale)
                }
            }
        case "dot_product":
            weights = q.withUnsafeBufferPointer { qp in
                k.withUnsafeBufferPointer { kp in
                    (0..<lk).map { j in
                        var s: Float = 0
                        for c in 0..<ci { s += qp[i * ci + c] * kp[j * ci + c] }
                        return s / Float(lk)
                    }
                }
            }
        default:
            let (a, b) = concatProjections(q: q, k: k)
            weights = (0..<lk).map { j in max(a[i] + b[j], 0) / Float(lk) }
        }
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, kh, kw], scalars: weights),
                            labels: [mode == "embedded_gaussian" || mode == "gaussian" ? "softmax weights" : "pairwise weights"])
    }
}

/// MaxPool2d(kernel_size=2) (stride 2, floor) on tokens N×(H·W)×C → N×(H/2·W/2)×C.
func maxPool2Tokens(_ t: Tensor, height h: Int, width w: Int) -> Tensor {
    let n = t.shape[0], c = t.shape[2], oh = h / 2, ow = w / 2
    var out = Tensor(uninitialized: [n, oh * ow, c])
    t.withUnsafeBufferPointer { tp in
        out.withUnsafeMutableBufferPointer { op in
            for b in 0..<n {
                for i in 0..<oh {
                    for j in 0..<ow {
                        let dst = op.baseAddress! + (b * oh * ow + i * ow + j) * c
                        let p00 = tp.baseAddress! + (b * h * w + (2 * i) * w + 2 * j) * c
                        let p01 = p00 + c, p10 = p00 + w * c, p11 = p10 + c
                        for ch in 0..<c { dst[ch] = max(max(p00[ch], p01[ch]), max(p10[ch], p11[ch])) }
                    }
                }
            }
        }
    }
    return out
}

extension Tensor {
    /// Batch item `i` as a 1×… tensor.
    func batchItem(_ i: Int) -> Tensor {
        let per = count / shape[0]
        var out = Tensor(uninitialized: [1] + Array(shape.dropFirst()))
        withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                op.baseAddress!.update(from: xp.baseAddress! + i * per, count: per)
            }
        }
        return out
    }
}
