// CBAM: Convolutional Block Attention Module.
// Woo, Park, Lee, Kweon, ECCV 2018. https://arxiv.org/abs/1807.06521
// Reference matched: the authors' Jongchan/attention-module MODELS/cbam.py `CBAM` (commit 459efad),
// read in full. timm's CbamModule differs (no MLP biases, [mean, max] order) and is not accepted.

import Foundation
import CKernels
import TensorCore

/// Channel attention, then spatial attention, both as sigmoid gates on the input.
///
/// Matches `CBAM(gate_channels, reduction_ratio=16, pool_types=['avg', 'max'], no_spatial=False)`
/// in eval mode.
///
/// - Input N×C×H×W, output N×C×H×W (no residual):
///   a = σ(Σ_pool MLP(pool_HW(x))) (N×C×1×1), x₁ = x ⊙ a;
///   m = σ(BN(conv7×7([max_C x₁, mean_C x₁]))) (N×1×H×W), y = x₁ ⊙ m.
/// - Map (global): the spatial gate m of batch item 0, 1×H×W in (0, 1). The channel gate a is
///   the other half of the module's attention: `channelGate(_:)` returns it (N×C×1×1).
/// - Cost: O(N·C) pooling and gating, O(C²/r) MLP, O(N·2·49) spatial conv: linear in N.
///
/// Quirks of the reference:
/// - One MLP `Linear(C, C//r) → ReLU → Linear(C//r, C)`, with biases, shared by every pool type;
///   the raw MLP outputs are summed before the sigmoid.
/// - `pool_types` is a list of distinct pool types in any order, as the reference's list: the
///   MLP outputs are summed in its order (`max,avg` equals `avg,max` up to float rounding).
/// - `pool_types` may also hold `lp` (`F.lp_pool2d` with p = 2 over the whole map: √Σx²) and
///   `lse` (log-sum-exp over H·W).
/// - The spatial descriptor is [max, mean] in that order (timm uses [mean, max]).
/// - The 7×7 conv (padding 3) has no bias; its BatchNorm2d(1) has eps 1e-5 (momentum 0.01,
///   training only). No ReLU.
/// - `no_spatial=True` leaves only the channel gate; the module then has no spatial map and
///   `attentionMap` says so (use `channelGate`).
///
/// Keys: `ChannelGate.mlp.1.{weight (C/r,C), bias}`, `ChannelGate.mlp.3.{weight (C,C/r), bias}`,
/// `SpatialGate.spatial.conv.weight (1,2,7,7)`,
/// `SpatialGate.spatial.bn.{weight, bias, running_mean, running_var, num_batches_tracked}` (1).
public final class CBAM: AttentionModule {
    public static let info = ModuleInfo(
        id: "cbam", title: "CBAM: Convolutional Block Attention Module", arxiv: "1807.06521", year: 2018,
        complexity: "O(N D + D^2/r + N D k^2)", complexityExponent: 1, kind: .spatial, causal: false,
        reference: "Jongchan/attention-module MODELS/cbam.py CBAM (authors' code, commit 459efad)", mapKind: .global,
        mapDescription: "spatial gate m = sigmoid(BN(conv7x7([max_C, mean_C]))) after the channel gate; channelGate(_:) gives the C channel weights",
        notes: ["one MLP with biases shared by the pool types; raw outputs summed before the sigmoid",
                "spatial descriptor order [max, mean] (timm: [mean, max])",
                "no residual; no_spatial=true leaves only the channel gate (no spatial map)",
                "untrained: PyTorch-default random MLP and conv, BN weight 1, bias 0, mean 0, var 1"])

    static let poolNames = ["avg", "max", "lp", "lse"]

    public static let configSchema: [ConfigKey] = [
        ConfigKey("gate_channels", .int(1...65536), default: .none, "input channels (taken from the input when unset)"),
        ConfigKey("reduction_ratio", .int(1...65536), default: .int(16), "MLP hidden width = gate_channels // reduction_ratio"),
        ConfigKey("pool_types", .strings(allowed: poolNames, count: 1...4), default: .strings(["avg", "max"]),
                  "comma list of avg, max, lp, lse, each at most once, any order (the MLP outputs are summed in it)"),
        ConfigKey("no_spatial", .bool, default: .bool(false), "channel gate only"),
    ]

    enum Pool: String { case avg, max, lp, lse }

    public let config: Config
    let gateChannels: Int
    let poolTypes: [Pool]
    let mlp1: Linear                   // C → C/r
    let mlp3: Linear                   // C/r → C
    let spatialConv: Conv2d?           // 2 → 1, 7×7, padding 3, no bias
    let spatialBN: BatchNorm2d?        // 1

