// Linformer: Self-Attention with Linear Complexity.
// Wang, Li, Khabsa, Fang, Ma, 2020. https://arxiv.org/abs/2006.04768
// Reference matched: pip linformer 0.2.3 (lucidrains) `LinformerSelfAttention`
// (linformer/linformer.py), read in full. Second reference: tatp22 linformer-pytorch (per-head
// E/F with bias, post-LayerNorm residual) — not matched.

import Foundation
import TensorCore

/// Linformer self-attention: keys and values are projected along the sequence axis from L
/// positions to k slots by learned matrices E (`proj_k`) and F (`proj_v`), so each query takes a
/// softmax over k slots instead of L positions.
///
/// Matches `linformer.LinformerSelfAttention(dim, seq_len, k=256, heads=8, dim_head=None,
/// one_kv_head=False, share_kv=False, dropout=0.)` in eval mode:
///   q = x W_qᵀ, k = x W_kᵀ, v = x W_vᵀ;  K̄ = Eᵀ k, V̄ = Fᵀ v  (k×kv_dim);
///   out_h = softmax(q_h K̄_hᵀ / √dim_head) V̄_h;  y = [out_h] W_oᵀ + b_o.
///
/// - Input N×L×dim (L = seq_len), output N×L×dim.
/// - Map (per-query): the query's softmax weights A[i, s] over the k projected slots taken back to
///   positions through E: w_j = Σ_s A[i,s]·E[j,s] (mean over heads unless one is chosen). Signed
///   (E is signed), and it is the key-side view: the values are mixed through F, which equals E
///   only with `share_kv`. O(L·k) per query, no L×L matrix.
/// - Cost: O(L·k·D) time, O(L·k) memory; k is fixed, so the exponent in L is 1.
///
/// Quirks of the reference:
/// - One E and one F shared by all heads (the paper's "headwise sharing"), no bias, initialised
///   U(±1/√k); `share_kv` uses `to_k`/`proj_k` for the values too (no `to_v`, no `proj_v`).
/// - `one_kv_head`: keys and values have a single head of width dim_head, broadcast to every
///   query head (read here through a zero head stride, not copied).
/// - `dim_head` defaults to dim // heads, but dim must be divisible by heads even when it is set.
/// - The reference accepts L < seq_len by slicing E and F; here L must equal seq_len (unset, it is
///   taken from the input), as in the paper.
/// - Not causal: E mixes every position into every slot.
/// - Untrained: lucidrains' initialisation (E, F uniform ±1/√k, Linear U(±1/√in)) with
///   W_k = W_q (the first dim_head rows of W_q with `one_kv_head`); E stays random, so an
///   untrained map is a random-projection pattern, which is what the module really does.
///
/// Keys: `to_q.weight` (H·dim_head×dim), `to_k.weight`, `to_v.weight` (kv_dim×dim, no bias),
/// `proj_k`, `proj_v` (seq_len×k), `to_out.weight` (dim×H·dim_head), `to_out.bias`.
public final class LinformerAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "linformer", title: "Linformer: Self-Attention with Linear Complexity", arxiv: "2006.04768", year: 2020,
        complexity: "O(N k D)", complexityExponent: 1, kind: .sequence, causal: false,
        reference: "linformer.LinformerSelfAttention (pip linformer 0.2.3)", mapKind: .perQuery,
        mapDescription: "the query's softmax weights over the k projected slots taken back to positions through E: w_j = sum_s A[i,s] E[j,s] (signed)",
        notes: ["one E (proj_k) and one F (proj_v) shared by all heads, no bias; share_kv reuses to_k and proj_k for values",
                "one_kv_head: a single key/value head broadcast to all query heads",
                "L must equal seq_len (the reference also allows shorter L by slicing E, F)",
                "scale 1/sqrt(dim_head); not causal",
                "untrained: W_k = W_q, E and F random (uniform ±1/sqrt(k)), so the map is a random-projection pattern"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("seq_len", .int(1...1 << 24), default: .none, "sequence length L (taken from the input when unset)"),
        ConfigKey("k", .int(1...65536), default: .int(256), "projected length (slots of E and F)"),
        ConfigKey("heads", .int(1...4096), default: .int(8), "attention heads"),
        ConfigKey("dim_head", .int(1...65536), default: .none, "channels per head (default dim // heads)"),
        ConfigKey("one_kv_head", .bool, default: .bool(false), "a single key/value head shared by all heads"),
        ConfigKey("share_kv", .bool, default: .bool(false), "values use to_k and proj_k"),
        ConfigKey("dropout", .float(0...1), default: .float(0), "attention dropout (inactive in eval)"),
    ]

    public let config: Config
    let dim: Int, seqLen: Int, k: Int, heads: Int, dimHead: Int, kvDim: Int
    let oneKVHead: Bool, shareKV: Bool
    let toQ: Linear, toK: Linear, toV: Linear?
    let projK: Tensor              // seq_len, k
    let projV: Tensor?             // seq_len, k
    let toOut: Linear

    public var expectedInput: String { "N×\(seqLen)×\(dim)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: id, expected: "N×L×C tokens", found: inputShape)
        }
        try config.resolveChannels("dim", from: inputShape[2])
        if let s = config.optionalInt("seq_len"), s != inputShape[1] {
            throw ConfigError.inconsistent(module: id,
                message: "seq_len=\(s) but the input has L=\(inputShape[1]) tokens (Linformer's E and F are seq_len×k: L must equal seq_len)")
        }
        config.setDerived("seq_len", .int(inputShape[1]))
        dim = config.int("dim")
        seqLen = config.int("seq_len")
        k = config.int("k")
        heads = config.int("heads")
        guard dim % heads == 0 else {
            throw ConfigError.inconsistent(module: id, message: "dim=\(dim) must be divisible by heads=\(heads)")
        }
        dimHead = config.optionalInt("dim_head") ?? dim / heads
        config.setDerived("dim_head", .int(dimHead))
        oneKVHead = config.bool("one_kv_head")
        shareKV = config.bool("share_kv")
        kvDim = oneKVHead ? dimHead : dimHead * heads
        self.config = config

        toQ = Linear(p.scoped("to_q"), inFeatures: dim, outFeatures: dimHead * heads, bias: false)
        var toK = Linear(p.scoped("to_k"), inFeatures: dim, outFeatures: kvDim, bias: false)
        if !p.isLoading {
            // Similarity initialisation: keys start as the queries (head 0's with one_kv_head).
            toK.weight = toQ.weight.sliced(axis: 0, range: 0..<kvDim)
        }
        self.toK = toK
        let bound = 1 / Float(k).squareRoot()
        projK = p.parameter("proj_k", shape: [seqLen, k], initializer: .uniform(bound: bound))
        if shareKV {
            toV = nil
            projV = nil
        } else {
            toV = Linear(p.scoped("to_v"), inFeatures: dim, outFeatures: kvDim, bias: false)
            projV = p.parameter("proj_v", shape: [seqLen, k], initializer: .uniform(bound: bound))
        }
        toOut = Linear(p.scoped("to_out"), inFeatures: dimHead * heads, outFeatures: dim)
    }

    var scale: Float { 1 / Float(dimHead).squareRoot() }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] == seqLen, x.shape[2] == dim else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
    }

    /// Queries N×L×(H·dh), projected keys and values N×k×kv_dim.
    func projections(_ x: Tensor) throws -> (q: Tensor, kBar: Tensor, vBar: Tensor) {
        let q = try toQ(x)                                           // N, L, H·dh
        let keys = try toK(x)                                        // N, L, kv_dim
        let values = try toV.map { try $0(x) } ?? keys               // N, L, kv_dim
        let kBar = projK.matmul(keys, transposeSelf: true)           // N, k, kv_dim
        let vBar = (projV ?? projK).matmul(values, transposeSelf: true)  // N, k, kv_dim
        return (q, kBar, vBar)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        let (q, kBar, vBar) = try projections(x)
        let (n, l, hd) = (x.shape[0], seqLen, dimHead * heads)
        // Key/value heads are slices of kv_dim; with one_kv_head every query head reads head 0.
        let kvHeadStride = oneKVHead ? 0 : dimHead
        var out = Tensor(uninitialized: [n, l, hd])                  // N, L, H·dh
        q.withUnsafeBufferPointer { qp in
            kBar.withUnsafeBufferPointer { kp in
                vBar.withUnsafeBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        DenseAttention.forward(
                            batch: n, heads: heads, lq: l, lk: k, d: dimHead, dv: dimHead,
                            q: .init(base: qp.baseAddress!, ld: hd, batchStride: l * hd, headStride: dimHead),
                            k: .init(base: kp.baseAddress!, ld: kvDim, batchStride: k * kvDim, headStride: kvHeadStride),
                            v: .init(base: vp.baseAddress!, ld: kvDim, batchStride: k * kvDim, headStride: kvHeadStride),
                            out: op.baseAddress!, outLd: hd, outBatchStride: l * hd, outHeadStride: dimHead,
                            scale: scale)
                    }
                }
            }
        }
        return try toOut(out)                                        // N, L, dim
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try check(x)
        guard query.row == 0, (0..<seqLen).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id,
                                       message: "query position \(query.column) is outside 0..<\(seqLen)")
        }
        if let h = query.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        let (q, kBar, _) = try projections(x.batchItem(0))
        let i = query.column, hd = dimHead * heads
        let chosen = query.head.map { [$0] } ?? Array(0..<heads)
        // Slot weights averaged over the chosen heads: a (k).
        var a = [Float](repeating: 0, count: k)
        q.withUnsafeBufferPointer { qp in
            kBar.withUnsafeBufferPointer { kp in
                for h in chosen {
                    let w = DenseAttention.weights(query: qp.baseAddress! + i * hd + h * dimHead,
                                                   keys: kp.baseAddress! + (oneKVHead ? 0 : h * dimHead),
                                                   ldk: kvDim, lk: k, d: dimHead, scale: scale)
                    for s in 0..<k { a[s] += w[s] / Float(chosen.count) }
                }
            }
        }
        // Back to positions: w (L) = E (L×k) · a (k).
        var w = [Float](repeating: 0, count: seqLen)
        projK.withUnsafeBufferPointer { ep in
            a.withUnsafeBufferPointer { ap in
                w.withUnsafeMutableBufferPointer { wp in
                    BLAS.gemm(m: seqLen, n: 1, k: k, a: ep.baseAddress!, lda: k, b: ap.baseAddress!, ldb: 1,
                              c: wp.baseAddress!, ldc: 1)
                }
            }
        }
        let label = query.head.map { "head \($0): slot weights through E" }
            ?? (heads == 1 ? "slot weights through E" : "slot weights through E (mean of \(heads) heads)")
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, seqLen], scalars: w), labels: [label])
    }
}
