// Set Transformer: A Framework for Attention-based Permutation-Invariant Neural Networks.
// Lee, Lee, Kim, Kosiorek, Choi, Teh, ICML 2019. https://arxiv.org/abs/1810.00825
// Reference matched: juho-lee/set_transformer `modules.py` (HEAD 73432c6) `MAB`, `ISAB`, `PMA`,
// read in full.

import Foundation
import TensorCore

/// The Set Transformer's induced set attention block (ISAB) or its pooling by multihead
/// attention (PMA), selected by `num_seeds` (conventions.md).
///
/// Matches `ISAB(dim_in, dim_out, num_heads, num_inds, ln)` and `PMA(dim, num_heads, num_seeds,
/// ln)` of the authors' `modules.py` (no dropout anywhere, so train and eval agree).
///
/// - Input N×L×C tokens (a set: no positions, no mask). ISAB: output N×L×dim_out,
///   ISAB(X) = MAB₁(X, MAB₀(I, X)) with `num_inds` learned inducing points I.
///   PMA: output N×num_seeds×dim, PMA(X) = MAB(S, X) with learned seeds S.
/// - Cost: ISAB O(L·m·D) for m inducing points (two m×L attentions, never L×L); PMA O(L·k·D).
/// - Map: ISAB (per-query): the two hops token → inducing points → tokens, row i of A₁·A₀
///   (A₀ m×L: inducing points over tokens, A₁ L×m: tokens over the inducing points' summaries),
///   O(L·m) per query; a head, or the mean over heads. PMA (kind bases, query ignored): each
///   seed's softmax weights over the tokens, num_seeds×1×L.
///
/// Quirks of the reference (MAB(Q, K)):
/// - Heads are split with `torch.cat(Q.split(dim_V // num_heads, 2), 0)`, i.e. stacked on the
///   batch axis and concatenated back in the same order: numerically the usual contiguous
///   channel slices. `dim_V` must be divisible by `num_heads` (torch.cat fails otherwise).
/// - Logits are scaled by 1/√dim_V, the full width, not the head width.
/// - The residual adds the *projected* query: O = fc_q(Q) + A·V; then O = LN0(O),
///   O = O + relu(fc_o(O)), O = LN1(O) — post-norm, LayerNorms only with `ln=True`.
/// - ISAB's mab0 is MAB(dim_out, dim_in, dim_out) (inducing points query the tokens), mab1 is
///   MAB(dim_in, dim_out, dim_out) (tokens query the summaries H).
/// - I (1×num_inds×dim_out) and S (1×num_seeds×dim) are xavier-uniform at init, as there.
/// - Untrained here: fc_k starts equal to fc_q where their shapes agree (similarity
///   initialisation), so a map shows which tokens resemble the inducing points the query
///   resembles; fc_q/fc_v/fc_o are PyTorch-default random. The xavier inducing points are
///   small (bound √(6/(dim_out·(m+1)))), so fc_q(I) ≈ its bias: every inducing point attends
///   nearly alike, the summaries H are nearly equal, and the untrained ISAB map is nearly flat
///   (a few % around 1/L) and hardly depends on the query — which is what an untrained ISAB
///   does. Trained (or random `--weights`) show the low-rank (rank ≤ m) structure.
///
/// Keys: ISAB `I`, `mab0.{fc_q,fc_k,fc_v,fc_o}.{weight,bias}` (+ `mab0.ln0/ln1.{weight,bias}`
/// with ln), `mab1.*` likewise; PMA `S`, `mab.*`.
public final class SetTransformer: AttentionModule {
    public static let info = ModuleInfo(
        id: "set-transformer", title: "Set Transformer (ISAB / PMA)", arxiv: "1810.00825", year: 2019,
        complexity: "O(N K D)", complexityExponent: 1, kind: .sequence, causal: false,
        reference: "juho-lee/set_transformer modules.py ISAB / PMA (73432c6)", mapKind: .perQuery,
        mapDescription: "ISAB: the query token's two-hop weights over tokens via the inducing points (row of A1*A0); PMA: each seed's weights over the tokens",
        notes: ["num_seeds selects PMA (output N×num_seeds×dim; map kind bases, query ignored); otherwise ISAB",
                "logits scaled by 1/sqrt(dim_V) (full width, not the head width)",
                "residual on the projected query: O = fc_q(Q) + A·V, then O + relu(fc_o(O)); LayerNorms (post-norm) only with ln=true",
                "no mask, no positions: a set operation (ISAB permutation-equivariant, PMA invariant)",
                "untrained: fc_k = fc_q where shapes agree (similarity initialisation); the xavier-small inducing points make the untrained ISAB map nearly flat and query-independent"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim_in", .int(1...65536), default: .none, "ISAB input width (taken from the input when unset)"),
        ConfigKey("dim_out", .int(1...65536), default: .none, "ISAB output width (default dim_in)"),
        ConfigKey("dim", .int(1...65536), default: .none, "PMA width = input width (taken from the input when unset)"),
        ConfigKey("num_heads", .int(1...4096), default: .int(4), "heads; must divide dim_out (dim for PMA)"),
        ConfigKey("num_inds", .int(1...65536), default: .int(16), "ISAB inducing points m"),
        ConfigKey("num_seeds", .int(1...65536), default: .none, "PMA seeds k; setting it selects PMA"),
        ConfigKey("ln", .bool, default: .bool(false), "LayerNorms ln0, ln1 in each MAB"),
    ]

    enum Mode { case isab(inds: Tensor), pma(seeds: Tensor) }

    public let config: Config
    let dimIn: Int, dimOut: Int, numHeads: Int
    let mode: Mode
    /// ISAB: mab0, mab1. PMA: mab.
    let mabs: [MultiheadAttentionBlock]

    public var expectedInput: String { "N×L×\(dimIn)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: id, expected: "N×L×C", found: inputShape)
        }
        let heads = config.int("num_heads")
        if config.isSet("num_seeds") {
            for k in ["dim_in", "dim_out", "num_inds"] where config.explicit.contains(k) {
                throw ConfigError.inconsistent(module: id, message: "\(k) is an ISAB key, but num_seeds selects PMA (keys dim, num_heads, num_seeds, ln)")
            }
            try config.resolveChannels("dim", from: inputShape[2])
            dimIn = config.int("dim")
            dimOut = dimIn
        } else {
            if config.isSet("dim") {
                throw ConfigError.inconsistent(module: id, message: "dim is a PMA key: set num_seeds for PMA, or dim_in/dim_out for ISAB")
            }
            try config.resolveChannels("dim_in", from: inputShape[2])
            dimIn = config.int("dim_in")
            if !config.isSet("dim_out") { try config.resolveChannels("dim_out", from: dimIn) }
            dimOut = config.int("dim_out")
        }
        guard dimOut % heads == 0 else {
            throw ConfigError.inconsistent(module: id,
                message: "num_heads=\(heads) must divide the attention width \(dimOut) (the reference's torch.cat of the head split fails otherwise)")
        }
        self.config = config
        numHeads = heads
        if let k = config.optionalInt("num_seeds") {
            // xavier_uniform_ on a 1×k×dim tensor: fan_in = k·dim, fan_out = dim.
            let seeds = p.parameter("S", shape: [1, k, dimIn],
                                    initializer: .uniform(bound: (6 / Float(dimIn * (k + 1))).squareRoot()))
            mode = .pma(seeds: seeds)
            mabs = [MultiheadAttentionBlock(p.scoped("mab"), dimQ: dimIn, dimK: dimIn, dimV: dimIn, heads: heads,
                                            ln: config.bool("ln"))]
        } else {
            let m = config.int("num_inds")
            let inds = p.parameter("I", shape: [1, m, dimOut],
                                   initializer: .uniform(bound: (6 / Float(dimOut * (m + 1))).squareRoot()))
            mode = .isab(inds: inds)
            mabs = [MultiheadAttentionBlock(p.scoped("mab0"), dimQ: dimOut, dimK: dimIn, dimV: dimOut, heads: heads,
                                            ln: config.bool("ln")),
                    MultiheadAttentionBlock(p.scoped("mab1"), dimQ: dimIn, dimK: dimOut, dimV: dimOut, heads: heads,
                                            ln: config.bool("ln"))]
        }
    }

