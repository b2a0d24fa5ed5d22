// Expectation-Maximization Attention Networks for Semantic Segmentation (EMANet).
// Xia Li, Zhisheng Zhong, Jianlong Wu, Yibo Yang, Zhouchen Lin, Hong Liu — ICCV 2019.
// https://arxiv.org/abs/1907.13426
// Reference matched: XiaLiPKU/EMANet network.py `EMAU` (the authors' code, commit f09ffac),
// with SynchronizedBatchNorm2d as nn.BatchNorm2d; read in full, with train.py's base update.

import CKernels
import TensorCore

/// The Expectation-Maximisation Attention Unit: a few EM steps fit k bases μ to the pixels'
/// features, and each pixel is rebuilt from the bases by its responsibilities — attention
/// through k ≪ n bases, so linear in n.
///
/// Matches `EMAU(c, k, stage_num)` in eval mode; `callAsFunction` returns x of its `(x, mu)`,
/// `withBases` both.
///
/// - Input N×c×H×W, output N×c×H×W.
/// - Math: X = conv1(x) (1×1, bias) as c×n; μ = the `mu` buffer (c×k), per image. `stage_num`
///   times: Z = softmax_k(Xᵀμ) (n×k); Z̃ = Z / (1e-6 + Σ_n Z); μ = X Z̃; μ = μ / (1e-6 + ‖μ‖₂ over c).
///   X̂ = μ Zᵀ with the last Z (computed from the previous μ) and the last μ;
///   y = ReLU(BN(conv2(ReLU(X̂))) + x), conv2 1×1 without bias.
/// - Map (bases): the responsibilities Z of the last EM stage as k×H×W — "base i" is how much
///   each pixel belongs to base i (they sum to 1 over the bases at every pixel).
/// - Cost: O(n·k·c·stage_num) time, O(n·(c + k)) memory.
///
/// Quirks of the reference:
/// - The EM loop runs under no_grad (irrelevant in eval).
/// - Eval never changes the bases: EMAU's forward does not touch `mu`; the momentum update
///   (μ_buf ← 0.9 μ_buf + 0.1 mean_batch(μ), not re-normalised) is in train.py and runs in
///   training only. So the output depends only on the stored `mu`, which need not be unit-norm.
///   (mmseg's EMAModule updates inside forward, in training only, and re-normalises.)
/// - eps: 1e-6 added to the denominators (mmseg uses F.normalize's max(‖·‖, 1e-12)).
/// - stage_num must be ≥ 1 (with 0 the reference fails: Z is undefined).
/// - The reference has no default for k; EMANet uses k = 64. Here k defaults to 8, a readable
///   number of map panels.
/// - Untrained: the reference's own initialisation — μ ~ N(0, 2/k) then L2-normalised over c;
///   conv weights N(0, 2/c) (its Kaiming loop), conv1 bias PyTorch-default, BN weight 1, bias 0.
///   There are no query/key projections (pixels meet the bases directly), so nothing to tie.
///
/// Keys: `mu` (buffer 1×c×k), `conv1.{weight,bias}`, `conv2.0.weight`,
/// `conv2.1.{weight,bias,running_mean,running_var,num_batches_tracked}`.
public final class EMAU: AttentionModule {
    public static let info = ModuleInfo(
        id: "em-attention", title: "Expectation-Maximization Attention Networks for Semantic Segmentation",
        arxiv: "1907.13426", year: 2019, complexity: "O(N k D)", complexityExponent: 1, kind: .spatial,
        causal: false, reference: "XiaLiPKU/EMANet network.py EMAU (commit f09ffac), SyncBN as BatchNorm2d, eval",
        mapKind: .bases,
        mapDescription: "responsibilities z of the last EM stage: one map per base (softmax over the k bases at each pixel)",
        notes: ["eval never updates the bases buffer mu (EMANet's momentum update is in train.py, training only)",
                "the last z is computed from the previous mu; x_hat = mu z^T uses the final mu",
                "denominators +1e-6 (mmseg's EMAModule uses max(norm, 1e-12))",
                "k defaults to 8 here (no default in the reference; EMANet uses 64)",
                "untrained: the reference's init (mu N(0,2/k) L2-normalised, Kaiming-normal 1x1 convs)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("c", .int(1...65536), default: .none, "input and output channels (taken from the input when unset)"),
        ConfigKey("k", .int(1...4096), default: .int(8), "number of bases"),
        ConfigKey("stage_num", .int(1...100), default: .int(3), "EM iterations"),
    ]

    public let config: Config
    let c: Int, k: Int, stageNum: Int
    /// The bases buffer, c×k (the reference's 1×c×k).
    let mu: Tensor
    let conv1: PointwiseConv
    let conv2: PointwiseConv
    let bn: BatchNorm2d

    public var expectedInput: String { "N×\(c)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 4 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×C×H×W", found: inputShape)
        }
        try config.resolveChannels("c", from: inputShape[1])
        self.config = config
        c = config.int("c")
        k = config.int("k")
        stageNum = config.int("stage_num")
        let (c, k) = (c, k)
        // The reference's own initialisation, drawn from the seed (a checkpoint overrides it):
        // mu ~ N(0, 2/k) L2-normalised over c; conv weights N(0, 2/n), n = 1·1·out_channels.
        let initialMu = p.withGenerator { g -> Tensor in
            var t = Tensor.randomNormal([1, c, k], std: (2 / Float(k)).squareRoot(), generator: &g)
            EMAU.normaliseColumns(&t, rows: c, cols: k)
            return t
        }
        mu = p.buffer("mu", shape: [1, c, k], initializer: .tensor(initialMu))
        func kaiming() -> Tensor {
            p.withGenerator { g in Tensor.randomNormal([c, c, 1, 1], std: (2 / Float(c)).squareRoot(), generator: &g) }
        }
        conv1 = PointwiseConv(p.scoped("conv1"), inChannels: c, outChannels: c, weight: kaiming())
        conv2 = PointwiseConv(p.scoped("conv2").scoped("0"), inChannels: c, outChannels: c, bias: false, weight: kaiming())
        bn = BatchNorm2d(p.scoped("conv2").scoped("1"), numFeatures: c)
    }

    /// x of EMAU's `(x, mu)`.
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try withBases(x).y }

    /// EMAU's `(x, mu)`: the output N×c×H×W and the fitted bases N×c×k.
    public func withBases(_ x: Tensor) throws -> (y: Tensor, mu: Tensor) {
        let (n, _, h, w) = try checkMap(x, channels: c, module: Self.info.id)
        let (bases, z) = em(x)
        let l = h * w
        var xhat = Tensor(uninitialized: [n, c, h, w])            // N, c, H, W
        bases.withUnsafeBufferPointer { mp in
            z.withUnsafeBufferPointer { zp in
                xhat.withUnsafeMutableBufferPointer { op in
                    for b in 0..<n {
                        // X̂ (c×n) = μ (c×k) · Zᵀ (k×n)
                        BLAS.gemm(transB: true, m: c, n: l, k: k, a: mp.baseAddress! + b * c * k, lda: k,
                                  b: zp.baseAddress! + b * l * k, ldb: k, c: op.baseAddress! + b * c * l, ldc: l)
                    }
                }
            }
        }
        xhat.formRelu()
        var y = try bn(conv2(xhat))                                 // N, c, H, W
        y.formRelu(adding: x)
        return (y, bases)
    }

    /// The EM loop on conv1's features X (c×n per image): the final bases μ (N×c×k) and the
    /// last responsibilities Z (N×n×k).
    func em(_ x: Tensor) -> (mu: Tensor, z: Tensor) {
        let n = x.shape[0], l = x.shape[2] * x.shape[3]
        let feats = conv1(x)                                       // N, c, H, W
        var bases = Tensor(uninitialized: [n, c, k])               // N, c, k
        var z = Tensor(uninitialized: [n, l, k])                   // N, n, k
        var zn = [Float](repeating: 0, count: l * k)               // Z̃, per image
        var colSum = [Float](repeating: 0, count: k)
        feats.withUnsafeBufferPointer { xp in
        mu.withUnsafeBufferPointer { m0 in
        bases.withUnsafeMutableBufferPointer { mp in
        z.withUnsafeMutableBufferPointer { zp in
        zn.withUnsafeMutableBufferPointer { znp in
            for b in 0..<n {
                let xb = xp.baseAddress! + b * c * l, mb = mp.baseAddress! + b * c * k, zb = zp.baseAddress! + b * l * k
                mb.update(from: m0.baseAddress!, count: c * k)
                for _ in 0..<stageNum {
                    // E step: Z (n×k) = softmax_k(Xᵀ (n×c) · μ (c×k))
                    BLAS.gemm(transA: true, m: l, n: k, k: c, a: xb, lda: l, b: mb, ldb: k, c: zb, ldc: k)
                    fa_softmax_rows(zb, l, k, k, 1)
                    // Z̃ = Z / (1e-6 + Σ_n Z)
                    for j in 0..<k { colSum[j] = 0 }
                    for i in 0..<l { for j in 0..<k { colSum[j] += zb[i * k + j] } }
                    for j in 0..<k { colSum[j] = 1 / (1e-6 + colSum[j]) }
                    for i in 0..<l { for j in 0..<k { znp[i * k + j] = zb[i * k + j] * colSum[j] } }
                    // M step: μ (c×k) = X (c×n) · Z̃ (n×k), then L2-normalised over c
                    BLAS.gemm(m: c, n: k, k: l, a: xb, lda: l, b: znp.baseAddress!, ldb: k, c: mb, ldc: k)
                    EMAU.normaliseColumns(mb, rows: c, cols: k)
                }
            }
        }
        }
        }
        }
        }
        return (bases, z)
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, _, h, w) = try checkMap(x, channels: c, module: Self.info.id)
        let (_, z) = em(x.batchItem(0))                          // 1, n, k
        let maps = z.reshaped([h * w, k]).transposed(0, 1).reshaped([k, h, w])   // k, H, W
        return AttentionMap(kind: .bases, values: maps, labels: (0..<k).map { "base \($0)" })
    }

    /// Columns of a rows×cols matrix divided by (1e-6 + their L2 norm), as EMAU's `_l2norm(dim=1)`.
    static func normaliseColumns(_ p: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        var norm = [Float](repeating: 0, count: cols)
        for r in 0..<rows { for j in 0..<cols { norm[j] += p[r * cols + j] * p[r * cols + j] } }
        for j in 0..<cols { norm[j] = 1 / (1e-6 + norm[j].squareRoot()) }
        for r in 0..<rows { for j in 0..<cols { p[r * cols + j] *= norm[j] } }
    }

    static func normaliseColumns(_ t: inout Tensor, rows: Int, cols: Int) {
        t.withUnsafeMutableBufferPointer { normaliseColumns($0.baseAddress!, rows: rows, cols: cols) }
    }
}
