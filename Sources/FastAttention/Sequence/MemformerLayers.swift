// The layers of memformer 0.3.1 (lucidrains) that `Memformer` is built from: its `Attention`
// (self-attention with the T5 relative bias, cross-attention, the memory writer's "attend to
// itself and the tokens"), `FeedForward`, `RelativePositionBias` and torch's `GRUCell`.

import Foundation
import TensorCore

/// memformer's `Attention(dim, heads)`: `to_q`, `to_kv` (k then v chunks), `to_out`, all with
/// biases; scale d_head^-½.
struct MemformerAttention {
    let dim: Int, heads: Int
    var toQ: Linear, toKV: Linear
    let toOut: Linear

    init(_ p: Parameters, dim: Int, heads: Int) {
        (self.dim, self.heads) = (dim, heads)
        toQ = Linear(p.scoped("to_q"), inFeatures: dim, outFeatures: dim)
        toKV = Linear(p.scoped("to_kv"), inFeatures: dim, outFeatures: 2 * dim)
        toOut = Linear(p.scoped("to_out"), inFeatures: dim, outFeatures: dim)
        if !p.isLoading {
            // Similarity initialisation: the key half of to_kv starts as to_q.
            let v = toKV.weight.split(sizes: [dim, dim], axis: 0)[1], vb = toKV.bias!.split(sizes: [dim, dim], axis: 0)[1]
            toKV.weight = Tensor.concatenated([toQ.weight, v], axis: 0)
            toKV.bias = Tensor.concatenated([toQ.bias!, vb], axis: 0)
        }
    }

    var dimHead: Int { dim / heads }
    var scale: Float { 1 / Float(dimHead).squareRoot() }

    /// Self-attention with the relative bias: every row is the kernel's softmax row
    /// (`DenseAttention.weights`) reweighted by exp(bias(i − j)) and renormalised —
    /// softmax(s + b) = softmax(s)·eᵇ / Σ softmax(s)·eᵇ — then multiplied by V. x: N×L×dim.
    func selfAttention(_ x: Tensor, bias: MemformerRelativeBias) throws -> Tensor {
        let (n, l) = (x.shape[0], x.shape[1]), (h, dh) = (heads, dimHead)
        let q = try toQ(x), kv = try toKV(x)                                // N, L, dim; N, L, 2·dim
        let table = bias.expTable(length: l)                                // H × L
        var out = Tensor(uninitialized: [n, l, dim])                        // N, L, dim
        q.withUnsafeBufferPointer { qp in
            kv.withUnsafeBufferPointer { kp in
                out.withUnsafeMutableBufferPointer { op in
                    let oBase = op.baseAddress!
                    Threads.parallelFor(n * h * l, minChunk: 8) { range in
                        var w = [Float](repeating: 0, count: l)
                        for item in range {
                            let (b, hh, i) = (item / (h * l), (item / l) % h, item % l)
                            let row = DenseAttention.weights(query: qp.baseAddress! + (b * l + i) * dim + hh * dh,
                                                             keys: kp.baseAddress! + b * l * 2 * dim + hh * dh, ldk: 2 * dim,
                                                             lk: l, d: dh, scale: scale)
                            var z: Float = 0
                            table.withUnsafeBufferPointer { tp in
                                let e = tp.baseAddress! + hh * l           // e[n] = exp(bias(n)), n = max(i − j, 0)
                                for j in 0..<l {
                                    w[j] = row[j] * e[max(i - j, 0)]
                                    z += w[j]
                                }
                            }
                            let inv = 1 / z
                            for j in 0..<l { w[j] *= inv }
                            w.withUnsafeBufferPointer { wp in
                                // out row (1×dh) = w (1×L) · V (L×dh)
                                BLAS.gemm(m: 1, n: dh, k: l, a: wp.baseAddress!, lda: l,
                                          b: kp.baseAddress! + b * l * 2 * dim + dim + hh * dh, ldb: 2 * dim,
                                          c: oBase + (b * l + i) * dim + hh * dh, ldc: dh)
                            }
                        }
                    }
                }
            }
        }
        return try toOut(out)
    }

    /// The biased self-attention row of query i (batch item 0), for one head: O(L·d).
    func selfAttentionRow(_ x: Tensor, bias: MemformerRelativeBias, query i: Int, head hh: Int) throws -> [Float] {
        let l = x.shape[1], dh = dimHead
        let q = try toQ(x.batchItem(0)), kv = try toKV(x.batchItem(0))
        let table = bias.expTable(length: l)
        var w = q.withUnsafeBufferPointer { qp in
            kv.withUnsafeBufferPointer { kp in
                DenseAttention.weights(query: qp.baseAddress! + i * dim + hh * dh, keys: kp.baseAddress! + hh * dh,
                                       ldk: 2 * dim, lk: l, d: dh, scale: scale)
            }
        }
        for j in 0..<l { w[j] *= table[hh * l + max(i - j, 0)] }
        let z = w.reduce(0, +)
        return w.map { $0 / z }
    }

