// Shared machinery of the content-bucketed sparse attentions (Reformer LSH, SMYRF, Routing,
// ...): hash positions into buckets, sort them stably into chunks, attend inside a chunk and its
// neighbouring chunks with a small gathered tile (never L×L), undo the sort, and combine the
// contributions a position gets from several hash rounds (logsumexp weights) or several routes
// (mean). The per-query map row is computed from the same plan, one query at a time, in
// O(rounds · chunk · d).
//
// A `Plan` describes one (batch, head) problem as "slots": round r's query slots are the
// positions in sorted order, `queryIndex[r·n + s]` the position held by slot s. All rounds are
// concatenated, then cut into chunks of `queryChunk` query slots; chunk c sees the key slots of
// chunks c−before … c+after (cyclically over the chunks of ALL rounds, as HF/trax's
// `look_adjacent` does), plus `memoryCount` per-chunk memory keys (routing's learned mem kv).
//
// Cost per chunk: a gather of its keys/values (queries are read in place when the chunk holds
// consecutive positions, as Sinkhorn's blocks do), two GEMMs, and the masked softmax in one
// vectorised C pass (`fa_bucketed_softmax_rows`, CKernels/sparse_kernels.c: integer compares for
// the masks, AVX-512 or AVX2 exp); chunks of all problems run over our threads.

import CKernels
import Foundation
import TensorCore

public enum BucketedAttention {

    // MARK: - Hashing and sorting

    /// Angular LSH (Reformer): for every position and round, bucket = argmax([xR, −xR]) over
    /// 2·half buckets, the first maximum on ties (as `torch.argmax`). `vectors` are `length` rows
    /// of d at stride `ld`; `rotations` is d × rounds × half, row-major (HF's per-head layout
    /// `(attention_head_size, num_hashes, num_buckets/2)`). Returns rounds × length buckets.
    /// With several `factors` (HF's factorised `num_buckets`, each even), half = Σ factors/2 and
    /// bucket = Σ_f (Π_{g<f} factor_g) · argmax over factor f's slice [x R_f, −x R_f].
    public static func rotationBuckets(vectors: UnsafePointer<Float>, ld: Int, length: Int, d: Int,
                                       rotations: UnsafePointer<Float>, rounds: Int, factors: [Int]) -> [Int32] {
        precondition(factors.allSatisfy { $0 > 0 && $0 % 2 == 0 }, "bucket factors must be even")
        let half = factors.reduce(0, +) / 2
        var buckets = [Int32](repeating: 0, count: rounds * length)
        if length == 0 { return buckets }
        let width = rounds * half
        var rotated = [Float](repeating: 0, count: length * width)
        rotated.withUnsafeMutableBufferPointer { rp in
            // rotated (length × rounds·half) = X (length×d) · R (d × rounds·half)
            BLAS.gemm(m: length, n: width, k: d, a: vectors, lda: ld, b: rotations, ldb: width,
                      c: rp.baseAddress!, ldc: width)
            for i in 0..<length {
                for r in 0..<rounds {
                    var bucket = 0, product = 1, offset = 0
                    for f in factors {
                        let row = rp.baseAddress! + i * width + r * half + offset, h = f / 2
                        var best = -Float.infinity, arg = 0
                        for j in 0..<h where row[j] > best { best = row[j]; arg = j }
                        for j in 0..<h where -row[j] > best { best = -row[j]; arg = h + j }
                        bucket += product * arg
                        product *= f
                        offset += h
                    }
                    buckets[r * length + i] = Int32(bucket)
                }
            }
        }
        return buckets
    }

    /// Positions 0..<n sorted by bucket, ties by position: a stable counting sort, O(n + buckets).
    public static func stableOrder<C: Collection>(buckets: C, bucketCount: Int) -> [Int32] where C.Element == Int32 {
        var start = [Int](repeating: 0, count: bucketCount + 1)
        for b in buckets { start[Int(b) + 1] += 1 }
        for i in 0..<bucketCount { start[i + 1] += start[i] }
        var order = [Int32](repeating: 0, count: buckets.count)
        for (i, b) in buckets.enumerated() {
            order[start[Int(b)]] = Int32(i)
            start[Int(b)] += 1
        }
        return order
    }

    /// Positions 0..<n sorted by value, ties by position (a stable argsort), O(n log n). Sorts
    /// one UInt64 per position (order-preserving bits of the value, then the position).
    public static func stableOrder(values: UnsafeBufferPointer<Float>) -> [Int32] {
        precondition(values.count <= Int(UInt32.max))
        var keys = [UInt64](repeating: 0, count: values.count)
        for (i, v) in values.enumerated() {
            let bits = (v == 0 ? Float(0) : v).bitPattern              // −0 sorts with +0
            let ordered = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
            keys[i] = UInt64(ordered) << 32 | UInt64(i)
        }
        keys.sort()
        return keys.map { Int32(truncatingIfNeeded: $0 & 0xFFFF_FFFF) }
    }

