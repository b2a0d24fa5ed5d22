// LambdaNetworks: Modeling Long-Range Interactions Without Attention.
// Irwan Bello, ICLR 2021. https://arxiv.org/abs/2102.08602
// Reference matched: pip lambda-networks 0.4.0 (lucidrains), lambda_networks/lambda_networks.py
// `LambdaLayer`, read in full. The paper's code is TF snippets in its appendix; timm's
// `timm.layers.lambda_layer.LambdaLayer` is the same math with other keys (u = 1).

import CKernels
import TensorCore

/// A lambda layer: the context is summarised into small linear functions (lambdas) that are
/// applied to each query — a content lambda shared by all positions and a position lambda per
/// query — instead of an attention map.
///
/// Matches `LambdaLayer(dim, dim_k, n=None, r=None, heads=4, dim_out=None, dim_u=1)` in eval
/// mode (BatchNorm with running statistics).
///
/// - Input N×dim×H×W, output N×dim_out×H×W; no residual. dim_v = dim_out / heads.
/// - q = BN(W_q x) (heads·k channels, head outermost), k = W_k x (u·k, NO BatchNorm),
///   v = BN(W_v x) (u·v); K̄ = softmax of k over the H·W positions, per channel.
/// - Content lambda λc = Σ_u K̄_u V_uᵀ (k×v), shared by every position; Yc = λcᵀ q_h.
/// - Position lambdas: local (`r`): λp = Conv3d(u → k, kernel (1, r, r), zero padding r//2, WITH
///   bias) over v laid out u × v × H × W, i.e. a 2D conv of each value channel's map; global
///   (`n`, H = W = n only): λp_n = Σ_m E[m − n] v_m with `rel_pos_emb` E ((2n−1)²×k×u) indexed
///   by the relative offset. Yp = Σ_k q_{h,k,n} λp_{k,v,n}. y = concat_h(Yc + Yp).
/// - Queries are neither scaled nor softmaxed; heads share k and v (multi-query).
/// - Cost: content O(N·k·v·u); position local O(N·r²·u·heads·(k + v)): λp is never formed —
///   per-query tap weights w = q·[E, bias] (one GEMM per chunk of positions) weight the r×r
///   value window directly (CKernels' fa_lambda_local_apply, AVX-512/AVX2), half the conv's
///   O(N·r²·k·v·u) at the defaults and no im2col; global O(N²·k·v·u) — the paper's Θ(b·n·m·k·v) —
///   computed by one Toeplitz GEMM per row offset, so memory stays O(N·k·v) (the reference
///   materialises an N×N×k×u embedding).
/// - Map (per-query; there is no attention): with q_n the query's BN'd projection (mean over
///   heads, or one head), the implicit weights the lambdas apply to the values v_m:
///   content wc(m) = Σ_k q_n[k]·K̄[k, m], position wp(m) = Σ_k q_n[k]·E[k, m − n] (zero
///   outside the r×r window in the local variant), and their sum: y_n = Σ_m w(m)·v_m
///   (+ Σ_k q_n[k]·pos_conv.bias[k] in the local variant, a term on no value). Weights of the
///   u value sets are summed. They are not normalised and can be negative. Then the u·k key
///   maps K̄ (each sums to 1 over H×W). O(N·k·u) per query. Untrained, the position kernel is
///   random (PyTorch-default Conv3d init), so the position weights are a noisy r×r patch an
///   order of magnitude larger than the content weights, and dominate the sum.
///
/// Quirks: the reference requires `r` or `n`; with neither, r = 23 (the paper's scope size)
/// is used. With `r` set, `n` is ignored (as there). `r` must be odd. `dim_k` has no default
/// there; 16 here (the reference README's). Untrained (seeded) weights: PyTorch-default, with
/// to_k equal to head 0's rows of to_q (similarity initialisation), `rel_pos_emb` ~ N(0, 1)
/// as torch.randn.
///
/// Keys: `to_q.weight` (heads·k×dim×1×1), `to_k.weight` (u·k×dim×1×1), `to_v.weight`
/// (u·v×dim×1×1), `norm_q.*`, `norm_v.*` (BatchNorm2d), and `pos_conv.weight` (k×u×1×r×r) +
/// `pos_conv.bias` (k), or `rel_pos_emb` (2n−1×2n−1×k×u).
public final class LambdaLayer: AttentionModule {
    public static let info = ModuleInfo(
        id: "lambda", title: "LambdaNetworks: Modeling Long-Range Interactions Without Attention", arxiv: "2102.08602",
        year: 2021, complexity: "O(N^2 k v/h) global; O(N r^2 k v/h) local (default)", complexityExponent: 1,
        kind: .spatial, causal: false, reference: "lambda_networks.LambdaLayer (lambda-networks 0.4.0)", mapKind: .perQuery,
        mapDescription: "implicit weights the lambdas apply to each value for the query: content sum_k q_k softmax_n(K)_k, position sum_k q_k E_k(m-n), their sum; then the k key maps softmax_n(K)",
        notes: ["no attention: weights are unnormalised and may be negative",
                "BatchNorm on q and v, not on k; k is softmaxed over positions",
                "local (r): Conv3d (1,r,r) with bias over the value maps; global (n): relative embeddings, H = W = n only",
                "with neither r nor n set (the reference requires one), r = 23",
                "untrained: PyTorch-default weights, to_k = head 0 of to_q (similarity initialisation), rel_pos_emb ~ N(0,1)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "input channels (taken from the input when unset)"),
        ConfigKey("dim_k", .int(1...65536), default: .int(16), "query/key depth k"),
        ConfigKey("n", .int(1...4096), default: .none, "global variant: relative position embeddings for n×n inputs"),
        ConfigKey("r", .int(1...4095), default: .none, "local variant: odd context size (with n unset too: 23)"),
        ConfigKey("heads", .int(1...4096), default: .int(4), "query heads (dim_out % heads must be 0)"),
        ConfigKey("dim_out", .int(1...65536), default: .none, "output channels (default dim)"),
        ConfigKey("dim_u", .int(1...4096), default: .int(1), "intra-depth u"),
    ]

    public let config: Config
    let dim: Int, dimK: Int, heads: Int, dimOut: Int, dimU: Int, dimV: Int
    /// nil: global with n×n inputs.
    let r: Int?, n: Int?
    let toQ: PointwiseConv, toK: PointwiseConv, toV: PointwiseConv
    let normQ: BatchNorm2d, normV: BatchNorm2d
    /// k × u × R × R: the local conv kernel (R = r), or the relative embeddings as a kernel
    /// (R = 2n − 1, kernel[k, u, di, dj] = rel_pos_emb[di, dj, k, u]); bias only when local.
    let positionKernel: Tensor, positionBias: Tensor?
    /// Local only: k × (u·r² + 1), each row the kernel's taps then the bias (the direct kernel's GEMM operand).
    let positionTaps: Tensor?

    public var expectedInput: String { r == nil ? "N×\(dim)×\(n!)×\(n!)" : "N×\(dim)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 4 else { throw ModuleError.badInput(module: id, expected: "N×C×H×W", found: inputShape) }
        try config.resolveChannels("dim", from: inputShape[1])
        self.config = config
        dim = config.int("dim")
        dimK = config.int("dim_k")
        heads = config.int("heads")
        dimOut = config.optionalInt("dim_out") ?? dim
        dimU = config.int("dim_u")
        guard dimOut % heads == 0 else {
            throw ConfigError.inconsistent(module: id, message: "dim_out=\(dimOut) is not divisible by heads=\(heads)")
        }
        dimV = dimOut / heads
        n = config.optionalInt("n")
        r = config.optionalInt("r") ?? (n == nil ? 23 : nil)
        if let r, r % 2 == 0 {
            throw ConfigError.inconsistent(module: id, message: "r=\(r) must be odd (the receptive kernel is centred)")
        }
        let (k, u, v) = (dimK, dimU, dimV)
        toQ = PointwiseConv(p.scoped("to_q"), inChannels: dim, outChannels: heads * k, bias: false)
        // Similarity initialisation: to_k starts as head 0's rows of to_q (for each of the u sets).
        let headZero = toQ.weight.sliced(axis: 0, range: 0..<k)
        toK = PointwiseConv(p.scoped("to_k"), inChannels: dim, outChannels: u * k, bias: false,
                            weight: Tensor.concatenated(Array(repeating: headZero, count: u), axis: 0))
        toV = PointwiseConv(p.scoped("to_v"), inChannels: dim, outChannels: u * v, bias: false)
        normQ = BatchNorm2d(p.scoped("norm_q"), numFeatures: heads * k)
        normV = BatchNorm2d(p.scoped("norm_v"), numFeatures: u * v)
        if let r {
            let pc = p.scoped("pos_conv")
            positionKernel = pc.parameter("weight", shape: [k, u, 1, r, r], initializer: .pytorchDefault(fanIn: u * r * r))
                .reshaped([k, u, r, r])
            positionBias = pc.parameter("bias", shape: [k], initializer: .pytorchDefault(fanIn: u * r * r))
            positionTaps = Tensor.concatenated([positionKernel.reshaped([k, u * r * r]), positionBias!.reshaped([k, 1])], axis: 1)
        } else {
            let side = 2 * n! - 1
            positionKernel = p.parameter("rel_pos_emb", shape: [side, side, k, u], initializer: .normal(std: 1))
                .permuted(2, 3, 0, 1)                                  // k, u, 2n−1, 2n−1
            positionBias = nil
            positionTaps = nil
        }
    }

    func check(_ x: Tensor) throws -> (b: Int, h: Int, w: Int) {
        let (b, _, h, w) = try checkMap(x, channels: dim, module: Self.info.id)
        if r == nil, h != n! || w != n! {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×\(dim)×\(n!)×\(n!) (global variant: H = W = n)",
                                       found: x.shape)
        }
        return (b, h, w)
    }