    public var expectedInput: String { "N×\(gateChannels)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 4 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×C×H×W", found: inputShape)
        }
        try config.resolveChannels("gate_channels", from: inputShape[1])
        self.config = config
        gateChannels = config.int("gate_channels")
        let r = config.int("reduction_ratio"), hidden = gateChannels / r
        guard hidden >= 1 else {
            throw ConfigError.inconsistent(module: Self.info.id,
                message: "gate_channels // reduction_ratio = \(gateChannels) // \(r) = 0 hidden units; use reduction_ratio ≤ \(gateChannels)")
        }
        poolTypes = config.strings("pool_types").map { Pool(rawValue: $0)! }
        let mlp = p.scoped("ChannelGate").scoped("mlp")
        mlp1 = Linear(mlp.scoped("1"), inFeatures: gateChannels, outFeatures: hidden)
        mlp3 = Linear(mlp.scoped("3"), inFeatures: hidden, outFeatures: gateChannels)
        if config.bool("no_spatial") {
            spatialConv = nil
            spatialBN = nil
        } else {
            let s = p.scoped("SpatialGate").scoped("spatial")
            spatialConv = try Conv2d(s.scoped("conv"), inChannels: 2, outChannels: 1, kernelSize: 7, padding: 3, bias: false)
            spatialBN = BatchNorm2d(s.scoped("bn"), numFeatures: 1, eps: 1e-5)
        }
    }

    /// The channel gate a = σ(Σ_pool MLP(pool(x))): N×C×1×1 in (0, 1), the weights the module
    /// multiplies each channel by before the spatial gate.
    public func channelGate(_ x: Tensor) throws -> Tensor {
        let (n, c, _, _) = try checkMap(x, channels: gateChannels, module: Self.info.id)
        var sum = Tensor(zeros: [n, c])
        for pool in poolTypes {
            let raw = try mlp3(try mlp1(pooled(x, pool)).relu())   // N, C
            sum = sum + raw
        }
        return sum.sigmoid().reshaped([n, c, 1, 1])                   // N, C, 1, 1
    }

    /// One global pooling of every channel over H·W: N×C.
    func pooled(_ x: Tensor, _ pool: Pool) -> Tensor {
        let n = x.shape[0], c = x.shape[1], l = x.shape[2] * x.shape[3]
        var out = Tensor(uninitialized: [n, c])
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                for plane in 0..<(n * c) {
                    let src = xp.baseAddress! + plane * l
                    var m = -Float.infinity, s: Float = 0
                    switch pool {
                    case .avg:
                        op[plane] = fa_sum(src, l) / Float(l)
                    case .max:
                        op[plane] = fa_max(src, l)
                    case .lp:
                        // F.lp_pool2d(x, 2, (H, W)): (mean(x²)·H·W)^(1/2).
                        s = fa_sum_squares(src, l)
                        op[plane] = (s / Float(l) * Float(l)).squareRoot()
                    case .lse:
                        m = fa_max(src, l)
                        for j in 0..<l { s += Foundation.exp(src[j] - m) }
                        op[plane] = m + Foundation.log(s)
                    }
                }
            }
        }
        return out   // N, C
    }

    /// The channel gate a (N×C) and, unless `no_spatial`, the spatial gate
    /// m = σ(BN(conv([max_C x₁, mean_C x₁]))) (N×1×H×W), x₁ = x ⊙ a never stored.
    func gates(_ x: Tensor) throws -> (channel: Tensor, spatial: Tensor?) {
        let (n, c, h, w) = try checkMap(x, channels: gateChannels, module: Self.info.id)
        let l = h * w
        let a = try channelGate(x).reshaped([n, c])                        // N, C
        guard let spatialConv, let spatialBN else { return (a, nil) }
        var compress = Tensor(uninitialized: [n, 2, h, w])                 // N, [max, mean], H, W
        x.withUnsafeBufferPointer { xp in
            a.withUnsafeBufferPointer { ap in
                compress.withUnsafeMutableBufferPointer { cp in
                    for b in 0..<n {
                        let mx = cp.baseAddress! + b * 2 * l, mean = mx + l
                        mx.update(repeating: -.infinity, count: l)
                        mean.update(repeating: 0, count: l)
                        for ch in 0..<c {
                            fa_scaled_max_sum(xp.baseAddress! + (b * c + ch) * l, ap[b * c + ch], mx, mean, l)
                        }
                        let inv = 1 / Float(c)
                        for j in 0..<l { mean[j] *= inv }
                    }
                }
            }
        }
        let m = try spatialBN(try spatialConv(compress)).sigmoid()         // N, 1, H, W
        return (a, m)
    }

    /// y = (x ⊙ a) ⊙ m in one pass (the reference's order of products).
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (a, m) = try gates(x)
        let n = x.shape[0], c = x.shape[1], l = x.shape[2] * x.shape[3]
        var y = Tensor(uninitialized: x.shape)
        let mt = m ?? Tensor(zeros: [0])                                    // N, 1, H, W
        x.withUnsafeBufferPointer { xp in
            a.withUnsafeBufferPointer { ap in
                y.withUnsafeMutableBufferPointer { yp in mt.withUnsafeBufferPointer { mp in
                    for b in 0..<n {
                        for ch in 0..<c {
                            let src = xp.baseAddress! + (b * c + ch) * l, dst = yp.baseAddress! + (b * c + ch) * l
                            let s = ap[b * c + ch]
                            if m != nil {
                                let gate = mp.baseAddress! + b * l
                                for j in 0..<l { dst[j] = src[j] * s * gate[j] }
                            } else {
                                for j in 0..<l { dst[j] = src[j] * s }
                            }
                        }
                    }
                } }
            }
        }
        return y
    }

    /// The spatial gate m of batch item 0: 1×H×W.
    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, _, h, w) = try checkMap(x, channels: gateChannels, module: Self.info.id)
        guard let m = try gates(x.batchItem(0)).spatial else {
            throw ModuleError.unsupported(module: Self.info.id,
                message: "no_spatial=true: there is no spatial gate to map; channelGate(_:) gives the channel weights")
        }
        return AttentionMap(kind: .global, values: m.reshaped([1, h, w]), labels: ["spatial gate (after the channel gate)"])
    }
}