    /// The inverse permutation: `inverse(order)[order[s]] == s`.
    public static func inverse(_ order: [Int32]) -> [Int32] {
        var inv = [Int32](repeating: 0, count: order.count)
        for (s, p) in order.enumerated() { inv[Int(p)] = Int32(s) }
        return inv
    }

    // MARK: - Plans

    /// Which keys each query slot sees, for one (batch, head) problem.
    public struct Plan {
        /// Slot → position for queries (all rounds concatenated; several slots may hold one
        /// position, and a position may have none).
        public var queryIndex: [Int32]
        /// Slot → position for keys, in as many chunks as `queryIndex`.
        public var keyIndex: [Int32]
        public var queryChunk: Int
        public var keyChunk: Int
        /// Neighbouring key chunks each query chunk also sees, cyclic over all chunks.
        public var before = 0
        public var after = 0
        /// Per-chunk memory keys and values (chunks × memoryCount × d, and × dv), not positions:
        /// never masked, and absent from maps.
        public var memoryCount = 0
        public var memoryKeys: [Float] = []
        public var memoryValues: [Float] = []
        /// Per chunk × memoryCount: false masks that memory key (with `paddingValue`); empty: all valid.
        public var memoryValid: [Bool] = []

        public init(queryIndex: [Int32], keyIndex: [Int32], queryChunk: Int, keyChunk: Int,
                    before: Int = 0, after: Int = 0) {
            precondition(queryChunk > 0 && keyChunk > 0 && queryIndex.count % queryChunk == 0)
            precondition(keyIndex.count / keyChunk == queryIndex.count / queryChunk && keyIndex.count % keyChunk == 0,
                         "queries and keys must form the same number of chunks")
            self.queryIndex = queryIndex
            self.keyIndex = keyIndex
            self.queryChunk = queryChunk
            self.keyChunk = keyChunk
            self.before = before
            self.after = after
        }

        public var chunkCount: Int { queryIndex.count / queryChunk }
        /// Keys a query of one chunk sees (duplicates counted).
        public var keysPerChunk: Int { keyChunk * (1 + before + after) + memoryCount }

        /// The key chunks chunk c sees, in `look_adjacent` order (c−before … c+after).
        func keyChunks(_ c: Int) -> [Int] {
            let n = chunkCount
            return (-before...after).map { (((c + $0) % n) + n) % n }
        }
    }

    /// How logits are scaled and masked. Masked logits are REPLACED by a finite value (as HF's
    /// `torch.where(mask, dots, -1e9)`), so a row whose keys are all masked is still a softmax.
    public struct Masking {
        public var scale: Float = 1
        /// Key position > query position → `causalValue`.
        public var causal = false
        public var causalValue: Float = -1e9
        /// Key position == query position → `selfValue` (shared-QK: attend to oneself only when
        /// nothing else is visible). Applied after the causal mask.
        public var selfValue: Float?
        /// Key positions ≥ validLength are padding → `paddingValue` (applied with the causal mask).
        public var validLength = Int.max
        public var paddingValue: Float = -1e9

        public init(scale: Float = 1, causal: Bool = false, causalValue: Float = -1e9, selfValue: Float? = nil,
                    validLength: Int = .max, paddingValue: Float = -1e9) {
            self.scale = scale
            self.causal = causal
            self.causalValue = causalValue
            self.selfValue = selfValue
            self.validLength = validLength
            self.paddingValue = paddingValue
        }

        @inline(__always) func apply(_ logit: Float, query qp: Int32, key kp: Int32) -> Float {
            if kp < 0 { return kp == -1 ? logit : paddingValue }        // memory key (−2: masked)
            var v = logit
            if Int(kp) >= validLength { v = paddingValue }
            else if causal && kp > qp { v = causalValue }
            if let s = selfValue, kp == qp { v = s }
            return v
        }
    }

    /// How a position's contributions (one per slot holding it) become its output.
    public enum Combine: Sendable {
        /// Σ_s o_s · exp(lse_s − logsumexp_s lse_s): hash rounds weighted by their softmax mass.
        case logsumexp
        /// Σ_s o_s / (count + eps); a position with no slot gets 0 (routing's scatter-mean).
        case mean(eps: Float)
    }

    // MARK: - Forward

