// Which (query, key) pairs inside a block of a BlockLayout are present: conditions on original
// positions (band, stride, segment, summary columns, globals, coarse spans, explicit graphs),
// combined into an ElementMask as a union. Evaluated only on a pattern's edge blocks.

/// A condition on a (query, key) pair of original sequence positions; every condition set must
/// hold. Unset conditions are no constraint, so `PairRule()` admits every pair.
public struct PairRule: Hashable, Sendable, CustomStringConvertible {
    /// k − q ≥ minDelta.
    public var minDelta: Int?
    /// k − q ≤ maxDelta (0: causal).
    public var maxDelta: Int?
    /// (q − k) mod deltaStride == 0: strided heads, dilated windows.
    public var deltaStride = 1
    /// ⌊k / segment⌋ == ⌊q / segment⌋: the same row of a reshaped sequence (fixed pattern).
    public var segment = 0
    /// (k mod keyPeriod) ∈ keyPhases: summary columns (fixed pattern).
    public var keyPeriod = 0
    public var keyPhases: Range<Int> = 0..<0
    /// k ∈ keys: global columns.
    public var keys: Range<Int>?
    /// q ∈ queries: global rows.
    public var queries: Range<Int>?
    /// Coarse keys appended after `coarseBase` fine positions, key k standing for the span
    /// [m·coarsePool, (m+1)·coarsePool) with m = k − coarseBase: present when the span ends at
    /// least `coarseLag` positions before q (and, with `coarseTwoSided`, also when it starts at
    /// least `coarseLag` positions after q). Multi-scale attention's pooled tokens.
    public var coarseBase = 0
    public var coarsePool = 0
    public var coarseLag = 0
    public var coarseTwoSided = false
    /// k ∈ adjacency's key list of q: an explicit graph (BP-Transformer's edges).
    public var adjacency: Adjacency?

    public init(minDelta: Int? = nil, maxDelta: Int? = nil, deltaStride: Int = 1, segment: Int = 0,
                keyPeriod: Int = 0, keyPhases: Range<Int> = 0..<0, keys: Range<Int>? = nil,
                queries: Range<Int>? = nil, coarseBase: Int = 0, coarsePool: Int = 0, coarseLag: Int = 0,
                coarseTwoSided: Bool = false, adjacency: Adjacency? = nil) {
        self.minDelta = minDelta
        self.maxDelta = maxDelta
        self.deltaStride = deltaStride
        self.segment = segment
        self.keyPeriod = keyPeriod
        self.keyPhases = keyPhases
        self.keys = keys
        self.queries = queries
        self.coarseBase = coarseBase
        self.coarsePool = coarsePool
        self.coarseLag = coarseLag
        self.coarseTwoSided = coarseTwoSided
        self.adjacency = adjacency
    }

    /// k ≤ q.
    public static let causal = PairRule(maxDelta: 0)
    /// lo ≤ k − q ≤ hi.
    public static func band(_ lo: Int, _ hi: Int) -> PairRule { PairRule(minDelta: lo, maxDelta: hi) }

    @inline(__always) public func contains(_ q: Int, _ k: Int) -> Bool {
        let d = k - q
        if let lo = minDelta, d < lo { return false }
        if let hi = maxDelta, d > hi { return false }
        if deltaStride > 1, d % deltaStride != 0 { return false }
        if segment > 0, k / segment != q / segment { return false }
        if keyPeriod > 0, !keyPhases.contains(k % keyPeriod) { return false }
        if let r = keys, !r.contains(k) { return false }
        if let r = queries, !r.contains(q) { return false }
        if let a = adjacency, !a.contains(q, k) { return false }
        if coarsePool > 0 {
            guard k >= coarseBase, q < coarseBase else { return false }
            let start = (k - coarseBase) * coarsePool, end = start + coarsePool - 1
            return end <= q - coarseLag || (coarseTwoSided && start >= q + coarseLag)
        }
        return true
    }

    /// True when only delta bounds are set (so fullness and emptiness over a box are analytic).
    var isBandOnly: Bool {
        deltaStride == 1 && segment == 0 && keyPeriod == 0 && keys == nil && queries == nil && coarsePool == 0
            && adjacency == nil
    }

    public var description: String {
        var parts: [String] = []
        switch (minDelta, maxDelta) {
        case (nil, 0?): parts.append("k≤q")
        case let (lo?, hi?): parts.append("\(lo)≤k−q≤\(hi)")
        case let (lo?, nil): parts.append("k−q≥\(lo)")
        case let (nil, hi?): parts.append("k−q≤\(hi)")
        default: break
        }
        if deltaStride > 1 { parts.append("(q−k)%\(deltaStride)=0") }
        if segment > 0 { parts.append("k/\(segment)=q/\(segment)") }
        if keyPeriod > 0 { parts.append("k%\(keyPeriod)∈\(keyPhases.lowerBound)..<\(keyPhases.upperBound)") }
        if let r = keys { parts.append("k∈\(r.lowerBound)..<\(r.upperBound)") }
        if let r = queries { parts.append("q∈\(r.lowerBound)..<\(r.upperBound)") }
        if let a = adjacency { parts.append("edge of \(a.name)") }
        if coarsePool > 0 {
            parts.append("coarse k≥\(coarseBase): span of \(coarsePool) ends ≤ q−\(coarseLag)" + (coarseTwoSided ? " or starts ≥ q+\(coarseLag)" : ""))
        }
        return parts.isEmpty ? "all" : parts.joined(separator: " ∧ ")
    }
}

/// An explicit pair set: for each query position its sorted key positions (CSR). Compared by
/// identity, as a rule's graph.
public final class Adjacency: Hashable, @unchecked Sendable {
    public let name: String
    let offsets: [Int32]
    let keys: [Int32]

    /// `keysOf[q]`: the keys of query q (each at most once).
    public init(name: String, keysOf: [[Int]]) {
        self.name = name
        var off: [Int32] = [0], ks: [Int32] = []
        for list in keysOf {
            ks += list.sorted().map(Int32.init)
            off.append(Int32(ks.count))
        }
        offsets = off
        keys = ks
    }

    @inline(__always) public func contains(_ q: Int, _ k: Int) -> Bool {
        guard q >= 0, q + 1 < offsets.count else { return false }
        var lo = Int(offsets[q]), hi = Int(offsets[q + 1])
        let key = Int32(k)
        while lo < hi {
            let mid = (lo + hi) >> 1
            if keys[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo < Int(offsets[q + 1]) && keys[lo] == key
    }

    public static func == (a: Adjacency, b: Adjacency) -> Bool { a === b }
    public func hash(into h: inout Hasher) { h.combine(ObjectIdentifier(self)) }
}

/// The pairs present inside one (query block, key block) entry: the union of its rules.
public struct ElementMask: Hashable, Sendable, CustomStringConvertible {
    public var rules: [PairRule]
    public init(_ rules: [PairRule]) { self.rules = rules }
    @inline(__always) public func contains(_ q: Int, _ k: Int) -> Bool {
        for r in rules where r.contains(q, k) { return true }
        return false
    }
    public var description: String { rules.map { "(\($0))" }.joined(separator: " ∨ ") }
}
