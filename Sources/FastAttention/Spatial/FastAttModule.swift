// Real-time Semantic Segmentation with Fast Attention (FANet).
// Ping Hu, Federico Perazzi, Fabian Caba Heilbron, Oliver Wang, Zhe Lin, Kate Saenko, Stan
// Sclaroff — IEEE RA-L 2021. https://arxiv.org/abs/2007.03815
// Reference matched: feinanshan/FANet Testing/models/fanet/fanet.py `FastAttModule` (the first
// author's code, commit d4e5e3c), read in full, with the paper's 1/n restored.

import TensorCore

/// FANet's fast attention module: cosine-similarity attention without softmax, associated as
/// Q̂(K̂ᵀV)/n so the n×n matrix is never formed, then a residual and a 3×3 smoothing conv.
///
/// Matches `FastAttModule(in_chan, mid_chn, out_chan, norm_layer=fanet.BatchNorm2d)` as FANet
/// builds it, output `smooth_feat` of `forward(x, None, up_flag=False, smf_flag=True)`, with
/// y divided by n = H·W as the paper's eq. (3) writes and the code omits.
///
/// - Input N×in_chan×H×W, output N×out_chan×H×W.
/// - Math: q = W_q x, k = W_k x (32 channels each, no activation); v = LeakyReLU(W_v x);
///   q̂, k̂ = per-pixel L2-normalised (F.normalize, eps 1e-12); y = q̂ (k̂ᵀ v) / n;
///   p = LeakyReLU(latlayer3(y)) + x; smooth_feat = LeakyReLU(conv3×3(p)). LeakyReLU slope 0.01.
/// - Map (per-query): the implicit weights cos(q_i, k_j)/n the query gives every pixel (no
///   softmax: values in [−1/n, 1/n], signed). O(n·32) per query.
/// - Cost: O(n·32·C) time, O(n·C) memory (the paper's O(n·c²)); beside it the 3×3 smoothing
///   conv, O(n·C·out_chan), run as Winograd F(4×4, 3×3) on weights transformed at init.
///
/// Quirks of the reference:
/// - fanet.py's `BatchNorm2d` subclass skips normalisation in forward and applies only its
///   activation (BN folded into the convs for speed); the convs have no bias. So the module has
///   no BN and no bias at all: the `*.bn.*` entries are loaded (strict keys) and never used.
/// - The code has no 1/n (`y = q̂ (k̂ᵀ v)`); restored here, as the paper writes it.
/// - The key dimension is hard-coded to 32; `mid_chn` is overridden to in_chan/2 (accepted and
///   ignored here). The `up` branch (a 1×1 conv with padding=1, sic) is not part of
///   smooth_feat: its weights load but do not run.
/// - Untrained: PyTorch-default random convs with W_k = W_q (similarity initialisation), so the
///   map is the cosine similarity of the query's projection to every pixel's.
///
/// Keys: `{w_qs,w_ks,w_vs,latlayer3,up,smooth}.conv.weight` and
/// `{…}.bn.{weight,bias,running_mean,running_var,num_batches_tracked}` (36 keys).
public final class FastAttModule: AttentionModule {
    public static let info = ModuleInfo(
        id: "fast-attention", title: "Real-time Semantic Segmentation with Fast Attention (FANet)",
        arxiv: "2007.03815", year: 2020, complexity: "O(N D^2)", complexityExponent: 1, kind: .spatial,
        causal: false, reference: "feinanshan/FANet Testing/models/fanet/fanet.py FastAttModule (commit d4e5e3c), 1/n restored",
        mapKind: .perQuery,
        mapDescription: "implicit weights cos(q_i, k_j)/n of the query over every pixel (no softmax; signed)",
        notes: ["the paper's 1/n is restored (the code omits it)",
                "fanet.py's BatchNorm2d applies only the activation: bn.* keys load but are unused; convs have no bias",
                "key dimension fixed at 32; mid_chn is overridden to in_chan/2 by the reference (accepted, ignored)",
                "output is smooth_feat of forward(x, None, up_flag=False, smf_flag=True); the up branch does not run",
                "untrained: PyTorch-default random convs with w_ks = w_qs (similarity initialisation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("in_chan", .int(2...65536), default: .none, "input channels (taken from the input when unset)"),
        ConfigKey("mid_chn", .int(1...65536), default: .int(256), "accepted for compatibility; the reference overrides it with in_chan/2"),
        ConfigKey("out_chan", .int(1...65536), default: .int(128), "output channels of the smoothing conv"),
    ]

    /// The reference's hard-coded query/key dimension.
    static let keyChannels = 32

    public let config: Config
    let inChan: Int, outChan: Int
    let wQs: PointwiseConv, wKs: PointwiseConv, wVs: PointwiseConv, latlayer3: PointwiseConv
    let up: PointwiseConv
    let smooth: Conv2d
    /// `smooth`'s weights in the Winograd domain, transformed once at init.
    let smoothWinograd: WinogradConv3x3
    /// fanet.py's BatchNorm2d instances: carried for strict loading, never applied.
    let unusedNorms: [BatchNorm2d]

    public var expectedInput: String { "N×\(inChan)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 4 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×C×H×W", found: inputShape)
        }
        try config.resolveChannels("in_chan", from: inputShape[1])
        self.config = config
        inChan = config.int("in_chan")
        outChan = config.int("out_chan")
        guard inChan >= 2 else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "in_chan must be ≥ 2 (mid_chn = in_chan/2), found \(inChan)")
        }
        let c = inChan, kc = Self.keyChannels
        var norms: [BatchNorm2d] = []
        func convBN(_ name: String, out: Int, weight: Tensor? = nil) -> PointwiseConv {
            let conv = PointwiseConv(p.scoped(name).scoped("conv"), inChannels: c, outChannels: out, bias: false, weight: weight)
            norms.append(BatchNorm2d(p.scoped(name).scoped("bn"), numFeatures: out))
            return conv
        }
        wQs = convBN("w_qs", out: kc)
        // Similarity initialisation: keys start equal to queries; a checkpoint overrides both.
        wKs = convBN("w_ks", out: kc, weight: wQs.weight)
        wVs = convBN("w_vs", out: c)
        latlayer3 = convBN("latlayer3", out: c)
        up = convBN("up", out: c / 2)
        smooth = try Conv2d(p.scoped("smooth").scoped("conv"), inChannels: c, outChannels: outChan,
                            kernelSize: 3, padding: 1, bias: false)
        smoothWinograd = try WinogradConv3x3(weight: smooth.weight)
        norms.append(BatchNorm2d(p.scoped("smooth").scoped("bn"), numFeatures: outChan))
        unusedNorms = norms
    }

    /// L2-normalised query and key tokens (N×L×32 each) and LeakyReLU'd values (N×L×C).
    func projections(_ x: Tensor) -> (q: Tensor, k: Tensor, v: Tensor) {
        var q = wQs.tokens(x), k = wKs.tokens(x)                   // N, L, 32
        normaliseRows(&q)
        normaliseRows(&k)
        var v = wVs.tokens(x)                                       // N, L, C
        leakyReluInPlace(&v)
        return (q, k, v)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (n, c, h, w) = try checkMap(x, channels: inChan, module: Self.info.id)
        let l = h * w, kc = Self.keyChannels
        let (q, k, v) = projections(x)
        var y = Tensor(uninitialized: [n, l, c])                  // N, L, C
        var context = [Float](repeating: 0, count: kc * c)        // 32 × C, per image
        q.withUnsafeBufferPointer { qp in
        k.withUnsafeBufferPointer { kp in
        v.withUnsafeBufferPointer { vp in
        y.withUnsafeMutableBufferPointer { yp in
        context.withUnsafeMutableBufferPointer { fp in
            for b in 0..<n {
                // f (32×C) = k̂ᵀ (32×L) · v (L×C)
                BLAS.gemm(transA: true, m: kc, n: c, k: l, a: kp.baseAddress! + b * l * kc, lda: kc,
                          b: vp.baseAddress! + b * l * c, ldb: c, c: fp.baseAddress!, ldc: c)
                // y (L×C) = q̂ (L×32) · f / n
                BLAS.gemm(m: l, n: c, k: kc, alpha: 1 / Float(l), a: qp.baseAddress! + b * l * kc, lda: kc,
                          b: fp.baseAddress!, ldb: c, c: yp.baseAddress! + b * l * c, ldc: c)
            }
        }
        }
        }
        }
        }
        var p = latlayer3.map(fromTokens: y, height: h, width: w)  // N, C, H, W
        leakyReluInPlace(&p)
        p += x
        var out = try conv2d(p, winograd: smoothWinograd, padding: (1, 1))  // smooth: N, out_chan, H, W
        leakyReluInPlace(&out)
        return out
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, _, h, w) = try checkMap(x, channels: inChan, module: Self.info.id)
        guard (0..<h).contains(query.row), (0..<w).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id,
                                       message: "query (row \(query.row), column \(query.column)) is outside the \(h)×\(w) grid")
        }
        let x0 = x.batchItem(0)
        let l = h * w, kc = Self.keyChannels
        var qi = Tensor(shape: [1, 1, kc], scalars: wQs.project(x0, batch: 0, position: query.row * w + query.column))
        normaliseRows(&qi)
        var k = wKs.tokens(x0)                                      // 1, L, 32
        normaliseRows(&k)
        var weights = [Float](repeating: 0, count: l)
        qi.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                weights.withUnsafeMutableBufferPointer { wp in
                    // w (1×L) = q̂_i (1×32) · k̂ᵀ (32×L) / n
                    BLAS.gemm(transB: true, m: 1, n: l, k: kc, alpha: 1 / Float(l), a: qp.baseAddress!, lda: kc,
                              b: kp.baseAddress!, ldb: kc, c: wp.baseAddress!, ldc: l)
                }
            }
        }
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, h, w], scalars: weights),
                            labels: ["cos(q,k)/n"])
    }
}

