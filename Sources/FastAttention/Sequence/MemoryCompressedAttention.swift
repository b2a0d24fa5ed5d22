// Memory-compressed attention, from "Generating Wikipedia by Summarizing Long Sequences".
// Liu, Saleh, Pot, Goodrich, Sepassi, Kaiser, Shazeer, ICLR 2018. https://arxiv.org/abs/1801.10198
// Reference matched: pip memory-compressed-attention 0.0.7 (lucidrains) `MemoryCompressedAttention`
// (memory_compressed_attention/memory_compressed_attention.py), read in full. The original is
// tensor2tensor's `multihead_self_attention_memory_compressed` (TF, not run); its local-attention
// variant is not in the reference and not here.

import Foundation
import TensorCore

/// Memory-compressed attention: keys and values are shortened by a strided convolution
/// (kernel = stride = compression_factor), a learned null key/value is prepended, and every query
/// takes a softmax over the 1 + ⌈L/cf⌉ compressed slots.
///
/// Matches `MemoryCompressedAttention(dim, heads=8, causal=False, compression_factor=3, dropout=0.)`
/// in eval mode, `forward(x)` without `input_mask`:
///   q, k, v = chunk₃(x W_qkvᵀ);  k, v left-padded with zero rows to a multiple of cf;
///   k̄ = [null_k; conv(k)], v̄ = [null_v; conv(v)] (the same grouped Conv1d for both);
///   out_h = softmax(q_h k̄_hᵀ · dim^-½) v̄_h;  y = [out_h] W_oᵀ + b_o.
///
/// - Input N×L×dim, output N×L×dim.
/// - Map (per-query): the query's softmax weights over [null] + compressed blocks (mean over heads
///   unless one is chosen); each block's weight is spread evenly over the block's real positions
///   (the left padding gets none), so the map plus the null weight (in the label) sums to 1.
///   O((L/cf)·dim) per query after the O(L·dim·dim/heads) compression.
/// - Cost: O(L·(L/cf)·dim) — quadratic with a cf-fold smaller constant (the paper's point), so the
///   fitted exponent is 2; the L×L/cf logits are tiled through `DenseAttention`, never stored.
///
/// Quirks of the reference:
/// - The scale is dim^-½ with the **full** dim, not dim_head.
/// - Padding is on the **left** (cf − L % cf rows when L % cf ≠ 0); the padded zero rows still go
///   through the conv, whose bias they pick up.
/// - The conv has groups = heads: each head's channels are compressed by that head's filters only.
/// - Causal: query i sees block j only when the block's largest original position is ≤ i (padding
///   counts as position 0), plus the null slot always — strictly causal (futureleak 0). Here the
///   queries are split into cf strided groups that share a block-causal staircase, so the causal
///   pass is cf calls of the causal `DenseAttention` kernel.
/// - `input_mask` is not supported: in the reference every valid query can then attend only the
///   null key (the mask comparison is inverted).
/// - null_k and null_v are zero-initialised in the reference (kept); untrained weights here are
///   PyTorch-default with W_k = W_q (similarity initialisation) and the compression conv starting
///   as the mean of each block (weight δ/cf, bias 0), so a compressed key is its block's mean key.
///
/// Keys: `to_qkv.weight` (3·dim×dim, no bias, q/k/v chunks), `compress_fn.conv.weight`
/// (dim×dim/heads×cf), `compress_fn.conv.bias` (dim), `null_k`, `null_v` (1×1×dim),
/// `to_out.weight` (dim×dim), `to_out.bias` (dim).
public final class MemoryCompressedAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "memory-compressed", title: "Generating Wikipedia by Summarizing Long Sequences (memory-compressed attention)",
        arxiv: "1801.10198", year: 2018, complexity: "O(N * N/(b k) * D)", complexityExponent: 2,
        kind: .sequence, causal: true,
        reference: "memory_compressed_attention.MemoryCompressedAttention (pip memory-compressed-attention 0.0.7)",
        mapKind: .perQuery,
        mapDescription: "softmax weights over [null] + conv-compressed key blocks, each block's weight spread evenly over its positions (null weight in the label)",
        notes: ["scale dim^-0.5 with the full dim, not dim_head",
                "keys/values left-padded with zeros to a multiple of compression_factor; the conv (kernel = stride = cf, groups = heads) is shared by keys and values",
                "a learned null key/value is always visible",
                "causal: a block is visible once its last position is <= the query (strictly causal)",
                "input_mask is not supported (the reference's mask lets valid queries see only the null key)",
                "untrained: W_k = W_q and the conv starts as the block mean, so compressed keys are block-mean keys"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("heads", .int(1...4096), default: .int(8), "attention heads (dim must divide by it)"),
        ConfigKey("causal", .bool, default: .bool(false), "a query sees only blocks that end at or before it"),
        ConfigKey("compression_factor", .int(1...4096), default: .int(3), "conv kernel and stride along L"),
        ConfigKey("dropout", .float(0...1), default: .float(0), "attention dropout (inactive in eval)"),
    ]

    public let config: Config
    let dim: Int, heads: Int, dimHead: Int, causal: Bool, factor: Int
    let toQKV: Linear
    let conv: Conv1d
    let nullK: Tensor, nullV: Tensor       // 1, 1, dim
    let toOut: Linear

    public var expectedInput: String { "N×L×\(dim)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        (dim, heads) = try config.resolveTokenHeads("dim", heads: "heads", inputShape: inputShape)
        self.config = config
        dimHead = dim / heads
        causal = config.bool("causal")
        factor = config.int("compression_factor")

        var toQKV = Linear(p.scoped("to_qkv"), inFeatures: dim, outFeatures: 3 * dim, bias: false)
        var conv = try Conv1d(p.scoped("compress_fn").scoped("conv"), inChannels: dim, outChannels: dim,
                              kernelSize: factor, stride: factor, groups: heads)
        if !p.isLoading {
            // Similarity initialisation: W_k = W_q, and the conv averages each block channel-wise.
            let w = toQKV.weight.split(sizes: [dim, dim, dim], axis: 0)
            toQKV.weight = Tensor.concatenated([w[0], w[0], w[2]], axis: 0)
            let (dh, cf) = (dimHead, factor)
            conv.weight = Tensor(shape: [dim, dh, cf], scalars: (0..<dim * dh * cf).map { e in
                (e / cf) % dh == (e / (dh * cf)) % dh ? 1 / Float(cf) : 0
            })
            conv.bias = Tensor(zeros: [dim])
        }
        self.toQKV = toQKV
        self.conv = conv
        nullK = p.parameter("null_k", shape: [1, 1, dim], initializer: .zeros)
        nullV = p.parameter("null_v", shape: [1, 1, dim], initializer: .zeros)
        toOut = Linear(p.scoped("to_out"), inFeatures: dim, outFeatures: dim)
    }

    var scale: Float { 1 / Float(dim).squareRoot() }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] > 0, x.shape[2] == dim else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
    }

    /// Left padding that makes L a multiple of the compression factor.
    func padding(_ l: Int) -> Int { (factor - l % factor) % factor }

    /// [null; conv(left-padded t)]: N×L×dim → N×(1 + ⌈L/cf⌉)×dim.
    func compress(_ t: Tensor, null: Tensor) throws -> Tensor {
        let n = t.shape[0], pad = padding(t.shape[1])
        let padded = pad > 0 ? t.padded([(0, 0), (pad, 0), (0, 0)]) : t      // N, Lp, dim
        let c = try conv(padded.permuted(0, 2, 1))                             // N, dim, M
            .permuted(0, 2, 1)                                                 // N, M, dim
        return Tensor.concatenated([null.broadcast(to: [n, 1, dim]), c], axis: 1)  // N, 1+M, dim
    }

    func projections(_ x: Tensor) throws -> (q: Tensor, k: Tensor, v: Tensor) {
        let qkv = try toQKV(x).split(sizes: [dim, dim, dim], axis: 2)          // 3 × (N, L, dim)
        return (qkv[0], try compress(qkv[1], null: nullK), try compress(qkv[2], null: nullV))
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        let (q, k, v) = try projections(x)
        let out = causal ? blockCausal(q: q, k: k, v: v)
            : DenseAttention.multiHead(q: q, k: k, v: v, heads: heads, scale: scale)   // N, L, dim
        return try toOut(out)
    }

    /// The causal pass. With p = i + pad the padded position of query i, block j is visible when
    /// (j+1)·cf − 1 ≤ p, i.e. slots 0…r are visible for p = r·cf + u, u < cf − 1, and slots 0…r+1
    /// for u = cf − 1. So the queries of one residue u, read with row stride cf·dim, see a causal
    /// top-left staircase over the slots: one causal `DenseAttention` call per residue, the last
    /// residue shifted by one (zero) dummy row. Padded and dummy rows are computed and dropped.
    func blockCausal(q: Tensor, k: Tensor, v: Tensor) -> Tensor {
        let (n, l) = (q.shape[0], q.shape[1]), cf = factor, pad = padding(l)
        let slots = k.shape[1], blocks = slots - 1                 // 1 + M slots
        let rows = (blocks + 1) * cf                               // one dummy run, then M runs
        let first = cf + pad                                       // row of query 0
        var qx = Tensor(zeros: [n, rows, dim])                     // N, (M+1)·cf, dim
        qx.withUnsafeMutableBufferPointer { xp in
            q.withUnsafeBufferPointer { qp in
                for b in 0..<n {
                    (xp.baseAddress! + (b * rows + first) * dim).update(from: qp.baseAddress! + b * l * dim, count: l * dim)
                }
            }
        }
        var ox = Tensor(zeros: [n, rows, dim])                     // N, (M+1)·cf, dim
        qx.withUnsafeBufferPointer { xp in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    ox.withUnsafeMutableBufferPointer { op in
                        for u in 0..<cf {
                            let row = u < cf - 1 ? cf + u : u, lq = u < cf - 1 ? blocks : blocks + 1
                            DenseAttention.forward(
                                batch: n, heads: heads, lq: lq, lk: slots, d: dimHead, dv: dimHead,
                                q: .init(base: xp.baseAddress! + row * dim, ld: cf * dim, batchStride: rows * dim, headStride: dimHead),
                                k: .init(base: kp.baseAddress!, ld: dim, batchStride: slots * dim, headStride: dimHead),
                                v: .init(base: vp.baseAddress!, ld: dim, batchStride: slots * dim, headStride: dimHead),
                                out: op.baseAddress! + row * dim, outLd: cf * dim, outBatchStride: rows * dim,
                                outHeadStride: dimHead, scale: scale, causal: true)
                        }
                    }
                }
            }
        }
        return ox.sliced(axis: 1, range: first..<first + l)         // N, L, dim
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
        let (q, k, _) = try projections(x.batchItem(0))
        let i = query.column, pad = padding(l), slots = k.shape[1], cf = factor
        let visible = causal ? 1 + (i + pad + 1) / cf : slots
        let chosen = query.head.map { [$0] } ?? Array(0..<heads)
        var w = [Float](repeating: 0, count: slots)
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                for h in chosen {
                    let r = DenseAttention.weights(query: qp.baseAddress! + i * dim + h * dimHead,
                                                   keys: kp.baseAddress! + h * dimHead, ldk: dim, lk: slots,
                                                   d: dimHead, scale: scale, visible: visible)
                    for s in 0..<slots { w[s] += r[s] / Float(chosen.count) }
                }
            }
        }
        // Block j (slot j + 1) covers padded positions j·cf ..< (j+1)·cf, i.e. original
        // positions j·cf − pad ..< (j+1)·cf − pad clipped at 0.
        var spread = [Float](repeating: 0, count: l)
        for j in 0..<(slots - 1) {
            let lo = max(j * cf - pad, 0), hi = (j + 1) * cf - pad
            for t in lo..<hi { spread[t] = w[j + 1] / Float(hi - lo) }
        }
        let who = query.head.map { ", head \($0)" } ?? (heads == 1 ? "" : ", mean of \(heads) heads")
        let label = "null key \(String(format: "%.3f", w[0])), blocks of \(cf)\(who)"
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: spread), labels: [label])
    }
}
