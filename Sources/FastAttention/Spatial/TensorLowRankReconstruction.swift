// RecoNet's tensor generation and reconstruction modules (TGM + TRM).
// Chen, Zhu, Sun, He, Li, Shen, Yu, "Tensor Low-Rank Reconstruction for Semantic Segmentation",
// ECCV 2020. https://arxiv.org/abs/2008.00490
// No official code exists: this matches the reference written from the paper in
// Tools/reference/tensor_low_rank.py (its doc string states the equations and the choices).

import Foundation
import TensorCore

/// 3D context attention as a rank-r CP tensor: A = Σᵢ λᵢ v_Cⁱ ⊗ v_Hⁱ ⊗ v_Wⁱ, applied to the
/// feature element-wise, y = x ⊙ A — channel and spatial attention without an HW×HW matrix.
///
/// The paper's equations (Sec. 3), as the reference implements them:
/// - CP reconstruction (TRM, Sec. 3.3): A = Σ_{i=1..r} λᵢ · v_Cⁱ ⊗ v_Hⁱ ⊗ v_Wⁱ ∈ ℝ^{C×H×W}.
/// - Generators (TGM, Sec. 3.2): v_Cⁱ = σ(Conv1×1_Cⁱ(GAP_{H,W} x)) ∈ ℝ^C,
///   v_Hⁱ = σ(Conv1×1_Hⁱ(GAP_{C,W} x)) ∈ ℝ^H, v_Wⁱ = σ(Conv1×1_Wⁱ(GAP_{C,H} x)) ∈ ℝ^W —
///   the pooled height and width profiles are treated as channels, so H and W are fixed by
///   the weights.
/// - Output y = x ⊙ A (N×C×H×W); the RecoNet head's concatenation with x is outside the module.
///
/// - Map (bases): the r spatial factors v_Hⁱ ⊗ v_Wⁱ (r×H×W, values in (0, 1)), one panel per
///   rank-1 component, labelled with λᵢ and the mean of v_Cⁱ. Computed in O(r·H·W).
/// - Cost: O(C·H·W·r) reconstruction (one C×r · r×HW GEMM) + O((C² + H² + W²)·r) generators:
///   linear in pixels; A is never factored through an HW×HW matrix.
///
/// Choices of the reference (the paper leaves them open):
/// - each generator's r 1×1 convs are stored stacked, rank-major (output i·D + d), bias-free;
/// - λ (`lam`) is used as it is, no softmax, initialised to 1/r (so untrained A is a mean of
///   rank-1 tensors, in (0, 1));
/// - the 2d.md notes mention unofficial TGMandTRM codes with a softmax over λ, ReLU and
///   concatenation, and square maps only: none of that is used here.
/// - Untrained: PyTorch-default conv weights from the seed (no query/key projections, so no
///   similarity initialisation applies).
///
/// Keys: `channel_generator.weight` (r·C×C×1×1), `height_generator.weight` (r·H×H×1×1),
/// `width_generator.weight` (r·W×W×1×1), `lam` (r).
public final class TensorLowRankReconstruction: AttentionModule {
    public static let info = ModuleInfo(
        id: "tensor-low-rank", title: "Tensor Low-Rank Reconstruction for Semantic Segmentation (RecoNet TGM + TRM)",
        arxiv: "2008.00490", year: 2020, complexity: "O((D H W + D^2 + H^2 + W^2) r)", complexityExponent: 1,
        kind: .spatial, causal: false,
        reference: "own PyTorch reference from the paper (Tools/reference/tensor_low_rank.py); no official code",
        mapKind: .bases,
        mapDescription: "the spatial factor (outer product of v_H and v_W) of each of the r rank-1 components of the attention tensor A = sum_i lambda_i v_C x v_H x v_W",
        notes: ["height and width are fixed by the generator weights (taken from the input when unset)",
                "generators: global average pool over the two other axes, bias-free 1×1 convs (r stacked, rank-major), sigmoid",
                "lam is used as it is (no softmax), initialised to 1/rank; output x ⊙ A (no concatenation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("in_channels", .int(1...65536), default: .none, "input channels C (taken from the input when unset)"),
        ConfigKey("height", .int(1...4096), default: .none, "map height H the generators are built for (from the input when unset)"),
        ConfigKey("width", .int(1...4096), default: .none, "map width W the generators are built for (from the input when unset)"),
        ConfigKey("rank", .int(1...1024), default: .int(16), "number r of rank-1 tensors"),
    ]

    public let config: Config
    let c: Int, h: Int, w: Int, rank: Int
    let channelGenerator: Tensor   // r·C, C, 1, 1
    let heightGenerator: Tensor    // r·H, H, 1, 1
    let widthGenerator: Tensor     // r·W, W, 1, 1
    let lam: Tensor                // r

    public var expectedInput: String { "N×\(c)×\(h)×\(w)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        let id = Self.info.id
        guard inputShape.count == 4 else { throw ModuleError.badInput(module: id, expected: "N×C×H×W", found: inputShape) }
        var config = config
        try config.resolveChannels("in_channels", from: inputShape[1])
        for (key, value) in [("height", inputShape[2]), ("width", inputShape[3])] {
            if let set = config.optionalInt(key), set != value {
                throw ConfigError.inconsistent(module: id, message: "\(key)=\(set) but the input map is \(inputShape[2])×\(inputShape[3]); the generators fix H and W")
            }
        }
        // Checked above with a message about the map size; this only fills the unset ones.
        try config.resolveChannels("height", from: inputShape[2])
        try config.resolveChannels("width", from: inputShape[3])
        self.config = config
        (c, h, w, rank) = (inputShape[1], inputShape[2], inputShape[3], config.int("rank"))
        channelGenerator = p.scoped("channel_generator").parameter("weight", shape: [rank * c, c, 1, 1],
                                                                    initializer: .pytorchDefault(fanIn: c))
        heightGenerator = p.scoped("height_generator").parameter("weight", shape: [rank * h, h, 1, 1],
                                                                  initializer: .pytorchDefault(fanIn: h))
        widthGenerator = p.scoped("width_generator").parameter("weight", shape: [rank * w, w, 1, 1],
                                                                initializer: .pytorchDefault(fanIn: w))
        lam = p.parameter("lam", shape: [rank], initializer: .constant(1 / Float(rank)))
    }

    func check(_ x: Tensor) throws {
        guard x.rank == 4, x.shape[1] == c, x.shape[2] == h, x.shape[3] == w, x.shape[0] > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
    }

    /// The TGM's factors: v_C (N×r×C), v_H (N×r×H), v_W (N×r×W), each in (0, 1).
    public func factors(_ x: Tensor) throws -> (vc: Tensor, vh: Tensor, vw: Tensor) {
        try check(x)
        let n = x.shape[0], l = h * w
        // Global average pools over the two other axes, one pass: N×C, N×H, N×W.
        var pc = [Float](repeating: 0, count: n * c), ph = [Float](repeating: 0, count: n * h)
        var pw = [Float](repeating: 0, count: n * w)
        x.withUnsafeBufferPointer { xp in
            for b in 0..<n {
                var rowSums = [Double](repeating: 0, count: h), colSums = [Double](repeating: 0, count: w)
                for ch in 0..<c {
                    var s = 0.0
                    for i in 0..<h {
                        let row = xp.baseAddress! + (b * c + ch) * l + i * w
                        var rs = 0.0
                        for j in 0..<w { let v = Double(row[j]); rs += v; colSums[j] += v }
                        rowSums[i] += rs
                        s += rs
                    }
                    pc[b * c + ch] = Float(s / Double(l))
                }
                for i in 0..<h { ph[b * h + i] = Float(rowSums[i] / Double(c * w)) }
                for j in 0..<w { pw[b * w + j] = Float(colSums[j] / Double(c * h)) }
            }
        }
        return (generate(pc, channelGenerator, n: n, d: c), generate(ph, heightGenerator, n: n, d: h),
                generate(pw, widthGenerator, n: n, d: w))
    }

    /// σ(W·p) for pooled vectors p (N×D) and stacked weights W (r·D×D): N×r×D.
    func generate(_ pooled: [Float], _ weight: Tensor, n: Int, d: Int) -> Tensor {
        var out = Tensor(uninitialized: [n, rank, d])
        pooled.withUnsafeBufferPointer { pp in
            weight.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in
                    // out (N × r·D) = pooled (N×D) · Wᵀ (D × r·D)
                    BLAS.gemm(transB: true, m: n, n: rank * d, k: d, a: pp.baseAddress!, lda: d,
                              b: wp.baseAddress!, ldb: d, c: op.baseAddress!, ldc: rank * d)
                    for i in 0..<op.count { op[i] = 1 / (1 + Foundation.exp(-op[i])) }
                }
            }
        }
        return out   // N, r, D
    }

    /// The reconstructed attention tensor A = Σᵢ λᵢ v_Cⁱ ⊗ v_Hⁱ ⊗ v_Wⁱ (N×C×H×W).
    public func attentionTensor(_ x: Tensor) throws -> Tensor {
        let (vc, vh, vw) = try factors(x)
        return reconstruct(vc, vh, vw)
    }

    /// Per image, A (C×HW) = (λ ⊙ v_C)ᵀ (C×r) · P (r×HW) with P[i, h·W + w] = v_Hⁱ[h]·v_Wⁱ[w].
    func reconstruct(_ vc: Tensor, _ vh: Tensor, _ vw: Tensor) -> Tensor {
        let n = vc.shape[0], l = h * w
        var a = Tensor(uninitialized: [n, c, h, w])
        var scaled = [Float](repeating: 0, count: rank * c)   // r, C
        var spatial = [Float](repeating: 0, count: rank * l)  // r, HW
        let lambda = lam.scalars
        vc.withUnsafeBufferPointer { cp in
            vh.withUnsafeBufferPointer { hp in
                vw.withUnsafeBufferPointer { wp in
                    a.withUnsafeMutableBufferPointer { ap in
                        for b in 0..<n {
                            for i in 0..<rank {
                                for ch in 0..<c { scaled[i * c + ch] = lambda[i] * cp[(b * rank + i) * c + ch] }
                                for y in 0..<h {
                                    let hv = hp[(b * rank + i) * h + y]
                                    for x in 0..<w { spatial[i * l + y * w + x] = hv * wp[(b * rank + i) * w + x] }
                                }
                            }
                            BLAS.gemm(transA: true, m: c, n: l, k: rank, a: scaled, lda: c, b: spatial, ldb: l,
                                      c: ap.baseAddress! + b * c * l, ldc: l)
                        }
                    }
                }
            }
        }
        return a   // N, C, H, W
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var a = try attentionTensor(x)   // N, C, H, W
        a *= x
        return a
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try check(x)
        let (vc, vh, vw) = try factors(x.batchItem(0))
        let hv = vh.scalars, wv = vw.scalars, cv = vc.scalars, lambda = lam.scalars
        var bases = [Float](repeating: 0, count: rank * h * w)
        var labels: [String] = []
        for i in 0..<rank {
            for y in 0..<h {
                for x in 0..<w { bases[(i * h + y) * w + x] = hv[i * h + y] * wv[i * w + x] }
            }
            let meanC = cv[(i * c)..<((i + 1) * c)].reduce(0, +) / Float(c)
            labels.append(String(format: "rank %d: lambda %.3g, mean v_C %.2f", i, lambda[i], meanC))
        }
        return AttentionMap(kind: .bases, values: Tensor(shape: [rank, h, w], scalars: bases), labels: labels)
    }
}
