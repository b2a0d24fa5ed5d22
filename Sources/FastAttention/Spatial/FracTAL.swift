// FracTAL — the fractal Tanimoto attention layer.
// Diakogiannis, Waldner, Caccetta, "Looking for change? Roll the Dice and demand Attention",
// Remote Sensing 2021. https://arxiv.org/abs/2009.02062
// Reference matched: feevos/ceecnet (commit 9dc76f8) nn/layers/attention.py `FTAttention2D` and
// nn/layers/ftnmt.py `FTanimoto` (MXNet Gluon), read in full, through the PyTorch
// transliteration in Tools/reference/fractal_tanimoto.py.

import CKernels
import Foundation
import TensorCore

/// FracTAL: spatial and channel attention from the fractal Tanimoto similarity of a query and a
/// key feature map, applied to a value map. Linear in pixels and channels.
///
/// Matches ceecnet's `FTAttention2D(nkeys, kernel_size=3, padding=1, nheads=1, norm='BatchNorm',
/// ftdepth=5)` in inference mode, i.e. `RelFTAttention2D(x, x, x)`:
/// q, k, v = σ(BN(conv(x))) (bias-free k×k convs, `nheads` groups), then
/// y = BN(½·(FT_HW(q, k) ⊙ v + FT_C(q, k) ⊙ v)).
///
/// - Input N×C×H×W (C divisible by `nheads`), output N×nkeys×H′×W′ (H′ = H + 2·padding −
///   kernel_size + 1; equal to H for the default 3/1).
/// - Fractal Tanimoto with complement over an axis set A, depth D, ε = 1e-5:
///   T(p, l) = (⟨p,l⟩ + ε)·(1/D)·Σ_{d<D} 1 / (2ᵈ(⟨p,p⟩ + ⟨l,l⟩) − (2ᵈ⁺¹ − 1)⟨p,l⟩ + ε),
///   FT(p, l) = ½·(T(p, l) + T(1 − p, 1 − l)). It is 1 for p = l, symmetric, and in [0, 1]
///   for non-negative p, l (the sigmoid outputs it is used on).
/// - Map (global): the spatial similarity FT over channels at each pixel, 1×H′×W′ in [0, 1] —
///   where the query and key features of the same pixel agree. The channel similarity (FT over
///   H′×W′ per channel, nkeys values) is `similarities(_:)`'s second result, and its mean and
///   range are printed in the map's label. Cost O(nkeys·H′·W′) beside the convs.
/// - Cost: O(H·W·(C·nkeys·k²/nheads + nkeys·D)): the convs dominate, all linear in pixels.
///   With nheads = 1 the three convs run as one (3·nkeys output channels, weights concatenated
///   at init), for 3×3 kernels through Winograd F(4×4, 3×3) (a quarter of the multiply-adds).
///
/// Quirks of the reference:
/// - Gluon infers the input channels; here the input tells them (`nkeys` defaults to them too).
/// - `ftdepth = 0` means one term with scale 1 (not zero terms); ε sits in numerator and every
///   denominator; the complement term uses 1 − p, 1 − l.
/// - The spatial similarity sums over all channels, ignoring `nheads` (heads only group convs).
/// - The final BatchNorm acts on the attended values; MXNet BN ε = 1e-5, running statistics.
/// - The similarity is between q and k at the *same* position, so the usual similarity
///   initialisation (W_k = W_q) would make both similarities identically 1: untrained weights
///   here are independent PyTorch-default draws for the three convs, BN at identity.
///
/// Keys (Gluon block names, PyTorch names inside each layer, conventions.md):
/// `att.{query,key,value}.conv2d.weight` (nkeys×C/nheads×k×k),
/// `att.{query,key,value}.norm_layer.{weight,bias,running_mean,running_var}` (nkeys),
/// `att.norm.{weight,bias,running_mean,running_var}` (nkeys); `num_batches_tracked` accepted.
public final class FracTAL: AttentionModule {
    public static let info = ModuleInfo(
        id: "fractal-tanimoto", title: "Looking for change? Roll the Dice and demand Attention (FracTAL)",
        arxiv: "2009.02062", year: 2020, complexity: "O(H W D)", complexityExponent: 1, kind: .spatial,
        causal: false, reference: "feevos/ceecnet FTAttention2D (MXNet Gluon, 9dc76f8) via a PyTorch transliteration",
        mapKind: .global,
        mapDescription: "spatial fractal Tanimoto similarity of query and key features at each pixel (over channels, in [0,1]); the label gives the channel similarity's mean and range",
        notes: ["q, k, v = sigmoid(BN(conv k×k, no bias, nheads groups)); output BN(0.5·(att_chan·v + att_spat·v))",
                "FTanimoto: d = 0..ftdepth-1 terms scaled 1/ftdepth (ftdepth=0: one term, scale 1), eps 1e-5 in numerator and denominators, averaged with the complements 1-q, 1-k",
                "output has nkeys channels and H+2·padding-kernel_size+1 rows (same size for 3/1)",
                "untrained: independent PyTorch-default conv weights (W_k = W_q would make every similarity 1)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("nkeys", .int(1...65536), default: .none, "channels of q, k, v and the output (default: the input's)"),
        ConfigKey("kernel_size", .int(1...31), default: .int(3), "kernel of the q, k, v convolutions"),
        ConfigKey("padding", .int(0...15), default: .int(1), "zero padding of the q, k, v convolutions"),
        ConfigKey("nheads", .int(1...4096), default: .int(1), "groups of the q, k, v convolutions"),
        ConfigKey("ftdepth", .int(0...30), default: .int(5), "depth D of the fractal Tanimoto similarity"),
        ConfigKey("norm", .choice(["BatchNorm"]), default: .string("BatchNorm"), "normalisation (BatchNorm only)"),
        ConfigKey("norm_groups", .int(1...65536), default: .none, "GroupNorm groups (unsupported: must stay None)"),
    ]

    /// ceecnet's `smooth`.
    static let smooth: Double = 1e-5

    public let config: Config
    let inChannels: Int, nkeys: Int, depth: Int
    let query: (conv: Conv2d, norm: BatchNorm2d)
    let key: (conv: Conv2d, norm: BatchNorm2d)
    let value: (conv: Conv2d, norm: BatchNorm2d)
    let norm: BatchNorm2d
    /// The q, k, v convs as one conv with 3·nkeys output channels (weights concatenated at
    /// init), when they are ungrouped: one im2col or one Winograd input transform instead of
    /// three. nil with nheads > 1 (the fused conv's groups would mix q, k and v channels).
    let fusedQKV: FusedConv?
    /// The q, k, v BatchNorms folded to y·scale + shift (3·nkeys channels, as `batchNorm` folds
    /// them), applied with the sigmoid straight off the fused conv's output.
    let fusedAffine: (scale: [Float], shift: [Float])

    enum FusedConv {
        case winograd(WinogradConv3x3)   // 3×3: weights already in the Winograd domain
        case weight(Tensor)              // other kernels: conv2d's own paths
    }

    public var expectedInput: String { "N×\(inChannels)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        let id = Self.info.id
        guard inputShape.count == 4 else { throw ModuleError.badInput(module: id, expected: "N×C×H×W", found: inputShape) }
        var config = config
        if !config.isSet("nkeys") { try config.resolveChannels("nkeys", from: inputShape[1]) }
        self.config = config
        guard !config.isSet("norm_groups") else {
            throw ModuleError.unsupported(module: id, message: "norm_groups is only used by GroupNorm; norm=BatchNorm takes none")
        }
        inChannels = inputShape[1]
        nkeys = config.int("nkeys")
        let heads = config.int("nheads"), k = config.int("kernel_size"), pad = config.int("padding")
        guard inChannels % heads == 0, nkeys % heads == 0 else {
            throw ConfigError.inconsistent(module: id,
                message: "nheads=\(heads) must divide the input channels (\(inChannels)) and nkeys (\(nkeys))")
        }
        depth = config.int("ftdepth")
        let att = p.scoped("att"), cin = inChannels, cout = nkeys
        func convNormed(_ name: String) throws -> (Conv2d, BatchNorm2d) {
            let s = att.scoped(name)
            return (try Conv2d(s.scoped("conv2d"), inChannels: cin, outChannels: cout, kernelSize: k,
                               padding: pad, groups: heads, bias: false),
                    BatchNorm2d(s.scoped("norm_layer"), numFeatures: cout))
        }
        query = try convNormed("query")
        key = try convNormed("key")
        value = try convNormed("value")
        norm = BatchNorm2d(att.scoped("norm"), numFeatures: nkeys)
        if heads == 1 {
            let w = Tensor.concatenated([query.conv.weight, key.conv.weight, value.conv.weight], axis: 0)
            fusedQKV = k == 3 ? .winograd(try WinogradConv3x3(weight: w)) : .weight(w)
        } else {
            fusedQKV = nil
        }
        var scale: [Float] = [], shift: [Float] = []
        for bn in [query.norm, key.norm, value.norm] {
            let m = bn.runningMean!.scalars, v = bn.runningVar!.scalars
            let w = bn.weight!.scalars, b = bn.bias!.scalars
            for ch in 0..<nkeys {
                let a = Double(w[ch]) / (Double(v[ch]) + Double(bn.eps)).squareRoot()
                scale.append(Float(a))
                shift.append(Float(Double(b[ch]) - Double(m[ch]) * a))
            }
        }
        fusedAffine = (scale, shift)
    }

    /// σ(BN(conv(x))): N×C×H×W → N×nkeys×H′×W′.
    func branch(_ b: (conv: Conv2d, norm: BatchNorm2d), _ x: Tensor) throws -> Tensor {
        try b.norm(try b.conv(x)).sigmoid()
    }

    /// q, k, v = σ(BN(conv(x))) for the three branches, through the fused conv when there is one.
    func branches(_ x: Tensor) throws -> (q: Tensor, k: Tensor, v: Tensor) {
        guard let fusedQKV else { return (try branch(query, x), try branch(key, x), try branch(value, x)) }
        let pad = config.int("padding")
        let y: Tensor                                                 // N, 3K, H′, W′
        switch fusedQKV {
        case .winograd(let w): y = try conv2d(x, winograd: w, padding: (pad, pad))
        case .weight(let w): y = try conv2d(x, weight: w, padding: (pad, pad))
        }
        return (sigmoidNormed(y, first: 0), sigmoidNormed(y, first: nkeys), sigmoidNormed(y, first: 2 * nkeys))
    }

    /// σ(BN(y[:, first..<first+nkeys])) for one branch of the fused conv's output y
    /// (N×3K×H′×W′), one pass per plane: no split copy, no separate BN and sigmoid passes.
    func sigmoidNormed(_ y: Tensor, first: Int) -> Tensor {
        let n = y.shape[0], total = y.shape[1], l = y.shape[2] * y.shape[3], kk = nkeys
        var out = Tensor(uninitialized: [n, kk, y.shape[2], y.shape[3]])
        if out.count == 0 { return out }
        let (scale, shift) = fusedAffine
        y.withUnsafeBufferPointer { yp in
            out.withUnsafeMutableBufferPointer { op in
                let (yb, ob) = (yp.baseAddress!, op.baseAddress!)
                Threads.parallelFor(n * kk, minChunk: max(1, 16384 / max(l, 1))) { planes in
                    for plane in planes {
                        let (b, ch) = plane.quotientAndRemainder(dividingBy: kk)
                        let src = yb + (b * total + first + ch) * l, dst = ob + plane * l
                        // 1/(1 + e^−(x·scale + shift)), as Tensor.sigmoid after batchNorm.
                        fa_sigmoid_affine(src, dst, l, scale[first + ch], shift[first + ch])
                    }
                }
            }
        }
        return out
    }

    func checked(_ x: Tensor) throws -> Tensor {
        _ = try checkMap(x, channels: inChannels, module: Self.info.id)
        let k = config.int("kernel_size"), pad = config.int("padding")
        guard x.shape[2] + 2 * pad >= k, x.shape[3] + 2 * pad >= k else {
            throw ModuleError.badInput(module: Self.info.id,
                                       expected: "N×\(inChannels)×H×W with H, W ≥ \(k - 2 * pad) (kernel \(k), padding \(pad))",
                                       found: x.shape)
        }
        return x
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let x = try checked(x)
        let (q, k, attended) = try branches(x)
        var v = attended                                              // N, K, H′, W′
        let (spatial, channel) = Self.similarities(q, k, depth: depth)
        let n = v.shape[0], c = v.shape[1], l = v.shape[2] * v.shape[3]
        v.withUnsafeMutableBufferPointer { vp in
            spatial.withUnsafeBufferPointer { sp in
                channel.withUnsafeBufferPointer { cp in
                    for b in 0..<n {
                        for ch in 0..<c {
                            let row = vp.baseAddress! + (b * c + ch) * l, s = sp.baseAddress! + b * l
                            let ac = cp[b * c + ch]
                            // ½·(att_chan·v + att_spat·v), in the reference's order.
                            for i in 0..<l { row[i] = 0.5 * (ac * row[i] + s[i] * row[i]) }
                        }
                    }
                }
            }
        }
        return try norm(v)                                            // N, K, H′, W′
    }

    /// The spatial (N×1×H′×W′) and channel (N×nkeys×1×1) fractal Tanimoto similarities of the
    /// module's query and key maps on `x`.
    public func similarities(_ x: Tensor) throws -> (spatial: Tensor, channel: Tensor) {
        let x = try checked(x)
        let (q, k, _) = try branches(x)
        return Self.similarities(q, k, depth: depth)
    }

    /// FT(q, k) over channels (→ N×1×H×W) and over H×W (→ N×C×1×1) for N×C×H×W maps, from
    /// one vectorised pass (`fa_tanimoto_sums`, Double) over the sums of q·k, q², k², q and k;
    /// the complements' inner products follow from them (Σ(1−p)(1−l) = n − Σp − Σl + Σpl).
    public static func similarities(_ q: Tensor, _ k: Tensor, depth: Int) -> (spatial: Tensor, channel: Tensor) {
        let n = q.shape[0], c = q.shape[1], h = q.shape[2], w = q.shape[3], l = h * w
        var spatial = Tensor(uninitialized: [n, 1, h, w]), channel = Tensor(uninitialized: [n, c, 1, 1])
        var pix = [Double](repeating: 0, count: 5 * l), chan = [Double](repeating: 0, count: 5 * c)
        q.withUnsafeBufferPointer { qp in
        k.withUnsafeBufferPointer { kp in
        spatial.withUnsafeMutableBufferPointer { sp in
        channel.withUnsafeMutableBufferPointer { cp in
        pix.withUnsafeMutableBufferPointer { px in
        chan.withUnsafeMutableBufferPointer { cs in
            for b in 0..<n {
                if b > 0 { px.update(repeating: 0); cs.update(repeating: 0) }
                if c > 0 && l > 0 {
                    fa_tanimoto_sums(qp.baseAddress! + b * c * l, kp.baseAddress! + b * c * l, c, l,
                                     px.baseAddress!, cs.baseAddress!)
                }
                let nc = Double(c)
                for i in 0..<l {
                    sp[b * l + i] = Float(fromSums(px[i], px[l + i], px[2 * l + i], px[3 * l + i], px[4 * l + i],
                                                   count: nc, depth))
                }
                let nl = Double(l)
                for ch in 0..<c {
                    let r = 5 * ch
                    cp[b * c + ch] = Float(fromSums(cs[r], cs[r + 1], cs[r + 2], cs[r + 3], cs[r + 4], count: nl, depth))
                }
            }
        }
        }
        }
        }
        }
        }
        return (spatial, channel)
    }

    /// `complemented` from Σpl, Σp², Σl², Σp, Σl over `count` elements.
    @inline(__always)
    static func fromSums(_ pl: Double, _ pp: Double, _ ll: Double, _ p: Double, _ l: Double,
                         count: Double, _ depth: Int) -> Double {
        complemented(pl, pp, ll, count - p - l + pl, count - 2 * p + pp, count - 2 * l + ll, depth)
    }

    /// ½·(T(p, l) + T(1 − p, 1 − l)) from the inner products ⟨p,l⟩, ⟨p,p⟩, ⟨l,l⟩ and those of the
    /// complements.
    @inline(__always)
    static func complemented(_ pl: Double, _ pp: Double, _ ll: Double,
                             _ cpl: Double, _ cpp: Double, _ cll: Double, _ depth: Int) -> Double {
        0.5 * (tanimoto(pl: pl, pp: pp, ll: ll, depth: depth) + tanimoto(pl: cpl, pp: cpp, ll: cll, depth: depth))
    }

    /// The fractal Tanimoto T_D from inner products (ceecnet's `tnmt_base`).
    @inline(__always)
    static func tanimoto(pl: Double, pp: Double, ll: Double, depth: Int) -> Double {
        let terms = depth == 0 ? 1 : depth, scale = depth == 0 ? 1 : 1 / Double(depth)
        var den = 0.0, a = 1.0
        for _ in 0..<terms {
            den += 1 / (a * (pp + ll) - (2 * a - 1) * pl + smooth)
            a *= 2
        }
        return (pl + smooth) * den * scale
    }

    /// The fractal Tanimoto similarity with complement of two equally long vectors (the whole
    /// vector is the axis set), for tests and users who want the metric alone.
    public static func fractalTanimoto(_ p: [Float], _ l: [Float], depth: Int = 5) -> Double {
        precondition(p.count == l.count)
        var s = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        for i in p.indices {
            let a = Double(p[i]), b = Double(l[i])
            s.0 += a * b; s.1 += a * a; s.2 += b * b
            s.3 += (1 - a) * (1 - b); s.4 += (1 - a) * (1 - a); s.5 += (1 - b) * (1 - b)
        }
        return complemented(s.0, s.1, s.2, s.3, s.4, s.5, depth)
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (spatial, channel) = try similarities(x.batchItem(0))   // 1, 1, H′, W′ ; 1, K, 1, 1
        let cs = channel.scalars
        let mean = cs.reduce(0, +) / Float(max(cs.count, 1))
        let label = String(format: "spatial similarity (channel similarity mean %.3f, %.3f-%.3f)",
                           mean, cs.min() ?? 0, cs.max() ?? 0)
        return AttentionMap(kind: .global, values: spatial.reshaped([1, spatial.shape[2], spatial.shape[3]]),
                            labels: [label])
    }
}