    /// out[b,h] for every problem p = b·heads + h: chunked attention over `plans[p]`, combined per
    /// position. q and k have d columns, v dv, at their operands' strides; out is length × dv.
    /// `forward` on token tensors with heads as contiguous channel slices: q, k, v are
    /// N×L×(H·d) and so is the result. No copies: heads are read in place through strides.
    public static func forward(plans: [Plan], heads: Int, q: Tensor, k: Tensor, v: Tensor,
                               masking: Masking, combine: Combine) -> Tensor {
        let (n, l, hd) = (q.shape[0], q.shape[1], q.shape[2])
        let d = hd / heads
        var out = Tensor(uninitialized: [n, l, hd])                  // N, L, H·d
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        forward(plans: plans, heads: heads, length: l, d: d, dv: d,
                                q: .init(base: qp.baseAddress!, ld: hd, batchStride: l * hd, headStride: d),
                                k: .init(base: kp.baseAddress!, ld: hd, batchStride: l * hd, headStride: d),
                                v: .init(base: vp.baseAddress!, ld: hd, batchStride: l * hd, headStride: d),
                                out: op.baseAddress!, outLd: hd, outBatchStride: l * hd, outHeadStride: d,
                                masking: masking, combine: combine)
                    }
                }
            }
        }
        return out
    }

    public static func forward(
        plans: [Plan], heads: Int, length: Int, d: Int, dv: Int,
        q: AttentionOperand, k: AttentionOperand, v: AttentionOperand,
        out: UnsafeMutablePointer<Float>, outLd: Int, outBatchStride: Int, outHeadStride: Int,
        masking: Masking, combine: Combine
    ) {
        let problems = plans.count
        if problems == 0 || length == 0 { return }
        // Slot results of every problem: outputs (slots × dv) and logsumexps.
        var slotBase = [0]
        for p in plans { slotBase.append(slotBase.last! + p.queryIndex.count) }
        let totalSlots = slotBase.last!
        var results = Tensor(uninitialized: [max(totalSlots * (dv + 1), 1)])
        results.withUnsafeMutableBufferPointer { rbuf in
            let slotOut = rbuf.baseAddress!, slotLse = slotOut + totalSlots * dv
            var chunkBase = [0]
            for p in plans { chunkBase.append(chunkBase.last! + p.chunkCount) }
            let items = chunkBase.last!
            let maxQ = plans.map(\.queryChunk).max()!, maxK = plans.map(\.keysPerChunk).max()!
            Threads.parallelFor(items) { range in
                var scratch = Tensor(uninitialized: [maxQ * d + maxK * (d + dv) + maxQ * maxK])
                var keyPos = [Int32](repeating: -1, count: maxK)
                scratch.withUnsafeMutableBufferPointer { sbuf in
                    keyPos.withUnsafeMutableBufferPointer { kpos in
                        var p = 0
                        for item in range {
                            while chunkBase[p + 1] <= item { p += 1 }
                            let b = p / heads, h = p % heads
                            attendChunk(plans[p], chunk: item - chunkBase[p], masking: masking, d: d, dv: dv,
                                        q: q.pointer(b, h), qld: q.ld, k: k.pointer(b, h), kld: k.ld,
                                        v: v.pointer(b, h), vld: v.ld, scratch: sbuf.baseAddress!,
                                        keyPos: kpos.baseAddress!,
                                        out: slotOut + slotBase[p] * dv, lse: slotLse + slotBase[p])
                        }
                    }
                }
            }
            Threads.parallelFor(problems) { range in
                for p in range {
                    let b = p / heads, h = p % heads
                    combineSlots(plans[p].queryIndex, length: length, dv: dv, combine: combine,
                                 slotOut: slotOut + slotBase[p] * dv, slotLse: slotLse + slotBase[p],
                                 out: out + b * outBatchStride + h * outHeadStride, outLd: outLd)
                }
            }
        }
    }

    /// One chunk: gather its queries (read in place when they are consecutive positions) and
    /// visible keys/values, logits, masked softmax (`fa_bucketed_softmax_rows`), outputs and
    /// logsumexps written at the chunk's query slots. `keyPos` has room for `keysPerChunk`.
    static func attendChunk(_ plan: Plan, chunk c: Int, masking: Masking, d: Int, dv: Int,
                            q: UnsafePointer<Float>, qld: Int, k: UnsafePointer<Float>, kld: Int,
                            v: UnsafePointer<Float>, vld: Int, scratch: UnsafeMutablePointer<Float>,
                            keyPos: UnsafeMutablePointer<Int32>,
                            out: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>) {
        let nq = plan.queryChunk, nk = plan.keysPerChunk
        let qg = scratch, kg = qg + nq * d, vg = kg + nk * d, s = vg + nk * dv
        let q0 = c * nq
        plan.queryIndex.withUnsafeBufferPointer { qiBuf in
            let qi = qiBuf.baseAddress! + q0
            // Queries: in place when the chunk holds consecutive positions.
            var qa = UnsafePointer(qg), qlda = d
            let first = Int(qi[0])
            var consecutive = true
            for r in 1..<max(nq, 1) where Int(qi[r]) != first + r { consecutive = false; break }
            if consecutive {
                qa = q + first * qld
                qlda = qld
            } else {
                fa_gather_rows(qg, q, qld, qi, nq, d)
            }
            var j = 0
            plan.keyIndex.withUnsafeBufferPointer { ki in
                for kc in plan.keyChunks(c) {
                    let idx = ki.baseAddress! + kc * plan.keyChunk
                    fa_gather_rows(kg + j * d, k, kld, idx, plan.keyChunk, d)
                    fa_gather_rows(vg + j * dv, v, vld, idx, plan.keyChunk, dv)
                    (keyPos + j).update(from: idx, count: plan.keyChunk)
                    j += plan.keyChunk
                }
            }
            if plan.memoryCount > 0 {
                let m = plan.memoryCount
                (keyPos + j).update(repeating: -1, count: m)
                if !plan.memoryValid.isEmpty { for t in 0..<m where !plan.memoryValid[c * m + t] { keyPos[j + t] = -2 } }
                plan.memoryKeys.withUnsafeBufferPointer { mk in
                    (kg + j * d).update(from: mk.baseAddress! + c * m * d, count: m * d)
                }
                plan.memoryValues.withUnsafeBufferPointer { mv in
                    (vg + j * dv).update(from: mv.baseAddress! + c * m * dv, count: m * dv)
                }
            }
            // s (nq × nk) = scale · Q_chunk K_visibleᵀ
            BLAS.gemm(transB: true, m: nq, n: nk, k: d, alpha: masking.scale, a: qa, lda: qlda, b: kg, ldb: d, c: s, ldc: nk)
            maskedSoftmax(s, rows: nq, cols: nk, keyPos: keyPos, queryPos: qi, masking: masking, lse: lse + q0)
        }
        // out (nq × dv) = P V_visible
        BLAS.gemm(m: nq, n: dv, k: nk, a: s, lda: nk, b: vg, ldb: dv, c: out + q0 * dv, ldc: dv)
    }

    /// Masks `rows` logit rows (cols wide, contiguous) in place, turns them into probabilities
    /// and writes their logsumexps: `Masking.apply` per logit, then a stable softmax; a row with
    /// a NaN becomes NaN, a row whose maximum is −inf zeros (lse −inf). Vectorised in CKernels.
    static func maskedSoftmax(_ s: UnsafeMutablePointer<Float>, rows: Int, cols: Int, keyPos: UnsafePointer<Int32>,
                              queryPos: UnsafePointer<Int32>, masking: Masking, lse: UnsafeMutablePointer<Float>) {
        fa_bucketed_softmax_rows(s, rows, cols, cols, keyPos, queryPos,
                                 masking.causal ? 1 : 0, masking.causalValue,
                                 masking.selfValue == nil ? 0 : 1, masking.selfValue ?? 0,
                                 Int32(clamping: max(masking.validLength, 0)), masking.paddingValue, lse)
    }

    /// Undoes the sort: each position's output from the slots holding it.
    static func combineSlots(_ queryIndex: [Int32], length: Int, dv: Int, combine: Combine,
                             slotOut: UnsafePointer<Float>, slotLse: UnsafePointer<Float>,
                             out: UnsafeMutablePointer<Float>, outLd: Int) {
        for i in 0..<length { (out + i * outLd).update(repeating: 0, count: dv) }
        let w = slotWeights(queryIndex, length: length, combine: combine, slotLse: slotLse)
        for (s, pos) in queryIndex.enumerated() where Int(pos) < length && w[s] != 0 {
            let o = out + Int(pos) * outLd, src = slotOut + s * dv, ws = w[s]
            for c in 0..<dv { o[c] += ws * src[c] }
        }
    }

    /// The weight of each slot in its position's output.
    static func slotWeights(_ queryIndex: [Int32], length: Int, combine: Combine,
                            slotLse: UnsafePointer<Float>) -> [Float] {
        var w = [Float](repeating: 0, count: queryIndex.count)
        switch combine {
        case .mean(let eps):
            var count = [Float](repeating: 0, count: length)
            for pos in queryIndex where Int(pos) < length { count[Int(pos)] += 1 }
            for (s, pos) in queryIndex.enumerated() where Int(pos) < length { w[s] = 1 / (count[Int(pos)] + eps) }
        case .logsumexp:
            var mx = [Float](repeating: -.infinity, count: length), sum = [Float](repeating: 0, count: length)
            for (s, pos) in queryIndex.enumerated() where Int(pos) < length {
                // NaN-propagating max: a NaN slot makes its position's weights NaN.
                let p = Int(pos)
                mx[p] = mx[p].isNaN || slotLse[s].isNaN ? .nan : max(mx[p], slotLse[s])
            }
            for (s, pos) in queryIndex.enumerated() where Int(pos) < length && mx[Int(pos)] != -.infinity {
                sum[Int(pos)] += Foundation.exp(slotLse[s] - mx[Int(pos)])
            }
            for (s, pos) in queryIndex.enumerated() where Int(pos) < length && mx[Int(pos)] != -.infinity {
                let p = Int(pos)
                w[s] = Foundation.exp(slotLse[s] - (mx[p] + Foundation.log(sum[p])))
            }
        }
        return w
    }

    // MARK: - Maps

    /// The row of weights query position `position` gives every key position in one problem:
    /// Σ over the slots holding it of (slot weight) · softmax over its visible keys, scattered to
    /// key positions (duplicates add). Memory keys take mass but are not positions. O(slots +
    /// rounds · keysPerChunk · d): no L×L matrix.
    public static func mapRow(plan: Plan, position: Int, length: Int, d: Int,
                              q: UnsafePointer<Float>, qld: Int, k: UnsafePointer<Float>, kld: Int,
                              masking: Masking, combine: Combine) -> [Float] {
        var out = [Float](repeating: 0, count: length)
        for (w, keys, probs) in slotRows(plan: plan, position: position, length: length, d: d, q: q, qld: qld,
                                         k: k, kld: kld, masking: masking, combine: combine) {
            for (j, kp) in keys.enumerated() where kp >= 0 && Int(kp) < length { out[Int(kp)] += w * probs[j] }
        }
        return out
    }

    /// For each slot holding `position`: its weight in the position's output, the positions of
    /// the keys it sees (−1 for memory keys, which come last; −2 masked ones) and its softmax over them.
    public static func slotRows(plan: Plan, position: Int, length: Int, d: Int,
                                q: UnsafePointer<Float>, qld: Int, k: UnsafePointer<Float>, kld: Int,
                                masking: Masking, combine: Combine) -> [(weight: Float, keys: [Int32], probs: [Float])] {
        let nk = plan.keysPerChunk
        var slots: [Int] = []
        for (s, pos) in plan.queryIndex.enumerated() where Int(pos) == position { slots.append(s) }
        var probs: [[Float]] = [], keys: [[Int32]] = []
        var lse = [Float](repeating: -.infinity, count: plan.queryIndex.count)
        let qp = q + position * qld
        for s in slots {
            let c = s / plan.queryChunk
            var keyPos = [Int32](repeating: -1, count: nk), row = [Float](repeating: 0, count: nk)
            var j = 0
            for kc in plan.keyChunks(c) {
                for t in 0..<plan.keyChunk { keyPos[j] = plan.keyIndex[kc * plan.keyChunk + t]; j += 1 }
            }
            for jj in 0..<j {
                let kp = k + Int(keyPos[jj]) * kld
                var acc: Float = 0
                for e in 0..<d { acc += qp[e] * kp[e] }
                row[jj] = masking.scale * acc
            }
            for mm in 0..<plan.memoryCount {
                if !plan.memoryValid.isEmpty && !plan.memoryValid[c * plan.memoryCount + mm] { keyPos[j + mm] = -2 }
                var acc: Float = 0
                for e in 0..<d { acc += qp[e] * plan.memoryKeys[(c * plan.memoryCount + mm) * d + e] }
                row[j + mm] = masking.scale * acc
            }
            var qpos = Int32(position), rowLse: Float = 0
            row.withUnsafeMutableBufferPointer { rp in
                keyPos.withUnsafeBufferPointer { kp in
                    maskedSoftmax(rp.baseAddress!, rows: 1, cols: nk, keyPos: kp.baseAddress!, queryPos: &qpos,
                                  masking: masking, lse: &rowLse)
                }
            }
            lse[s] = rowLse
            probs.append(row)
            keys.append(keyPos)
        }
        let w = lse.withUnsafeBufferPointer { slotWeights(plan.queryIndex, length: length, combine: combine, slotLse: $0.baseAddress!) }
        return slots.enumerated().map { (w[$0.element], keys[$0.offset], probs[$0.offset]) }
    }
}