/// nn.LeakyReLU() (negative slope 0.01) in place: one pass over the buffer (a closure through
/// `mapInPlace` is not inlined and costs 10% of the forward), branch-free: `v < 0.01·v` holds
/// exactly for negative v, so the select vectorises (a `where p[i] < 0` branch mispredicted on
/// every other element of real-valued features: a quarter of the forward). NaN and −0 unchanged.
private func leakyReluInPlace(_ t: inout Tensor) {
    t.withUnsafeMutableBufferPointer { buf in
        let p = buf.baseAddress!
        for i in 0..<buf.count {
            let v = p[i], s = v * 0.01
            p[i] = v < s ? s : v
        }
    }
}

/// F.normalize(p=2, dim=-1, eps=1e-12) in place on the rows of …×C: x / max(‖x‖, eps).
func normaliseRows(_ t: inout Tensor) {
    let c = t.shape.last!, rows = t.count / max(c, 1)
    t.withUnsafeMutableBufferPointer { tp in
        for r in 0..<rows {
            let row = tp.baseAddress! + r * c
            var s: Float = 0
            for j in 0..<c { s += row[j] * row[j] }
            let inv = 1 / max(s.squareRoot(), 1e-12)
            for j in 0..<c { row[j] *= inv }
        }
    }
}
