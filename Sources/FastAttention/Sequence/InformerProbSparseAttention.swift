// Informer: Beyond Efficient Transformer for Long Sequence Time-Series Forecasting (ProbSparse
// self-attention). Zhou, Zhang, Peng, Zhang, Li, Xiong, Zhang, AAAI 2021.
// https://arxiv.org/abs/2012.07436
// Reference matched: zhouhaoyi/Informer2020 `models/attn.py` (commit 29f2a73)
// `AttentionLayer(ProbAttention(...))` with `utils/masking.py` `ProbMask`, read in full.
// HF `InformerProbSparseAttention` samples differently (one key set for all queries) and is not
// matched.

import Foundation
import TensorCore

/// ProbSparse self-attention: only the u = factor·⌈ln L⌉ "active" queries with the largest
/// sparsity score get a softmax row; the other ("lazy") queries get a cheap fallback.
///
/// Matches `AttentionLayer(ProbAttention(mask_flag, factor, scale), d_model, n_heads, d_keys,
/// d_values, mix)` in eval mode, called as self-attention `layer(x, x, x, None)`:
///   q, k, v = x W_qᵀ + b_q, … split into heads (d_keys, d_values each);
///   per head, U = factor·⌈ln L⌉ sampled keys per query (`index_sample`, L×U, shared by every
///   batch item and head): M_i = max_s q_i·k_{idx[i,s]} − Σ_s q_i·k_{idx[i,s]} / L;
///   the top-u queries by M get softmax(q_i Kᵀ·scale) V (keys j ≤ i when `mask_flag`);
///   lazy queries get mean(V) (no mask) or cumsum(V) up to i (mask); y = context W_oᵀ + b_o.
///
/// - Input N×L×d_model (L ≥ 2), output N×L×d_model.
/// - Map (per-query, two maps 2×1×L): (0) the weights query i's output really uses — its softmax
///   row in the heads where it is active; in the heads where it is lazy the fallback: 1/L on
///   every position (mean of V) or, with `mask_flag`, weight 1 on every j ≤ i (the reference's
///   un-normalised cumsum); mean over heads unless a head is chosen. (1) ProbSparse's active
///   queries: the fraction of heads (or, for one head, 0/1) in which each position got full
///   attention. The label says in which heads query i is active.
/// - Cost O(L·U·d_keys + u·L·d_keys) = O(L ln L) per head; never L×L.
///
/// Quirks of the reference (reproduced):
/// - Key samples are `torch.randint(L, (L, U))` drawn on every call from the global RNG. Here
///   they come from the seed (a fixed draw per length) or from the buffer `index_sample` (int64
///   or float, L×U, L the length the module was built for) — how fixtures inject the
///   reference's draw (conventions.md). It is optional: a checkpoint without it loads.
/// - M divides the sampled sum by L (L_K), not by U, and uses unscaled dot products.
/// - u and U are capped at L (u = L: every query is active, i.e. full attention).
/// - With `mask_flag` (the constructor default; Informer's decoder), lazy queries get the
///   **un-normalised** cumsum of V, and the selection still reads the future, so the module is
///   not causal (Informer2020 futureleak 6.6); only the active rows are masked.
/// - `mix=True` (Informer's decoder) views the B×H×L×d_values context as B×L×(H·d_values),
///   scrambling heads and positions before `out_projection`; reproduced.
/// - L = 1 gives u = 0 and the reference fails (max over no samples): refused here.
///
/// Keys: `query_projection`, `key_projection`, `value_projection`, `out_projection`
/// (`.weight`, `.bias`: nn.Linear); optional buffer `index_sample`. Untrained, `key_projection`
/// starts equal to `query_projection` (similarity initialisation).
public final class InformerProbSparseAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "informer", title: "Informer: Beyond Efficient Transformer for Long Sequence Time-Series Forecasting (ProbSparse)",
        arxiv: "2012.07436", year: 2021, complexity: "O(N log(N) D)", complexityExponent: 1, kind: .sequence, causal: true,
        reference: "zhouhaoyi/Informer2020 models/attn.py AttentionLayer(ProbAttention) @ 29f2a73",
        mapKind: .perQuery,
        mapDescription: "(0) the weights query i's output uses: its softmax row where ProbSparse made it active, else the lazy fallback (1/L for mean(V); 1 on j <= i for the masked cumsum(V)); (1) the active queries (fraction of heads)",
        notes: ["u = U = factor·ceil(ln L) (capped at L) active queries / sampled keys per query",
                "key samples index_sample (L×U) are shared by batch items and heads; drawn from the seed per length, or loaded as the buffer index_sample",
                "M = max - sum/L over the sampled unscaled dot products",
                "mask_flag (default true, the decoder variant): active rows masked to j <= i, lazy rows the un-normalised cumsum of V; the query selection still reads the future (as in the reference), so outputs are strictly causal only when every query is active (u = L)",
                "mix=true views B×H×L×d context as B×L×(H·d) (the reference's decoder scramble)",
                "untrained: PyTorch-default random weights with key_projection = query_projection"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("d_model", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("n_heads", .int(1...1024), default: .int(8), "number of heads (Informer's default 8)"),
        ConfigKey("d_keys", .int(1...65536), default: .none, "query/key width per head (default d_model // n_heads)"),
        ConfigKey("d_values", .int(1...65536), default: .none, "value width per head (default d_model // n_heads)"),
        ConfigKey("mix", .bool, default: .bool(false), "view the B×H×L×d context as B×L×(H·d) before out_projection"),
        ConfigKey("mask_flag", .bool, default: .bool(true), "ProbMask on active rows and cumsum(V) for lazy rows"),
        ConfigKey("factor", .int(1...1024), default: .int(5), "c in u = c·ceil(ln L)"),
        ConfigKey("scale", .float(0...1e6), default: .none, "logit scale (default 1/sqrt(d_keys))"),
        ConfigKey("attention_dropout", .float(0...1), default: .float(0.1), "dropout on the softmax (inactive in eval)"),
        ConfigKey("output_attention", .bool, default: .bool(false), "accepted; the map is always available through attentionMap"),
    ]

    public let config: Config
    let dModel: Int, nHeads: Int, dKeys: Int, dValues: Int, mix: Bool, maskFlag: Bool, factor: Int, scale: Float
    let queryProjection: Linear, keyProjection: Linear, valueProjection: Linear, outProjection: Linear
    /// The loaded key samples (L×U row-major) and the L they were drawn for.
    let indexSample: (length: Int, indices: [Int32])?
    /// Seed of the per-length draw when no `index_sample` is loaded.
    let sampleSeed: UInt64

    public var expectedInput: String { "N×L×\(dModel) (L ≥ 2)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let layer = try AttentionLayerProjections(config: &config, inputShape: inputShape, parameters: p, module: Self.info.id)
        (dModel, nHeads, dKeys, dValues) = (layer.dModel, layer.nHeads, layer.dKeys, layer.dValues)
        (queryProjection, keyProjection) = (layer.query, layer.key)
        (valueProjection, outProjection) = (layer.value, layer.out)
        mix = config.bool("mix")
        maskFlag = config.bool("mask_flag")
        factor = config.int("factor")
        scale = config.isSet("scale") ? Float(config.float("scale")) : 1 / Float(dKeys).squareRoot()
        self.config = config
        let l = inputShape[1]
        if l >= 2, let t = p.optionalBuffer("index_sample", shape: [l, Self.counts(length: l, factor: factor).sampled]) {
            let idx = t.scalars.map { Int32($0) }
            guard idx.allSatisfy({ (0..<Int32(l)).contains($0) }) else {
                throw ConfigError.inconsistent(module: Self.info.id, message: "index_sample holds positions outside 0..<\(l)")
            }
            indexSample = (l, idx)
        } else {
            indexSample = nil
        }
        sampleSeed = p.withGenerator { $0.next() }
    }

    /// u (active queries) and U (sampled keys per query) for length L: factor·⌈ln L⌉, capped at L.
    static func counts(length l: Int, factor: Int) -> (active: Int, sampled: Int) {
        let c = min(factor * Int(Foundation.log(Double(l)).rounded(.up)), l)
        return (c, c)
    }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] >= 2, x.shape[2] == dModel else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
    }

    /// The key samples for length L, L×U row-major: the loaded buffer, or a seeded draw.
    func samples(length l: Int) throws -> [Int32] {
        let u = Self.counts(length: l, factor: factor).sampled
        if let s = indexSample {
            guard s.length == l else {
                throw ModuleError.unsupported(module: Self.info.id,
                    message: "the loaded index_sample is for L=\(s.length); the input has L=\(l) (build the module for L=\(l) or drop index_sample)")
            }
            return s.indices
        }
        var g = SeededGenerator(seed: sampleSeed ^ UInt64(l))
        return (0..<l * u).map { _ in Int32(g.nextInt(below: l)) }
    }

    func projections(_ x: Tensor) throws -> (q: Tensor, k: Tensor, v: Tensor) {
        (try queryProjection(x), try keyProjection(x), try valueProjection(x))    // N, L, H·d each
    }

    /// The active queries of every (batch, head), ascending: N·H rows of u positions. O(L·U·d).
    func activeQueries(q: Tensor, k: Tensor, samples idx: [Int32]) -> [[Int]] {
        let (n, l) = (q.shape[0], q.shape[1]), (u, us) = Self.counts(length: l, factor: factor)
        let (h, dk, ld) = (nHeads, dKeys, nHeads * dKeys)
        var active = [[Int]](repeating: [], count: n * h)
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                idx.withUnsafeBufferPointer { ip in
                    active.withUnsafeMutableBufferPointer { ap in
                        let apBase = ap.baseAddress!
                        Threads.parallelFor(n * h) { range in
                            var m = [Float](repeating: 0, count: l)
                            // This head's keys packed L×dk, so the random sampled rows are read
                            // from a block that stays in cache.
                            var packed = [Float](repeating: 0, count: l * dk)
                            for problem in range {
                                let (b, hh) = (problem / h, problem % h)
                                let qb = qp.baseAddress! + b * l * ld + hh * dk
                                let kSrc = kp.baseAddress! + b * l * ld + hh * dk
                                packed.withUnsafeMutableBufferPointer { pk in
                                    for j in 0..<l { (pk.baseAddress! + j * dk).update(from: kSrc + j * ld, count: dk) }
                                }
                                packed.withUnsafeBufferPointer { pk in
                                let kb = pk.baseAddress!
                                for i in 0..<l {
                                    let qi = qb + i * ld
                                    var mx = -Float.infinity, sum: Float = 0
                                    for s in 0..<us {
                                        let kj = kb + Int(ip[i * us + s]) * dk
                                        let dot = informerDot(qi, kj, dk)
                                        mx = max(mx, dot)
                                        sum += dot
                                    }
                                    m[i] = mx - sum / Float(l)
                                }
                                }
                                let top = (0..<l).sorted { m[$0] > m[$1] || (m[$0] == m[$1] && $0 < $1) }.prefix(u)
                                (apBase + problem).pointee = top.sorted()
                            }
                        }
                    }
                }
            }
        }
        return active
    }

    /// The context N×L×(H·d_values) (heads as channel slices, as the reference's B×L×H×D):
    /// lazy rows filled, active rows through `DenseAttention`.
    func context(q: Tensor, k: Tensor, v: Tensor, active: [[Int]]) -> Tensor {
        let (n, l) = (q.shape[0], q.shape[1]), u = active.first?.count ?? 0
        let (h, dk, dv, ldk, ldv) = (nHeads, dKeys, dValues, nHeads * dKeys, nHeads * dValues)
        // Lazy fallback: mean of V (every row), or its cumsum along L (mask).
        var ctx = maskFlag ? v.cumsum(axis: 1) : v.mean(axis: 1, keepDims: true).broadcast(to: [n, l, ldv])
        ctx = ctx.reshaped([n, l, ldv])                                    // N, L, H·dv
        if maskFlag {
            // Active row i sees keys j ≤ i: its softmax row over i + 1 keys, then w·V.
            q.withUnsafeBufferPointer { qp in
                k.withUnsafeBufferPointer { kp in
                    v.withUnsafeBufferPointer { vp in
                        ctx.withUnsafeMutableBufferPointer { cp in
                            let cBase = cp.baseAddress!
                            Threads.parallelFor(n * h) { range in
                                for problem in range {
                                    let (b, hh) = (problem / h, problem % h)
                                    for i in active[problem] {
                                        let w = DenseAttention.weights(
                                            query: qp.baseAddress! + (b * l + i) * ldk + hh * dk,
                                            keys: kp.baseAddress! + b * l * ldk + hh * dk, ldk: ldk,
                                            lk: l, d: dk, scale: scale, visible: i + 1)
                                        w.withUnsafeBufferPointer { wp in
                                            // row (1×dv) = w[0...i] (1×(i+1)) · V[0...i] ((i+1)×dv)
                                            BLAS.gemm(m: 1, n: dv, k: i + 1, a: wp.baseAddress!, lda: i + 1,
                                                      b: vp.baseAddress! + b * l * ldv + hh * dv, ldb: ldv,
                                                      c: cBase + (b * l + i) * ldv + hh * dv, ldc: dv)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            return ctx
        }
        // Unmasked: gather the active queries (N, H, u, dk), one batched DenseAttention call,
        // scatter the rows (N, H, u, dv) back to their positions.
        var qa = Tensor(uninitialized: [n, h, u, dk])
        q.withUnsafeBufferPointer { qp in
            qa.withUnsafeMutableBufferPointer { ap in
                for problem in 0..<n * h {
                    let (b, hh) = (problem / h, problem % h)
                    for (r, i) in active[problem].enumerated() {
                        (ap.baseAddress! + (problem * u + r) * dk)
                            .update(from: qp.baseAddress! + (b * l + i) * ldk + hh * dk, count: dk)
                    }
                }
            }
        }
        var oa = Tensor(uninitialized: [n, h, u, dv])
        qa.withUnsafeBufferPointer { ap in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    oa.withUnsafeMutableBufferPointer { op in
                        DenseAttention.forward(
                            batch: n, heads: h, lq: u, lk: l, d: dk, dv: dv,
                            q: .init(base: ap.baseAddress!, ld: dk, batchStride: h * u * dk, headStride: u * dk),
                            k: .init(base: kp.baseAddress!, ld: ldk, batchStride: l * ldk, headStride: dk),
                            v: .init(base: vp.baseAddress!, ld: ldv, batchStride: l * ldv, headStride: dv),
                            out: op.baseAddress!, outLd: dv, outBatchStride: h * u * dv, outHeadStride: u * dv,
                            scale: scale)
                    }
                }
            }
        }
        oa.withUnsafeBufferPointer { op in
            ctx.withUnsafeMutableBufferPointer { cp in
                for problem in 0..<n * h {
                    let (b, hh) = (problem / h, problem % h)
                    for (r, i) in active[problem].enumerated() {
                        (cp.baseAddress! + (b * l + i) * ldv + hh * dv)
                            .update(from: op.baseAddress! + (problem * u + r) * dv, count: dv)
                    }
                }
            }
        }
        return ctx
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        let (n, l) = (x.shape[0], x.shape[1])
        let (q, k, v) = try projections(x)
        let active = activeQueries(q: q, k: k, samples: try samples(length: l))
        var ctx = context(q: q, k: k, v: v, active: active)              // N, L, H·dv
        if mix {
            ctx = ctx.reshaped([n, l, nHeads, dValues]).permuted(0, 2, 1, 3)  // N, H, L, dv
                .reshaped([n, l, nHeads * dValues])                         // N, L, H·dv (scrambled)
        }
        return try outProjection(ctx)
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try check(x)
        let l = x.shape[1]
        let i = try KernelizedAttention.checkQuery(query, length: l, heads: nHeads, module: Self.info.id)
        let (q, k, _) = try projections(x.batchItem(0))
        let active = activeQueries(q: q, k: k, samples: try samples(length: l))  // H rows
        let heads = query.head.map { [$0] } ?? Array(0..<nHeads)
        var w = [Float](repeating: 0, count: l), chosen = [Float](repeating: 0, count: l)
        var activeIn: [Int] = []
        let share = 1 / Float(heads.count)
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                for h in heads {
                    for j in active[h] { chosen[j] += share }
                    if active[h].contains(i) {
                        activeIn.append(h)
                        let row = DenseAttention.weights(query: qp.baseAddress! + i * nHeads * dKeys + h * dKeys,
                                                         keys: kp.baseAddress! + h * dKeys, ldk: nHeads * dKeys, lk: l,
                                                         d: dKeys, scale: scale, visible: maskFlag ? i + 1 : l)
                        for j in 0..<l { w[j] += row[j] * share }
                    } else if maskFlag {
                        for j in 0...i { w[j] += share }                 // cumsum(V): weight 1 on j ≤ i
                    } else {
                        for j in 0..<l { w[j] += share / Float(l) }      // mean(V)
                    }
                }
            }
        }
        let who = query.head.map { "head \($0)" } ?? (nHeads == 1 ? "1 head" : "mean of \(nHeads) heads")
        let lazy = maskFlag ? "cumsum(V), weight 1 on j<=\(i)" : "mean(V), 1/\(l)"
        let state = activeIn.count == heads.count ? "active (softmax row)"
            : activeIn.isEmpty ? "lazy (\(lazy))" : "active in heads \(activeIn.map(String.init).joined(separator: ",")), else lazy (\(lazy))"
        let u = Self.counts(length: l, factor: factor).active
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [2, 1, l], scalars: w + chosen),
                            labels: ["query \(i): \(state), \(who)", "active queries (\(u) of \(l) per head), \(who)"])
    }
}

/// a·b over n floats, eight lanes at a time (a serial sum of short rows was the hot spot).
@inline(__always) private func informerDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0), c = 0
    while c + 8 <= n {
        acc += UnsafeRawPointer(a + c).loadUnaligned(as: SIMD8<Float>.self)
            * UnsafeRawPointer(b + c).loadUnaligned(as: SIMD8<Float>.self)
        c += 8
    }
    var s = acc.sum()
    while c < n { s += a[c] * b[c]; c += 1 }
    return s
}
