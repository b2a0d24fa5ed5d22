// The kernelised-attention core's entry points for modules (KernelizedAttention.swift holds the
// kernel): multi-head runs on tensors or on streamed features, one query's implicit weights,
// and the small helpers every kernelised sequence module shares (head projection inside a
// chunk, elu+1, input and query checks, the per-query map over heads).

import CKernels
import Foundation
import TensorCore

// MARK: - Tensor-level entry

extension KernelizedAttention {
    /// Multi-head kernelised attention on tensors: φq N×H×Lq×m, φk N×H×Lk×m (feature-mapped
    /// per head), v N×Lk×(H·dv) straight from a projection (heads as contiguous channel
    /// slices), optional logDecay N×H×L → N×Lq×(H·dv). No copies: heads are read in place.
    public static func multiHead(phiQ: Tensor, phiK: Tensor, v: Tensor, normaliser: KernelNormaliser,
                                 causal: Bool = false, logDecay: Tensor? = nil) -> Tensor {
        precondition(phiQ.rank == 4 && phiK.rank == 4 && v.rank == 3, "kernelised attention needs N×H×L×m features")
        let (b, heads, lq, m) = (phiQ.shape[0], phiQ.shape[1], phiQ.shape[2], phiQ.shape[3])
        let lk = phiK.shape[2], cv = v.shape[2]
        precondition(phiK.shape == [b, heads, lk, m] && v.shape[0] == b && v.shape[1] == lk && cv % heads == 0)
        precondition(logDecay == nil || logDecay!.shape == [b, heads, lq])
        let dv = cv / heads
        var out = Tensor(uninitialized: [b, lq, cv])
        phiQ.withUnsafeBufferPointer { qp in
            phiK.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        let run = { (decay: AttentionOperand?) in
                            forward(batch: b, heads: heads, lq: lq, lk: lk, m: m, dv: dv,
                                    q: .init(base: qp.baseAddress!, ld: m, batchStride: heads * lq * m, headStride: lq * m),
                                    k: .init(base: kp.baseAddress!, ld: m, batchStride: heads * lk * m, headStride: lk * m),
                                    v: .init(base: vp.baseAddress!, ld: cv, batchStride: lk * cv, headStride: dv),
                                    out: .init(base: op.baseAddress!, ld: cv, batchStride: lq * cv, headStride: dv),
                                    normaliser: normaliser, causal: causal, logDecay: decay)
                        }
                        if let logDecay {
                            logDecay.withUnsafeBufferPointer { dp in
                                run(.init(base: dp.baseAddress!, ld: 1, batchStride: heads * lq, headStride: lq))
                            }
                        } else {
                            run(nil)
                        }
                    }
                }
            }
        }
        return out   // N, Lq, H·dv
    }

    /// One query's implicit weights on tensors: φq, φk N×H×L×m, batch `b`, head `h`, query
    /// position `i`; causal rows see keys ≤ i. Returns L weights.
    public static func weights(phiQ: Tensor, phiK: Tensor, batch b: Int, head h: Int, query i: Int,
                               normaliser: KernelNormaliser, causal: Bool, logDecay: Tensor? = nil) -> [Float] {
        let (heads, lq, m) = (phiQ.shape[1], phiQ.shape[2], phiQ.shape[3]), lk = phiK.shape[2]
        return phiQ.withUnsafeBufferPointer { qp in
            phiK.withUnsafeBufferPointer { kp in
                let qi = qp.baseAddress! + ((b * heads + h) * lq + i) * m
                let kb = kp.baseAddress! + (b * heads + h) * lk * m
                if let logDecay {
                    return logDecay.withUnsafeBufferPointer { dp in
                        weights(query: qi, keys: kb, ldk: m, lk: lk, m: m, normaliser: normaliser,
                                visible: i + 1, logDecay: dp.baseAddress! + (b * heads + h) * lq, decayStride: 1)
                    }
                }
                return weights(query: qi, keys: kb, ldk: m, lk: lk, m: m, normaliser: normaliser,
                               visible: causal ? i + 1 : nil)
            }
        }
    }
}

// MARK: - Helpers the kernelised sequence modules share

extension KernelizedAttention {
    /// Multi-head kernelised attention over streamed features: v N×L×(H·dv) straight from a
    /// projection, optional logDecay N×H×L → N×L×(H·dv).
    static func run(batch n: Int, heads: Int, length l: Int, m: Int, v: Tensor, normaliser: KernelNormaliser,
                    causal: Bool, logDecay: Tensor? = nil, features: @escaping KernelFeatureFill) -> Tensor {
        let cv = v.shape[2], dv = cv / heads
        var out = Tensor(uninitialized: [n, l, cv])
        v.withUnsafeBufferPointer { vp in
            out.withUnsafeMutableBufferPointer { op in
                let run = { (decay: AttentionOperand?) in
                    forward(batch: n, heads: heads, lq: l, lk: l, m: m, dv: dv, features: features,
                            v: .init(base: vp.baseAddress!, ld: cv, batchStride: l * cv, headStride: dv),
                            out: .init(base: op.baseAddress!, ld: cv, batchStride: l * cv, headStride: dv),
                            normaliser: normaliser, causal: causal, logDecay: decay)
                }
                if let logDecay {
                    logDecay.withUnsafeBufferPointer { dp in
                        run(.init(base: dp.baseAddress!, ld: 1, batchStride: heads * l, headStride: l))
                    }
                } else {
                    run(nil)
                }
            }
        }
        return out   // N, L, H·dv
    }

