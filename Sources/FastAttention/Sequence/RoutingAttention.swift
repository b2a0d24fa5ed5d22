// Efficient Content-Based Sparse Attention with Routing Transformers.
// Roy, Saffar, Vaswani, Grangier, TACL 2021. https://arxiv.org/abs/2003.05997
// Reference matched: pip routing-transformer 1.6.1 `routing_transformer.routing_transformer.SelfAttention`
// with `KmeansAttention` and `Kmeans` (routed heads only), read in full. The authors' code is
// TF (google-research routing_transformer), not checked.

import Foundation
import TensorCore

/// Routing-transformer self-attention: queries and keys are routed to k-means clusters, and each
/// cluster attends densely within itself.
///
/// Matches `SelfAttention(dim, depth, max_seq_len, heads, local_attn_heads=0, window_size, ...)`
/// in eval mode (the k-means `means` used as loaded when `initted` is true):
///   q, k, v = x W_qᵀ, x W_kᵀ, x W_vᵀ per head; x̂ = L2-normalise([q; k]); s = x̂ μᵀ;
///   cluster c takes the top-`window_size` queries by s (and, separately, the top keys);
///   logits = q kᵀ·d^-½ over [mem kv of c; cluster keys] (causal: key position > query position
///   → −finfo.max; shared_qk: self → −5e4); o = softmax·v scattered back as a mean over the
///   clusters holding the token (÷ count + 1e-5; unrouted tokens get 0); y = [o_h] W_outᵀ.
///
/// - Input N×L×dim, output N×L×dim.
/// - Map (per-query): the keys of each cluster that routed query i, with its softmax weights,
///   averaged as the output is (÷ count + 1e-5), in position order; an unrouted query has an
///   all-zero row; mem keys take mass but are not positions. Mean over heads unless one is chosen.
/// - Cost O(L·C·d) to route (C = max_seq_len/window_size clusters) plus O(C·w²·d) to attend:
///   O(L^1.5·d) with C ≈ w ≈ √L (the default window_size).
///
/// Quirks of the reference:
/// - Each cluster takes exactly min(window_size, L) tokens by top-k over the sequence, so a token
///   can be in 0, 1 or several clusters.
/// - Causal masks positions only: cluster membership sees the whole sequence (partial causality:
///   outputs before i change when tokens after i change). With causal (and not shared_qk) every
///   cluster has ≥ 1 learned mem key/value, always visible.
/// - `means`/`initted` are buffers. With `initted` false the reference re-initialises the means
///   from the first batch it sees (randperm of the raw [q; k] tokens, 10 k-means iterations); here
///   that initialisation runs on each call's input (randperm from the module seed), so forward
///   and map agree; with `initted` true (a trained checkpoint) the means are used as they are.
/// - Training-only parts are inert: EMA updates of the means, the commitment aux loss (not
///   returned), dropout. `local_attn_heads` > 0 (LocalAttention heads) and `receives_context`
///   are not supported; `pos_emb` is not applied (the forward's default).
///
/// Keys: `to_q.weight`, `to_k.weight` (absent with shared_qk), `to_v.weight` (H·d × dim, no
/// bias), `to_out.weight` (dim × H·d, no bias), `global_attn.mem_key`, `global_attn.mem_value`
/// (H × C × m × d; m = 0 when not causal: zero-size), `global_attn.kmeans.means` (H × C × d),
/// `global_attn.kmeans.initted` (bool). Untrained: PyTorch-default weights with W_k = W_q.
public final class RoutingAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "routing", title: "Efficient Content-Based Sparse Attention with Routing Transformers", arxiv: "2003.05997", year: 2021,
        complexity: "O(N sqrt(N) D)", complexityExponent: 1.5, kind: .sequence, causal: true,
        reference: "routing-transformer 1.6.1 SelfAttention (routed heads only, local_attn_heads=0)", mapKind: .perQuery,
        mapDescription: "the keys of the k-means clusters that routed query i, with its softmax weights there, averaged over those clusters (0 when unrouted); mean over heads unless one is chosen",
        notes: ["each cluster takes exactly window_size tokens by top-k similarity: a token can be in 0, 1 or several clusters; unrouted tokens output 0 before to_out",
                "causal masks positions but cluster membership sees the whole sequence (partial causality); causal adds ≥1 learned mem key/value per cluster",
                "kmeans.initted false: means initialised from each call's input as the reference does on its first call (randperm from the seed + 10 k-means iterations); true: loaded means used as they are",
                "window_size unset: the largest divisor of max_seq_len ≤ sqrt(max_seq_len); max_seq_len unset: L",
                "untrained: PyTorch-default weights with to_k = to_q"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("depth", .int(1...1024), default: .int(1), "accepted; used by the reference only for its layer stack"),
        ConfigKey("max_seq_len", .int(1...1 << 24), default: .none, "clusters = max_seq_len / window_size (default L)"),
        ConfigKey("heads", .int(1...1024), default: .int(8), "heads"),
        ConfigKey("local_attn_heads", .int(0...0), default: .int(0), "LocalAttention heads (not supported: 0)"),
        ConfigKey("window_size", .int(1...1 << 24), default: .none, "tokens per cluster (default: largest divisor of max_seq_len ≤ its square root)"),
        ConfigKey("dim_head", .int(1...4096), default: .none, "width per head (default dim // heads)"),
        ConfigKey("causal", .bool, default: .bool(false), "mask keys after the query (routing still sees all tokens)"),
        ConfigKey("num_mem_kv", .int(0...4096), default: .int(0), "learned mem keys/values per cluster (≥1 when causal and not shared_qk)"),
        ConfigKey("shared_qk", .bool, default: .bool(false), "keys = normalised queries, self logit −5e4"),
        ConfigKey("attn_dropout", .float(0...1), default: .float(0), "accepted; eval mode"),
        ConfigKey("dropout", .float(0...1), default: .float(0), "accepted; eval mode"),
        ConfigKey("kmeans_ema_decay", .float(0...1), default: .float(0.999), "accepted; training only"),
        ConfigKey("commitment_factor", .float(0...1e6), default: .float(1e-4), "accepted; training only (aux loss)"),
        ConfigKey("receives_context", .bool, default: .bool(false), "cross-attention (not supported: false)"),
        ConfigKey("rel_pos_emb", .bool, default: .bool(true), "accepted; local heads only"),
        ConfigKey("conv_query_kernel", .int(1...1024), default: .int(9), "accepted; unused by the reference"),
        ConfigKey("local_attn_window_size", .int(1...1 << 24), default: .none, "accepted; local heads only"),
        ConfigKey("local_attn_radius_blocks", .int(0...1024), default: .int(1), "accepted; local heads only"),
    ]

    public let config: Config
    let dim: Int, heads: Int, dimHead: Int, maxSeqLen: Int, windowSize: Int, clusters: Int, memCount: Int
    let causal: Bool, sharedQK: Bool
    let toQ: Linear, toK: Linear?, toV: Linear, toOut: Linear
    let memKey: Tensor, memValue: Tensor      // H, C, m, d
    let means: Tensor                         // H, C, d
    let initted: Bool
    /// Seed of the randperm that picks initial means when `initted` is false.
    let initSeed: UInt64

    public var expectedInput: String { "N×L×\(dim)" }
    public var mapHeads: Int { heads }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 3 else { throw ModuleError.badInput(module: id, expected: "N×L×C tokens", found: inputShape) }
        try config.resolveChannels("dim", from: inputShape[2])
        dim = config.int("dim")
        heads = config.int("heads")
        if config.bool("receives_context") {
            throw ConfigError.inconsistent(module: id, message: "receives_context=true (cross-attention) is not supported")
        }
        guard config.isSet("dim_head") || dim % heads == 0 else {
            throw ConfigError.inconsistent(module: id, message: "dim=\(dim) must be divisible by heads=\(heads) when dim_head is unset (the reference asserts it)")
        }
        dimHead = config.optionalInt("dim_head") ?? dim / heads
        maxSeqLen = config.optionalInt("max_seq_len") ?? inputShape[1]
        try? config.resolveChannels("max_seq_len", from: maxSeqLen)
        if let w = config.optionalInt("window_size") {
            windowSize = w
        } else {
            let root = Int(Double(maxSeqLen).squareRoot()), total = maxSeqLen
            windowSize = (1...max(root, 1)).last { total % $0 == 0 }!
            try? config.resolveChannels("window_size", from: windowSize)
        }
        guard maxSeqLen % windowSize == 0 else {
            throw ConfigError.inconsistent(module: id, message: "max_seq_len=\(maxSeqLen) must be divisible by window_size=\(windowSize) (the reference asserts it)")
        }
        clusters = maxSeqLen / windowSize
        causal = config.bool("causal")
        sharedQK = config.bool("shared_qk")
        memCount = max(config.int("num_mem_kv"), causal && !sharedQK ? 1 : 0)
        self.config = config

        let inner = heads * dimHead
        let g = p.scoped("global_attn")
        memKey = g.parameter("mem_key", shape: [heads, clusters, memCount, dimHead], initializer: .normal(std: 1))
        memValue = g.parameter("mem_value", shape: [heads, clusters, memCount, dimHead], initializer: .normal(std: 1))
        let km = g.scoped("kmeans")
        means = km.buffer("means", shape: [heads, clusters, dimHead], initializer: .normal(std: 1))
        // A BOOL buffer: loaded as 0/1 (safetensors BOOL → float), false when seeded.
        initted = km.buffer("initted", shape: [], initializer: .zeros).scalars.first.map { $0 != 0 } ?? false
        toQ = Linear(p.scoped("to_q"), inFeatures: dim, outFeatures: inner, bias: false)
        toV = Linear(p.scoped("to_v"), inFeatures: dim, outFeatures: inner, bias: false)
        if sharedQK {
            toK = nil
        } else {
            var k = Linear(p.scoped("to_k"), inFeatures: dim, outFeatures: inner, bias: false)
            if !p.isLoading { k.weight = toQ.weight }           // similarity initialisation
            toK = k
        }
        toOut = Linear(p.scoped("to_out"), inFeatures: inner, outFeatures: dim, bias: false)
        initSeed = p.withGenerator { $0.next() }
    }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] > 0, x.shape[2] == dim else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
    }

    var masking: BucketedAttention.Masking {
        .init(scale: 1 / Float(dimHead).squareRoot(), causal: causal, causalValue: -.greatestFiniteMagnitude,
              selfValue: sharedQK ? -5e4 : nil)
    }

    /// Projections N×L×(H·d): queries, keys (normalised queries with shared_qk), values.
    func projections(_ x: Tensor) throws -> (q: Tensor, k: Tensor, v: Tensor) {
        let q = try toQ(x), v = try toV(x)                           // N, L, H·d
        guard let toK else { return (q, Self.normalisedRows(q, width: dimHead), v) }
        return (q, try toK(x), v)
    }

    static func normalisedRows(_ t: Tensor, width d: Int) -> Tensor {
        var out = t
        out.withUnsafeMutableBufferPointer { p in
            for r in 0..<(p.count / d) {
                let row = p.baseAddress! + r * d
                var s: Float = 0
                for e in 0..<d { s += row[e] * row[e] }
                let inv = 1 / max(s.squareRoot(), 1e-12)
                for e in 0..<d { row[e] *= inv }
            }
        }
        return out
    }

    /// One plan per (batch, head): the top-w queries and keys of every cluster, mem kv per cluster.
    func plans(q: Tensor, k: Tensor, n: Int, l: Int) -> [BucketedAttention.Plan] {
        let hd = heads * dimHead, d = dimHead, c = clusters, w = min(windowSize, l), m = memCount
        let mu = initted ? means : initialMeans(q: q, k: k, n: n, l: l)
        var plans = [BucketedAttention.Plan?](repeating: nil, count: n * heads)
        let mk = memKey.scalars, mv = memValue.scalars
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                mu.withUnsafeBufferPointer { mp in
                    plans.withUnsafeMutableBufferPointer { out in
                        Threads.parallelFor(n * heads) { range in
                            // x̂ rows (queries then keys) and their similarities to the means.
                            var xhat = [Float](repeating: 0, count: 2 * l * d), sims = [Float](repeating: 0, count: 2 * l * c)
                            for p in range {
                                let b = p / heads, h = p % heads
                                for (half, src) in [qp, kp].enumerated() {
                                    for i in 0..<l {
                                        let row = src.baseAddress! + (b * l + i) * hd + h * d
                                        var s: Float = 0
                                        for e in 0..<d { s += row[e] * row[e] }
                                        let inv = 1 / max(s.squareRoot(), 1e-12)
                                        for e in 0..<d { xhat[(half * l + i) * d + e] = row[e] * inv }
                                    }
                                }
                                // sims (C × 2L) = μ_h x̂ᵀ: one contiguous row of similarities per cluster.
                                xhat.withUnsafeBufferPointer { xp in
                                    sims.withUnsafeMutableBufferPointer { sp in
                                        BLAS.gemm(transB: true, m: c, n: 2 * l, k: d, a: mp.baseAddress! + h * c * d, lda: d,
                                                  b: xp.baseAddress!, ldb: d, c: sp.baseAddress!, ldc: 2 * l)
                                    }
                                }
                                var qi: [Int32] = [], ki: [Int32] = []
                                qi.reserveCapacity(c * w); ki.reserveCapacity(c * w)
                                for cl in 0..<c {
                                    qi += Self.topK(sims, offset: cl * 2 * l, stride: 1, count: l, k: w)
                                    ki += Self.topK(sims, offset: cl * 2 * l + l, stride: 1, count: l, k: w)
                                }
                                var plan = BucketedAttention.Plan(queryIndex: qi, keyIndex: ki, queryChunk: w, keyChunk: w)
                                plan.memoryCount = m
                                plan.memoryKeys = Array(mk[(h * c * m * d)..<((h + 1) * c * m * d)])
                                plan.memoryValues = Array(mv[(h * c * m * d)..<((h + 1) * c * m * d)])
                                out[p] = plan
                            }
                        }
                    }
                }
            }
        }
        return plans.map { $0! }
    }

    /// Positions of the k largest of `count` values at `values[offset + i·stride]` (a bounded
    /// min-heap, O(count·log k)), largest first. As `torch.topk`, NaN ranks above every number
    /// (so a NaN token is routed and its NaN reaches the output, instead of never being picked).
    static func topK(_ values: [Float], offset: Int, stride: Int, count: Int, k: Int) -> [Int32] {
        var heap: [(Float, Int32)] = []
        heap.reserveCapacity(k)
        func less(_ a: (Float, Int32), _ b: (Float, Int32)) -> Bool {
            if a.0.isNaN || b.0.isNaN { return a.0.isNaN == b.0.isNaN ? a.1 > b.1 : b.0.isNaN }
            return a.0 < b.0 || (a.0 == b.0 && a.1 > b.1)
        }
        func siftDown(_ start: Int) {
            var i = start
            while true {
                let l = 2 * i + 1, r = l + 1
                var s = i
                if l < heap.count && less(heap[l], heap[s]) { s = l }
                if r < heap.count && less(heap[r], heap[s]) { s = r }
                if s == i { return }
                heap.swapAt(i, s); i = s
            }
        }
        for i in 0..<count {
            let e = (values[offset + i * stride], Int32(i))
            if heap.count < k {
                heap.append(e)
                var j = heap.count - 1
                while j > 0 && less(heap[j], heap[(j - 1) / 2]) { heap.swapAt(j, (j - 1) / 2); j = (j - 1) / 2 }
            } else if less(heap[0], e) {
                heap[0] = e
                siftDown(0)
            }
        }
        return heap.sorted { less($1, $0) }.map(\.1)
    }

    /// The reference's `Kmeans.init` on this input: C raw [q; k] tokens picked by a permutation
    /// (the same for every head), then 10 k-means iterations on the raw tokens of the whole batch
    /// (assignments by dot product, new means = normalised sums, empty clusters kept). H × C × d.
    func initialMeans(q: Tensor, k: Tensor, n: Int, l: Int) -> Tensor {
        let hd = heads * dimHead, d = dimHead, c = clusters
        // With shared_qk the reference clusters the queries alone.
        let perItem = sharedQK ? l : 2 * l, samples = n * perItem
        var g = SeededGenerator(seed: initSeed)
        var picks: [Int]
        if samples >= c {
            var perm = Array(0..<samples)
            perm.shuffle(using: &g)
            picks = Array(perm.prefix(c))
        } else {
            picks = (0..<c).map { _ in g.nextInt(below: samples) }
        }
        var mu = [Float](repeating: 0, count: heads * c * d)
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                mu.withUnsafeMutableBufferPointer { mup in
                    Threads.parallelFor(heads) { range in
                        // This head's raw tokens (samples × d): per batch item its queries, then keys.
                        var x = [Float](repeating: 0, count: samples * d), dots = [Float](repeating: 0, count: samples * c)
                        for h in range {
                            for s in 0..<samples {
                                let b = s / perItem, r = s % perItem
                                let src = r < l ? qp.baseAddress! : kp.baseAddress!
                                let row = src + (b * l + r % l) * hd + h * d
                                for e in 0..<d { x[s * d + e] = row[e] }
                            }
                            let m = mup.baseAddress! + h * c * d
                            for (ci, s) in picks.enumerated() { for e in 0..<d { m[ci * d + e] = x[s * d + e] } }
                            for _ in 0..<10 {
                                // dots (samples × C) = X μᵀ; assign to the first maximum.
                                x.withUnsafeBufferPointer { xp in
                                    dots.withUnsafeMutableBufferPointer { dp in
                                        BLAS.gemm(transB: true, m: samples, n: c, k: d, a: xp.baseAddress!, lda: d,
                                                  b: m, ldb: d, c: dp.baseAddress!, ldc: c)
                                    }
                                }
                                var sums = [Float](repeating: 0, count: c * d), bins = [Int](repeating: 0, count: c)
                                for s in 0..<samples {
                                    var best = -Float.infinity, arg = 0
                                    for ci in 0..<c where dots[s * c + ci] > best { best = dots[s * c + ci]; arg = ci }
                                    bins[arg] += 1
                                    for e in 0..<d { sums[arg * d + e] += x[s * d + e] }
                                }
                                for ci in 0..<c where bins[ci] > 0 {
                                    var norm: Float = 0
                                    for e in 0..<d { norm += sums[ci * d + e] * sums[ci * d + e] }
                                    let inv = 1 / max(norm.squareRoot(), 1e-12)
                                    for e in 0..<d { m[ci * d + e] = sums[ci * d + e] * inv }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Tensor(shape: [heads, c, d], scalars: mu)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        let (n, l) = (x.shape[0], x.shape[1])
        let (q, k, v) = try projections(x)
        let plans = plans(q: q, k: k, n: n, l: l)
        let out = BucketedAttention.forward(plans: plans, heads: heads, q: q, k: k, v: v,
                                            masking: masking, combine: .mean(eps: 1e-5))   // N, L, H·d
        return try toOut(out)                                        // N, L, dim
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try check(x)
        let (n, l) = (x.shape[0], x.shape[1])
        guard query.row == 0, (0..<l).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(query.column) is outside 0..<\(l)")
        }
        if let h = query.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        // Routing uses the whole batch when the means are initialised from data: plan all of it,
        // read batch item 0.
        let (q, k, _) = try projections(x)
        let plans = plans(q: q, k: k, n: n, l: l)
        let hd = heads * dimHead
        let chosen = query.head.map { [$0] } ?? Array(0..<heads)
        var row = [Float](repeating: 0, count: l)
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                for h in chosen {
                    let w = BucketedAttention.mapRow(plan: plans[h], position: query.column, length: l, d: dimHead,
                                                     q: qp.baseAddress! + h * dimHead, qld: hd,
                                                     k: kp.baseAddress! + h * dimHead, kld: hd,
                                                     masking: masking, combine: .mean(eps: 1e-5))
                    for j in 0..<l { row[j] += w[j] / Float(chosen.count) }
                }
            }
        }
        let label = query.head.map { "head \($0): routed clusters" } ?? (heads == 1 ? "routed clusters" : "routed clusters (mean of \(heads) heads)")
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: row), labels: [label])
    }
}
