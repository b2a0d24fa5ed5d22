// CCNet: Criss-Cross Attention for Semantic Segmentation.
// Huang, Wang, Huang, Huang, Wei, Liu, ICCV 2019. https://arxiv.org/abs/1811.11721
// Reference matched: mmcv 2.1 `mmcv.ops.CrissCrossAttention` (mmcv/ops/cc_attention.py, pure
// PyTorch, read in full; equal to the authors' speedinghzl/CCNet cc_attention/functions.py), applied
// `recurrence` times with shared weights as mmseg's CCHead does.

import CKernels
import Foundation
import TensorCore

/// Criss-cross attention: every pixel attends to the pixels of its own row and column, with one
/// softmax over those H + W logits; applying the module twice lets information reach every pixel.
///
/// Matches `mmcv.ops.CrissCrossAttention(in_channels)` in eval mode, applied `recurrence` times
/// (mmseg `CCHead(recurrence=2)`: y = cca(cca(x)), the same weights each time).
///
/// - Input N×C×H×W, output N×C×H×W. Per application, with q, k = 1×1 convs to C′ = C // 8
///   channels and v a 1×1 conv to C channels (all with bias):
///   e_H[h,w,i] = q[h,w]·k[i,w] (−∞ where i = h), e_W[h,w,j] = q[h,w]·k[h,j],
///   A[h,w] = softmax over the H + W entries of [e_H, e_W],
///   out[h,w] = Σᵢ A[h,w,i] v[i,w] + Σⱼ A[h,w,H+j] v[h,j], y = γ·out + x.
/// - Map (per-query): the query pixel's H + W weights scattered on its column (the H branch)
///   and row (the W branch), zero elsewhere; the query pixel itself carries its W-branch
///   weight. With recurrence ≥ 2 a second map, "2 hops", composes the last two applications:
///   M[r] = Σ_{q on the query's cross} A_R[p,q]·A_{R−1}[q,r], computed in O((H+W)²·C′) per
///   query; it reaches every pixel. The γ gate is not part of the map: it shows attention.
/// - Cost per application: O(N·(H+W)·(C′+C)) for the logits and the aggregation, as the paper
///   says, plus O(N·C²) for the projections. The logits are computed per column (an H×H GEMM)
///   and per row (a W×W GEMM) into W·H² + H·W² = N·(H+W) floats per image; no N×N matrix is
///   ever built.
///
/// Quirks of the reference:
/// - The −∞ is on the diagonal of the H branch only, so the centre pixel is counted once (in
///   the W branch); each softmax has H + W entries with one exactly 0.
/// - No 1/√C′ scaling, no BatchNorm; C′ = in_channels // 8 (in_channels < 8 is refused: zero
///   query channels).
/// - mmcv stores γ as `gamma.scale`, a 0-dimensional tensor (the authors' code: `gamma`, shape
///   (1,)). Both initialise it to 0, which makes an untrained block the identity; seeded
///   weights here use γ = 1 instead, with PyTorch-default random convs and the key projection
///   equal to the query projection (similarity initialisation). A checkpoint overrides all.
///
/// Keys: `query_conv.{weight (C′,C,1,1), bias}`, `key_conv.{weight (C′,C,1,1), bias}`,
/// `value_conv.{weight (C,C,1,1), bias}`, `gamma.scale` (shape ()).
public final class CrissCrossAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "criss-cross", title: "CCNet: Criss-Cross Attention for Semantic Segmentation", arxiv: "1811.11721",
        year: 2019, complexity: "O(N (H+W) D)", complexityExponent: 1.5, kind: .spatial, causal: false,
        reference: "mmcv.ops.CrissCrossAttention (mmcv-lite 2.1.0, cc_attention.py) applied `recurrence` times as mmseg CCHead",
        mapKind: .perQuery,
        mapDescription: "the query pixel's softmax weights over its row and column (zero elsewhere); with recurrence >= 2 also the composed 2-hop map over every pixel",
        notes: ["-inf on the H-branch diagonal only: the centre pixel counts once, in the W branch",
                "no 1/sqrt(C') scaling; C' = in_channels // 8 (in_channels >= 8)",
                "recurrence R applies the same weights R times (mmseg CCHead uses 2)",
                "map with R >= 2: '1 hop' is the last application's cross, '2 hops' composes the last two applications",
                "gamma.scale is 0-dimensional (mmcv Scale); the map shows attention, not the gamma-gated output",
                "untrained: gamma = 1 (the reference starts at 0, an identity block), key_conv = query_conv"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("in_channels", .int(8...65536), default: .none, "input channels (taken from the input when unset); C' = in_channels // 8"),
        ConfigKey("recurrence", .int(1...16), default: .int(1), "applications of the module with shared weights (mmseg CCHead: 2)"),
    ]

    public let config: Config
    let inChannels: Int, keyChannels: Int, recurrence: Int
    let queryConv: PointwiseConv          // C → C′
    let keyConv: PointwiseConv            // C → C′
    let valueConv: PointwiseConv          // C → C
    let gamma: Float

    public var expectedInput: String { "N×\(inChannels)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 4 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×C×H×W", found: inputShape)
        }
        if inputShape[1] < 8 {
            throw ConfigError.inconsistent(module: Self.info.id,
                message: "in_channels = \(inputShape[1]) gives in_channels // 8 = 0 query/key channels; criss-cross needs at least 8 channels")
        }
        try config.resolveChannels("in_channels", from: inputShape[1])
        self.config = config
        inChannels = config.int("in_channels")
        keyChannels = inChannels / 8
        recurrence = config.int("recurrence")
        queryConv = PointwiseConv(p.scoped("query_conv"), inChannels: inChannels, outChannels: keyChannels)
        // Similarity initialisation: key_conv starts equal to query_conv.
        keyConv = PointwiseConv(p.scoped("key_conv"), inChannels: inChannels, outChannels: keyChannels,
                                weight: queryConv.weight, initialBias: queryConv.bias)
        valueConv = PointwiseConv(p.scoped("value_conv"), inChannels: inChannels, outChannels: inChannels)
        gamma = p.scoped("gamma").parameter("scale", shape: [], initializer: .ones).scalars[0]
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        _ = try checkMap(x, channels: inChannels, module: Self.info.id)
        var y = x
        for _ in 0..<recurrence { y = apply(y) }
        return y
    }

    /// One application: y = γ·CCA(x) + x. N×C×H×W → N×C×H×W.
    func apply(_ x: Tensor) -> Tensor {
        let n = x.shape[0], c = inChannels, h = x.shape[2], w = x.shape[3], l = h * w
        let q = queryConv.tokens(x)                        // N, L, C′
        let k = keyConv.tokens(x)                          // N, L, C′
        let v = valueConv.tokens(x)                        // N, L, C
        var out = Tensor(uninitialized: [n, l, c])         // N, L, C
        var attnH = Tensor(uninitialized: [w, h, h])       // one image's H branch: column, query row, key row
        var attnW = Tensor(uninitialized: [h, w, w])       // one image's W branch: row, query column, key column
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        attnH.withUnsafeMutableBufferPointer { ah in
                            attnW.withUnsafeMutableBufferPointer { aw in
                                for b in 0..<n {
                                    crossWeights(q: qp.baseAddress! + b * l * keyChannels,
                                                 k: kp.baseAddress! + b * l * keyChannels, h: h, w: w,
                                                 attnH: ah.baseAddress!, attnW: aw.baseAddress!)
                                    aggregate(attnH: ah.baseAddress!, attnW: aw.baseAddress!,
                                              v: vp.baseAddress! + b * l * c, h: h, w: w,
                                              into: op.baseAddress! + b * l * c)
                                }
                            }
                        }
                    }
                }
            }
        }
        // y[c, l] = γ·out[l, c] + x[c, l]: back to N, C, H, W with the residual, in blocks of
        // positions so the token rows being read stay in cache.
        var y = Tensor(uninitialized: x.shape)
        let gamma = self.gamma, block = 64
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeBufferPointer { op in
                y.withUnsafeMutableBufferPointer { yp in
                    let (xb, ob, yb) = (xp.baseAddress!, op.baseAddress!, yp.baseAddress!)
                    Threads.parallelFor(n * ((l + block - 1) / block)) { tiles in
                        for tile in tiles {
                            let b = tile / ((l + block - 1) / block), j0 = (tile % ((l + block - 1) / block)) * block
                            let j1 = min(j0 + block, l)
                            for ch in 0..<c {
                                let src = xb + (b * c + ch) * l, dst = yb + (b * c + ch) * l
                                let o = ob + b * l * c + ch
                                for j in j0..<j1 { dst[j] = gamma * o[j * c] + src[j] }
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    /// The criss-cross weights of one image from its q, k tokens (L×C′): the H branch per
    /// column as an H×H block (attnH[col][row][i] = q[row, col]·k[i, col], −∞ at i = row), the W
    /// branch per row as a W×W block (attnW[row][col][j] = q[row, col]·k[row, j]), each block
    /// one small GEMM written contiguously; then one softmax per pixel over its H + W entries
    /// (two segments). O(L·(H+W)·C′).
    func crossWeights(q: UnsafePointer<Float>, k: UnsafePointer<Float>, h: Int, w: Int,
                      attnH: UnsafeMutablePointer<Float>, attnW: UnsafeMutablePointer<Float>) {
        let d = keyChannels
        Threads.parallelFor(w) { cols in
            for col in cols {
                // Rows of column `col` in q and k are strided by W·C′.
                let block = attnH + col * h * h
                BLAS.gemm(transB: true, m: h, n: h, k: d, a: q + col * d, lda: w * d,
                          b: k + col * d, ldb: w * d, c: block, ldc: h)
                for i in 0..<h { block[i * h + i] = -.infinity }
            }
        }
        Threads.parallelFor(h) { rows in
            for row in rows {
                BLAS.gemm(transB: true, m: w, n: w, k: d, a: q + row * w * d, lda: d,
                          b: k + row * w * d, ldb: d, c: attnW + row * w * w, ldc: w)
            }
        }
        Threads.parallelFor(h * w, minChunk: 64) { pixels in
            for p in pixels {
                let row = p / w, col = p % w
                softmaxInPlace(attnH + (col * h + row) * h, count: h, attnW + (row * w + col) * w, count: w)
            }
        }
    }

    /// out (L×C) = Σᵢ A_H[·,i] v[i, col] + Σⱼ A_W[·,j] v[row, j] for one image: per column an
    /// H×H by H×C GEMM, then per row a W×W by W×C GEMM accumulated on top. O(L·(H+W)·C).
    func aggregate(attnH: UnsafePointer<Float>, attnW: UnsafePointer<Float>, v: UnsafePointer<Float>,
                   h: Int, w: Int, into out: UnsafeMutablePointer<Float>) {
        let c = inChannels
        Threads.parallelFor(w) { cols in
            for col in cols {
                BLAS.gemm(m: h, n: c, k: h, a: attnH + col * h * h, lda: h, b: v + col * c, ldb: w * c,
                          c: out + col * c, ldc: w * c)
            }
        }
        Threads.parallelFor(h) { rows in
            for row in rows {
                BLAS.gemm(m: w, n: c, k: w, a: attnW + row * w * w, lda: w, b: v + row * w * c, ldb: c,
                          beta: 1, c: out + row * w * c, ldc: c)
            }
        }
    }

    /// The H + W weights of pixel (row, col) from q, k tokens (L×C′) of one image:
    /// O((H+W)·C′), the same arithmetic as `crossWeights` for one pixel.
    func pixelCross(q: UnsafePointer<Float>, k: UnsafePointer<Float>, h: Int, w: Int, row: Int, col: Int) -> [Float] {
        let d = keyChannels
        var e = [Float](repeating: 0, count: h + w)
        let qi = q + (row * w + col) * d
        for i in 0..<h {
            let ki = k + (i * w + col) * d
            var s: Float = 0
            for t in 0..<d { s += qi[t] * ki[t] }
            e[i] = s
        }
        for j in 0..<w {
            let kj = k + (row * w + j) * d
            var s: Float = 0
            for t in 0..<d { s += qi[t] * kj[t] }
            e[h + j] = s
        }
        e[row] = -.infinity
        e.withUnsafeMutableBufferPointer { softmaxInPlace($0.baseAddress!, count: h, $0.baseAddress! + h, count: w) }
        return e
    }

    /// Adds `scale`·(the cross weights `e` of pixel (row, col)) into an H×W map.
    static func scatterCross(_ e: [Float], scale: Float, row: Int, col: Int, h: Int, w: Int,
                             into map: UnsafeMutablePointer<Float>) {
        for i in 0..<h { map[i * w + col] += scale * e[i] }
        for j in 0..<w { map[row * w + j] += scale * e[h + j] }
    }

    /// For batch item 0: the 1-hop cross of the last application and, with recurrence ≥ 2, the
    /// 2-hop composition of the last two (k×H×W, k = 1 or 2).
    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, _, h, w) = try checkMap(x, channels: inChannels, module: Self.info.id)
        guard (0..<h).contains(query.row), (0..<w).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id,
                                       message: "query (row \(query.row), column \(query.column)) is outside the \(h)×\(w) grid")
        }
        // Inputs of the last two applications: z[R−2] (when R ≥ 2) and z[R−1].
        var inputs = [x.batchItem(0)]
        for _ in 1..<max(recurrence, 1) { inputs.append(apply(inputs[inputs.count - 1])) }
        let last = inputs[inputs.count - 1]
        let (qL, kL) = (queryConv.tokens(last), keyConv.tokens(last))           // 1, L, C′ each
        let hop1 = qL.withUnsafeBufferPointer { qp in
            kL.withUnsafeBufferPointer { kp in
                pixelCross(q: qp.baseAddress!, k: kp.baseAddress!, h: h, w: w, row: query.row, col: query.column)
            }
        }
        var maps = Tensor(zeros: [recurrence >= 2 ? 2 : 1, h, w])               // k, H, W
        maps.withUnsafeMutableBufferPointer { mp in
            Self.scatterCross(hop1, scale: 1, row: query.row, col: query.column, h: h, w: w, into: mp.baseAddress!)
            guard recurrence >= 2 else { return }
            let prev = inputs[inputs.count - 2]
            let (qP, kP) = (queryConv.tokens(prev), keyConv.tokens(prev))       // 1, L, C′ each
            qP.withUnsafeBufferPointer { qp in
                kP.withUnsafeBufferPointer { kp in
                    let two = mp.baseAddress! + h * w
                    // Every pixel on the query's cross, with its hop-1 weight (the query pixel
                    // itself through the W branch; its H-branch entry is exactly 0).
                    var cross: [(Int, Int, Float)] = (0..<h).map { ($0, query.column, hop1[$0]) }
                    cross += (0..<w).map { (query.row, $0, hop1[h + $0]) }
                    for (r, cl, weight) in cross where weight != 0 {
                        let e = pixelCross(q: qp.baseAddress!, k: kp.baseAddress!, h: h, w: w, row: r, col: cl)
                        Self.scatterCross(e, scale: weight, row: r, col: cl, h: h, w: w, into: two)
                    }
                }
            }
        }
        let labels = recurrence >= 2 ? ["1 hop (row + column)", "2 hops"] : ["row + column (1 hop)"]
        return AttentionMap(kind: .perQuery, values: maps, labels: labels)
    }
}

/// Softmax over the concatenation of two segments (`a`, `b`), in place: the criss-cross
/// H and W branches of one pixel, stored apart. Exponentials through the vectorised `fa_exp`;
/// −∞ entries become exactly 0.
func softmaxInPlace(_ a: UnsafeMutablePointer<Float>, count na: Int, _ b: UnsafeMutablePointer<Float>, count nb: Int) {
    var m = -Float.infinity
    for i in 0..<na { m = max(m, a[i]) }
    for i in 0..<nb { m = max(m, b[i]) }
    for i in 0..<na { a[i] -= m }
    for i in 0..<nb { b[i] -= m }
    fa_exp(a, a, na)
    fa_exp(b, b, nb)
    var s: Float = 0
    for i in 0..<na { s += a[i] }
    for i in 0..<nb { s += b[i] }
    let inv = 1 / s
    for i in 0..<na { a[i] *= inv }
    for i in 0..<nb { b[i] *= inv }
}