    /// q N×(heads·k)×H×W after BN, K̄ N×(u·k)×H×W softmaxed over positions, v N×(u·v)×H×W after BN.
    func projections(_ x: Tensor) throws -> (q: Tensor, kbar: Tensor, v: Tensor) {
        let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        let q = try normQ(toQ(x))
        let kbar = toK(x).reshaped([b * dimU * dimK, h * w]).softmax(axis: -1)
            .reshaped([b, dimU * dimK, h, w])
        let v = try normV(toV(x))
        return (q, kbar, v)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try forward(x, directLocal: true) }

    /// The forward; `directLocal: false` takes the local position term through the materialised
    /// λp (conv2d + contraction), the reference the direct kernel is tested against.
    func forward(_ x: Tensor, directLocal: Bool) throws -> Tensor {
        let (b, h, w) = try check(x)
        let (q, kbar, v) = try projections(x)
        let l = h * w, (k, u, dv) = (dimK, dimU, dimV)
        var y = Tensor(zeros: [b, heads * dv, h, w])                 // N, heads·v, H, W
        q.withUnsafeBufferPointer { qp in
            kbar.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    y.withUnsafeMutableBufferPointer { yp in
                        var lc = [Float](repeating: 0, count: k * dv)
                        for bi in 0..<b {
                            // λc (k×v) = Σ_u K̄_u (k×L) · V_uᵀ (L×v)
                            lc.withUnsafeMutableBufferPointer { cp in
                                for ui in 0..<u {
                                    BLAS.gemm(transB: true, m: k, n: dv, k: l, a: kp.baseAddress! + (bi * u + ui) * k * l, lda: l,
                                              b: vp.baseAddress! + (bi * u + ui) * dv * l, ldb: l,
                                              beta: ui == 0 ? 0 : 1, c: cp.baseAddress!, ldc: dv)
                                }
                                // Yc_h (v×L) = λcᵀ (v×k) · Q_h (k×L)
                                for hd in 0..<heads {
                                    BLAS.gemm(transA: true, m: dv, n: l, k: k, a: cp.baseAddress!, lda: dv,
                                              b: qp.baseAddress! + (bi * heads + hd) * k * l, ldb: l,
                                              c: yp.baseAddress! + (bi * heads + hd) * dv * l, ldc: l)
                                }
                            }
                        }
                    }
                }
            }
        }
        if r != nil && directLocal {
            addLocalPosition(q: q, v: v, into: &y, b: b, h: h, w: w)
        } else {
            let lambdaP = r == nil ? globalPositionLambdas(v, b: b, side: h) : try localPositionLambdas(v, b: b, h: h, w: w)
            addPosition(lambdaP, q: q, into: &y, b: b, l: l)
        }
        return y
    }

    /// Yp[h, v, n] += Σ_k q[h, k, n] · λp[v, k, n] from materialised λp N×v×k×(H·W), innermost on n.
    func addPosition(_ lambdaP: Tensor, q: Tensor, into y: inout Tensor, b: Int, l: Int) {
        let (k, dv) = (dimK, dimV)
        q.withUnsafeBufferPointer { qp in
            lambdaP.withUnsafeBufferPointer { lp in
                y.withUnsafeMutableBufferPointer { yp in
                    for bi in 0..<b { for hd in 0..<heads { for vi in 0..<dv {
                        let out = yp.baseAddress! + ((bi * heads + hd) * dv + vi) * l
                        for ki in 0..<k {
                            let qr = qp.baseAddress! + ((bi * heads + hd) * k + ki) * l
                            let lr = lp.baseAddress! + ((bi * dv + vi) * k + ki) * l
                            for j in 0..<l { out[j] += qr[j] * lr[j] }
                        }
                    } } }
                }
            }
        }
    }

    /// The local position term without λp: Yp[h, v, n] = Σ_{u,t} w[n, h, (u,t)] · v[u, v, n + t] + w[n, h, bias]
    /// with the per-query tap weights w[n, h, :] = Σ_k q[h, k, n] · [E[k, :], bias[k]] — one GEMM per
    /// chunk of positions (rows (n, h), k deep, u·r²+1 wide), then CKernels' fa_lambda_local_apply
    /// (vectorised over value channels, several positions × heads per loaded value vector) over a
    /// zero-bordered pixel-major copy of v. heads·(k + v)·u·r² multiply-adds per position instead of
    /// the conv's k·v·u·r², and no im2col. Chunks run on `Threads.parallelFor`.
    func addLocalPosition(q: Tensor, v: Tensor, into y: inout Tensor, b: Int, h: Int, w: Int) {
        let r = self.r!, (k, u, dv, l) = (dimK, dimU, dimV, h * w)
        let taps = u * r * r, ldw = taps + 1, hp = h + r - 1, wp = w + r - 1
        let qT = q.reshaped([b, heads * k, l]).permuted(0, 2, 1)          // N, L, heads·k: rows (n, h), k deep
        // A chunk's tap weights stay within ~512 KB (L2-resident while the kernel reads them).
        let chunk = max(1, min(l, Self.chunkFloats / (heads * ldw)))
        let chunks = (l + chunk - 1) / chunk
        var vpad = [Float](repeating: 0, count: u * hp * wp * dv)
        qT.withUnsafeBufferPointer { qp in
            v.withUnsafeBufferPointer { vp in
                positionTaps!.withUnsafeBufferPointer { ep in
                    y.withUnsafeMutableBufferPointer { yp in
                        vpad.withUnsafeMutableBufferPointer { pp in
                            for bi in 0..<b {
                                fa_lambda_pad_values(vp.baseAddress! + bi * u * dv * l, pp.baseAddress!, u, dv, h, w, r / 2)
                                let vpadp = UnsafePointer(pp.baseAddress!)
                                Threads.parallelFor(chunks) { range in
                                    // Tap-major weights (u·r² + 1 rows of chunk·heads) and the kernel's scratch.
                                    var wt = [Float](repeating: 0, count: chunk * heads * (ldw + dv))
                                    wt.withUnsafeMutableBufferPointer { wtp in
                                        let scratch = wtp.baseAddress! + chunk * heads * ldw
                                        for ci in range {
                                            let n0 = ci * chunk, count = min(chunk, l - n0)
                                            // wt[t, (n, h)] = Σ_k taps[k, t] · q[h, k, n]
                                            BLAS.gemm(transA: true, transB: true, m: ldw, n: count * heads, k: k,
                                                      a: ep.baseAddress!, lda: ldw, b: qp.baseAddress! + (bi * l + n0) * heads * k,
                                                      ldb: k, c: wtp.baseAddress!, ldc: chunk * heads)
                                            fa_lambda_local_apply(wtp.baseAddress!, chunk * heads, 1, vpadp, scratch, yp.baseAddress! + bi * heads * dv * l,
                                                                  n0, count, h, w, heads, u, r, dv)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Floats of tap weights per chunk of the direct local path (tests shrink it to cross rows).
    nonisolated(unsafe) static var chunkFloats = 1 << 17

    /// The path the direct local kernel takes for dv value channels: 2 AVX-512, 1 AVX2, 0 portable.
    static func kernelPath(dv: Int) -> Int { Int(fa_lambda_local_path(dv)) }

    /// λp N×v×k×(H·W) of the local variant through conv2d (the bias included): the reference path.
    func localPositionLambdas(_ v: Tensor, b: Int, h: Int, w: Int) throws -> Tensor {
        let (k, u, dv, l) = (dimK, dimU, dimV, h * w)
        let r = self.r!
        // Conv3d's layout: u channels, v as depth → a 2D conv over N·v images of u channels.
        let images = v.reshaped([b, u, dv, l]).permuted(0, 2, 1, 3).reshaped([b * dv, u, h, w])   // N·v, u, H, W
        return try conv2d(images, weight: positionKernel, bias: positionBias, padding: (r / 2, r / 2))
            .reshaped([b, dv, k, l])                                   // N, v, k, H·W
    }

    /// Global position lambdas, λp[v, k, (i, j)] = Σ_{i′, j′, u} E[k, u, i′−i+n−1, j′−j+n−1] v[u, v, (i′, j′)]:
    /// for each row offset i′ − i the column sums are products with one Toeplitz matrix
    /// T[j′, j] = E[k, u, i′−i+n−1, j′−j+n−1], so with the values laid out u × H × v × W every
    /// row pair of that offset is ONE GEMM ((rows·v)×W · W×W). O(N²·k·u·v) time (the paper's),
    /// O(n²·k·u + N·k·v) memory.
    func globalPositionLambdas(_ v: Tensor, b: Int, side s: Int) -> Tensor {
        let (k, u, dv, span) = (dimK, dimU, dimV, 2 * s - 1)
        let rows = v.reshaped([b, u, dv, s, s]).permuted(0, 1, 3, 2, 4)   // N, u, H, v, W
        var out = Tensor(zeros: [b, k, s, dv, s])                          // N, k, H, v, W
        var toeplitz = [Float](repeating: 0, count: k * u * s * s)        // [k][u] W×W, one row offset
        rows.withUnsafeBufferPointer { rp in
            positionKernel.withUnsafeBufferPointer { ep in
                out.withUnsafeMutableBufferPointer { op in
                    toeplitz.withUnsafeMutableBufferPointer { tp in
                        for di in 0..<span {
                            let offset = di - (s - 1)                          // i′ − i
                            let i0 = max(0, -offset), i1 = min(s, s - offset)
                            for ku in 0..<(k * u) {
                                let e = ep.baseAddress! + (ku * span + di) * span
                                let t = tp.baseAddress! + ku * s * s
                                for jm in 0..<s { for jn in 0..<s { t[jm * s + jn] = e[jm - jn + s - 1] } }
                            }
                            for bi in 0..<b { for ki in 0..<k { for ui in 0..<u {
                                // C rows (i, v) += A rows (i′ = i + offset, v) · T, rows W apart.
                                BLAS.gemm(m: (i1 - i0) * dv, n: s, k: s,
                                          a: rp.baseAddress! + ((bi * u + ui) * s + i0 + offset) * dv * s, lda: s,
                                          b: tp.baseAddress! + (ki * u + ui) * s * s, ldb: s, beta: 1,
                                          c: op.baseAddress! + ((bi * k + ki) * s + i0) * dv * s, ldc: s)
                            } } }
                        }
                    }
                }
            }
        }
        return out.permuted(0, 3, 1, 2, 4).reshaped([b, dv, k, s * s])    // N, v, k, H·W
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, h, w) = try check(x)
        guard (0..<h).contains(query.row), (0..<w).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id,
                                       message: "query (row \(query.row), column \(query.column)) is outside the \(h)×\(w) grid")
        }
        if let hd = query.head, !(0..<heads).contains(hd) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(hd) is outside 0..<\(heads)")
        }
        let (q, kbar, _) = try projections(x.batchItem(0))
        let l = h * w, (k, u) = (dimK, dimU), at = query.row * w + query.column
        // The query's vector, averaged over the chosen heads (the weights are linear in it).
        let chosen = query.head.map { [$0] } ?? Array(0..<heads)
        var qn = [Float](repeating: 0, count: k)
        q.withUnsafeBufferPointer { qp in
            for hd in chosen { for ki in 0..<k { qn[ki] += qp[(hd * k + ki) * l + at] / Float(chosen.count) } }
        }
        var content = [Float](repeating: 0, count: l), position = content
        kbar.withUnsafeBufferPointer { kp in
            for ui in 0..<u { for ki in 0..<k {
                let row = kp.baseAddress! + (ui * k + ki) * l, c = qn[ki]
                for m in 0..<l { content[m] += c * row[m] }
            } }
        }
        let side = positionKernel.shape[2], pad = side / 2
        positionKernel.withUnsafeBufferPointer { ep in
            for di in 0..<side {
                let i = query.row + di - pad
                guard (0..<h).contains(i) else { continue }
                for dj in 0..<side {
                    let j = query.column + dj - pad
                    guard (0..<w).contains(j) else { continue }
                    var s: Float = 0
                    for ki in 0..<k { for ui in 0..<u { s += qn[ki] * ep[((ki * u + ui) * side + di) * side + dj] } }
                    position[i * w + j] = s
                }
            }
        }
        let who = query.head.map { "head \($0)" } ?? "mean of \(heads) heads"
        let total = zip(content, position).map(+)
        var labels = ["content weights (\(who))", "position weights (\(who))", "content + position (\(who))"]
        for ui in 0..<u { for ki in 0..<k { labels.append(u == 1 ? "softmax_n(K) key \(ki)" : "softmax_n(K) u \(ui) key \(ki)") } }
        return AttentionMap(kind: .perQuery,
                            values: Tensor(shape: [3 + u * k, h, w], scalars: content + position + total + kbar.scalars),
                            labels: labels)
    }
}
