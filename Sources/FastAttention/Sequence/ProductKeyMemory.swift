// Large Memory Layers with Product Keys. Lample, Sablayrolles, Ranzato, Denoyer, Jégou,
// NeurIPS 2019. https://arxiv.org/abs/1907.05242
// Reference matched: pip product-key-memory 0.3.0 (lucidrains) `PKM`
// (product_key_memory/product_key_memory.py), read in full; the authors' minimal layer
// (facebookresearch/XLM `PKM-layer.ipynb` `HashingMemory`) was read through seq-a.md §5 for the
// differences listed below.

import Foundation
import TensorCore

/// Product-key memory: each token's query, split into two halves per head, is scored against
/// two sets of num_keys half-keys; the top-k of each half combine into k² candidate slots of the
/// num_keys² memory, of which the top k are read, gated by a softmax over their scores.
///
/// Matches `PKM(dim, heads, num_keys, topk, dim_head, use_layernorm=True, pre_layernorm,
/// concat_values_and_combine, norm_output, non_competitive_gates)` in eval mode, `forward(x)`:
///   q = LN_dh(to_queries(pre_LN(x))) split (p h d): half p, head h;
///   s_p[n] = q_{p,h}·keys[h, n, p] (unscaled); top-k of each half: (s_x, i_x), (s_y, i_y);
///   candidates s_x[a] + s_y[b] at slot i_x[a]·num_keys + i_y[b]; top-k of the k² → w = softmax
///   (ReLU with non_competitive_gates); out = Σ_heads Σ_k w·values[slot] (an EmbeddingBag sum).
///
/// - Input N×L×dim, output N×L×dim. A per-token layer: tokens never see each other (causal by
///   construction).
/// - Map (per-query, **not over positions**): the query token's weights on the memory-slot grid
///   num_keys×num_keys (slot a·num_keys + b at row a, column b), summed over heads as the output
///   sums them (or one head). Values are shared by heads, so a cell is one memory row. `attend
///   map` draws the grid stretched over the photo: the photo there is only a background.
/// - Cost per token O(H·(num_keys·dim_head + k² + k·dim)) — the paper's O(√|K|·d_q + k²·…) per
///   query instead of O(|K|·d_q); linear in tokens. Of the k² candidate pairs only those with
///   (a+1)(b+1) ≤ k can reach the top k (both halves are sorted), so only those ~k·ln k are
///   scored: the same selection as the reference's full k² top-k.
///
/// Quirks of the reference:
/// - Keys are not scaled and the queries get a LayerNorm over dim_head (weight/bias shared by all
///   heads and both halves); XLM instead uses a BatchNorm option and no norm by default.
/// - Heads are summed into one output (XLM too); query channels are laid out half-major (p h d).
/// - `concat_values_and_combine=True` reads an nn.Embedding **without the gate weights**: each head
///   sums its k selected dim_head rows unweighted, then `maybe_concat_combine.2` (Linear, no bias)
///   maps the concatenated heads to dim. Reproduced; the map then shows 1 per selected slot.
/// - `use_layernorm=False` applies BatchNorm1d(dim_head) to (B·2·H)×L×dim_head queries, i.e. over
///   the token axis (it only runs when L = dim_head): refused. `differentiable_topk` (CoLT5
///   coordinate descent) is refused. Gumbel noise is a forward argument, off by default.
/// - Ties in top-k are broken by index here; torch's order is unspecified (random floats do not tie).
///
/// Keys: `to_queries.weight` (2·heads·dim_head × dim, no bias), `norm.weight`, `norm.bias`
/// (dim_head), `keys` (heads × num_keys × 2 × dim_head), `values.weight` (num_keys² × dim, or ×
/// dim_head with concat), `maybe_concat_combine.2.weight` (dim × heads·dim_head, concat only),
/// `pre_layernorm.{weight,bias}`, `output_norm.{weight,bias}` (dim, when enabled). Untrained:
/// keys N(0, 1/dim_head), values N(0, 1/dim), as the reference's `init_`.
public final class ProductKeyMemory: AttentionModule {
    public static let info = ModuleInfo(
        id: "product-key-memory", title: "Large Memory Layers with Product Keys",
        arxiv: "1907.05242", year: 2019, complexity: "O(Q (K + k^2) D)", complexityExponent: 1,
        kind: .sequence, causal: true,
        reference: "product_key_memory.PKM (pip product-key-memory 0.3.0)",
        mapKind: .perQuery,
        mapDescription: "not over positions: the query token's gate weights on the num_keys×num_keys memory-slot grid (slot a·num_keys+b at row a, column b), summed over heads",
        notes: ["per-token layer: no token attends to another (causal by construction)",
                "keys unscaled; queries LayerNorm-ed over dim_head, split half-major (p h d); heads summed",
                "concat_values_and_combine: the selected values are summed WITHOUT gate weights (reference quirk), then a Linear combines heads",
                "use_layernorm=false (BatchNorm over the token axis) and differentiable_topk are not supported",
                "the map is a memory-slot grid; attend map stretches it over the photo as a background"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("heads", .int(1...256), default: .int(4), "query heads (their reads are summed)"),
        ConfigKey("num_keys", .int(1...4096), default: .int(128), "half-keys per half: the memory has num_keys² slots"),
        ConfigKey("topk", .int(1...4096), default: .int(32), "k: half-keys kept per half and slots read per head"),
        ConfigKey("dim_head", .int(1...4096), default: .int(128), "width of each query half"),
        ConfigKey("input_dropout", .float(0...1), default: .float(0), "inactive in eval"),
        ConfigKey("query_dropout", .float(0...1), default: .float(0), "inactive in eval"),
        ConfigKey("value_dropout", .float(0...1), default: .float(0), "inactive in eval"),
        ConfigKey("attn_dropout", .float(0...1), default: .float(0), "inactive in eval"),
        ConfigKey("use_layernorm", .bool, default: .bool(true), "LayerNorm on the queries (false: BatchNorm, unsupported)"),
        ConfigKey("pre_layernorm", .bool, default: .bool(false), "LayerNorm(dim) on the input first"),
        ConfigKey("differentiable_topk", .bool, default: .bool(false), "CoLT5 coordinate-descent top-k (unsupported)"),
        ConfigKey("concat_values_and_combine", .bool, default: .bool(false), "per-head dim_head values, concatenated and combined by a Linear"),
        ConfigKey("norm_output", .bool, default: .bool(false), "LayerNorm(dim) on the output"),
        ConfigKey("non_competitive_gates", .bool, default: .bool(false), "ReLU gates instead of the softmax"),
    ]

    public let config: Config
    let dim: Int, heads: Int, numKeys: Int, topk: Int, dimHead: Int
    let concat: Bool, relu: Bool
    let toQueries: Linear
    let preLayernorm: LayerNorm?, norm: LayerNorm, outputNorm: LayerNorm?
    let keys: Tensor                // heads, num_keys, 2, dim_head
    let values: Tensor              // num_keys², dim (or dim_head with concat)
    let combine: Linear?

    public var expectedInput: String { "N×L×\(dim)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        dim = try config.resolveTokenChannels("dim", inputShape: inputShape)
        self.config = config
        heads = config.int("heads")
        numKeys = config.int("num_keys")
        topk = config.int("topk")
        dimHead = config.int("dim_head")
        concat = config.bool("concat_values_and_combine")
        relu = config.bool("non_competitive_gates")
        let id = Self.info.id
        guard topk <= numKeys else {
            throw ConfigError.inconsistent(module: id, message: "topk=\(topk) exceeds num_keys=\(numKeys)")
        }
        guard config.bool("use_layernorm") else {
            throw ModuleError.unsupported(module: id, message: "use_layernorm=false applies BatchNorm1d over the token axis in the reference (it runs only when L = dim_head); not supported")
        }
        guard !config.bool("differentiable_topk") else {
            throw ModuleError.unsupported(module: id, message: "differentiable_topk (CoLT5 coordinate descent) is not supported")
        }
        toQueries = Linear(p.scoped("to_queries"), inFeatures: dim, outFeatures: 2 * heads * dimHead, bias: false)
        preLayernorm = config.bool("pre_layernorm") ? LayerNorm(p.scoped("pre_layernorm"), normalizedShape: dim) : nil
        norm = LayerNorm(p.scoped("norm"), normalizedShape: dimHead)
        keys = p.parameter("keys", shape: [heads, numKeys, 2, dimHead],
                           initializer: .normal(std: 1 / Float(dimHead).squareRoot()))
        let width = concat ? dimHead : dim
        values = p.scoped("values").parameter("weight", shape: [numKeys * numKeys, width],
                                              initializer: .normal(std: 1 / Float(width).squareRoot()))
        combine = concat ? Linear(p.scoped("maybe_concat_combine").scoped("2"), inFeatures: dimHead * heads,
                                  outFeatures: dim, bias: false) : nil
        outputNorm = config.bool("norm_output") ? LayerNorm(p.scoped("output_norm"), normalizedShape: dim) : nil
    }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] > 0, x.shape[2] == dim else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
    }

    /// Normalised queries, T×(2·heads·dim_head) rows (half-major: half p, head h at (p·H + h)·dh).
    func queries(_ x: Tensor) throws -> Tensor {
        let t = x.count / dim
        let xin = try preLayernorm.map { try $0(x) } ?? x
        let q = try toQueries(xin).reshaped([t * 2 * heads, dimHead])    // T·2·H, dh
        return try norm(q).reshaped([t, 2 * heads * dimHead])              // T, 2·H·dh
    }

    /// For every token and head, the k memory slots read and their gate weights:
    /// T×H×k slots and weights (in top-k order, largest score first).
    func select(_ q: Tensor) -> (slots: [Int32], weights: [Float]) {
        let t = q.shape[0], (h, n, k, dh) = (heads, numKeys, topk, dimHead)
        var slots = [Int32](repeating: 0, count: t * h * k), weights = [Float](repeating: 0, count: t * h * k)
        let chunk = 64, chunks = (t + chunk - 1) / chunk
        q.withUnsafeBufferPointer { qp in
            keys.withUnsafeBufferPointer { kp in
                slots.withUnsafeMutableBufferPointer { sp in
                    weights.withUnsafeMutableBufferPointer { wp in
                        let (sBase, wBase) = (sp.baseAddress!, wp.baseAddress!)
                        Threads.parallelFor(chunks) { range in
                            var scores = [Float](repeating: 0, count: 2 * chunk * n)   // half, token, key
                            let (xSel, ySel, merged) = (TopK(k), TopK(k), TopK(k))
                            // Candidate (a, b) with sums s_x[a] + s_y[b]: the (a+1)(b+1) pairs
                            // a' ≤ a, b' ≤ b are at least as large (both halves sorted), so only
                            // pairs with (a+1)(b+1) ≤ k can be among the top k; the others are
                            // skipped (the reference scores all k²: same selection).
                            let pairs = (0..<k * k).filter { ($0 / k + 1) * ($0 % k + 1) <= k }
                            var cand = [Float](repeating: 0, count: pairs.count)
                            var gates = [Float](repeating: 0, count: k)
                            for c in range {
                                let t0 = c * chunk, rows = min(chunk, t - t0)
                                for hh in 0..<h {
                                    scores.withUnsafeMutableBufferPointer { s in
                                        for half in 0..<2 {
                                            // s_half (rows×n) = Q_{half,hh} (rows×dh) · keys[hh, :, half]ᵀ
                                            BLAS.gemm(transB: true, m: rows, n: n, k: dh,
                                                      a: qp.baseAddress! + t0 * 2 * h * dh + (half * h + hh) * dh, lda: 2 * h * dh,
                                                      b: kp.baseAddress! + hh * n * 2 * dh + half * dh, ldb: 2 * dh,
                                                      c: s.baseAddress! + half * chunk * n, ldc: n)
                                        }
                                    }
                                    for r in 0..<rows {
                                        scores.withUnsafeBufferPointer { s in
                                            _ = xSel.run(s.baseAddress! + r * n, n)
                                            _ = ySel.run(s.baseAddress! + (chunk + r) * n, n)
                                        }
                                        for (e, ab) in pairs.enumerated() { cand[e] = xSel.values[ab / k] + ySel.values[ab % k] }
                                        _ = cand.withUnsafeBufferPointer { merged.run($0.baseAddress!, pairs.count) }
                                        // Gates: softmax (or ReLU) of the k scores, largest first.
                                        let top = merged.values[0]
                                        var z: Float = 0
                                        for j in 0..<k {
                                            let v = merged.values[j]
                                            gates[j] = relu ? max(v, 0) : Foundation.exp(v - top)
                                            z += gates[j]
                                        }
                                        let o = ((t0 + r) * h + hh) * k
                                        for j in 0..<k {
                                            let ab = pairs[merged.indices[j]]
                                            (sBase + o + j).pointee = Int32(xSel.indices[ab / k] * n + ySel.indices[ab % k])
                                            (wBase + o + j).pointee = relu ? gates[j] : gates[j] / z
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return (slots, weights)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        let (n, l) = (x.shape[0], x.shape[1]), t = n * l, (h, k) = (heads, topk)
        let (slots, weights) = select(try queries(x))
        let width = concat ? dimHead : dim
        // out[t] = Σ_{h,k} w·values[slot] (EmbeddingBag sum); concat: per head Σ_k values[slot]
        // (no weights), heads side by side.
        var out = Tensor(zeros: concat ? [t, h * dimHead] : [t, dim])
        values.withUnsafeBufferPointer { vp in
            out.withUnsafeMutableBufferPointer { op in
                let oBase = op.baseAddress!
                Threads.parallelFor(t, minChunk: 16) { range in
                    for token in range {
                        for hh in 0..<h {
                            let row = concat ? oBase + (token * h + hh) * dimHead : oBase + token * dim
                            for j in 0..<k {
                                let e = (token * h + hh) * k + j
                                let w = concat ? 1 : weights[e], v = vp.baseAddress! + Int(slots[e]) * width
                                for c in 0..<width { row[c] += w * v[c] }
                            }
                        }
                    }
                }
            }
        }
        var y = try combine.map { try $0(out) } ?? out                      // T, dim
        if let outputNorm { y = try outputNorm(y) }
        return y.reshaped([n, l, dim])                                      // N, L, dim
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try check(x)
        let i = try KernelizedAttention.checkQuery(query, length: x.shape[1], heads: heads, module: Self.info.id)
        let token = x.batchItem(0).sliced(axis: 1, range: i..<(i + 1))       // 1, 1, dim
        let (slots, weights) = select(try queries(token))
        var grid = [Float](repeating: 0, count: numKeys * numKeys)
        for hh in query.head.map({ [$0] }) ?? Array(0..<heads) {
            for j in 0..<topk { grid[Int(slots[hh * topk + j])] += concat ? 1 : weights[hh * topk + j] }
        }
        let who = query.head.map { "head \($0)" } ?? "summed over \(heads) heads"
        let what = concat ? "selected slots (concat mode reads them unweighted)" : "gate weights"
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, numKeys, numKeys], scalars: grid),
                            labels: ["token \(i): \(what) on the \(numKeys)×\(numKeys) memory-slot grid (not positions), \(who)"])
    }
}

/// Top-k of a row: quickselect with a branch-free Lomuto partition on a scratch copy of
/// (value, index), then an insertion sort of the k kept; `values`/`indices` hold the result
/// largest first (ties: the smaller index first). One per worker: the storage is reused.
/// (A min-heap was the first version: its data-dependent branches made it 2× slower.)
private final class TopK {
    let k: Int
    let values: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int>
    private var sv: UnsafeMutablePointer<Float>, si: UnsafeMutablePointer<Int>
    private var capacity = 0

    init(_ k: Int) {
        self.k = k
        values = .allocate(capacity: k); indices = .allocate(capacity: k)
        sv = .allocate(capacity: 1); si = .allocate(capacity: 1)
        capacity = 1
    }

    deinit { values.deallocate(); indices.deallocate(); sv.deallocate(); si.deallocate() }

    /// a ranks before b: larger, or equal with a smaller index (a strict total order).
    @inline(__always) static func before(_ va: Float, _ ia: Int, _ vb: Float, _ ib: Int) -> Bool {
        va > vb || (va == vb && ia < ib)
    }

    /// The top min(k, n) of row[0..<n] into `values`/`indices`; returns how many.
    func run(_ row: UnsafePointer<Float>, _ n: Int) -> Int {
        if n > capacity {
            sv.deallocate(); si.deallocate()
            sv = .allocate(capacity: n); si = .allocate(capacity: n)
            capacity = n
        }
        for i in 0..<n { sv[i] = row[i]; si[i] = i }
        let m = min(k, n)
        var lo = 0, hi = n - 1
        while m < n && lo < hi {
            // Median of three as the pivot, moved to hi.
            let mid = (lo + hi) / 2
            if Self.before(sv[mid], si[mid], sv[lo], si[lo]) { swapAt(mid, lo) }
            if Self.before(sv[hi], si[hi], sv[lo], si[lo]) { swapAt(hi, lo) }
            if Self.before(sv[mid], si[mid], sv[hi], si[hi]) { swapAt(mid, hi) }
            let (pv, pi) = (sv[hi], si[hi])
            var store = lo
            for j in lo..<hi {
                // Branch-free: always swap j with store, advance store when j ranks before the pivot.
                let (vj, ij) = (sv[j], si[j])
                sv[j] = sv[store]; si[j] = si[store]
                sv[store] = vj; si[store] = ij
                store += Self.before(vj, ij, pv, pi) ? 1 : 0
            }
            swapAt(store, hi)
            if store == m - 1 || store == m { break }
            if store > m { hi = store - 1 } else { lo = store + 1 }
        }
        // Insertion sort of the m best.
        for i in 0..<m {
            let (v, ix) = (sv[i], si[i])
            var j = i
            while j > 0 && Self.before(v, ix, values[j - 1], indices[j - 1]) {
                values[j] = values[j - 1]; indices[j] = indices[j - 1]; j -= 1
            }
            values[j] = v; indices[j] = ix
        }
        return m
    }

    @inline(__always) private func swapAt(_ a: Int, _ b: Int) {
        let (v, i) = (sv[a], si[a])
        sv[a] = sv[b]; si[a] = si[b]
        sv[b] = v; si[b] = i
    }
}
