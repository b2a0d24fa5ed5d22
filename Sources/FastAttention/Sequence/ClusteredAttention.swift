// Fast Transformers with Clustered Attention.
// Vyas, Katharopoulos, Fleuret, NeurIPS 2020. https://arxiv.org/abs/2007.04825
// Reference matched: pytorch-fast-transformers 0.4.0 (idiap, the authors' library)
// `AttentionLayer(ClusteredAttention(...) | ImprovedClusteredAttention(...), d_model, n_heads)`,
// read in full with its C++ CPU kernels (hash_cpu, cluster_cpu, aggregate_cpu,
// clustered_sparse_product_cpu).

import Foundation
import TensorCore

/// Clustered attention: queries are hashed (random hyperplanes), grouped by k-means in Hamming
/// space, and each cluster's mean query (centroid) attends to all keys; members share its output.
/// The improved variant recomputes, per query, exact weights on the centroid's top-k keys.
///
///   bit_b(q) = [q·A_b[:E] > A_b[E]] (`bits` planes, `hash_bias` false zeroes the thresholds);
///   centroids start at the hashes of `initial_centroids`, then iterations−1 Lloyd steps
///   (popcount distance, first minimum; bitwise majority, ties → 0) and a final assignment;
///   Q_c = Σ_members q·(1/count); A_c = softmax(Q_c Kᵀ/√E) (`DenseAttention`); out_i = A_c V.
///   Improved: T = top-k of Q_c Kᵀ; out_i = Σ_{j∈T} softmax_T(q_i k_jᵀ/√E)(1 − Σ_{j∈T}A_c[j]) v_j
///   + Σ_{j∉T} A_c[j] v_j.
///
/// - Input N×L×d_model, output N×L×d_model (`out_projection` included).
/// - Map (per-query): the centroid row A_c of query i's cluster over all keys (shared by every
///   member); improved: its top-k entries replaced by i's own renormalised weights. Mean over
///   heads unless one is chosen. O(L·E) per head.
/// - Cost O(L·C·E) with C clusters (plus hashing O(L·bits·E), clustering O(L·C·iterations)).
///
/// Quirks of the reference:
/// - Hash planes are `normal_` draws in every forward and the initial centroids
///   `np.random.choice(L, clusters, replace=False)` (shared by all batch items and heads). Here
///   both are drawn per call from a seed fixed at construction, or loaded as
///   `inner_attention.planes` (bits × (d_keys+1)) and `inner_attention.initial_centroids`
///   (clusters) — buffers the reference does not have, named for the layer's `inner_attention`.
/// - An empty cluster gets a random centroid from C++ `std::random_device` (unseedable); here
///   from the per-call seeded generator, so results are reproducible but cannot match a C++ run
///   that hit an empty cluster.
/// - The class defaults `bits=32`, the registry's builder 63 (≤ 63 either way).
/// - No mask support (the reference asserts an all-ones mask); not causal.
/// - L < clusters raises in the reference (`np.random.choice` without replacement); here C = L
///   (tokens with distinct hashes each their own cluster: full attention) unless
///   `initial_centroids` were loaded.
/// - `attention_dropout` defaults to 0.1 in the reference; eval mode ignores it.
///
/// Keys: `query_projection`, `key_projection`, `value_projection`, `out_projection`
/// (`.weight`, `.bias`) plus the optional buffers above. Untrained: PyTorch-default weights with
/// `key_projection` = `query_projection`.
public final class ClusteredAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "clustered", title: "Fast Transformers with Clustered Attention", arxiv: "2007.04825", year: 2020,
        complexity: "O(N k D)", complexityExponent: 1, kind: .sequence, causal: false,
        reference: "pytorch-fast-transformers 0.4.0 AttentionLayer(ClusteredAttention / ImprovedClusteredAttention)", mapKind: .perQuery,
        mapDescription: "the softmax row of query i's cluster centroid over all keys (shared by the cluster); improved-clustered: its top-k keys reweighted for query i itself; mean over heads unless one is chosen",
        notes: ["hash planes and initial centroid indices: inner_attention.planes / inner_attention.initial_centroids from the weights file, else drawn per call from a seed fixed at construction (the reference redraws with torch/numpy RNGs)",
                "empty clusters are re-seeded from the module's generator (the reference uses unseedable std::random_device)",
                "attention_type=improved-clustered recomputes exact weights on the centroid's top-k keys",
                "L < clusters: C = L clusters (tokens with distinct hashes each their own cluster: full attention) unless initial_centroids were loaded; the reference raises",
                "no masks; not causal",
                "untrained: PyTorch-default weights with key_projection = query_projection"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("d_model", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("n_heads", .int(1...1024), default: .int(4), "number of heads"),
        ConfigKey("d_keys", .int(1...65536), default: .none, "query/key width per head (default d_model // n_heads)"),
        ConfigKey("d_values", .int(1...65536), default: .none, "value width per head (default d_model // n_heads)"),
        ConfigKey("attention_type", .choice(["clustered", "improved-clustered"]), default: .string("clustered"), "the registry name of the inner attention"),
        ConfigKey("clusters", .int(1...65536), default: .int(100), "query clusters C"),
        ConfigKey("iterations", .int(1...1000), default: .int(10), "Lloyd iterations (iterations−1 centroid updates)"),
        ConfigKey("bits", .int(1...63), default: .int(32), "hash bits (hyperplanes)"),
        ConfigKey("hash_bias", .bool, default: .bool(true), "random thresholds on the planes (false: through the origin)"),
        ConfigKey("topk", .int(1...65536), default: .int(32), "improved-clustered: keys recomputed per query"),
        ConfigKey("softmax_temp", .float(0...1e6), default: .none, "softmax temperature (default 1/sqrt(d_keys))"),
        ConfigKey("attention_dropout", .float(0...1), default: .float(0.1), "accepted; eval mode"),
    ]

    public let config: Config
    let dModel: Int, nHeads: Int, dKeys: Int, dValues: Int, clusters: Int, iterations: Int, bits: Int, topk: Int
    let improved: Bool, temp: Float
    let queryProjection: Linear, keyProjection: Linear, valueProjection: Linear, outProjection: Linear
    let planes: Tensor?                 // bits × (d_keys+1)
    let initialCentroids: [Int]?
    let hashBias: Bool
    let drawSeed: UInt64

    public var expectedInput: String { "N×L×\(dModel)" }
    public var mapHeads: Int { nHeads }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 3 else { throw ModuleError.badInput(module: id, expected: "N×L×C tokens", found: inputShape) }
        try config.resolveChannels("d_model", from: inputShape[2])
        dModel = config.int("d_model")
        nHeads = config.int("n_heads")
        guard (config.isSet("d_keys") && config.isSet("d_values")) || dModel / nHeads > 0 else {
            throw ConfigError.inconsistent(module: id, message: "n_heads=\(nHeads) > d_model=\(dModel) leaves d_model // n_heads = 0")
        }
        dKeys = config.optionalInt("d_keys") ?? dModel / nHeads
        dValues = config.optionalInt("d_values") ?? dModel / nHeads
        clusters = config.int("clusters")
        iterations = config.int("iterations")
        bits = config.int("bits")
        topk = config.int("topk")
        hashBias = config.bool("hash_bias")
        improved = config.string("attention_type") == "improved-clustered"
        temp = config.isSet("softmax_temp") ? Float(config.float("softmax_temp")) : 1 / Float(dKeys).squareRoot()
        self.config = config
        queryProjection = Linear(p.scoped("query_projection"), inFeatures: dModel, outFeatures: dKeys * nHeads)
        var k = Linear(p.scoped("key_projection"), inFeatures: dModel, outFeatures: dKeys * nHeads)
        if !p.isLoading { k.weight = queryProjection.weight; k.bias = queryProjection.bias }
        keyProjection = k
        valueProjection = Linear(p.scoped("value_projection"), inFeatures: dModel, outFeatures: dValues * nHeads)
        outProjection = Linear(p.scoped("out_projection"), inFeatures: dValues * nHeads, outFeatures: dModel)
        let inner = p.scoped("inner_attention")
        planes = inner.optionalBuffer("planes", shape: [bits, dKeys + 1])
        initialCentroids = inner.optionalBuffer("initial_centroids", shape: [clusters]).map { $0.scalars.map { Int($0) } }
        drawSeed = p.withGenerator { $0.next() }
    }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] > 0, x.shape[2] == dModel else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×\(dModel)", found: x.shape)
        }
        if initialCentroids != nil && x.shape[1] < clusters {
            throw ModuleError.badInput(module: Self.info.id,
                                       expected: "N×L×\(dModel) with L ≥ clusters=\(clusters) (initial_centroids were loaded)", found: x.shape)
        }
        if let c = initialCentroids, let bad = c.first(where: { !(0..<x.shape[1]).contains($0) }) {
            throw ModuleError.badInput(module: Self.info.id,
                                       expected: "initial_centroids indices in 0..<L (found \(bad))", found: x.shape)
        }
    }

    /// Clusters used on a sequence of l tokens: `clusters`, or l when shorter and no initial
    /// centroids were loaded (the reference's `np.random.choice(L, clusters, replace=False)` raises).
    func clusterCount(_ l: Int) -> Int { initialCentroids != nil ? clusters : min(clusters, l) }

    /// The clustering of every (batch, head): assignments per position and member counts.
    struct Grouping { var assignment: [Int]; var counts: [Int] }

    /// Hashes, Hamming k-means and centroid queries for all problems; `q` is N×L×(H·E).
    func group(_ q: Tensor, n: Int, l: Int) -> (groups: [Grouping], centroids: Tensor) {
        let e = dKeys, hd = nHeads * dKeys, c = clusterCount(l)
        var g = SeededGenerator(seed: drawSeed)
        var a = planes ?? Tensor.randomNormal([bits, e + 1], generator: &g)
        if planes == nil && !hashBias {
            a.withUnsafeMutableBufferPointer { p in for b in 0..<bits { p[b * (e + 1) + e] = 0 } }
        }
        let start: [Int] = initialCentroids ?? {
            var perm = Array(0..<l)
            perm.shuffle(using: &g)
            return Array(perm.prefix(c))
        }()
        let reseed = (0..<(n * nHeads)).map { _ in g.next() }     // per problem, for empty clusters
        var groups = [Grouping?](repeating: nil, count: n * nHeads)
        var cent = Tensor(zeros: [n, nHeads, c, e])                  // N, H, C, E
        q.withUnsafeBufferPointer { qp in
            a.withUnsafeBufferPointer { ap in
                cent.withUnsafeMutableBufferPointer { cp in
                    groups.withUnsafeMutableBufferPointer { gp in
                        Threads.parallelFor(n * nHeads) { range in
                            var proj = [Float](repeating: 0, count: l * bits)
                            for p in range {
                                let b = p / nHeads, h = p % nHeads
                                let qb = qp.baseAddress! + b * l * hd + h * e
                                // proj (L × bits) = Q A[:, :E]ᵀ
                                proj.withUnsafeMutableBufferPointer {
                                    BLAS.gemm(transB: true, m: l, n: bits, k: e, a: qb, lda: hd, b: ap.baseAddress!, ldb: e + 1,
                                              c: $0.baseAddress!, ldc: bits)
                                }
                                var hashes = [UInt64](repeating: 0, count: l)
                                for i in 0..<l {
                                    var hsh: UInt64 = 0
                                    for bit in 0..<bits where proj[i * bits + bit] > ap[bit * (e + 1) + e] { hsh |= 1 << UInt64(bit) }
                                    hashes[i] = hsh
                                }
                                var rng = SeededGenerator(seed: reseed[p])
                                let grouping = Self.hammingKMeans(hashes, start: start, iterations: iterations, bits: bits, rng: &rng)
                                // Q_c = Σ_members q · (1/count)
                                let cb = cp.baseAddress! + p * c * e
                                for i in 0..<l {
                                    let k = grouping.assignment[i], f = 1 / Float(grouping.counts[k])
                                    for j in 0..<e { cb[k * e + j] += qb[i * hd + j] * f }
                                }
                                gp[p] = grouping
                            }
                        }
                    }
                }
            }
        }
        return (groups.map { $0! }, cent)
    }

    /// k-means in Hamming space (cluster_cpu.cpp): iterations−1 rounds of assign + majority
    /// update, then a final assignment. Ties go to the lowest centroid; bit ties to 0.
    static func hammingKMeans(_ hashes: [UInt64], start: [Int], iterations: Int, bits: Int,
                              rng: inout SeededGenerator) -> Grouping {
        var centroids = start.map { hashes[$0] }
        let k = centroids.count
        var assign = [Int](repeating: 0, count: hashes.count)
        func assignAll() {
            for (i, hsh) in hashes.enumerated() {
                var best = Int.max, arg = 0
                for (j, c) in centroids.enumerated() {
                    let d = (hsh ^ c).nonzeroBitCount
                    if d < best { best = d; arg = j }
                }
                assign[i] = arg
            }
        }
        let mask: UInt64 = bits == 64 ? .max : (1 << UInt64(bits)) - 1
        for _ in 1..<max(iterations, 1) {
            assignAll()
            var votes = [Int](repeating: 0, count: k * bits), members = [Int](repeating: 0, count: k)
            for (i, hsh) in hashes.enumerated() {
                let c = assign[i]
                members[c] += 1
                for b in 0..<bits { votes[c * bits + b] += (hsh >> UInt64(b)) & 1 == 1 ? 1 : -1 }
            }
            for c in 0..<k {
                if members[c] == 0 { centroids[c] = rng.next() & mask; continue }
                var v: UInt64 = 0
                for b in 0..<bits where votes[c * bits + b] > 0 { v |= 1 << UInt64(b) }
                centroids[c] = v
            }
        }
        assignAll()
        var counts = [Int](repeating: 0, count: k)
        for a in assign { counts[a] += 1 }
        return Grouping(assignment: assign, counts: counts)
    }

    /// Top-k key indices of one score row (largest first; ties to the lower index).
    static func topIndices(_ s: [Float], _ k: Int) -> [Int] {
        Array(s.indices.sorted { s[$0] > s[$1] || (s[$0] == s[$1] && $0 < $1) }.prefix(k))
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        let (n, l) = (x.shape[0], x.shape[1])
        let q = try queryProjection(x), k = try keyProjection(x), v = try valueProjection(x)   // N, L, H·E|D
        let (groups, cent) = group(q, n: n, l: l)
        let (e, dv, c, hd, hv) = (dKeys, dValues, clusterCount(l), nHeads * dKeys, nHeads * dValues)
        var vc = Tensor(uninitialized: [n, nHeads, c, dv])          // N, H, C, D: A_c V per centroid
        cent.withUnsafeBufferPointer { cp in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    vc.withUnsafeMutableBufferPointer { op in
                        DenseAttention.forward(batch: n, heads: nHeads, lq: c, lk: l, d: e, dv: dv,
                                               q: .init(base: cp.baseAddress!, ld: e, batchStride: nHeads * c * e, headStride: c * e),
                                               k: .init(base: kp.baseAddress!, ld: hd, batchStride: l * hd, headStride: e),
                                               v: .init(base: vp.baseAddress!, ld: hv, batchStride: l * hv, headStride: dv),
                                               out: op.baseAddress!, outLd: dv, outBatchStride: nHeads * c * dv, outHeadStride: c * dv,
                                               scale: temp)
                    }
                }
            }
        }
        var out = Tensor(uninitialized: [n, l, hv])                  // N, L, H·D
        if !improved {
            vc.withUnsafeBufferPointer { cp in
                out.withUnsafeMutableBufferPointer { op in
                    for p in 0..<(n * nHeads) {
                        let b = p / nHeads, h = p % nHeads
                        for i in 0..<l {
                            (op.baseAddress! + (b * l + i) * hv + h * dv)
                                .update(from: cp.baseAddress! + (p * c + groups[p].assignment[i]) * dv, count: dv)
                        }
                    }
                }
            }
            return try outProjection(out)                             // N, L, d_model
        }
        // Improved: per cluster its softmax row, top-k keys and bottom mass; per member the
        // exact weights on the top-k keys.
        let kk = min(topk, l)
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    cent.withUnsafeBufferPointer { cp in
                        out.withUnsafeMutableBufferPointer { op in
                            Threads.parallelFor(n * nHeads) { range in
                                for p in range {
                                    let b = p / nHeads, h = p % nHeads
                                    let kb = kp.baseAddress! + b * l * hd + h * e, vb = vp.baseAddress! + b * l * hv + h * dv
                                    let qb = qp.baseAddress! + b * l * hd + h * e
                                    for cl in 0..<c where groups[p].counts[cl] > 0 {
                                        let cq = cp.baseAddress! + (p * c + cl) * e
                                        let row = rowWeights(cq, kb, l: l)
                                        let top = Self.topIndices(row.dots, kk)
                                        var bottom = row.probs
                                        for j in top { bottom[j] = 0 }
                                        let mass = bottom.reduce(0, +)
                                        var vBottom = [Float](repeating: 0, count: dv)
                                        for j in 0..<l where bottom[j] != 0 { for t in 0..<dv { vBottom[t] += bottom[j] * vb[j * hv + t] } }
                                        for i in 0..<l where groups[p].assignment[i] == cl {
                                            let w = memberWeights(qb + i * hd, kb, top: top, mass: mass)
                                            let o = op.baseAddress! + (b * l + i) * hv + h * dv
                                            for t in 0..<dv { o[t] = vBottom[t] }
                                            for (jj, j) in top.enumerated() { for t in 0..<dv { o[t] += w[jj] * vb[j * hv + t] } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return try outProjection(out)                                 // N, L, d_model
    }

    /// A centroid's raw dot products with every key and its softmax row (DenseAttention.weights).
    func rowWeights(_ cq: UnsafePointer<Float>, _ kb: UnsafePointer<Float>, l: Int) -> (dots: [Float], probs: [Float]) {
        let hd = nHeads * dKeys
        var dots = [Float](repeating: 0, count: l)
        dots.withUnsafeMutableBufferPointer {
            BLAS.gemm(transB: true, m: 1, n: l, k: dKeys, a: cq, lda: dKeys, b: kb, ldb: hd, c: $0.baseAddress!, ldc: l)
        }
        let probs = DenseAttention.weights(query: cq, keys: kb, ldk: hd, lk: l, d: dKeys, scale: temp)
        return (dots, probs)
    }

    /// Improved: query i's softmax over the top-k keys, scaled by 1 − bottom mass.
    func memberWeights(_ qi: UnsafePointer<Float>, _ kb: UnsafePointer<Float>, top: [Int], mass: Float) -> [Float] {
        let hd = nHeads * dKeys
        var s = top.map { j -> Float in
            var acc: Float = 0
            for t in 0..<dKeys { acc += qi[t] * kb[j * hd + t] }
            return temp * acc
        }
        let mx = s.max() ?? 0
        var z: Float = 0
        for j in s.indices { s[j] = Foundation.exp(s[j] - mx); z += s[j] }
        return s.map { $0 / z * (1 - mass) }
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try check(x)
        let (n, l) = (x.shape[0], x.shape[1])
        guard query.row == 0, (0..<l).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(query.column) is outside 0..<\(l)")
        }
        if let h = query.head, !(0..<nHeads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(nHeads)")
        }
        let q = try queryProjection(x), k = try keyProjection(x)
        let (groups, cent) = group(q, n: n, l: l)                     // the whole batch, as forward draws
        let i = query.column, hd = nHeads * dKeys
        let chosen = query.head.map { [$0] } ?? Array(0..<nHeads)
        var row = [Float](repeating: 0, count: l)
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                cent.withUnsafeBufferPointer { cp in
                    for h in chosen {
                        let cl = groups[h].assignment[i]
                        let kb = kp.baseAddress! + h * dKeys
                        let r = rowWeights(cp.baseAddress! + (h * clusterCount(l) + cl) * dKeys, kb, l: l)
                        var w = r.probs
                        if improved {
                            let top = Self.topIndices(r.dots, min(topk, l))
                            for j in top { w[j] = 0 }
                            let mass = w.reduce(0, +)
                            let m = memberWeights(qp.baseAddress! + i * hd + h * dKeys, kb, top: top, mass: mass)
                            for (jj, j) in top.enumerated() { w[j] = m[jj] }
                        }
                        for j in 0..<l { row[j] += w[j] / Float(chosen.count) }
                    }
                }
            }
        }
        let label = (improved ? "improved clusters" : "query clusters") + (query.head.map { " (head \($0))" } ?? (nHeads == 1 ? "" : " (mean of \(nHeads) heads)"))
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: row), labels: [label])
    }
}
