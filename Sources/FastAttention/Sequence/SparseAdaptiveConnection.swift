// SAC: Accelerating and Structuring Self-Attention via Sparse Adaptive Connection.
// Li, Meng, Zhou, Han, Wu, Li, NeurIPS 2020. https://arxiv.org/abs/2003.09833
// No public code exists: the reference is a PyTorch module written from the paper for this
// package (Tools/reference/sac.py, `SACAttention`), which the fixtures come from.

import CKernels
import Foundation
import TensorCore

/// Sparse Adaptive Connection: the sequence is a graph whose edges an LSTM edge predictor
/// chooses, k per node, and self-attention runs over the chosen edges only.
///
/// As written from the paper (Tools/reference/sac.py):
///   h = LSTM(x) (the edge predictor reads the nodes in order);
///   for node i and candidate j: s_ij = (W_s h_i)·(W_t x_j + D[bucket(j − i)]) / √edge_dim, the
///   paper's pointer score with its distance encoding (T5-style signed log buckets, 32 up to 128);
///   candidates of i: the 2·window + 1 positions around i (with `causal`, the window to the left
///   and i) and `num_random` random positions (uniform over the sequence, or over 0…i when
///   causal), out-of-range and repeated ones dropped; the k = num_edges best become i's edges;
///   per head softmax over the edges of q_i·k_j / √d_head, out_i = Σ w_ij v_j, then `to_out`.
///
/// - Input N×L×dim, output N×L×dim. Edges are shared by the heads; a node attends to itself only
///   if the predictor chose it.
/// - The candidate pool keeps the predictor linear: the paper's pointer network scores every node
///   at every step (O(α·N²)); here each node scores 2·window + 1 + num_random candidates, so the
///   whole module is O(N·(c·edge_dim + k·dim)) — never N×N. The LSTM recurrence is sequential in
///   L (vectorised across the hidden units, one thread per sequence: at N = 1 it is the part a
///   second thread cannot help, ~20% of the forward at 4096 tokens); pools, scores, top-k and the
///   attention run in parallel over nodes.
/// - Edges are injectable: `forward(_:edges:)` attends over given edges (N×L×k positions, −1 for
///   none) — the paper samples edges in training (REINFORCE); `predictEdges` gives the inference
///   choice (top-k). The random candidates are the buffer `random_candidates` (L×num_random, L the
///   length the module was built for) when a checkpoint has it, else a seeded draw per length.
/// - Map (per-query, 2×1×L): (0) the attention weights on the query's selected edges (mean over
///   heads, or one head), zero elsewhere; (1) the edge predictor's softmax over the query's
///   candidate pool (what it chose from).
/// - `causal`: the LSTM reads left to right and every candidate is ≤ i, so outputs ≤ i ignore
///   later inputs.
///
/// Keys (of the reference module): `edge_predictor.lstm.{weight_ih_l0, weight_hh_l0, bias_ih_l0,
/// bias_hh_l0}` (nn.LSTM, gates i f g o), `edge_predictor.source.weight` (edge_dim×hidden_dim),
/// `edge_predictor.target.weight` (edge_dim×dim), `edge_predictor.distance.weight` (32×edge_dim),
/// `to_q/to_k/to_v.weight` (no bias), `to_out.weight`, `to_out.bias`; optional buffer
/// `random_candidates`. Untrained: PyTorch defaults (distance embedding N(0, 1)) with W_k = W_q.
public final class SparseAdaptiveConnection: AttentionModule {
    public static let info = ModuleInfo(
        id: "sac", title: "SAC: Accelerating and Structuring Self-Attention via Sparse Adaptive Connection",
        arxiv: "2003.09833", year: 2020, complexity: "O(N k D)", complexityExponent: 1, kind: .sequence, causal: true,
        reference: "SACAttention written from the paper (Tools/reference/sac.py; no public code)",
        mapKind: .perQuery,
        mapDescription: "(0) attention weights on the query's k predicted edges; (1) the LSTM edge predictor's softmax over the query's candidates (window + random positions)",
        notes: ["no public code: reference written from the paper (LSTM pointer edge predictor with distance encoding, attention over the predicted edges)",
                "each node scores 2·window+1 local + num_random random candidates (random_candidates buffer or seeded draw), keeping the cost O(N·k·D) instead of the paper's all-node pointer",
                "inference takes the top num_edges candidates; edges can be injected (forward(_:edges:)) as the paper's sampled edges",
                "causal: LSTM left to right, candidates <= i"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("heads", .int(1...1024), default: .int(2), "attention heads (dim must divide by it)"),
        ConfigKey("num_edges", .int(1...4096), default: .int(8), "k: edges chosen per node"),
        ConfigKey("window", .int(0...4096), default: .int(2), "local candidates on each side (left only when causal)"),
        ConfigKey("num_random", .int(0...4096), default: .int(16), "random candidates per node"),
        ConfigKey("hidden_dim", .int(1...65536), default: .none, "LSTM width (default dim)"),
        ConfigKey("edge_dim", .int(1...65536), default: .none, "pointer score width (default dim)"),
        ConfigKey("causal", .bool, default: .bool(false), "candidates j <= i only"),
    ]

    public let config: Config
    let dim: Int, heads: Int, numEdges: Int, window: Int, numRandom: Int, hidden: Int, edgeDim: Int, causal: Bool
    let lstm: SACLSTM
    let source: Linear, target: Linear
    let distance: Tensor                 // 32, edge_dim
    let toQ: Linear, toK: Linear, toV: Linear, toOut: Linear
    let randomCandidates: (length: Int, values: [Int32])?
    let drawSeed: UInt64

    public var expectedInput: String { "N×L×\(dim)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×C tokens", found: inputShape)
        }
        try config.resolveChannels("dim", from: inputShape[2])
        self.config = config
        dim = config.int("dim")
        heads = config.int("heads")
        guard dim % heads == 0 else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "dim=\(dim) must be divisible by heads=\(heads)")
        }
        numEdges = config.int("num_edges")
        window = config.int("window")
        let numRandom = config.int("num_random")
        self.numRandom = numRandom
        hidden = config.optionalInt("hidden_dim") ?? dim
        edgeDim = config.optionalInt("edge_dim") ?? dim
        causal = config.bool("causal")
        let e = p.scoped("edge_predictor")
        lstm = SACLSTM(e.scoped("lstm"), input: dim, hidden: hidden)
        source = Linear(e.scoped("source"), inFeatures: hidden, outFeatures: edgeDim, bias: false)
        target = Linear(e.scoped("target"), inFeatures: dim, outFeatures: edgeDim, bias: false)
        distance = e.scoped("distance").parameter("weight", shape: [32, edgeDim], initializer: .normal(std: 1))
        let q = Linear(p.scoped("to_q"), inFeatures: dim, outFeatures: dim, bias: false)
        var k = Linear(p.scoped("to_k"), inFeatures: dim, outFeatures: dim, bias: false)
        if !p.isLoading { k.weight = q.weight }                 // similarity initialisation
        (toQ, toK) = (q, k)
        toV = Linear(p.scoped("to_v"), inFeatures: dim, outFeatures: dim, bias: false)
        toOut = Linear(p.scoped("to_out"), inFeatures: dim, outFeatures: dim)
        let l = inputShape[1]
        if numRandom > 0, let t = p.optionalBuffer("random_candidates", shape: [l, numRandom]) {
            let v = t.scalars.map { Int32($0) }
            let causal = self.causal
            guard v.enumerated().allSatisfy({ $0.element >= 0 && Int($0.element) < (causal ? $0.offset / numRandom + 1 : l) }) else {
                throw ConfigError.inconsistent(module: Self.info.id, message: "random_candidates holds positions outside the sequence (or after the node, with causal)")
            }
            randomCandidates = (l, v)
        } else {
            randomCandidates = nil
        }
        drawSeed = p.withGenerator { $0.next() }
    }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] > 0, x.shape[2] == dim else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
    }

    /// The random candidates for length L (L×num_random): the loaded buffer or a seeded draw.
    func randomPool(length l: Int) throws -> [Int32] {
        if let r = randomCandidates {
            guard r.length == l else {
                throw ModuleError.unsupported(module: Self.info.id,
                    message: "the loaded random_candidates are for L=\(r.length); the input has L=\(l)")
            }
            return r.values
        }
        var g = SeededGenerator(seed: drawSeed ^ UInt64(l))
        return (0..<l * numRandom).map { e in Int32(g.nextInt(below: causal ? e / numRandom + 1 : l)) }
    }

    /// Node i's candidates in the reference's order (window, then random), valid ones only.
    func candidates(of i: Int, length l: Int, random: [Int32]) -> [Int] {
        var buffer = [Int32](repeating: 0, count: poolWidth)
        let count = buffer.withUnsafeMutableBufferPointer { candidates(of: i, length: l, random: random, into: $0.baseAddress!) }
        return buffer.prefix(count).map { Int($0) }
    }

    /// The most candidates a node can have: 2·window + 1 (window + 1 when causal) + num_random.
    var poolWidth: Int { (causal ? window + 1 : 2 * window + 1) + numRandom }

    /// Node i's candidates written to `out` (room for `poolWidth`); returns how many.
    func candidates(of i: Int, length l: Int, random: [Int32], into out: UnsafeMutablePointer<Int32>) -> Int {
        var count = 0
        func add(_ j: Int) {
            for u in 0..<count where Int(out[u]) == j { return }
            out[count] = Int32(j)
            count += 1
        }
        for o in -window...(causal ? 0 : window) {
            let j = i + o
            if j >= 0 && j < l { add(j) }
        }
        for r in 0..<numRandom {
            let j = Int(random[i * numRandom + r])
            if j >= 0 && j < l && (!causal || j <= i) { add(j) }
        }
        return count
    }

    /// The signed log bucket of j − i (T5 bidirectional: 16 per sign, 8 exact, up to 128).
    static func bucket(_ rel: Int) -> Int {
        let n = abs(rel), base = rel > 0 ? 16 : 0
        return base + (n < 128 ? magnitudeBuckets[n] : 15)
    }

    /// bucket(n) for 0 ≤ n < 128 without the sign (15 from 128 on).
    static let magnitudeBuckets: [Int] = (0..<128).map { n in
        n < 8 ? n : min(8 + Int(Foundation.log(Double(n) / 8) / Foundation.log(16.0) * 8), 15)
    }

    /// The edge predictor's choice: N×L×k positions (−1 where a node has fewer than k candidates)
    /// and, per node, its candidates and scores (for the map). The candidate pools (shared by the
    /// batch) and then the nodes' scores and top-k run in parallel over nodes (CKernels
    /// `fa_sac_scores` for the dot products).
    func predict(_ x: Tensor, keepPools: Bool = false) throws -> (edges: Tensor, pools: [[Int]], scores: [[Float]]) {
        let (n, l) = (x.shape[0], x.shape[1]), k = numEdges, width = poolWidth, e = edgeDim
        let random = try randomPool(length: l)
        let src = try source(lstm(x)), tgt = try target(x)                  // N, L, E each
        var edges = [Float](repeating: -1, count: n * l * k)
        var pool = [Int32](repeating: 0, count: l * width), bucket = [Int32](repeating: 0, count: l * width)
        var counts = [Int](repeating: 0, count: l)
        var all = [Float](repeating: 0, count: n * l * width)
        pool.withUnsafeMutableBufferPointer { pp in
            bucket.withUnsafeMutableBufferPointer { bp in
                counts.withUnsafeMutableBufferPointer { cp in
                    let (pBase, bBase, cBase) = (pp.baseAddress!, bp.baseAddress!, cp.baseAddress!)
                    Threads.parallelFor(l, minChunk: 256) { range in
                        for i in range {
                            let count = candidates(of: i, length: l, random: random, into: pBase + i * width)
                            cBase[i] = count
                            for c in 0..<count { bBase[i * width + c] = Int32(Self.bucket(Int(pBase[i * width + c]) - i)) }
                        }
                    }
                }
            }
        }
        let scale = 1 / Float(e).squareRoot()
        src.withUnsafeBufferPointer { sp in
            tgt.withUnsafeBufferPointer { tp in
                distance.withUnsafeBufferPointer { dp in
                    pool.withUnsafeBufferPointer { pp in
                        bucket.withUnsafeBufferPointer { bp in
                            edges.withUnsafeMutableBufferPointer { ep in
                                all.withUnsafeMutableBufferPointer { ap in
                                    let (eBase, aBase) = (ep.baseAddress!, ap.baseAddress!)
                                    Threads.parallelFor(n * l, minChunk: 64) { range in
                                        let top = UnsafeMutablePointer<Int>.allocate(capacity: k)
                                        defer { top.deallocate() }
                                        for node in range {
                                            let (b, i) = (node / l, node % l), count = counts[i]
                                            let s = aBase + node * width
                                            fa_sac_scores(sp.baseAddress! + node * e, tp.baseAddress! + b * l * e, dp.baseAddress!, e,
                                                          pp.baseAddress! + i * width, bp.baseAddress! + i * width, count, scale, s)
                                            // The k best, highest first, ties to the earlier candidate.
                                            var kept = 0
                                            for c in 0..<count {
                                                var at = kept
                                                while at > 0 && s[c] > s[top[at - 1]] { at -= 1 }
                                                guard at < k else { continue }
                                                var u = min(kept, k - 1)
                                                while u > at { top[u] = top[u - 1]; u -= 1 }
                                                top[at] = c
                                                kept = min(kept + 1, k)
                                            }
                                            for r in 0..<kept { eBase[node * k + r] = Float(pp[i * width + top[r]]) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let pools = keepPools ? (0..<n * l).map { node in pool[(node % l) * width..<(node % l) * width + counts[node % l]].map { Int($0) } } : []
        let scores = keepPools ? (0..<n * l).map { node in Array(all[node * width..<node * width + counts[node % l]]) } : []
        return (Tensor(shape: [n, l, k], scalars: edges), pools, scores)
    }

    /// The predicted edges N×L×num_edges (positions, −1 for none).
    public func predictEdges(_ x: Tensor) throws -> Tensor {
        try check(x)
        return try predict(x).edges
    }

    /// Attention over given edges (N×L×k positions, −1 for none), e.g. sampled ones.
    public func forward(_ x: Tensor, edges: Tensor) throws -> Tensor {
        try check(x)
        let (n, l) = (x.shape[0], x.shape[1])
        guard edges.rank == 3, edges.shape[0] == n, edges.shape[1] == l,
              edges.scalars.allSatisfy({ $0 == -1 || ($0 >= 0 && $0 < Float(l)) }) else {
            throw ModuleError.badInput(module: Self.info.id, expected: "edges \(n)×\(l)×k of positions in 0..<\(l) or -1", found: edges.shape)
        }
        return try toOut(try attend(x, edges: edges).out)
    }

    /// Per node and head, softmax over the node's edges; the context N×L×dim and the weights
    /// (N·L·H rows of k).
    func attend(_ x: Tensor, edges: Tensor) throws -> (out: Tensor, weights: [Float]) {
        let (n, l) = (x.shape[0], x.shape[1]), k = edges.shape[2], (h, dh) = (heads, dim / heads)
        let q = try toQ(x), kk = try toK(x), v = try toV(x)                // N, L, dim each
        let scale = 1 / Float(dh).squareRoot()
        var out = Tensor(zeros: [n, l, dim])
        var weights = [Float](repeating: 0, count: n * l * h * k)
        q.withUnsafeBufferPointer { qp in
            kk.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    edges.withUnsafeBufferPointer { ep in
                        out.withUnsafeMutableBufferPointer { op in
                            weights.withUnsafeMutableBufferPointer { wp in
                                let (oBase, wBase) = (op.baseAddress!, wp.baseAddress!)
                                Threads.parallelFor(n * l, minChunk: 16) { range in
                                    for node in range {
                                        let b = node / l
                                        for hh in 0..<h {
                                            let qi = qp.baseAddress! + node * dim + hh * dh
                                            let w = wBase + (node * h + hh) * k
                                            var mx = -Float.infinity
                                            for r in 0..<k {
                                                let j = Int(ep[node * k + r])
                                                guard j >= 0 else { w[r] = -.infinity; continue }
                                                let kj = kp.baseAddress! + (b * l + j) * dim + hh * dh
                                                var s: Float = 0
                                                for c in 0..<dh { s += qi[c] * kj[c] }
                                                w[r] = s * scale
                                                mx = max(mx, w[r])
                                            }
                                            guard mx > -.infinity else { for r in 0..<k { w[r] = 0 }; continue }
                                            var z: Float = 0
                                            for r in 0..<k { w[r] = w[r] == -.infinity ? 0 : Foundation.exp(w[r] - mx); z += w[r] }
                                            let o = oBase + node * dim + hh * dh
                                            for r in 0..<k where w[r] > 0 {
                                                w[r] /= z
                                                let vj = vp.baseAddress! + (b * l + Int(ep[node * k + r])) * dim + hh * dh
                                                for c in 0..<dh { o[c] += w[r] * vj[c] }
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
        return (out, weights)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        return try toOut(try attend(x, edges: try predict(x).edges).out)
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try check(x)
        let l = x.shape[1]
        let i = try KernelizedAttention.checkQuery(query, length: l, heads: heads, module: Self.info.id)
        let x0 = x.batchItem(0)
        let (edges, pools, scores) = try predict(x0, keepPools: true)
        let (_, weights) = try attend(x0, edges: edges)
        let k = numEdges, hs = query.head.map { [$0] } ?? Array(0..<heads)
        var row = [Float](repeating: 0, count: 2 * l)
        let e = edges.scalars
        for hh in hs {
            for r in 0..<k where e[i * k + r] >= 0 {
                row[Int(e[i * k + r])] += weights[(i * heads + hh) * k + r] / Float(hs.count)
            }
        }
        let s = scores[i], mx = s.max() ?? 0
        let ex = s.map { Foundation.exp($0 - mx) }, z = ex.reduce(0, +)
        for (c, j) in pools[i].enumerated() { row[l + j] += ex[c] / z }
        let who = query.head.map { "head \($0)" } ?? (heads == 1 ? "1 head" : "mean of \(heads) heads")
        let chosen = (0..<k).filter { e[i * k + $0] >= 0 }.count
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [2, 1, l], scalars: row),
                            labels: ["node \(i): attention on its \(chosen) predicted edges, \(who)",
                                     "edge predictor: softmax over its \(pools[i].count) candidates"])
    }
}

/// torch.nn.LSTM(input, hidden, batch_first=True), one layer, one direction: keys `weight_ih_l0`
/// (4h×input), `weight_hh_l0` (4h×h), `bias_ih_l0`, `bias_hh_l0` (gates i, f, g, o);
/// untrained U(±1/√h) as torch.
struct SACLSTM {
    let hidden: Int
    let weightIH: Tensor, weightHH: Tensor, biasIH: Tensor, biasHH: Tensor

    init(_ p: Parameters, input: Int, hidden: Int) {
        self.hidden = hidden
        let u = Initializer.pytorchDefault(fanIn: hidden)
        weightIH = p.parameter("weight_ih_l0", shape: [4 * hidden, input], initializer: u)
        weightHH = p.parameter("weight_hh_l0", shape: [4 * hidden, hidden], initializer: u)
        biasIH = p.parameter("bias_ih_l0", shape: [4 * hidden], initializer: u)
        biasHH = p.parameter("bias_hh_l0", shape: [4 * hidden], initializer: u)
    }

    /// x: N×L×input → hidden states N×L×hidden, from zero state. The input part is one GEMM over
    /// all steps; the recurrence (W_hh·h and the gates) is sequential per sequence, vectorised in
    /// CKernels `fa_lstm_forward`; sequences run in parallel.
    func callAsFunction(_ x: Tensor) -> Tensor {
        let (n, l) = (x.shape[0], x.shape[1]), hd = hidden
        let pre = x.matmul(weightIH, transposeOther: true) + (biasIH + biasHH)  // N, L, 4h (input part, both biases)
        let whhT = weightHH.transposed()                                         // h, 4h
        var out = Tensor(uninitialized: [n, l, hd])
        pre.withUnsafeBufferPointer { pp in
            whhT.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in
                    let oBase = op.baseAddress!
                    Threads.parallelFor(n) { range in
                        let work = UnsafeMutablePointer<Float>.allocate(capacity: 8 * hd + 16)
                        defer { work.deallocate() }
                        for b in range {
                            fa_lstm_forward(pp.baseAddress! + b * l * 4 * hd, wp.baseAddress!, l, hd, oBase + b * l * hd, work)
                        }
                    }
                }
            }
        }
        return out
    }
}
