// Reformer: The Efficient Transformer.
// Kitaev, Kaiser, Levskaya, ICLR 2020. https://arxiv.org/abs/2001.04451
// Reference matched: Hugging Face transformers 5.23.0 `LSHSelfAttention(config, layer_idx=0)`
// (models/reformer/modeling_reformer.py, numerically ported from trax efficient_attention.py),
// read in full. Second reference (not matched): pip reformer-pytorch `LSHSelfAttention`.

import Foundation
import TensorCore

/// Reformer LSH self-attention with shared query/key projections.
///
/// Matches HF `LSHSelfAttention` in eval mode (no `ReformerAttention` LayerNorm or output dense):
///   qk = x W_qkᵀ, v = x W_vᵀ, per head (d = attention_head_size);
///   buckets_r = argmax([qk R_r, −qk R_r]) for each of `num_hashes` rounds (R: random rotations);
///   positions sorted stably by (round, bucket, position), cut into chunks of
///   `lsh_attn_chunk_length`; a chunk attends to itself and `lsh_num_chunks_before/after`
///   neighbouring chunks; keys k̂ = qk·rsqrt(mean(qk²)+1e-6)/√d, logits q·k̂ (no further scale);
///   rounds combined by softmax over their logsumexps; output N×L×(heads·d).
///
/// - Input N×L×hidden_size, output N×L×(num_attention_heads·attention_head_size).
/// - Map (per-query): the weights query i gives the keys its buckets let it see, summed over the
///   hash rounds with the rounds' logsumexp weights (a key seen twice adds), in position order;
///   mean over heads unless one is chosen. O(rounds·chunk·d) per query.
/// - Cost O(L log L) to sort (counting sort here: O(L)) plus O(L·chunk·d) to attend.
///
/// Quirks of the reference (matched):
/// - Neighbouring chunks wrap cyclically over the chunks of ALL rounds: the first chunk of
///   round r looks back into the last chunk of round r−1 (and round 0 into the last round).
/// - Self logits are replaced by −1e5 (attend to oneself only when nothing else is visible);
///   causal (`is_decoder`) and padding logits by −1e9 — replaced, not added, so a fully masked
///   row is still a softmax.
/// - Rotations are drawn afresh in every HF forward (seeded by `hash_seed` through the global
///   torch RNG). Here they are drawn once, from `hash_seed` when set, else from the module's
///   generator — or loaded from `random_rotations` (heads, d, num_hashes, num_buckets/2).
/// - L ≤ lsh_attn_chunk_length runs full shared-QK attention (no hashing, self −1e5).
/// - L not a multiple of the chunk length is padded at the end as `ReformerModel` does: padding
///   tokens get an extra bucket (buckets per round num_buckets+1) and are masked as keys.
/// - `num_buckets` unset: the largest power of 2 ≤ 2·L/chunk, as HF's `_set_num_buckets`, split
///   into two factors past 2·max(√(max_position_embeddings/chunk), chunk); two factors (a list)
///   hash each on its own slice of the rotations and combine as b₁ + f₁·b₂.
/// - Causal is partial: keys after the query are masked, but which past keys share its chunk
///   depends on how later tokens hash (bucket membership sees the whole sequence).
///
/// Keys: `query_key.weight`, `value.weight` (heads·d × hidden_size, no bias), optional buffer
/// `random_rotations`. Untrained: PyTorch-default weights; queries and keys are shared, so a map
/// shows which tokens resemble the query within its buckets.
public final class LSHSelfAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "reformer", title: "Reformer: The Efficient Transformer (LSH attention)", arxiv: "2001.04451", year: 2020,
        complexity: "O(N log(N) D^2)", complexityExponent: 1, kind: .sequence, causal: true,
        reference: "transformers 5.23.0 LSHSelfAttention (attn_layers=['lsh'])", mapKind: .perQuery,
        mapDescription: "the keys query i shares a sorted bucket chunk (or a neighbouring chunk) with, weighted by its softmax in each hash round and the rounds' logsumexp weights; mean over heads unless one is chosen",
        notes: ["shared QK: keys are qk·rsqrt(mean(qk²)+1e-6)/sqrt(d), logits q·k without further scale; self logit −1e5, causal/padding −1e9 (replaced)",
                "neighbouring chunks wrap over all hash rounds (HF/trax look_adjacent)",
                "rotations: random_rotations (heads, d, num_hashes, num_buckets/2) from the weights file, else drawn once from hash_seed or the module seed (HF redraws each call under hash_seed)",
                "L ≤ lsh_attn_chunk_length: full shared-QK attention; L not a multiple of the chunk: padded at the end with its own bucket, as ReformerModel pads",
                "is_decoder (causal) is partial: future keys are masked, but bucket membership depends on later tokens, so outputs before i can change when tokens after i change",
                "num_buckets unset: largest power of 2 ≤ 2L/chunk, factorised in two as HF when large; random_rotations then has (f1+f2)/2 columns"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("hidden_size", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("num_attention_heads", .int(1...1024), default: .int(12), "heads"),
        ConfigKey("attention_head_size", .int(1...4096), default: .int(64), "width per head"),
        ConfigKey("lsh_attn_chunk_length", .int(1...65536), default: .int(64), "query chunk length after sorting"),
        ConfigKey("num_buckets", .ints(count: 1...2, each: 2...65536), default: .none, "buckets per hash round, even; two factors multiply (default: largest power of 2 ≤ 2L/chunk, factorised as HF when large)"),
        ConfigKey("num_hashes", .int(1...64), default: .int(1), "hash rounds"),
        ConfigKey("lsh_num_chunks_before", .int(0...64), default: .int(1), "previous chunks each chunk also sees"),
        ConfigKey("lsh_num_chunks_after", .int(0...64), default: .int(0), "following chunks each chunk also sees"),
        ConfigKey("is_decoder", .bool, default: .bool(false), "causal mask on positions (bucketing still sees the whole sequence)"),
        ConfigKey("hash_seed", .int(0...Int(Int32.max)), default: .none, "seed of the toolkit's own rotation draw (default: the module seed)"),
        ConfigKey("max_position_embeddings", .int(1...1 << 24), default: .int(4096), "only used for HF's automatic bucket factorisation"),
        ConfigKey("lsh_attention_probs_dropout_prob", .float(0...1), default: .float(0), "accepted; eval mode"),
    ]

    public let config: Config
    let hidden: Int, heads: Int, headSize: Int, chunk: Int, numHashes: Int, before: Int, after: Int
    let numBuckets: Int, bucketFactors: [Int], isDecoder: Bool, length: Int
    let queryKey: Linear, value: Linear
    /// heads, d, num_hashes, num_buckets/2
    let randomRotations: Tensor

    public var expectedInput: String { "N×L×\(hidden)" }
    public var mapHeads: Int { heads }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 3 else { throw ModuleError.badInput(module: id, expected: "N×L×C tokens", found: inputShape) }
        try config.resolveChannels("hidden_size", from: inputShape[2])
        hidden = config.int("hidden_size")
        heads = config.int("num_attention_heads")
        headSize = config.int("attention_head_size")
        chunk = config.int("lsh_attn_chunk_length")
        numHashes = config.int("num_hashes")
        before = config.int("lsh_num_chunks_before")
        after = config.int("lsh_num_chunks_after")
        isDecoder = config.bool("is_decoder")
        length = inputShape[1]
        if case .ints(let nb)? = config.values["num_buckets"] {
            guard nb.allSatisfy({ $0 % 2 == 0 }) else {
                throw ConfigError.inconsistent(module: id, message: "num_buckets=\(nb.map(String.init).joined(separator: ",")) must be even (buckets are argmax over [xR, −xR])")
            }
            bucketFactors = nb
        } else {
            // HF `_set_num_buckets`: the largest power of 2 ≤ 2·(L // chunk), at least 2, split into
            // two factors when it exceeds 2·max(√(max_position_embeddings // chunk), chunk).
            let target = max(2 * (length / chunk), 2)
            let p2 = Int.bitWidth - 1 - target.leadingZeroBitCount
            let limit = 2 * max(Int(Double(config.int("max_position_embeddings") / chunk).squareRoot()), chunk)
            bucketFactors = 1 << p2 > limit ? [1 << (p2 / 2), 1 << (p2 - p2 / 2)] : [1 << p2]
            config.fill("num_buckets", bucketFactors)
        }
        numBuckets = bucketFactors.reduce(1, *)
        self.config = config
        queryKey = Linear(p.scoped("query_key"), inFeatures: hidden, outFeatures: heads * headSize, bias: false)
        value = Linear(p.scoped("value"), inFeatures: hidden, outFeatures: heads * headSize, bias: false)
        let shape = [heads, headSize, numHashes, bucketFactors.reduce(0, +) / 2]
        if let r = p.optionalBuffer("random_rotations", shape: shape) {
            randomRotations = r
        } else if let s = config.optionalInt("hash_seed") {
            var g = SeededGenerator(seed: UInt64(s))
            randomRotations = .randomNormal(shape, generator: &g)
        } else {
            randomRotations = p.withGenerator { Tensor.randomNormal(shape, generator: &$0) }
        }
    }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] > 0, x.shape[2] == hidden else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
    }

    /// Full attention (no hashing) when the sequence fits one chunk.
    /// Rotation columns per round: Σ factors / 2.
    func isStandard(_ l: Int) -> Bool { l <= chunk }
    func paddedLength(_ l: Int) -> Int { isStandard(l) ? l : (l + chunk - 1) / chunk * chunk }

    var masking: BucketedAttention.Masking {
        BucketedAttention.Masking(scale: 1, causal: isDecoder, causalValue: -1e9, selfValue: -1e5)
    }

    /// Shared query-keys and values padded to `lp` rows, and the unit-normalised keys:
    /// each N×Lp×(heads·d).
    func projections(_ x: Tensor, lp: Int) throws -> (qk: Tensor, k: Tensor, v: Tensor) {
        var qk = try queryKey(x)                                    // N, L, H·d
        var v = try value(x)                                        // N, L, H·d
        let l = x.shape[1]
        if lp > l {
            qk = qk.padded(torchPads: [0, 0, 0, lp - l])            // N, Lp, H·d (zero rows at the end)
            v = v.padded(torchPads: [0, 0, 0, lp - l])
        }
        var k = qk
        let d = headSize, rows = k.shape.reduce(1, *) / d
        let inv = 1 / Float(d).squareRoot()
        k.withUnsafeMutableBufferPointer { kp in
            for r in 0..<rows {
                let row = kp.baseAddress! + r * d
                var ms: Float = 0
                for e in 0..<d { ms += row[e] * row[e] }
                let s = 1 / (ms / Float(d) + 1e-6).squareRoot() * inv
                for e in 0..<d { row[e] *= s }
            }
        }
        return (qk, k, v)
    }

    /// One plan per (batch, head): buckets, stable sort per round, chunks.
    func plans(_ qk: Tensor, n: Int, l: Int, lp: Int) -> [BucketedAttention.Plan] {
        if isStandard(l) {
            let all = (0..<Int32(l)).map { $0 }
            return Array(repeating: BucketedAttention.Plan(queryIndex: all, keyIndex: all, queryChunk: l, keyChunk: l),
                         count: n * heads)
        }
        let hd = heads * headSize, half = bucketFactors.reduce(0, +) / 2
        let perRound = numBuckets + (lp > l ? 1 : 0)
        var plans = [BucketedAttention.Plan?](repeating: nil, count: n * heads)
        qk.withUnsafeBufferPointer { qp in
            randomRotations.withUnsafeBufferPointer { rp in
                plans.withUnsafeMutableBufferPointer { out in
                    Threads.parallelFor(n * heads) { range in
                        for p in range {
                            let b = p / heads, h = p % heads
                            var buckets = BucketedAttention.rotationBuckets(
                                vectors: qp.baseAddress! + b * lp * hd + h * headSize, ld: hd, length: lp, d: headSize,
                                rotations: rp.baseAddress! + h * headSize * numHashes * half, rounds: numHashes, factors: bucketFactors)
                            var order: [Int32] = []
                            order.reserveCapacity(numHashes * lp)
                            for r in 0..<numHashes {
                                for i in l..<lp { buckets[r * lp + i] = Int32(numBuckets) }   // padding bucket
                                order += BucketedAttention.stableOrder(buckets: buckets[(r * lp)..<((r + 1) * lp)],
                                                                       bucketCount: perRound)
                            }
                            out[p] = BucketedAttention.Plan(queryIndex: order, keyIndex: order, queryChunk: chunk,
                                                            keyChunk: chunk, before: before, after: after)
                        }
                    }
                }
            }
        }
        return plans.map { $0! }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        let (n, l) = (x.shape[0], x.shape[1])
        let lp = paddedLength(l)
        let (qk, k, v) = try projections(x, lp: lp)
        let plans = plans(qk, n: n, l: l, lp: lp)
        var masking = masking
        masking.validLength = l
        let out = BucketedAttention.forward(plans: plans, heads: heads, q: qk, k: k, v: v,
                                            masking: masking, combine: .logsumexp)   // N, Lp, H·d
        return lp == l ? out : out.sliced(axis: 1, range: 0..<l)      // N, L, H·d
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
        let x0 = x.batchItem(0)
        let lp = paddedLength(l), hd = heads * headSize
        let (qk, k, _) = try projections(x0, lp: lp)
        let plans = plans(qk, n: 1, l: l, lp: lp)
        var masking = masking
        masking.validLength = l
        let chosen = query.head.map { [$0] } ?? Array(0..<heads)
        var row = [Float](repeating: 0, count: l)
        qk.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                for h in chosen {
                    let w = BucketedAttention.mapRow(plan: plans[h], position: query.column, length: l, d: headSize,
                                                     q: qp.baseAddress! + h * headSize, qld: hd,
                                                     k: kp.baseAddress! + h * headSize, kld: hd,
                                                     masking: masking, combine: .logsumexp)
                    for j in 0..<l { row[j] += w[j] / Float(chosen.count) }
                }
            }
        }
        let label = query.head.map { "head \($0): LSH buckets" } ?? (heads == 1 ? "LSH buckets" : "LSH buckets (mean of \(heads) heads)")
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: row), labels: [label])
    }
}

extension Config {
    /// Records the num_buckets the module derived (HF writes it back into its config too): the
    /// config is rebuilt from every value that is set and differs from its default, plus this one.
    fileprivate mutating func fill(_ name: String, _ value: [Int]) {
        var settings: [String: String] = [name: value.map(String.init).joined(separator: ",")]
        for key in schema where key.name != name {
            if let v = values[key.name], v != .none, v != key.defaultValue || explicit.contains(key.name) {
                settings[key.name] = v.description
            }
        }
        if let c = try? Config(module: module, schema: schema, settings: settings) { self = c }
    }
}