    func checkTokens(_ x: Tensor) throws -> (n: Int, l: Int) {
        guard x.rank == 3, x.shape[2] == dimIn, x.shape[0] > 0, x.shape[1] > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        return (x.shape[0], x.shape[1])
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (n, _) = try checkTokens(x)
        switch mode {
        case .pma(let s):
            return try mabs[0](s.repeated([n, 1, 1]), x)                // N, k, dim
        case .isab(let i):
            let h = try mabs[0](i.repeated([n, 1, 1]), x)                // N, m, dim_out
            return try mabs[1](x, h)                                     // N, L, dim_out
        }
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, l) = try checkTokens(x)
        if let h = query.head, !(0..<numHeads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(numHeads)")
        }
        let x0 = x.batchItem(0)                                               // 1, L, C
        let heads = query.head.map { [$0] } ?? Array(0..<numHeads)
        switch mode {
        case .pma(let s):
            // Seeds over tokens, averaged over the chosen heads: k×1×L.
            let a = try mabs[0].weights(queries: s, keys: x0, heads: heads)   // k, L
            return AttentionMap(kind: .bases, values: a.reshaped([a.shape[0], 1, l]),
                                labels: (0..<a.shape[0]).map { "seed \($0)" })
        case .isab(let ind):
            guard (0..<l).contains(query.column), query.row == 0 else {
                throw ModuleError.badQuery(module: Self.info.id, message: "query token \(query.column) (row \(query.row)) is outside 0..<\(l)")
            }
            let hsum = try mabs[0](ind, x0)                              // 1, m, dim_out
            let m = ind.shape[1]
            var row = [Float](repeating: 0, count: l)
            for h in heads {
                let a0 = try mabs[0].weights(queries: ind, keys: x0, heads: [h])          // m, L
                let qi = x0.sliced(axis: 1, range: query.column..<(query.column + 1))    // 1, 1, C
                let a1 = try mabs[1].weights(queries: qi, keys: hsum, heads: [h])         // 1, m
                // row += A₁[i, :] · A₀  (1×m · m×L)
                a1.withUnsafeBufferPointer { ap in
                    a0.withUnsafeBufferPointer { bp in
                        row.withUnsafeMutableBufferPointer { rp in
                            BLAS.gemm(m: 1, n: l, k: m, alpha: 1 / Float(heads.count), a: ap.baseAddress!, lda: m,
                                      b: bp.baseAddress!, ldb: l, beta: 1, c: rp.baseAddress!, ldc: l)
                        }
                    }
                }
            }
            let label = query.head.map { "head \($0): token -> inducing points -> tokens" }
                ?? "mean of \(numHeads) heads: token -> inducing points -> tokens"
            return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: row), labels: [label])
        }
    }
}

