// Sparse Sinkhorn Attention.
// Tay, Bahri, Yang, Metzler, Juan, ICML 2020. https://arxiv.org/abs/2002.11296
// Reference matched: pip sinkhorn-transformer 0.11.4 `SinkhornSelfAttention` with
// `SinkhornAttention` / `AttentionSortNet` (non-causal) and `SinkhornCausalAttention` /
// `CausalAttentionSortNet` (causal), read in full. The authors' code is Mesh-TF/JAX.

import Foundation
import TensorCore

/// Sinkhorn self-attention: the sequence is cut into blocks of `bucket_size`; a sort net scores
/// block pairs from block-mean queries and keys, and each query block attends to its own block
/// plus the key blocks the (soft) sort assigns it.
///
/// Non-causal (`SinkhornAttention`, n_sortcut 0), per head with d = dim_head:
///   R = mean_q(blocks) · mean_k(blocks)ᵀ · d^-½ (buckets × buckets);
///   `non_permutative` (default): n_top_buckets rounds of p = softmax(R_u) at its argmax (then
///   that entry −∞): block u gets keys p·K_argmax; otherwise P = Gumbel-Sinkhorn(relu(R)) and
///   block u gets keys Σ_v P[u,v] K_v;
///   logits = q·[reordered keys; own keys]·d^-½, softmax, times [reordered VALUES?; own values]:
///   the reference builds the reordered values from the reordered KEYS (quirk, matched);
///   y = [o_h] W_outᵀ + b_out.
/// Causal (`SinkhornCausalAttention`): see `SinkhornCausal.swift`.
///
/// - Input N×L×dim, output N×L×dim. The reference asserts L % bucket_size == 0; here a shorter
///   last block is padded with zero tokens, masked as keys (−finfo.max) as the reference's
///   `input_mask` masks them (a reordered key by its argmax block's mask); causal needs no mask
///   (padding lies after every real token). The sort net's block means include the zero padding,
///   as the reference's do (its sort net ignores masks).
/// - Map (per-query): query i's softmax over its own block's keys (at their positions) and the
///   reordered keys, each of which is given to the positions of the block(s) it was mixed from in
///   proportion to the sort weights; mean over heads unless one is chosen.
/// - Cost O(L·b·d + (L/b)²·d) (block attention + sort net); Gumbel-Sinkhorn mixes every block
///   into every block: O((L/b)²·b·d).
///
/// Quirks of the reference (matched):
/// - Reordered values are the reordered keys (`b_v_r = b_k_r.reshape(...)`, seq-a.md quirk 3a).
/// - The soft top-k of the non-causal sort net uses temperature 1 (`temperature` is passed to
///   the sort net but `differentiable_topk` is called without it); it is used by the Gumbel and
///   causal paths.
/// - The chosen block's keys are scaled by its softmax probability, not copied.
/// - Gumbel noise is drawn on every reference call (global RNG); here it is drawn per call from a
///   seed fixed at construction, or loaded as `sinkhorn_attention.gumbel_noise`
///   (N·heads × buckets × buckets, for the batch size the module was built for).
/// - `SinkhornSelfAttention` defaults `non_permutative=True` (SinkhornTransformer defaults False).
/// - Not supported: n_sortcut > 0, kv_bucket_size ≠ bucket_size, use_simple_sort_net,
///   n_local_attn_heads > 0, context_only, masks.
///
/// Keys: `to_q.weight` (H·d × dim), `to_kv.weight` (2·H·d × dim, keys then values), `to_out.weight`,
/// `to_out.bias`; causal adds `sinkhorn_attention.null_keys`, `.null_values` (H × 1 × d).
/// Untrained: PyTorch-default weights with the key half of `to_kv` = `to_q`.
public final class SinkhornSelfAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "sinkhorn", title: "Sparse Sinkhorn Attention", arxiv: "2002.11296", year: 2020,
        complexity: "O(N^2/n_b + n_b^2)", complexityExponent: 1, kind: .sequence, causal: true,
        reference: "sinkhorn-transformer 0.11.4 SinkhornSelfAttention", mapKind: .perQuery,
        mapDescription: "query i's softmax over its own block and the block(s) the Sinkhorn sort assigns it (a reordered key's weight spread over the positions it was mixed from); mean over heads unless one is chosen",
        notes: ["reordered values are the reordered keys (reference bug, matched)",
                "non_permutative (default): soft top-k blocks at temperature 1, keys scaled by their probability; false: Gumbel-Sinkhorn mixture of all blocks, noise from sinkhorn_attention.gumbel_noise or drawn per call from the seed",
                "causal: half the heads rotated left by bucket_size−1, cumulative-average sort net over past blocks and null buckets, learned null keys/values",
                "L not a multiple of bucket_size: zero tokens appended to the last block and masked as keys (the reference asserts divisibility; this is its input_mask behaviour)",
                "untrained: PyTorch-default weights with to_kv's key half = to_q"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("bucket_size", .int(1...65536), default: .int(64), "block length b"),
        ConfigKey("max_seq_len", .int(1...1 << 24), default: .none, "accepted (used by the simple sort net only); default L"),
        ConfigKey("heads", .int(1...1024), default: .int(8), "heads"),
        ConfigKey("dim_head", .int(1...4096), default: .none, "width per head (default dim // heads)"),
        ConfigKey("kv_bucket_size", .int(1...65536), default: .none, "must equal bucket_size"),
        ConfigKey("causal", .bool, default: .bool(false), "SinkhornCausalAttention"),
        ConfigKey("non_permutative", .bool, default: .bool(true), "soft top-k blocks (true) or Gumbel-Sinkhorn (false)"),
        ConfigKey("sinkhorn_iter", .int(0...1000), default: .int(5), "Sinkhorn normalisation rounds (non_permutative=false)"),
        ConfigKey("n_sortcut", .int(0...0), default: .int(0), "SortCut (not supported: 0)"),
        ConfigKey("temperature", .float(0.000001...1e6), default: .float(0.75), "Gumbel-Sinkhorn and causal top-k temperature"),
        ConfigKey("attn_dropout", .float(0...1), default: .float(0), "accepted; eval mode"),
        ConfigKey("dropout", .float(0...1), default: .float(0), "accepted; eval mode"),
        ConfigKey("context_only", .bool, default: .bool(false), "cross-attention (not supported: false)"),
        ConfigKey("use_simple_sort_net", .bool, default: .bool(false), "learned sort net (not supported: false)"),
        ConfigKey("n_local_attn_heads", .int(0...0), default: .int(0), "LocalAttention heads (not supported: 0)"),
        ConfigKey("n_top_buckets", .int(1...64), default: .none, "blocks each block receives (default 1; causal 2)"),
    ]

    public let config: Config
    let dim: Int, heads: Int, dimHead: Int, bucket: Int, causal: Bool, nonPermutative: Bool
    let sinkhornIter: Int, temperature: Float, nTop: Int, batch: Int
    let toQ: Linear, toKV: Linear, toOut: Linear
    let nullKeys: Tensor?, nullValues: Tensor?          // H × 1 × d (causal)
    let gumbelNoise: Tensor?                            // N·H × buckets × buckets
    let noiseSeed: UInt64

    public var expectedInput: String { "N×L×\(dim)" }

    /// L rounded up to whole blocks: a shorter last block is padded with zero tokens.
    func paddedLength(_ l: Int) -> Int { (l + bucket - 1) / bucket * bucket }

    /// Zero tokens appended up to whole blocks (N×Lp×dim).
    func padded(_ x: Tensor) -> Tensor {
        let l = x.shape[1], lp = paddedLength(l)
        return lp == l ? x : x.padded(torchPads: [0, 0, 0, lp - l])
    }

    /// Padding keys masked (−finfo.max), as the reference's `input_mask`.
    func masking(valid l: Int) -> BucketedAttention.Masking {
        .init(scale: scale, validLength: l, paddingValue: -.greatestFiniteMagnitude)
    }
    public var mapHeads: Int { heads }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 3 else { throw ModuleError.badInput(module: id, expected: "N×L×C tokens", found: inputShape) }
        try config.resolveChannels("dim", from: inputShape[2])
        dim = config.int("dim")
        heads = config.int("heads")
        guard config.isSet("dim_head") || dim % heads == 0 else {
            throw ConfigError.inconsistent(module: id, message: "dim=\(dim) must be divisible by heads=\(heads) when dim_head is unset (the reference asserts it)")
        }
        dimHead = config.optionalInt("dim_head") ?? dim / heads
        bucket = config.int("bucket_size")
        if let kv = config.optionalInt("kv_bucket_size"), kv != bucket {
            throw ConfigError.inconsistent(module: id, message: "kv_bucket_size=\(kv) ≠ bucket_size=\(bucket) is not supported")
        }
        for key in ["context_only", "use_simple_sort_net"] where config.bool(key) {
            throw ConfigError.inconsistent(module: id, message: "\(key)=true is not supported")
        }
        causal = config.bool("causal")
        nonPermutative = config.bool("non_permutative")
        sinkhornIter = config.int("sinkhorn_iter")
        temperature = Float(config.float("temperature"))
        nTop = config.optionalInt("n_top_buckets") ?? (causal ? 2 : 1)
        batch = inputShape[0]
        try? config.resolveChannels("max_seq_len", from: config.optionalInt("max_seq_len") ?? inputShape[1])
        self.config = config
        let inner = heads * dimHead
        toQ = Linear(p.scoped("to_q"), inFeatures: dim, outFeatures: inner, bias: false)
        var kv = Linear(p.scoped("to_kv"), inFeatures: dim, outFeatures: 2 * inner, bias: false)
        if !p.isLoading {
            // Similarity initialisation: the key half of to_kv starts as to_q.
            kv.weight = Tensor.concatenated([toQ.weight, kv.weight.sliced(axis: 0, range: inner..<(2 * inner))], axis: 0)
        }
        toKV = kv
        toOut = Linear(p.scoped("to_out"), inFeatures: inner, outFeatures: dim)
        let s = p.scoped("sinkhorn_attention")
        if causal {
            nullKeys = s.parameter("null_keys", shape: [heads, 1, dimHead], initializer: .normal(std: 1))
            nullValues = s.parameter("null_values", shape: [heads, 1, dimHead], initializer: .normal(std: 1))
        } else {
            nullKeys = nil
            nullValues = nil
        }
        let nb = max((inputShape[1] + bucket - 1) / bucket, 1)
        gumbelNoise = !causal && !nonPermutative ? s.optionalBuffer("gumbel_noise", shape: [batch * heads, nb, nb]) : nil
        noiseSeed = p.withGenerator { $0.next() }
    }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] > 0, x.shape[2] == dim else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        let nb = paddedLength(x.shape[1]) / bucket
        if let g = gumbelNoise, g.shape != [x.shape[0] * heads, nb, nb] {
            throw ModuleError.badInput(module: Self.info.id,
                                       expected: "N×L×\(dim) matching sinkhorn_attention.gumbel_noise \(Shape.format(g.shape))", found: x.shape)
        }
    }

    var scale: Float { 1 / Float(dimHead).squareRoot() }

    /// q, k, v: N×L×(H·d) each.
    func projections(_ x: Tensor) throws -> (q: Tensor, k: Tensor, v: Tensor) {
        let inner = heads * dimHead
        let kv = try toKV(x)                                          // N, L, 2·H·d
        return (try toQ(x), kv.sliced(axis: 2, range: 0..<inner), kv.sliced(axis: 2, range: inner..<(2 * inner)))
    }

    /// Per problem (batch·heads + head): for each query block, the sort weights over key blocks,
    /// `picks` rows of `buckets` each (soft top-k: one nonzero per row; Gumbel-Sinkhorn: 1 dense row).
    func sortWeights(q: Tensor, k: Tensor, n: Int, l: Int) -> [[Float]] {
        let nb = l / bucket, d = dimHead, hd = heads * dimHead
        var g = SeededGenerator(seed: noiseSeed)
        let noise: [Float] = gumbelNoise?.scalars ?? (nonPermutative ? [] : (0..<(n * heads * nb * nb)).map { _ in
            let u = Float(g.nextUniform())
            return -Foundation.log(-Foundation.log(u + 1e-6) + 1e-6)
        })
        // Block means of queries and keys, N × nb × (H·d), all heads in one contiguous pass
        // (per-head strided sums were latency-bound: 15% of the forward at 16384 tokens).
        let qMeans = q.reshaped([n, nb, bucket, hd]).mean(axis: 2).scalars
        let kMeans = k.reshaped([n, nb, bucket, hd]).mean(axis: 2).scalars
        // One problem per (batch, head), over our threads.
        var result = [[Float]](repeating: [], count: n * heads)
        result.withUnsafeMutableBufferPointer { res in
        Threads.parallelFor(n * heads) { range in
        for p in range {
            let b = p / heads, h = p % heads
            // This head's nb × d block means.
            func means(_ all: [Float]) -> [Float] {
                var m = [Float](repeating: 0, count: nb * d)
                for blk in 0..<nb {
                    let src = (b * nb + blk) * hd + h * d
                    for e in 0..<d { m[blk * d + e] = all[src + e] }
                }
                return m
            }
            let sq = means(qMeans), sk = means(kMeans)
            // R = scale · Sq · Skᵀ (nb × nb): one GEMM (a scalar triple loop was 18% of the forward
            // at 16384 tokens, where nb = 256).
            var r = [Float](repeating: 0, count: nb * nb)
            sq.withUnsafeBufferPointer { qp in sk.withUnsafeBufferPointer { kp in r.withUnsafeMutableBufferPointer { rp in
                BLAS.gemm(transB: true, m: nb, n: nb, k: d, alpha: scale, a: qp.baseAddress!, lda: d,
                          b: kp.baseAddress!, ldb: d, c: rp.baseAddress!, ldc: nb)
            } } }
            res[p] = nonPermutative
                ? Self.softTopK(r, rows: nb, k: min(nTop, nb), temperature: 1)
                : Self.gumbelSinkhorn(r, n: nb, noise: Array(noise[(p * nb * nb)..<((p + 1) * nb * nb)]),
                                      iterations: sinkhornIter, temperature: temperature)
        }
        }
        }
        return result
    }

    /// `differentiable_topk`: k rounds of softmax(x/temperature) kept at its argmax (then that
    /// entry −∞). Returns rows·k rows (row u·k + i: round i of row u) of `cols` entries.
    static func softTopK(_ x: [Float], rows: Int, k: Int, temperature: Float, cols: Int? = nil) -> [Float] {
        let c = cols ?? rows
        var x = x, out = [Float](repeating: 0, count: rows * k * c)
        for u in 0..<rows {
            for i in 0..<k {
                let row = Array(x[(u * c)..<((u + 1) * c)]).map { $0 / temperature }
                let mx = row.max()!
                let z = row.reduce(Float(0)) { $0 + (mx == -.infinity ? 0 : Foundation.exp($1 - mx)) }
                var arg = 0
                for j in 0..<c where row[j] > row[arg] { arg = j }
                out[(u * k + i) * c + arg] = Foundation.exp(row[arg] - mx) / z
                x[u * c + arg] = -.infinity
            }
        }
        return out
    }

    /// `gumbel_sinkhorn`: r = (log(relu(R) + 1e-6) + g) / temperature, then `iterations` rounds of
    /// row and column log-normalisation, exp.
    static func gumbelSinkhorn(_ r: [Float], n: Int, noise: [Float], iterations: Int, temperature: Float) -> [Float] {
        var r = zip(r, noise).map { (Foundation.log(max($0, 0) + 1e-6) + $1) / temperature }
        func lse(_ idx: [Int]) -> Float {
            let mx = idx.map { r[$0] }.max()!
            return mx + Foundation.log(idx.reduce(Float(0)) { $0 + Foundation.exp(r[$1] - mx) })
        }
        for _ in 0..<iterations {
            for u in 0..<n { let s = lse((0..<n).map { u * n + $0 }); for v in 0..<n { r[u * n + v] -= s } }
            for v in 0..<n { let s = lse((0..<n).map { $0 * n + v }); for u in 0..<n { r[u * n + v] -= s } }
        }
        return r.map { Foundation.exp($0) }
    }

    /// The plan of one problem: own blocks as chunks, the reordered keys (and, as the reference,
    /// the same reordered keys as values) as per-chunk memory.
    func plan(weights w: [Float], k: UnsafePointer<Float>, l: Int, valid: Int) -> BucketedAttention.Plan {
        let nb = l / bucket, d = dimHead, hd = heads * dimHead
        let picks = w.count / (nb * nb)
        let all = (0..<Int32(l)).map { $0 }
        var plan = BucketedAttention.Plan(queryIndex: all, keyIndex: all, queryChunk: bucket, keyChunk: bucket)
        var mem = [Float](repeating: 0, count: nb * picks * bucket * d)
        for u in 0..<nb {
            for i in 0..<picks {
                let row = (u * picks + i) * nb
                for v in 0..<nb where w[row + v] != 0 {
                    let wv = w[row + v]
                    for t in 0..<bucket {
                        let dst = ((u * picks + i) * bucket + t) * d, src = k + (v * bucket + t) * hd
                        for e in 0..<d { mem[dst + e] += wv * src[e] }
                    }
                }
            }
        }
        plan.memoryCount = picks * bucket
        if valid < l {
            // The reference masks a reordered key by the mask of its row's argmax block.
            plan.memoryValid = (0..<(nb * picks)).flatMap { row -> [Bool] in
                let wr = w[(row * nb)..<((row + 1) * nb)]
                let arg = wr.indices.max { abs(wr[$0]) < abs(wr[$1]) || (abs(wr[$0]) == abs(wr[$1]) && $0 > $1) }! - row * nb
                return (0..<bucket).map { arg * bucket + $0 < valid }
            }
        }
        plan.memoryKeys = mem
        plan.memoryValues = mem                                       // the reference's b_v_r = b_k_r
        return plan
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        let l0 = x.shape[1], x = padded(x)
        let y = causal ? try causalForward(x) : try sortedForward(x, valid: l0)
        return l0 == x.shape[1] ? y : y.sliced(axis: 1, range: 0..<l0)   // N, L, dim
    }

    /// Non-causal forward on whole blocks (`valid` real tokens, the rest padding).
    func sortedForward(_ x: Tensor, valid: Int) throws -> Tensor {
        let (n, l) = (x.shape[0], x.shape[1])
        let hd = heads * dimHead
        let (q, k, v) = try projections(x)
        let w = sortWeights(q: q, k: k, n: n, l: l)
        var plans = [BucketedAttention.Plan?](repeating: nil, count: n * heads)
        k.withUnsafeBufferPointer { kp in
            plans.withUnsafeMutableBufferPointer { out in
                Threads.parallelFor(n * heads) { range in
                    for p in range {
                        out[p] = plan(weights: w[p], k: kp.baseAddress! + (p / heads) * l * hd + (p % heads) * dimHead,
                                      l: l, valid: valid)
                    }
                }
            }
        }
        let out = BucketedAttention.forward(plans: plans.map { $0! }, heads: heads, q: q, k: k, v: v,
                                            masking: masking(valid: valid), combine: .logsumexp)   // N, L, H·d
        return try toOut(out)                                        // N, Lp, dim
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try check(x)
        let l = x.shape[1]
        guard query.row == 0, (0..<l).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(query.column) is outside 0..<\(l)")
        }
        if let h = query.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        let chosen = query.head.map { [$0] } ?? Array(0..<heads)
        let xp = padded(x)
        let row = causal ? try causalMapRow(xp, position: query.column, heads: chosen)
                         : try mapRow(xp, valid: l, position: query.column, heads: chosen)
        let label = (query.head.map { "head \($0): " } ?? "") + "Sinkhorn-sorted blocks" + (query.head == nil && heads > 1 ? " (mean of \(heads) heads)" : "")
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: Array(row.prefix(l))), labels: [label])
    }

    func mapRow(_ x: Tensor, valid: Int, position i: Int, heads chosen: [Int]) throws -> [Float] {
        let (n, l) = (x.shape[0], x.shape[1])
        let hd = heads * dimHead, nb = l / bucket
        let (q, k, _) = try projections(x)
        let w = sortWeights(q: q, k: k, n: n, l: l)                  // the whole batch: the noise is per call
        var row = [Float](repeating: 0, count: l)
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                for h in chosen {
                    let kb = kp.baseAddress! + h * dimHead
                    let plan = plan(weights: w[h], k: kb, l: l, valid: valid)
                    let picks = w[h].count / (nb * nb), u = i / bucket
                    for (wt, keys, probs) in BucketedAttention.slotRows(
                        plan: plan, position: i, length: l, d: dimHead, q: qp.baseAddress! + h * dimHead, qld: hd,
                        k: kb, kld: hd, masking: masking(valid: valid), combine: .logsumexp) {
                        for (j, kp) in keys.enumerated() where kp >= 0 { row[Int(kp)] += wt * probs[j] / Float(chosen.count) }
                        // Reordered key (pick, t) → the positions v·b + t it mixes, by the sort weights.
                        let m0 = plan.keyChunk
                        for pick in 0..<picks {
                            let wr = Array(w[h][((u * picks + pick) * nb)..<((u * picks + pick + 1) * nb)])
                            let total = wr.reduce(0, +)
                            guard total > 0 else { continue }
                            for t in 0..<bucket {
                                let pm = wt * probs[m0 + pick * bucket + t] / Float(chosen.count)
                                for v in 0..<nb where wr[v] != 0 { row[v * bucket + t] += pm * wr[v] / total }
                            }
                        }
                    }
                }
            }
        }
        return row
    }
}
