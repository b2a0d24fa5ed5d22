// Permutohedral Attention Module (PAM).
// Joutard, Dorent, Isaac, Ourselin, Vercauteren, Modat, "Permutohedral Attention Module for
// Efficient Non-Local Neural Networks", MICCAI 2019. https://arxiv.org/abs/1907.00641
// Reference matched: SamuelJoutard/Permutohedral_attention_module (c86b810) PAM/PAM.py `PAM` with
// the pure-torch lattice PAM/PL_with_grad_torch_HT.py, read in full; 3D there, in 2D here through
// the transliteration in Tools/reference/permutohedral.py (whose lattice equals the reference's
// own, run patched on the CPU, exactly).

import Foundation
import TensorCore

/// PAM: non-local filtering with a Gaussian kernel in a learned feature space, computed in
/// O(N·d²) on a permutohedral lattice instead of O(N²).
///
/// The reference's `PAM(in_f, filt_f, out_f, n_split)` with Conv2d and two centred coordinates:
/// p = (i − H//2, j − W//2) ⊙ `scaling_spatial`; f = LeakyReLU₀.₀₁(conv1×1([x; p])) (filt_f
/// features per split); v = conv1×1(x) (out_f values per split); per split s,
/// y_s,i ≈ κ·Σⱼ exp(−½‖f_s,i − f_s,j‖²)·v_s,j through `PermutohedralLattice` (unnormalised, κ ≈ 0.7
/// for d = 3 — the lattice's own scale); output the splits concatenated.
///
/// - Input N×in_f×H×W, output N×(out_f·n_split)×H×W; no residual (the network adds it).
/// - Map (per-query): for each split, the Gaussian weights the lattice approximates for the query
///   pixel, exp(−½‖f_q − f_j‖²) over all pixels j, normalised to sum 1 (n_split panels). Exact,
///   in O(H·W·filt_f) per query.
/// - Cost: O(N·d²) to build each split's lattice (d = filt_f), O(N·d·out_f) to splat, blur and
///   slice; memory O(N·d·(d + out_f)). Nothing N×N.
///
/// Quirks of the reference:
/// - `scaling_spatial` is initialised from randn (so untrained positions can dominate the
///   features); coordinates are centred with H//2, W//2.
/// - The Gaussian is not normalised and its σ is 1 in feature units; the lattice's blur is
///   [½, 1, ½] per direction and the slice is scaled by 1/(1 + 2^−d).
/// - One lattice (hash table) per split is shared by the whole batch, so an image's output
///   depends slightly on the other images of its batch (see `PermutohedralLattice`).
/// - The reference is 3D only (Conv3d, N×C×D×H×W, three coordinates): keys here are the 2D
///   analogues (1×2×1×1 scale, in_f+2 conv inputs).
/// - Untrained: PyTorch-default conv weights and randn scales from the seed; queries and keys
///   share the one feature projection, so the map is a similarity map by construction.
///
/// Keys: `scaling_spatial` (1×2×1×1), `conv_feat.{weight,bias}` ((filt_f·n_split)×(in_f+2)×1×1),
/// `conv_desc.{weight,bias}` ((out_f·n_split)×in_f×1×1).
public final class PermutohedralAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "permutohedral", title: "Permutohedral Attention Module for Efficient Non-Local Neural Networks",
        arxiv: "1907.00641", year: 2019, complexity: "O(N D^2)", complexityExponent: 1, kind: .spatial, causal: false,
        reference: "SamuelJoutard/Permutohedral_attention_module PAM (c86b810), 3D → 2D, lattice matched exactly",
        mapKind: .perQuery,
        mapDescription: "per split, the Gaussian weights exp(-|f_q - f_j|^2/2) in the learned feature space that the lattice approximates, normalised",
        notes: ["features f = leaky_relu(conv_feat([x; centred (row, col) * scaling_spatial])); values conv_desc(x); no residual",
                "the lattice output is an unnormalised Gaussian filter (sigma 1 in feature units), about 0.7x the exact sum for filt_f = 3",
                "one lattice per split is shared by the batch, as in the reference (outputs depend slightly on the batch)",
                "the reference is 3D (Conv3d); this is its 2D analogue with two coordinates"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("in_f", .int(1...65536), default: .none, "input channels (taken from the input when unset)"),
        ConfigKey("filt_f", .int(1...16), default: .int(3), "feature dimensions d of each split's lattice"),
        ConfigKey("out_f", .int(1...65536), default: .none, "value channels per split (default: max(in_f // 2, 1))"),
        ConfigKey("n_split", .int(1...64), default: .int(2), "independent lattices (feature spaces)"),
    ]

    public let config: Config
    let inF: Int, filtF: Int, outF: Int, nSplit: Int
    let convFeatWeight: Tensor     // filt_f·n_split, in_f + 2, 1, 1
    let convFeatBias: Tensor       // filt_f·n_split
    let convDesc: PointwiseConv
    let scalingSpatial: Tensor     // 1, 2, 1, 1

    public var expectedInput: String { "N×\(inF)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        guard inputShape.count == 4 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×C×H×W", found: inputShape)
        }
        var config = config
        try config.resolveChannels("in_f", from: inputShape[1])
        inF = inputShape[1]
        if !config.isSet("out_f") { try config.resolveChannels("out_f", from: max(inF / 2, 1)) }
        self.config = config
        (filtF, outF, nSplit) = (config.int("filt_f"), config.int("out_f"), config.int("n_split"))
        let featIn = inF + 2
        let feat = p.scoped("conv_feat")
        convFeatWeight = feat.parameter("weight", shape: [filtF * nSplit, featIn, 1, 1],
                                        initializer: .pytorchDefault(fanIn: featIn))
        convFeatBias = feat.parameter("bias", shape: [filtF * nSplit], initializer: .pytorchDefault(fanIn: featIn))
        convDesc = PointwiseConv(p.scoped("conv_desc"), inChannels: inF, outChannels: outF * nSplit)
        scalingSpatial = p.parameter("scaling_spatial", shape: [1, 2, 1, 1], initializer: .normal(std: 1))
    }

    /// The lattice features f (N×(filt_f·n_split)×H×W): LeakyReLU(conv_feat([x; p])), where the
    /// coordinate channels p are added analytically rather than concatenated.
    public func features(_ x: Tensor) throws -> Tensor {
        let (n, _, h, w) = try checkMap(x, channels: inF, module: Self.info.id)
        let l = h * w, co = filtF * nSplit, ci = inF + 2
        var out = Tensor(uninitialized: [n, co, h, w])
        let sc = scalingSpatial.scalars, bias = convFeatBias.scalars
        x.withUnsafeBufferPointer { xp in
            convFeatWeight.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in
                    for b in 0..<n {
                        // W[:, :in_f] · x (co × L), then + W[:, in_f]·row·s₀ + W[:, in_f+1]·col·s₁ + bias.
                        BLAS.gemm(m: co, n: l, k: inF, a: wp.baseAddress!, lda: ci,
                                  b: xp.baseAddress! + b * inF * l, ldb: l,
                                  c: op.baseAddress! + b * co * l, ldc: l)
                        for o in 0..<co {
                            let wr = wp[o * ci + inF], wc = wp[o * ci + inF + 1]
                            let row = op.baseAddress! + (b * co + o) * l
                            for i in 0..<h {
                                let pr = Float(i - h / 2) * sc[0]
                                for j in 0..<w {
                                    let pc = Float(j - w / 2) * sc[1]
                                    // The reference's sum order: conv over [x; p] then bias.
                                    let v = row[i * w + j] + (wr * pr + wc * pc) + bias[o]
                                    row[i * w + j] = v >= 0 ? v : 0.01 * v
                                }
                            }
                        }
                    }
                }
            }
        }
        return out   // N, filt_f·n_split, H, W
    }

    /// The values the lattice filters, conv_desc(x): N×(out_f·n_split)×H×W.
    public func values(_ x: Tensor) throws -> Tensor {
        _ = try checkMap(x, channels: inF, module: Self.info.id)
        return convDesc(x)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let f = try features(x)                                    // N, d·S, H, W
        let v = convDesc(x)                                        // N, out_f·S, H, W
        let n = x.shape[0], l = x.shape[2] * x.shape[3]
        var out = Tensor(uninitialized: [n, outF * nSplit, x.shape[2], x.shape[3]])
        f.withUnsafeBufferPointer { fp in
            v.withUnsafeBufferPointer { vp in
                out.withUnsafeMutableBufferPointer { op in
                    for s in 0..<nSplit {
                        let lattice = PermutohedralLattice(features: fp.baseAddress! + s * filtF * l, batch: n, count: l,
                                                           d: filtF, batchStride: filtF * nSplit * l, featureStride: l)
                        lattice.filter(values: vp.baseAddress! + s * outF * l, channels: outF,
                                       batchStride: outF * nSplit * l, channelStride: l,
                                       out: op.baseAddress! + s * outF * l, outBatchStride: outF * nSplit * l,
                                       outChannelStride: l)
                    }
                }
            }
        }
        return out   // N, out_f·n_split, H, W
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, _, h, w) = try checkMap(x, channels: inF, module: Self.info.id)
        guard (0..<h).contains(query.row), (0..<w).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id,
                                       message: "query (row \(query.row), column \(query.column)) is outside the \(h)×\(w) grid")
        }
        let f = try features(x.batchItem(0)), l = h * w, q = query.row * w + query.column
        var maps = [Float](repeating: 0, count: nSplit * l)
        f.withUnsafeBufferPointer { fp in
            for s in 0..<nSplit {
                var logits = [Double](repeating: 0, count: l)
                for k in 0..<filtF {
                    let row = fp.baseAddress! + (s * filtF + k) * l, fq = row[q]
                    for j in 0..<l { let t = Double(row[j] - fq); logits[j] -= 0.5 * t * t }
                }
                // exp(−½‖f_q − f_j‖²) ≤ 1 with the query's own weight 1: no overflow, sum ≥ 1.
                let weights = logits.map { Foundation.exp($0) }
                let total = weights.reduce(0, +)
                for j in 0..<l { maps[s * l + j] = Float(weights[j] / total) }
            }
        }
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [nSplit, h, w], scalars: maps),
                            labels: (0..<nSplit).map { "split \($0): Gaussian weights" })
    }
}