    /// One query's implicit weights from streamed features (problem b, h; query position i):
    /// O(L·m) memory for the one head's keys. logDecay N×H×L.
    static func weights(features: KernelFeatureFill, batch b: Int, head h: Int, heads: Int, query i: Int, length l: Int,
                        m: Int, normaliser: KernelNormaliser, causal: Bool, logDecay: Tensor? = nil) -> [Float] {
        var q = [Float](repeating: 0, count: m), k = [Float](repeating: 0, count: l * m)
        q.withUnsafeMutableBufferPointer { features(b, h, i, 1, true, $0.baseAddress!) }
        k.withUnsafeMutableBufferPointer { kp in
            var c0 = 0
            while c0 < l { let r = min(chunk, l - c0); features(b, h, c0, r, false, kp.baseAddress! + c0 * m); c0 += r }
        }
        return q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                if let logDecay {
                    return logDecay.withUnsafeBufferPointer { dp in
                        weights(query: qp.baseAddress!, keys: kp.baseAddress!, ldk: m, lk: l, m: m, normaliser: normaliser,
                                visible: i + 1, logDecay: dp.baseAddress! + (b * heads + h) * l, decayStride: 1)
                    }
                }
                return weights(query: qp.baseAddress!, keys: kp.baseAddress!, ldk: m, lk: l, m: m, normaliser: normaliser,
                               visible: causal ? i + 1 : nil)
            }
        }
    }

    /// One head's slice of a projection, for `count` token rows: dst (count×d) = X (count×C,
    /// rows `ldx` apart) · W[h·d..<(h+1)·d, :]ᵀ + b[h·d..<(h+1)·d] (W out×C, as nn.Linear).
    /// Feature producers project inside the chunk this way, so no N×L×(H·d) query or key
    /// tensor is materialised and the chunk's input rows stay in cache for every head.
    static func projectHead(_ x: UnsafePointer<Float>, ldx: Int, count: Int, channels c: Int,
                            weight w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, head h: Int, width d: Int,
                            dst: UnsafeMutablePointer<Float>) {
        if let bias {
            for r in 0..<count { (dst + r * d).update(from: bias + h * d, count: d) }
        }
        BLAS.gemm(transB: true, m: count, n: d, k: c, a: x, lda: ldx, b: w + h * d * c, ldb: c,
                  beta: bias == nil ? 0 : 1, c: dst, ldc: d)
    }

    /// y = elu(x) + 1 = exp(min(x, 0)) + max(x, 0) on n values: branch-free, vectorised exp.
    static func eluPlusOne(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        for j in 0..<n { y[j] = Swift.min(x[j], 0) }
        fa_exp(y, y, n)
        for j in 0..<n { y[j] += Swift.max(x[j], 0) }
    }

    /// N×L×(H·d) → N×H×L×d (heads as contiguous channel slices, as every reference splits them).
    static func splitHeads(_ x: Tensor, heads: Int) -> Tensor {
        let (n, l, c) = (x.shape[0], x.shape[1], x.shape[2])
        return x.reshaped([n, l, heads, c / heads]).permuted([0, 2, 1, 3])   // N, H, L, d
    }

    /// Checks N×L×C tokens (N, L ≥ 1).
    static func checkTokens(_ x: Tensor, channels: Int, module: String) throws {
        guard x.rank == 3, x.shape[2] == channels, x.shape[0] > 0, x.shape[1] > 0 else {
            throw ModuleError.badInput(module: module, expected: "N×L×\(channels)", found: x.shape)
        }
    }

    /// The token position of a sequence module's map query (SequenceOnMap.swift: row 0, the
    /// position in `column`), and a head in range.
    static func checkQuery(_ query: MapQuery, length: Int, heads: Int, module: String) throws -> Int {
        guard query.row == 0, (0..<length).contains(query.column) else {
            throw ModuleError.badQuery(module: module,
                                       message: "query position \(query.column) (row \(query.row)) is outside the \(length) tokens")
        }
        if let h = query.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: module, message: "head \(h) is outside 0..<\(heads)")
        }
        return query.column
    }

    /// A per-query map 1×1×L: head `head`'s weights, or the mean over heads when nil.
    static func headMap(heads: Int, length l: Int, head: Int?, label: String = "implicit weights",
                        _ weights: (Int) -> [Float]) -> AttentionMap {
        var w = [Float](repeating: 0, count: l)
        let hs = head.map { [$0] } ?? Array(0..<heads)
        for h in hs {
            let row = weights(h)
            for j in 0..<l { w[j] += row[j] / Float(hs.count) }
        }
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: w),
                            labels: [head.map { "\(label), head \($0)" } ?? "\(label), mean of \(heads) heads"])
    }
}

extension Linear {
    /// The weight (out×in) and bias pointers, for feature producers that project inside a chunk.
    func withWeightPointers<R>(_ body: (UnsafePointer<Float>, UnsafePointer<Float>?) -> R) -> R {
        weight.withUnsafeBufferPointer { wp in
            if let bias {
                return bias.withUnsafeBufferPointer { bp in body(wp.baseAddress!, bp.baseAddress!) }
            }
            return body(wp.baseAddress!, nil)
        }
    }
}