/// The Set Transformer's MAB(Q, K) (`modules.py` `MAB(dim_Q, dim_K, dim_V, num_heads, ln)`):
/// O = fc_q(Q) + MultiHead(fc_q(Q), fc_k(K), fc_v(K)) with logits/√dim_V; O = LN0(O);
/// O = O + relu(fc_o(O)); O = LN1(O).
struct MultiheadAttentionBlock {
    let fcQ: Linear, fcK: Linear, fcV: Linear, fcO: Linear
    let ln0: LayerNorm?, ln1: LayerNorm?
    let dimV: Int, heads: Int

    init(_ p: Parameters, dimQ: Int, dimK: Int, dimV: Int, heads: Int, ln: Bool) {
        self.dimV = dimV
        self.heads = heads
        fcQ = Linear(p.scoped("fc_q"), inFeatures: dimQ, outFeatures: dimV)
        var k = Linear(p.scoped("fc_k"), inFeatures: dimK, outFeatures: dimV)
        if !p.isLoading && dimK == dimQ {
            // Similarity initialisation: keys start as the queries' projection.
            k.weight = fcQ.weight
            k.bias = fcQ.bias
        }
        fcK = k
        fcV = Linear(p.scoped("fc_v"), inFeatures: dimK, outFeatures: dimV)
        if ln {
            ln0 = LayerNorm(p.scoped("ln0"), normalizedShape: dimV)
            ln1 = LayerNorm(p.scoped("ln1"), normalizedShape: dimV)
        } else {
            (ln0, ln1) = (nil, nil)
        }
        fcO = Linear(p.scoped("fc_o"), inFeatures: dimV, outFeatures: dimV)
    }

    var scale: Float { 1 / Float(dimV).squareRoot() }

    /// q: B×Lq×dim_Q, k: B×Lk×dim_K → B×Lq×dim_V.
    func callAsFunction(_ q: Tensor, _ k: Tensor) throws -> Tensor {
        let qp = try fcQ(q)                                                    // B, Lq, dV
        let kp = try fcK(k), vp = try fcV(k)                                   // B, Lk, dV
        var o = DenseAttention.multiHead(q: qp, k: kp, v: vp, heads: heads, scale: scale)  // B, Lq, dV
        o += qp
        if let ln0 { o = try ln0(o) }
        o.formSum(withReluOf: try fcO(o))                                      // o + relu(fc_o(o)), one pass
        if let ln1 { o = try ln1(o) }
        return o
    }

    /// Softmax weights of every query row over the keys, averaged over `heads`, for batch item
    /// 0: q 1×Lq×dim_Q, k 1×Lk×dim_K → Lq×Lk. O(Lq·Lk·d) — for the m×L and k×L maps only.
    func weights(queries q: Tensor, keys k: Tensor, heads hs: [Int]) throws -> Tensor {
        let qp = try fcQ(q), kp = try fcK(k)                                   // 1, Lq, dV / 1, Lk, dV
        let lq = qp.shape[1], lk = kp.shape[1], d = dimV / heads
        var out = [Float](repeating: 0, count: lq * lk)
        qp.withUnsafeBufferPointer { qb in
            kp.withUnsafeBufferPointer { kb in
                for h in hs {
                    for i in 0..<lq {
                        let w = DenseAttention.weights(query: qb.baseAddress! + i * dimV + h * d,
                                                       keys: kb.baseAddress! + h * d, ldk: dimV, lk: lk, d: d, scale: scale)
                        for j in 0..<lk { out[i * lk + j] += w[j] / Float(hs.count) }
                    }
                }
            }
        }
        return Tensor(shape: [lq, lk], scalars: out)
    }
}
