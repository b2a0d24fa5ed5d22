// The global-band pattern as a BlockLayout: g global (memory) tokens placed before L tokens,
// T = g + L positions; global rows see every position, token rows see the globals and the
// tokens within a radius. GMAT's memory and ETC's global-local attention run it through the
// block-sparse kernel over the concatenated sequence: O(T·(g + 2r + block)) pairs, nothing T×T.
// Its edges are interval rules (key/query ranges and delta bounds), which the kernel masks by
// bounds per row.

extension PairRule {
    /// True when only delta bounds and key/query ranges are set (the rules `globalBand` makes):
    /// for each query the rule admits one interval of keys, `keyInterval`, so the kernel masks a
    /// row by its bounds instead of testing each pair.
    var isInterval: Bool { deltaStride == 1 && segment == 0 && keyPeriod == 0 && coarsePool == 0 }

    /// The keys lo...hi (empty when lo > hi) that query q admits under an interval rule.
    @inline(__always) func keyInterval(query q: Int) -> (lo: Int, hi: Int) {
        if let r = queries, !r.contains(q) { return (1, 0) }
        var lo = minDelta.map { q + $0 } ?? Int.min / 2, hi = maxDelta.map { q + $0 } ?? Int.max / 2
        if let r = keys { (lo, hi) = (max(lo, r.lowerBound), min(hi, r.upperBound - 1)) }
        return (lo, hi)
    }
}

extension ElementMask {
    /// Whether every rule is an interval rule (`PairRule.isInterval`).
    var isInterval: Bool { rules.allSatisfy(\.isInterval) }
}

extension BlockLayoutBuilder {
    /// For the current query block: the pairs (q, k) with q ∈ `queries`, k ∈ `keys` and, with
    /// `band`, k − q in it. Only key blocks that can hold such pairs are added, each without the
    /// conditions all its pairs meet, so blocks inside the ranges stay unmasked (full).
    public mutating func add(keys: Range<Int>, queries: Range<Int>, band: ClosedRange<Int>? = nil) {
        let q0 = queryBlock * blockSize, q1 = min(length, q0 + blockSize)
        let qs = max(q0, queries.lowerBound), qe = min(q1, queries.upperBound)
        var ks = max(0, keys.lowerBound), ke = min(length, keys.upperBound)
        if let band { (ks, ke) = (max(ks, qs + band.lowerBound), min(ke, qe + band.upperBound)) }
        guard qs < qe, ks < ke else { return }
        let allRows = qs == q0 && qe == q1
        for kb in (ks / blockSize)...((ke - 1) / blockSize) {
            let k0 = kb * blockSize, k1 = min(length, k0 + blockSize)
            let allKeys = keys.lowerBound <= k0 && k1 <= keys.upperBound
            add(kb, rule: PairRule(minDelta: band?.lowerBound, maxDelta: band?.upperBound,
                                   keys: allKeys ? nil : keys, queries: allRows ? nil : queries))
        }
    }
}

extension BlockLayout {
    /// Which rows of a global-band pattern a layout holds (the others are empty).
    public enum GlobalBandRows: Sendable { case all, globals, tokens }

    /// Kernel block for a band of `radius`: the one-sided window, between 8 and 64 (8 measured
    /// fastest for GMAT/ETC at r = 8: blocks of 16 or 32 compute more masked columns).
    public static func globalBandBlock(radius: Int) -> Int { min(64, max(8, radius)) }

    /// g global tokens at positions 0..<g, then L tokens at g..<g+L: a global row attends to
    /// every position; a token row to the globals and to the tokens within `radius` of it.
    /// `rows` keeps only one kind of row, for patterns whose two kinds meet different keys (two
    /// kernel calls). Global k owns the `globalBlock` tokens g + k·B ..< g + (k+1)·B; with
    /// `hardTokenToGlobal` a token sees only its owner among the globals, with
    /// `hardGlobalToToken` a global sees only its own tokens (ETC's hard l2g / g2l masks).
    public static func globalBand(globals g: Int, tokens l: Int, radius r: Int, block: Int? = nil,
                                  rows: GlobalBandRows = .all, globalBlock: Int = 1,
                                  hardTokenToGlobal: Bool = false, hardGlobalToToken: Bool = false) -> BlockLayout {
        precondition(g >= 0 && l >= 0 && g + l > 0 && r >= 0 && globalBlock >= 1)
        let t = g + l, bs = block ?? globalBandBlock(radius: r)
        let globalRows = 0..<g, tokenRows = g..<t
        func owned(_ k: Int) -> Range<Int> { min(t, g + k * globalBlock)..<min(t, g + (k + 1) * globalBlock) }
        var b = BlockLayoutBuilder(length: t, blockSize: bs)
        for qb in 0..<b.blockCount {
            let qr = (qb * bs)..<min(t, (qb + 1) * bs)
            if rows != .tokens {
                if hardGlobalToToken {
                    b.add(keys: globalRows, queries: globalRows)
                    for k in qr.clamped(to: globalRows) { b.add(keys: owned(k), queries: k..<(k + 1)) }
                } else {
                    b.add(keys: 0..<t, queries: globalRows)
                }
            }
            if rows != .globals {
                let tr = qr.clamped(to: tokenRows)
                if hardTokenToGlobal, !tr.isEmpty {
                    for k in ((tr.lowerBound - g) / globalBlock)...((tr.upperBound - 1 - g) / globalBlock) where k < g {
                        b.add(keys: k..<(k + 1), queries: owned(k))
                    }
                } else if !hardTokenToGlobal {
                    b.add(keys: globalRows, queries: tokenRows)
                }
                b.add(keys: tokenRows, queries: tokenRows, band: -r...r)
            }
            b.endRow()
        }
        let hard = (hardTokenToGlobal ? ", hard token→global" : "") + (hardGlobalToToken ? ", hard global→token" : "")
        let kind = rows == .all ? "" : rows == .globals ? " (global rows)" : " (token rows)"
        return b.build(name: "\(g) global + band ±\(r) over \(l) tokens\(hard)\(kind)")
    }
}
