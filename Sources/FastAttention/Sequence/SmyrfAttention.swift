// SMYRF: Efficient Attention using Asymmetric Clustering.
// Daras, Kitaev, Odena, Dimakis, NeurIPS 2020. https://arxiv.org/abs/2010.05315
// Reference matched: giannisdaras/smyrf (commit bbbc82e) `smyrf/torch/attn.py` `SmyrfAttention`
// with `smyrf/torch/utils.py` (XBOXPLUS, E2LSH, lsh_clustering), read in full. No pip package.

import Foundation
import TensorCore

/// SMYRF attention: queries and keys are mapped by the asymmetric XBOX+ transform, hashed by
/// E2LSH projections, sorted separately and cut into balanced clusters; query cluster c attends
/// densely to key cluster c, in each of `n_hashes` rounds, and the rounds are combined by the
/// softmax of their logsumexps.
///
/// As conventions.md fixes the interface: queries = keys = values = the input, no projections,
/// `norm_factor` 1 (the forward's default: logits q·k without 1/√d).
///   M = max_i ‖x_i‖ (per batch item; M_Q = M_K); e_i = √(M² + M² − ‖x_i‖²);
///   q̃_i = [x_i, 0, e_i], k̃_i = [x_i, e_i, 0]; s = x̃·α_h + β_h (α ~ N(0,1), β ~ U(0, r));
///   queries sorted by s_q, keys by s_k, chunks of q_attn_size / k_attn_size.
///
/// - Input N×L×C, output N×L×C.
/// - Map (per-query): the keys of query i's key cluster in each round, weighted by its softmax
///   there and the rounds' logsumexp weights, in position order. O(n_hashes·(L + k_attn_size·C)).
/// - Cost O(n_hashes·(L log L + L·cluster·C)).
///
/// Quirks of the reference:
/// - `q_cluster_size` / `k_cluster_size` only default `q_attn_size` / `k_attn_size`, which are the
///   cluster sizes used; the numbers of query and key clusters must agree, so in self-attention
///   q_attn_size = k_attn_size.
/// - `r` only shifts β (there is no floor): it never changes the order, hence never the output.
/// - E2LSH's α and β are drawn afresh on every reference call (global torch RNG). Here they are
///   drawn once from the module's generator, or loaded as `alpha` ((C+2)×n_hashes) and `beta`
///   (1×n_hashes), the E2LSH attribute names.
/// - `clustering_algo` other than 'lsh' raises NotImplementedError there; only 'lsh' here.
/// - L not a multiple of the cluster size: padded at the end; padding hashes are +∞ (sorted last,
///   as the reference's `attn_mask` pushes masked tokens) and padding keys are masked.
/// - No parameters (state_dict empty). The untrained map is the module itself: x·x similarities
///   inside the asymmetric LSH clusters.
public final class SmyrfAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "smyrf", title: "SMYRF: Efficient Attention using Asymmetric Clustering", arxiv: "2010.05315", year: 2020,
        complexity: "O(N log(N) D)", complexityExponent: 1, kind: .sequence, causal: false,
        reference: "giannisdaras/smyrf SmyrfAttention (queries = keys = values = input)", mapKind: .perQuery,
        mapDescription: "the keys in query i's asymmetric-LSH key cluster in each hash round, weighted by its softmax there and the rounds' logsumexp weights",
        notes: ["queries = keys = values = input, no projections, norm_factor 1 (no 1/sqrt(d)) as the reference's forward default",
                "cluster sizes are q_attn_size/k_attn_size (default q_cluster_size/k_cluster_size); they must be equal here (self-attention)",
                "E2LSH alpha ((C+2)×n_hashes) and beta (1×n_hashes) from the weights file, else drawn once from the seed (the reference redraws every call); r never changes the order",
                "L not a multiple of the cluster size: padded at the end, padding sorted last and masked as keys"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("n_hashes", .int(1...64), default: .int(4), "hash rounds"),
        ConfigKey("q_cluster_size", .int(1...65536), default: .int(32), "query cluster size (default of q_attn_size)"),
        ConfigKey("k_cluster_size", .int(1...65536), default: .int(32), "key cluster size (default of k_attn_size)"),
        ConfigKey("q_attn_size", .int(1...65536), default: .none, "query cluster size used (default q_cluster_size)"),
        ConfigKey("k_attn_size", .int(1...65536), default: .none, "key cluster size used (default k_cluster_size)"),
        ConfigKey("clustering_algo", .choice(["lsh"]), default: .string("lsh"), "clustering: E2LSH sorting"),
        ConfigKey("dropout", .float(0...1), default: .float(0), "accepted; eval mode"),
        ConfigKey("r", .float(0.000001...1e6), default: .float(1), "E2LSH width: beta ~ U(0, r)"),
        ConfigKey("max_iters", .int(1...100000), default: .int(50), "accepted; k-means clustering only"),
        ConfigKey("norm_factor", .float(0.000001...1e6), default: .float(1), "the forward's norm_factor: logits q·k / norm_factor"),
    ]

    public let config: Config
    let channels: Int, nHashes: Int, qAttn: Int, kAttn: Int, normFactor: Float
    /// C+2 × n_hashes
    let alpha: Tensor
    /// 1 × n_hashes
    let beta: Tensor

    public var expectedInput: String { "N×L×\(channels)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 3 else { throw ModuleError.badInput(module: id, expected: "N×L×C tokens", found: inputShape) }
        channels = inputShape[2]
        nHashes = config.int("n_hashes")
        qAttn = config.optionalInt("q_attn_size") ?? config.int("q_cluster_size")
        kAttn = config.optionalInt("k_attn_size") ?? config.int("k_cluster_size")
        guard qAttn == kAttn else {
            throw ConfigError.inconsistent(module: id,
                message: "query clusters of \(qAttn) and key clusters of \(kAttn) give unequal cluster counts on one sequence (the reference asserts equal counts)")
        }
        try? config.resolveChannels("q_attn_size", from: qAttn)
        try? config.resolveChannels("k_attn_size", from: kAttn)
        normFactor = Float(config.float("norm_factor"))
        self.config = config
        let r = Float(config.float("r")), nh = nHashes, c = channels
        alpha = p.optionalBuffer("alpha", shape: [c + 2, nh]) ?? p.withGenerator { Tensor.randomNormal([c + 2, nh], generator: &$0) }
        beta = p.optionalBuffer("beta", shape: [1, nh]) ?? p.withGenerator { Tensor.randomUniform([1, nh], low: 0, high: r, generator: &$0) }
    }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] > 0, x.shape[2] == channels else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
    }

    func paddedLength(_ l: Int) -> Int { (l + qAttn - 1) / qAttn * qAttn }

    /// One plan per batch item: XBOX+ / E2LSH hashes, queries and keys sorted per round.
    /// `x` is N×Lp×C (padded), the first `l` positions real.
    func plans(_ x: Tensor, l: Int) -> [BucketedAttention.Plan] {
        let (n, lp, c, nh) = (x.shape[0], x.shape[1], channels, nHashes)
        let a = alpha.scalars, bt = beta.scalars
        // Hash values per (batch, round): queries then keys, each Lp.
        var hashes = [Float](repeating: 0, count: n * nh * 2 * lp)
        x.withUnsafeBufferPointer { xp in
            alpha.withUnsafeBufferPointer { ap in
                hashes.withUnsafeMutableBufferPointer { hp in
                    var proj = [Float](repeating: 0, count: lp * nh), norms = [Float](repeating: 0, count: lp)
                    for b in 0..<n {
                        let xb = xp.baseAddress! + b * lp * c
                        // proj (Lp × n_hashes) = X · α[:C]
                        proj.withUnsafeMutableBufferPointer {
                            BLAS.gemm(m: lp, n: nh, k: c, a: xb, lda: c, b: ap.baseAddress!, ldb: nh, c: $0.baseAddress!, ldc: nh)
                        }
                        for i in 0..<lp {
                            var s: Float = 0
                            for e in 0..<c { s += xb[i * c + e] * xb[i * c + e] }
                            norms[i] = s.squareRoot()
                        }
                        let mx = norms.max()!
                        for i in 0..<lp {
                            let ext = max(mx * mx + mx * mx - norms[i] * norms[i], 0).squareRoot()
                            for h in 0..<nh {
                                let q = hp.baseAddress! + ((b * nh + h) * 2) * lp, k = q + lp
                                if i >= l { q[i] = .infinity; k[i] = .infinity; continue }   // padding sorts last
                                q[i] = proj[i * nh + h] + ext * a[(c + 1) * nh + h] + bt[h]
                                k[i] = proj[i * nh + h] + ext * a[c * nh + h] + bt[h]
                            }
                        }
                    }
                }
            }
        }
        // Sorted orders per (batch, round, queries|keys), in parallel.
        var orders = [[Int32]](repeating: [], count: n * nh * 2)
        hashes.withUnsafeBufferPointer { hp in
            orders.withUnsafeMutableBufferPointer { op in
                Threads.parallelFor(n * nh * 2) { range in
                    for t in range {
                        op[t] = BucketedAttention.stableOrder(values: UnsafeBufferPointer(rebasing: hp[(t * lp)..<((t + 1) * lp)]))
                    }
                }
            }
        }
        return (0..<n).map { b in
            let rounds = (0..<nh).map { (b * nh + $0) * 2 }
            return BucketedAttention.Plan(queryIndex: rounds.flatMap { orders[$0] }, keyIndex: rounds.flatMap { orders[$0 + 1] },
                                          queryChunk: qAttn, keyChunk: kAttn)
        }
    }

    func padded(_ x: Tensor) -> Tensor {
        let l = x.shape[1], lp = paddedLength(l)
        return lp == l ? x : x.padded(torchPads: [0, 0, 0, lp - l])     // N, Lp, C
    }

    var masking: BucketedAttention.Masking { .init(scale: 1 / normFactor) }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        let (n, l, c) = (x.shape[0], x.shape[1], channels)
        let xp = padded(x), lp = xp.shape[1]
        let plans = plans(xp, l: l)
        var m = masking
        m.validLength = l
        var out = Tensor(uninitialized: [n, lp, c])                    // N, Lp, C
        xp.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { op in
                let operand = AttentionOperand(base: p.baseAddress!, ld: c, batchStride: lp * c, headStride: 0)
                BucketedAttention.forward(plans: plans, heads: 1, length: lp, d: c, dv: c, q: operand, k: operand, v: operand,
                                          out: op.baseAddress!, outLd: c, outBatchStride: lp * c, outHeadStride: 0,
                                          masking: m, combine: .logsumexp)
            }
        }
        return lp == l ? out : out.sliced(axis: 1, range: 0..<l)       // N, L, C
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try check(x)
        let l = x.shape[1]
        guard query.row == 0, (0..<l).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(query.column) is outside 0..<\(l)")
        }
        let xp = padded(x.batchItem(0))
        let plan = plans(xp, l: l)[0]
        var m = masking
        m.validLength = l
        let row = xp.withUnsafeBufferPointer { p in
            BucketedAttention.mapRow(plan: plan, position: query.column, length: l, d: channels,
                                     q: p.baseAddress!, qld: channels, k: p.baseAddress!, kld: channels,
                                     masking: m, combine: .logsumexp)
        }
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: row),
                            labels: ["asymmetric LSH clusters (\(nHashes) rounds)"])
    }
}