    /// Cross-attention of x (N×L×dim) to `context` (N×M×dim), no mask.
    func crossAttention(_ x: Tensor, context: Tensor) throws -> Tensor {
        let kv = try toKV(context).split(sizes: [dim, dim], axis: 2)         // 2 × (N, M, dim)
        return try toOut(DenseAttention.multiHead(q: try toQ(x), k: kv[0], v: kv[1], heads: heads, scale: scale))
    }

    /// The memory writer: slot s of `mems` (N×M×dim) attends to [itself, every token of `enc`]
    /// (N×L×dim) — the reference's eye mask over the slots. Each slot's keys are gathered into
    /// one (1 + L)-row operand so the rows go through `DenseAttention` in one call.
    func memoryUpdate(mems: Tensor, enc: Tensor) throws -> Tensor {
        let (n, m, l) = (mems.shape[0], mems.shape[1], enc.shape[1]), rows = 1 + l
        let q = try toQ(mems), kvMem = try toKV(mems), kvEnc = try toKV(enc)  // N, M, dim; N, M, 2dim; N, L, 2dim
        var kv = Tensor(uninitialized: [n * m, rows, 2 * dim])              // N·M, 1+L, 2·dim
        kv.withUnsafeMutableBufferPointer { dp in
            kvMem.withUnsafeBufferPointer { mp in
                kvEnc.withUnsafeBufferPointer { ep in
                    for b in 0..<n {
                        for s in 0..<m {
                            let dst = dp.baseAddress! + (b * m + s) * rows * 2 * dim
                            dst.update(from: mp.baseAddress! + (b * m + s) * 2 * dim, count: 2 * dim)
                            (dst + 2 * dim).update(from: ep.baseAddress! + b * l * 2 * dim, count: l * 2 * dim)
                        }
                    }
                }
            }
        }
        var out = Tensor(uninitialized: [n, m, dim])                        // N, M, dim
        q.withUnsafeBufferPointer { qp in
            kv.withUnsafeBufferPointer { kp in
                out.withUnsafeMutableBufferPointer { op in
                    DenseAttention.forward(
                        batch: n * m, heads: heads, lq: 1, lk: rows, d: dimHead, dv: dimHead,
                        q: .init(base: qp.baseAddress!, ld: dim, batchStride: dim, headStride: dimHead),
                        k: .init(base: kp.baseAddress!, ld: 2 * dim, batchStride: rows * 2 * dim, headStride: dimHead),
                        v: .init(base: kp.baseAddress! + dim, ld: 2 * dim, batchStride: rows * 2 * dim, headStride: dimHead),
                        out: op.baseAddress!, outLd: dim, outBatchStride: dim, outHeadStride: dimHead, scale: scale)
                }
            }
        }
        return try toOut(out)
    }

    /// The writer's weights of every slot on [itself, tokens] for batch item 0: M rows per head,
    /// as H×M×(1+L).
    func memoryUpdateWeights(mems: Tensor, enc: Tensor) throws -> [[Float]] {
        let (m, l) = (mems.shape[1], enc.shape[1])
        let q = try toQ(mems.batchItem(0)), kvMem = try toKV(mems.batchItem(0)), kvEnc = try toKV(enc.batchItem(0))
        var rows: [[Float]] = []
        for hh in 0..<heads {
            for s in 0..<m {
                var keys = [Float](repeating: 0, count: (1 + l) * dimHead)
                kvMem.withUnsafeBufferPointer { mp in
                    kvEnc.withUnsafeBufferPointer { ep in
                        for c in 0..<dimHead { keys[c] = mp[s * 2 * dim + hh * dimHead + c] }
                        for j in 0..<l { for c in 0..<dimHead { keys[(1 + j) * dimHead + c] = ep[j * 2 * dim + hh * dimHead + c] } }
                    }
                }
                rows.append(q.withUnsafeBufferPointer { qp in
                    keys.withUnsafeBufferPointer { kp in
                        DenseAttention.weights(query: qp.baseAddress! + s * dim + hh * dimHead, keys: kp.baseAddress!,
                                               ldk: dimHead, lk: 1 + l, d: dimHead, scale: scale)
                    }
                })
            }
        }
        return rows
    }
}

