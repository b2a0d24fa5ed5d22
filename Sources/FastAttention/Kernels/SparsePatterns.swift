// Layout builders of the common sparse patterns (Sparse Transformer's all / local / strided /
// fixed), shared by sparse-transformer, jukebox and transformer-on-a-diet.

import TensorCore

extension Linear {
    /// A Linear with given weight (out×in) and bias, e.g. a similarity initialisation.
    init(weight: Tensor, bias: Tensor?) {
        self.init(.seeded(0), inFeatures: weight.shape[1], outFeatures: weight.shape[0], bias: bias != nil)
        self.weight = weight
        self.bias = bias
    }
}

/// Layout builders of the Sparse Transformer patterns (also used by other sparse modules).
enum SparsePatterns {
    /// Every k ≤ q (or every pair).
    static func all(length: Int, block: Int, causal: Bool) -> BlockLayout {
        var b = BlockLayoutBuilder(length: length, blockSize: block)
        for qb in 0..<b.blockCount {
            if causal { b.add(0..<(qb + 1), rule: .causal) } else { b.add(0..<b.blockCount) }
            b.endRow()
        }
        return b.build(name: causal ? "all (causal)" : "all")
    }

    /// q − ctx < k ≤ q (causal) or |q − k| < ctx.
    static func local(length: Int, block: Int, ctx: Int, causal: Bool) -> BlockLayout {
        var b = BlockLayoutBuilder(length: length, blockSize: block)
        let rule = PairRule.band(-(ctx - 1), causal ? 0 : ctx - 1)
        for qb in 0..<b.blockCount {
            let q0 = qb * block, q1 = min(length, q0 + block) - 1
            let k1 = causal ? q1 : q1 + ctx - 1
            b.add(max(0, q0 - ctx + 1) / block..<(k1 / block + 1), rule: rule)
            b.endRow()
        }
        return b.build(name: "local ℓ=\(ctx)")
    }

    /// (q − k) mod stride = 0 (and k ≤ q), on the strided transpose: permuted index runs column
    /// by column of the (⌈L/stride⌉ × stride) raster, so each residue class is contiguous.
    /// `excludeLocal` drops |q − k| < stride (the pair k = q), for merging with `local`.
    static func strided(length: Int, block: Int, stride: Int, causal: Bool, excludeLocal: Bool) -> BlockLayout {
        var order: [Int] = []
        order.reserveCapacity(length)
        var segStart = [Int](repeating: 0, count: stride + 1)          // permuted start of column c
        for c in 0..<stride {
            segStart[c] = order.count
            var p = c
            while p < length { order.append(p); p += stride }
        }
        segStart[stride] = length
        var rules: [PairRule] = []
        if excludeLocal {
            rules.append(PairRule(maxDelta: -stride, deltaStride: stride))
            if !causal { rules.append(PairRule(minDelta: stride, deltaStride: stride)) }
        } else {
            rules.append(PairRule(maxDelta: causal ? 0 : nil, deltaStride: stride))
        }
        var b = BlockLayoutBuilder(length: length, blockSize: block, order: order)
        // Column (residue class) of a permuted index.
        func column(_ j: Int) -> Int { order[j] % stride }
        for qb in 0..<b.blockCount {
            let j0 = qb * block, j1 = min(length, j0 + block) - 1
            let first = segStart[column(j0)], last = segStart[column(j1) + 1] - 1
            let kEnd = causal ? j1 : last
            for kb in (first / block)...(kEnd / block) {
                let k0 = kb * block, k1 = min(length, k0 + block) - 1
                // Full when both blocks lie in one column, keys strictly before the queries
                // (or anywhere when not causal), and no local exclusion applies.
                let oneColumn = column(k0) == column(k1) && column(j0) == column(j1) && column(k0) == column(j0)
                if oneColumn && !excludeLocal && (!causal || k1 < j0) {
                    b.add(kb)
                } else {
                    for r in rules { b.add(kb, rule: r) }
                }
            }
            b.endRow()
        }
        return b.build(name: "strided ℓ=\(stride)" + (excludeLocal ? " (beyond the local window)" : ""))
    }

    /// openai's `fixed` layout for one head pattern: own ctx-chunk ∪ summary blocks.
    static func fixed(length: Int, block: Int, ctx: Int, pattern: Int, vertsize: Int, causal: Bool) -> BlockLayout {
        let stride = ctx / block
        let offsets = (0..<vertsize).map { stride - 1 - pattern * vertsize - $0 }
        var b = BlockLayoutBuilder(length: length, blockSize: block)
        for qb in 0..<b.blockCount {
            let chunk0 = qb / stride * stride
            let last = causal ? qb : b.blockCount - 1
            // Own chunk (blocks of the query's ctx-chunk), then summary blocks.
            if causal {
                b.add(chunk0..<qb)
                b.add(qb, rule: .causal)
            } else {
                b.add(chunk0..<(chunk0 + stride))
            }
            for kb in 0...last where offsets.contains(kb % stride) {
                b.add(kb, rule: causal && kb == qb ? .causal : nil)
            }
            b.endRow()
        }
        return b.build(name: "fixed ℓ=\(ctx) c=\(block * vertsize) pattern \(pattern)")
    }
}
