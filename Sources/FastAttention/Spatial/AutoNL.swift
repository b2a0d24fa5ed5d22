// Neural Architecture Search for Lightweight Non-Local Networks (AutoNL).
// Yingwei Li, Xiaojie Jin, Jieru Mei, Xiaochen Lian, Linjie Yang, Cihang Xie, Qihang Yu, Yuyin
// Zhou, Song Bai, Alan Yuille — CVPR 2020. https://arxiv.org/abs/2004.01961
// Reference matched: the official TF code's math, LiYingwei/AutoNL model_def.py `non_local_op` +
// `MnasBlock._call_non_local` (commit 6fec214), with the module layout and state_dict keys of the
// PyTorch port meijieru/yet_another_mobilenet_series models/mobilenet_base.py `Nonlocal`
// (commit 6715961). Both read in full.

import TensorCore

/// AutoNL's lightweight non-local block: a parameter-free affinity between channel slices of
/// the input, no softmax, associated as θ(φᵀg) so the cost is linear in H·W, then a depthwise
/// 3×3 conv, BatchNorm and a residual.
///
/// Matches `Nonlocal(n_feature, nl_c, nl_s)` from the PyTorch port in eval mode, except that
/// it divides by H·W as the TF original does (the port computes `f / H * W`, i.e. (f/H)·W — a
/// bug). The parity fixture is our own PyTorch transliteration of the TF math on the port's
/// parameters (Tools/reference/autonl.py), checked to reproduce the port under the port's
/// normaliser.
///
/// - Input N×n_feature×H×W, output N×n_feature×H×W (with residual).
/// - Math: θ = x[:, :⌊nl_c·C⌋] (no conv); x_s = x[:, :, ::nl_s, ::nl_s] (strided, ⌈H/s⌉×⌈W/s⌉);
///   φ = x_s[:, :⌊nl_c·C⌋]; g = x_s. f = θ (φᵀ g) / (H·W), with the full-resolution H·W even when
///   nl_s > 1. y = x + BN(dwconv3×3(f)).
/// - Map (per-query): the un-normalised affinity θ_i·φ_j/(H·W) of the query over the strided
///   key grid (⌈H/s⌉×⌈W/s⌉; no softmax: signed, does not sum to 1). O(n·⌊nl_c·C⌋) per query.
/// - Cost: O(H·W·C·⌊nl_c·C⌋) time (the paper's O((HW/hw)·(D/k)²) trade-off); O(H·W·C) memory.
///   φgᵀ's first ⌊nl_c·C⌋ columns are φ's Gram matrix (φ is g's first rows): one `ssyrk`, a
///   third cheaper than the GEMM. Eval BN is folded into the depthwise conv (weight·γ/σ, bias
///   β − μγ/σ), which runs with the residual in one pass (`depthwiseConv3x3`).
///
/// Quirks of the reference:
/// - No projections: θ and φ are the *first* ⌊nl_c·C⌋ channels (Python `int()` of the float
///   product, e.g. int(0.3·10) = 3). TF is NHWC; the slice is the same channels.
/// - TF picks θφᵀ-then-g or θ(φᵀg) by a MAC count; the two are equal up to rounding, and this
///   port always associates the linear way.
/// - The port's BatchNorm is ZeroInitBN (γ = β = 0) so a fresh block is the identity; TF zero-
///   initialises γ only with `nl_zero_init`. Seeded weights here are PyTorch defaults (γ = 1),
///   so an untrained block does attend; the map shows the affinity itself either way. BN eps is
///   torch's 1e-5 (the port passes `batch_norm_kwargs`, empty by default).
///
/// Keys: `depthwise_conv.weight` (C×1×3×3, no bias), `bn.{weight,bias,running_mean,running_var}`,
/// `bn.num_batches_tracked`.
public final class AutoNL: AttentionModule {
    public static let info = ModuleInfo(
        id: "autonl", title: "Neural Architecture Search for Lightweight Non-Local Networks",
        arxiv: "2004.01961", year: 2020, complexity: "O((HW/hw) (D/k)^2)", complexityExponent: 1, kind: .spatial,
        causal: false,
        reference: "TF AutoNL non_local_op math (LiYingwei/AutoNL 6fec214) with meijieru Nonlocal keys (6715961); divides by H*W",
        mapKind: .perQuery,
        mapDescription: "un-normalised affinity theta_i.phi_j/(H*W) of the query over the strided key grid (no softmax; signed)",
        notes: ["divides by H*W as the TF original; the PyTorch port's `f / H * W` is a bug",
                "theta/phi are the first int(nl_c*C) channels of x (no projections); phi and g are x[:, :, ::nl_s, ::nl_s]",
                "the normaliser is the full-resolution H*W even with nl_s > 1",
                "the key grid is ceil(H/nl_s) x ceil(W/nl_s)",
                "untrained: depthwise conv PyTorch-default random, BN weight 1 (the port's ZeroInitBN would make it the identity)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("n_feature", .int(1...65536), default: .none, "input channels (taken from the input when unset)"),
        ConfigKey("nl_c", .float(0...1), default: .float(1), "fraction of channels shared by theta and phi (first int(nl_c*C))"),
        ConfigKey("nl_s", .int(1...64), default: .int(1), "spatial stride of phi and g"),
    ]

    public let config: Config
    let nFeature: Int, nlS: Int
    /// ⌊nl_c·C⌋: channels of θ and φ.
    let sharedChannels: Int
    let depthwiseConv: Conv2d
    let bn: BatchNorm2d
    /// depthwiseConv with bn folded in (nil when bn has no running statistics).
    let convBN: Conv2d?

    public var expectedInput: String { "N×\(nFeature)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 4 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×C×H×W", found: inputShape)
        }
        try config.resolveChannels("n_feature", from: inputShape[1])
        self.config = config
        nFeature = config.int("n_feature")
        nlS = config.int("nl_s")
        // Python's int(nl_c * n_in): the same IEEE product, truncated.
        sharedChannels = Int((config.float("nl_c") * Double(nFeature)).rounded(.towardZero))
        guard sharedChannels >= 1 else {
            throw ConfigError.inconsistent(module: Self.info.id,
                message: "nl_c=\(config.float("nl_c")) leaves int(nl_c*\(nFeature)) = 0 channels for theta and phi")
        }
        depthwiseConv = try Conv2d(p.scoped("depthwise_conv"), inChannels: nFeature, outChannels: nFeature,
                                   kernelSize: 3, padding: 1, groups: nFeature, bias: false)
        bn = BatchNorm2d(p.scoped("bn"), numFeatures: nFeature)
        convBN = Self.fold(depthwiseConv, bn)
    }

    /// dwconv then eval BN as one conv: weight·a, bias b − μ·a with a = γ/√(σ² + eps) per
    /// channel (a and the bias folded in Double, as `batchNorm` does).
    static func fold(_ conv: Conv2d, _ bn: BatchNorm2d) -> Conv2d? {
        guard let mean = bn.runningMean?.scalars, let variance = bn.runningVar?.scalars, conv.bias == nil else { return nil }
        let c = bn.numFeatures, w = bn.weight?.scalars, b = bn.bias?.scalars
        var folded = conv
        var weight = conv.weight.scalars, bias = [Float](repeating: 0, count: c)
        let per = weight.count / c
        for ch in 0..<c {
            let a = Double(w?[ch] ?? 1) / (Double(variance[ch]) + Double(bn.eps)).squareRoot()
            for i in 0..<per { weight[ch * per + i] = Float(Double(weight[ch * per + i]) * a) }
            bias[ch] = Float(Double(b?[ch] ?? 0) - Double(mean[ch]) * a)
        }
        folded.weight = Tensor(shape: conv.weight.shape, scalars: weight)
        folded.bias = Tensor(shape: [c], scalars: bias)
        return folded
    }

    /// x[:, :, ::s, ::s] → N×C×⌈H/s⌉×⌈W/s⌉ (x itself when s = 1).
    func strided(_ x: Tensor) -> Tensor {
        if nlS == 1 { return x }
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let hs = (h + nlS - 1) / nlS, ws = (w + nlS - 1) / nlS
        var out = Tensor(uninitialized: [n, c, hs, ws])
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                for plane in 0..<(n * c) {
                    let src = xp.baseAddress! + plane * h * w, dst = op.baseAddress! + plane * hs * ws
                    for i in 0..<hs {
                        for j in 0..<ws { dst[i * ws + j] = src[i * nlS * w + j * nlS] }
                    }
                }
            }
        }
        return out   // N, C, H/s, W/s
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (n, c, h, w) = try checkMap(x, channels: nFeature, module: Self.info.id)
        let l = h * w, ct = sharedChannels
        let xs = strided(x)                                            // N, C, Hs, Ws
        let ls = xs.shape[2] * xs.shape[3]
        var f = Tensor(uninitialized: [n, c, h, w])
        var context = [Float](repeating: 0, count: ct * c)            // φ gᵀ: ct × C, per image
        x.withUnsafeBufferPointer { xp in
        xs.withUnsafeBufferPointer { sp in
        f.withUnsafeMutableBufferPointer { fp in
        context.withUnsafeMutableBufferPointer { mp in
            for b in 0..<n {
                let xb = xp.baseAddress! + b * c * l, sb = sp.baseAddress! + b * c * ls
                // M (ct×C) = φ (ct×Ls) · gᵀ (Ls×C); φ is the first ct rows of g, so M's first
                // ct columns are φφᵀ (symmetric) and the rest φ · g[ct:]ᵀ.
                BLAS.gram(n: ct, k: ls, a: sb, lda: ls, c: mp.baseAddress!, ldc: c)
                if ct < c {
                    BLAS.gemm(transB: true, m: ct, n: c - ct, k: ls, a: sb, lda: ls, b: sb + ct * ls, ldb: ls,
                              c: mp.baseAddress! + ct, ldc: c)
                }
                // f (C×L) = Mᵀ (C×ct) · θ (ct×L) / (H·W); θ is the first ct rows of x.
                BLAS.gemm(transA: true, m: c, n: l, k: ct, alpha: 1 / Float(l), a: mp.baseAddress!, lda: c,
                          b: xb, ldb: l, c: fp.baseAddress! + b * c * l, ldc: l)
            }
        }
        }
        }
        }
        if let convBN {
            // BN(dwconv(f)) + x as one pass: the folded conv's bias and the residual start each sum.
            return depthwiseConv3x3(f, weight: convBN.weight, bias: convBN.bias, adding: x)   // N, C, H, W
        }
        var y = try bn(try depthwiseConv(f))                            // N, C, H, W
        y += x
        return y
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, _, h, w) = try checkMap(x, channels: nFeature, module: Self.info.id)
        guard (0..<h).contains(query.row), (0..<w).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id,
                                       message: "query (row \(query.row), column \(query.column)) is outside the \(h)×\(w) grid")
        }
        let x0 = x.batchItem(0)
        let xs = strided(x0)                                            // 1, C, Hs, Ws
        let (hs, ws) = (xs.shape[2], xs.shape[3])
        let l = h * w, ls = hs * ws, i = query.row * w + query.column
        var weights = [Float](repeating: 0, count: ls)
        x0.withUnsafeBufferPointer { xp in
            xs.withUnsafeBufferPointer { sp in
                let scale = 1 / Float(l)
                for ch in 0..<sharedChannels {
                    let t = xp[ch * l + i] * scale, row = sp.baseAddress! + ch * ls
                    for j in 0..<ls { weights[j] += t * row[j] }
                }
            }
        }
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, hs, ws], scalars: weights),
                            labels: [nlS == 1 ? "theta.phi/(HW)" : "theta.phi/(HW), stride \(nlS)"])
    }
}