/// memformer's `RelativePositionBias(causal=False, num_buckets=32, max_distance=128)`: a learned
/// bias per head and T5 bucket of n = max(i − j, 0) — every key at or right of the query shares
/// bucket 0 (the non-causal quirk); n < 16 exact, then log-spaced buckets up to 31.
struct MemformerRelativeBias {
    let heads: Int
    let weight: Tensor          // 32 buckets × heads (`relative_attention_bias.weight`)
    static let numBuckets = 32, maxDistance = 128

    init(_ p: Parameters, heads: Int) {
        self.heads = heads
        weight = p.scoped("relative_attention_bias").parameter("weight", shape: [Self.numBuckets, heads],
                                                               initializer: .normal(std: 1))
    }

    /// The bucket of n = max(i − j, 0) (computed in double; the float32 reference has no value
    /// within 0.01 of a bucket edge).
    static func bucket(_ n: Int) -> Int {
        let maxExact = numBuckets / 2
        if n < maxExact { return n }
        let v = Foundation.log(Double(n) / Double(maxExact)) / Foundation.log(Double(maxDistance) / Double(maxExact))
            * Double(numBuckets - maxExact)
        return min(maxExact + Int(v), numBuckets - 1)
    }

    /// exp(bias[bucket(n), h]) for n in 0..<length, H×length row-major.
    func expTable(length: Int) -> [Float] {
        let w = weight.scalars
        var t = [Float](repeating: 0, count: heads * length)
        for n in 0..<length {
            let b = Self.bucket(n)
            for h in 0..<heads { t[h * length + n] = Foundation.exp(w[b * heads + h]) }
        }
        return t
    }
}

/// memformer's `FeedForward(dim, mult=4)`: `net.0` Linear(dim, 4·dim), exact GELU, `net.2`.
struct MemformerFeedForward {
    let w1: Linear, w2: Linear

    init(_ p: Parameters, dim: Int) {
        w1 = Linear(p.scoped("net").scoped("0"), inFeatures: dim, outFeatures: 4 * dim)
        w2 = Linear(p.scoped("net").scoped("2"), inFeatures: 4 * dim, outFeatures: dim)
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor { try w2(try w1(x).gelu()) }
}

/// torch.nn.GRUCell(dim, dim): keys `weight_ih`, `weight_hh` (3·dim×dim, gates r, z, n),
/// `bias_ih`, `bias_hh` (all U(±1/√dim) untrained, as torch);
/// h′ = (1 − z)·n + z·h with n = tanh(W_in x + b_in + r·(W_hn h + b_hn)).
struct GRUCell {
    let dim: Int
    let weightIH: Tensor, weightHH: Tensor, biasIH: Tensor, biasHH: Tensor

    init(_ p: Parameters, dim: Int) {
        self.dim = dim
        let u = Initializer.pytorchDefault(fanIn: dim)
        weightIH = p.parameter("weight_ih", shape: [3 * dim, dim], initializer: u)
        weightHH = p.parameter("weight_hh", shape: [3 * dim, dim], initializer: u)
        biasIH = p.parameter("bias_ih", shape: [3 * dim], initializer: u)
        biasHH = p.parameter("bias_hh", shape: [3 * dim], initializer: u)
    }

    /// x, h: R×dim → R×dim.
    func callAsFunction(_ x: Tensor, _ h: Tensor) -> Tensor {
        let rows = x.count / dim
        let gi = x.reshaped([rows, dim]).matmul(weightIH, transposeOther: true) + biasIH    // R, 3·dim
        let gh = h.reshaped([rows, dim]).matmul(weightHH, transposeOther: true) + biasHH    // R, 3·dim
        var out = Tensor(uninitialized: [rows, dim])
        gi.withUnsafeBufferPointer { a in
            gh.withUnsafeBufferPointer { b in
                h.withUnsafeBufferPointer { hp in
                    out.withUnsafeMutableBufferPointer { o in
                        for r in 0..<rows {
                            let ga = a.baseAddress! + r * 3 * dim, gb = b.baseAddress! + r * 3 * dim
                            for c in 0..<dim {
                                let rg = 1 / (1 + Foundation.exp(-(ga[c] + gb[c])))
                                let zg = 1 / (1 + Foundation.exp(-(ga[dim + c] + gb[dim + c])))
                                let ng = Foundation.tanh(ga[2 * dim + c] + rg * gb[2 * dim + c])
                                o[r * dim + c] = (1 - zg) * ng + zg * hp[r * dim + c]
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
