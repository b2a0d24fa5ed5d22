// GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond.
// Cao, Xu, Lin, Wei, Hu, ICCVW 2019. https://arxiv.org/abs/1904.11492
// Reference matched: mmcv 2.1 `mmcv.cnn.ContextBlock` (mmcv/cnn/bricks/context_block.py), read in
// full; identical to the authors' xvjiarui/GCNet mmdet/ops/gcb/context_block.py.

import CKernels
import Foundation
import TensorCore

/// The global context block: one query-independent attention map pools the whole feature map
/// into a context vector, a bottleneck transform turns it into per-channel terms, and those are
/// fused back into every position.
///
/// Matches `mmcv.cnn.ContextBlock(in_channels, ratio, pooling_type='att',
/// fusion_types=('channel_add',))` in eval mode.
///
/// - Input N×C×H×W, output N×C×H×W: y = x ⊙ σ(T_mul(ctx)) + T_add(ctx), each term present only
///   when its fusion type is (mul applies before add, whatever the list order).
/// - ctx = Σⱼ αⱼ xⱼ with α = softmax over H·W of conv_mask(x) (`att`), or the plain mean (`avg`).
/// - T = Conv1×1(C→P) → LayerNorm([P,1,1], eps 1e-5, affine) → ReLU → Conv1×1(P→C),
///   P = int(C·ratio) (Python's truncation of the float product).
/// - Map (global): α, 1×H×W, the same for every query pixel (the paper's observation that
///   non-local maps are nearly query-independent). With `avg` pooling α is uniform, 1/(H·W).
/// - Cost: O(N·C) for the pooling and the fusion, O(C·P) for the transform: linear in N.
///
/// Quirks of the reference:
/// - `ratio` has no default in mmcv; the default here is mmseg `GCHead`'s 1/4. The paper's
///   "r16"/"r4" are ratio 1/16 and 1/4.
/// - mmcv defaults to `channel_add` only (timm's GlobalContext to scale/mul, with LN eps 1e-6).
/// - The LayerNorm normalises over all P bottleneck channels of the 1×1 context (weight and
///   bias are stored P×1×1).
/// - mmcv zero-initialises the last conv of each transform, so an untrained block is the
///   identity. Seeded weights here: conv_mask as mmcv (Kaiming normal, fan_in, bias 0), the
///   transforms PyTorch-default random including their last convs, LayerNorm 1/0.
///
/// Keys: `conv_mask.{weight (1,C,1,1), bias (1)}` (att only);
/// `channel_add_conv.{0.weight (P,C,1,1), 0.bias, 1.weight (P,1,1), 1.bias (P,1,1), 3.weight (C,P,1,1), 3.bias}`
/// and the same under `channel_mul_conv.` for each fusion type present.
public final class GlobalContextBlock: AttentionModule {
    public static let info = ModuleInfo(
        id: "global-context", title: "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
        arxiv: "1904.11492", year: 2019, complexity: "O(N D^2)", complexityExponent: 1, kind: .spatial, causal: false,
        reference: "mmcv.cnn.ContextBlock (mmcv-lite 2.1.0)", mapKind: .global,
        mapDescription: "context weights alpha = softmax over HxW of conv_mask(x): one query-independent map",
        notes: ["fusion: y = x * sigmoid(T_mul(ctx)) + T_add(ctx); mul before add whatever the list order",
                "T = conv1x1 -> LayerNorm([P,1,1], eps 1e-5) -> ReLU -> conv1x1, P = int(in_channels * ratio)",
                "ratio has no default in mmcv; 1/4 here (mmseg GCHead)",
                "pooling_type=avg: the context is the plain mean and the map is uniform",
                "untrained: conv_mask Kaiming normal (as mmcv), transforms PyTorch-default random (mmcv zeroes the last conv)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("in_channels", .int(1...65536), default: .none, "input channels (taken from the input when unset)"),
        ConfigKey("ratio", .float(1e-6...64), default: .float(0.25), "bottleneck planes = int(in_channels * ratio); fractions like 1/16 accepted"),
        ConfigKey("pooling_type", .choice(["att", "avg"]), default: .string("att"), "attention pooling (softmax over HxW) or average"),
        ConfigKey("fusion_types", .strings(allowed: ["channel_add", "channel_mul"], count: 1...2), default: .strings(["channel_add"]),
                  "comma list of channel_add, channel_mul, any order (mul applies before add)"),
    ]

    /// One bottleneck transform `*_conv`: Conv1×1 → LayerNorm → ReLU → Conv1×1 on the context.
    struct Transform {
        let w0: Tensor, b0: Tensor        // P, C, 1, 1 / P
        let lnWeight: Tensor, lnBias: Tensor   // P, 1, 1
        let w3: Tensor, b3: Tensor        // C, P, 1, 1 / C

        init(_ p: Parameters, channels c: Int, planes: Int) {
            let c0 = p.scoped("0"), ln = p.scoped("1"), c3 = p.scoped("3")
            w0 = c0.parameter("weight", shape: [planes, c, 1, 1], initializer: .pytorchDefault(fanIn: c))
            b0 = c0.parameter("bias", shape: [planes], initializer: .pytorchDefault(fanIn: c))
            lnWeight = ln.parameter("weight", shape: [planes, 1, 1], initializer: .ones)
            lnBias = ln.parameter("bias", shape: [planes, 1, 1], initializer: .zeros)
            w3 = c3.parameter("weight", shape: [c, planes, 1, 1], initializer: .pytorchDefault(fanIn: planes))
            b3 = c3.parameter("bias", shape: [c], initializer: .pytorchDefault(fanIn: planes))
        }

        /// ctx (C values) → C values. O(C·P).
        func apply(_ ctx: [Float]) -> [Float] {
            let c = ctx.count, planes = b0.count
            let w0 = self.w0.scalars, b0 = self.b0.scalars, w3 = self.w3.scalars, b3 = self.b3.scalars
            let g = lnWeight.scalars, beta = lnBias.scalars
            var hidden = [Float](repeating: 0, count: planes)
            for o in 0..<planes {
                var s = b0[o]
                for i in 0..<c { s += w0[o * c + i] * ctx[i] }
                hidden[o] = s
            }
            // LayerNorm over the P values (biased variance, eps 1e-5), then ReLU.
            let mean = hidden.reduce(0, +) / Float(planes)
            let variance = hidden.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(planes)
            let rstd = 1 / (variance + 1e-5).squareRoot()
            for o in 0..<planes { hidden[o] = max((hidden[o] - mean) * rstd * g[o] + beta[o], 0) }
            var out = [Float](repeating: 0, count: c)
            for o in 0..<c {
                var s = b3[o]
                for i in 0..<planes { s += w3[o * planes + i] * hidden[i] }
                out[o] = s
            }
            return out
        }
    }

    public let config: Config
    let inChannels: Int, planes: Int
    let attentionPooling: Bool
    let convMask: PointwiseConv?            // C → 1
    let channelAddConv: Transform?
    let channelMulConv: Transform?

    public var expectedInput: String { "N×\(inChannels)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 4 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×C×H×W", found: inputShape)
        }
        try config.resolveChannels("in_channels", from: inputShape[1])
        self.config = config
        inChannels = config.int("in_channels")
        let ratio = config.float("ratio")
        planes = Int(Double(inChannels) * ratio)       // Python int(in_channels * ratio)
        guard planes >= 1 else {
            throw ConfigError.inconsistent(module: Self.info.id,
                message: "int(in_channels * ratio) = int(\(inChannels) * \(ratio)) = 0 bottleneck planes; raise ratio to at least 1/\(inChannels)")
        }
        attentionPooling = config.string("pooling_type") == "att"
        let fusion = Set(config.strings("fusion_types"))
        if attentionPooling {
            // mmcv: kaiming_init(conv_mask, mode='fan_in') — normal, std √(2/C), bias 0.
            let c = inChannels
            let kaiming = p.withGenerator { Tensor.randomNormal([1, c, 1, 1], std: (2 / Float(c)).squareRoot(), generator: &$0) }
            convMask = PointwiseConv(p.scoped("conv_mask"), inChannels: c, outChannels: 1,
                                     weight: kaiming, initialBias: Tensor(zeros: [1]))
        } else {
            convMask = nil
        }
        channelAddConv = fusion.contains("channel_add")
            ? Transform(p.scoped("channel_add_conv"), channels: inChannels, planes: planes) : nil
        channelMulConv = fusion.contains("channel_mul")
            ? Transform(p.scoped("channel_mul_conv"), channels: inChannels, planes: planes) : nil
    }

    /// Context weights α for every batch item: N×(H·W), each row a softmax over positions
    /// (uniform 1/(H·W) with average pooling). O(N·C).
    func contextWeights(_ x: Tensor) -> Tensor {
        let n = x.shape[0], l = x.shape[2] * x.shape[3]
        guard let convMask else { return Tensor(shape: [n, l], repeating: 1 / Float(l)) }
        let c = x.shape[1]
        var logits = Tensor(uninitialized: [n, l])
        x.withUnsafeBufferPointer { xp in
            convMask.weight.withUnsafeBufferPointer { wp in
                logits.withUnsafeMutableBufferPointer { lp in
                    let bias = convMask.bias?.scalars[0] ?? 0
                    for b in 0..<n {
                        // logits (L) = x_bᵀ (L×C) · w (C) + b: one GEMV streaming x_b once.
                        let row = lp.baseAddress! + b * l
                        row.update(repeating: bias, count: l)
                        BLAS.gemv(trans: true, m: c, n: l, a: xp.baseAddress! + b * c * l, lda: l,
                                  x: wp.baseAddress!, beta: 1, y: row)
                        softmaxInPlace(row, count: l)
                    }
                }
            }
        }
        return logits
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (n, c, h, w) = try checkMap(x, channels: inChannels, module: Self.info.id)
        let l = h * w
        let alpha = contextWeights(x)                      // N, L
        var out = Tensor(uninitialized: x.shape)
        x.withUnsafeBufferPointer { xp in
            alpha.withUnsafeBufferPointer { ap in
                out.withUnsafeMutableBufferPointer { op in
                    for b in 0..<n {
                        let xb = xp.baseAddress! + b * c * l
                        // ctx (C) = x_b (C×L) · α_b (L): one GEMV.
                        var ctx = [Float](repeating: 0, count: c)
                        ctx.withUnsafeMutableBufferPointer { cp in
                            BLAS.gemv(m: c, n: l, a: xb, lda: l, x: ap.baseAddress! + b * l, y: cp.baseAddress!)
                        }
                        let mul = channelMulConv.map { $0.apply(ctx).map { 1 / (1 + Foundation.exp(-$0)) } }
                        let add = channelAddConv?.apply(ctx)
                        for ch in 0..<c {
                            let src = xb + ch * l, dst = op.baseAddress! + (b * c + ch) * l
                            let s = mul?[ch] ?? 1, t = add?[ch] ?? 0
                            for j in 0..<l { dst[j] = src[j] * s + t }
                        }
                    }
                }
            }
        }
        return out
    }

    /// α for batch item 0: 1×H×W.
    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, _, h, w) = try checkMap(x, channels: inChannels, module: Self.info.id)
        let alpha = contextWeights(x.batchItem(0))         // 1, L
        return AttentionMap(kind: .global, values: alpha.reshaped([1, h, w]),
                            labels: [attentionPooling ? "context weights (softmax over HxW)" : "uniform (avg pooling)"])
    }
}

/// Softmax of `count` contiguous values in place (max-subtracted, as torch; vectorised exp).
func softmaxInPlace(_ p: UnsafeMutablePointer<Float>, count: Int) {
    fa_softmax_rows(p, 1, count, count, 1)
}
