// The block layout of a block-sparse attention pattern: which key blocks each query block meets,
// and, on the edges of the pattern, which (query, key) pairs inside a block are present.
// Sparse modules (sparse-transformer, longformer, big-bird, jukebox, ...) are layout builders
// over the one kernel in BlockSparseAttention.swift; causality is a layout property.

import Foundation

/// A block-sparse attention pattern over a sequence of `length` positions.
///
/// Positions are optionally visited in a permuted `order` (index j of the permuted sequence is
/// original position `order[j]`) — Sparse Transformer's strided transpose, a dilated window's
/// residue classes, Jukebox's column attention: patterns that are scattered in the original
/// order become contiguous blocks. Blocks are `blockSize` consecutive permuted positions; the
/// last one is ragged when `length` is not a multiple. For each query block, `rows` lists the
/// key blocks it meets (sorted; a block listed twice is counted twice in the softmax, as
/// BigBird's eval-mode "random" block 0 is), each either full or with an `ElementMask`
/// evaluated on original positions.
public struct BlockLayout: Sendable {
    public struct Entry: Hashable, Sendable {
        public let keyBlock: Int32
        /// Index into `masks`, or −1 for a full block.
        public let mask: Int32
    }

    public let length: Int
    public let blockSize: Int
    public let order: [Int32]?
    /// inverse[position] = permuted index (nil with no order).
    public let inverse: [Int32]?
    public let rows: [[Entry]]
    public let masks: [ElementMask]
    /// Whether no present pair has its key after its query (checked when built).
    public let causal: Bool
    /// A short name for renderings ("strided ℓ=8", "band w=4 + 2 global").
    public let name: String
    /// The present pairs of the edge entries as bits, made on first use (`edgeBits()`).
    let edgeCache = EdgeBitsCache()

    public var blockCount: Int { (length + blockSize - 1) / blockSize }

    @inline(__always) public func position(_ j: Int) -> Int { order.map { Int($0[j]) } ?? j }
    @inline(__always) public func index(ofPosition p: Int) -> Int { inverse.map { Int($0[p]) } ?? p }

    /// Permuted index range of block `b` (clipped at the end).
    public func blockRange(_ b: Int) -> Range<Int> { (b * blockSize)..<min(length, (b + 1) * blockSize) }

    /// Whether the pair (query index qi, key index kj) — permuted indices — is present in entry `e`.
    @inline(__always) func present(_ e: Entry, qi: Int, kj: Int) -> Bool {
        e.mask < 0 || masks[Int(e.mask)].contains(position(qi), position(kj))
    }

    /// Number of entries (computed blocks), and of present pairs counted with multiplicity.
    public var entryCount: Int { rows.reduce(0) { $0 + $1.count } }

    /// The present pairs of one query (original position), with multiplicity: O(support).
    public func support(ofQuery p: Int) -> [Int] {
        let qi = index(ofPosition: p), qb = qi / blockSize
        var keys: [Int] = []
        for e in rows[qb] {
            for kj in blockRange(Int(e.keyBlock)) where present(e, qi: qi, kj: kj) { keys.append(position(kj)) }
        }
        return keys
    }

    /// The dense L×L count matrix (how many times each pair is present), row-major in original
    /// positions. O(L²): for tests and tiny renderings only.
    public func denseCounts() -> [Int32] {
        var c = [Int32](repeating: 0, count: length * length)
        for p in 0..<length { for k in support(ofQuery: p) { c[p * length + k] += 1 } }
        return c
    }
}

/// Builds a layout a query block at a time with union semantics: adding a block twice merges
/// the rules (a pair present in either is present once) unless `extraCopy` asks for a second
/// counted copy. Band-only rules are simplified on identity-order layouts: blocks the band
/// covers become full, blocks it misses are dropped.
public struct BlockLayoutBuilder {
    public let length: Int
    public let blockSize: Int
    public let order: [Int32]?
    var current: [Int: [PairRule]?] = [:]      // key block → rules (nil: full)
    var copies: [(Int, PairRule?)] = []
    var rows: [[BlockLayout.Entry]] = []
    var masks: [ElementMask] = []
    var maskIndex: [ElementMask: Int32] = [:]

    public init(length: Int, blockSize: Int, order: [Int]? = nil) {
        precondition(length > 0 && blockSize > 0, "layout needs length and block size ≥ 1")
        precondition(order == nil || order!.count == length, "order must be a permutation of the positions")
        self.length = length
        self.blockSize = blockSize
        self.order = order.map { $0.map(Int32.init) }
    }

    public var blockCount: Int { (length + blockSize - 1) / blockSize }
    var queryBlock: Int { rows.count }

    /// Key blocks `blocks` (clipped to the layout), with `rule` (nil: every pair).
    public mutating func add(_ blocks: Range<Int>, rule: PairRule? = nil) {
        let lo = max(blocks.lowerBound, 0), hi = min(blocks.upperBound, blockCount)
        guard lo < hi else { return }
        for kb in lo..<hi {
            guard let r = simplified(rule, keyBlock: kb) else { continue }
            switch (current[kb], r) {
            case (.some(.none), _): break                          // already full
            case (_, .full): current[kb] = .some(nil)
            case (.some(.some(let rs)), .partial(let p)): current[kb] = .some(rs.contains(p) ? rs : rs + [p])
            case (.none, .partial(let p)): current[kb] = .some([p])
            }
        }
    }

    public mutating func add(_ block: Int, rule: PairRule? = nil) { add(block..<(block + 1), rule: rule) }

    /// One more counted copy of key block `block` (its pairs weigh once more in the softmax).
    public mutating func extraCopy(_ block: Int, rule: PairRule? = nil) {
        guard (0..<blockCount).contains(block) else { return }
        copies.append((block, rule))
    }

    enum Simplified { case full, partial(PairRule) }

    func simplified(_ rule: PairRule?, keyBlock kb: Int) -> Simplified? {
        guard let rule else { return .full }
        guard order == nil, rule.isBandOnly else { return .partial(rule) }
        let q0 = queryBlock * blockSize, q1 = min(length, q0 + blockSize) - 1
        let k0 = kb * blockSize, k1 = min(length, k0 + blockSize) - 1
        let lo = rule.minDelta ?? Int.min / 2, hi = rule.maxDelta ?? Int.max / 2
        if k1 - q0 < lo || k0 - q1 > hi { return nil }                 // no pair in the band
        if k0 - q1 >= lo && k1 - q0 <= hi { return .full }              // every pair in it
        return .partial(rule)
    }

    mutating func intern(_ rules: [PairRule]?) -> Int32 {
        guard let rules else { return -1 }
        let m = ElementMask(rules)
        if let i = maskIndex[m] { return i }
        let i = Int32(masks.count)
        masks.append(m)
        maskIndex[m] = i
        return i
    }

    /// Closes the current query block's row.
    public mutating func endRow() {
        var entries: [BlockLayout.Entry] = []
        for kb in current.keys.sorted() {
            entries.append(.init(keyBlock: Int32(kb), mask: intern(current[kb]!)))
        }
        for (kb, rule) in copies {
            let m = intern(rule.map { [$0] })
            let at = entries.lastIndex(where: { $0.keyBlock <= Int32(kb) }).map { $0 + 1 } ?? 0
            entries.insert(.init(keyBlock: Int32(kb), mask: m), at: at)
        }
        rows.append(entries)
        current = [:]
        copies = []
    }

    /// The finished layout; every query block must have had its row closed.
    public func build(name: String) -> BlockLayout {
        precondition(rows.count == blockCount, "built \(rows.count) of \(blockCount) rows")
        let inverse: [Int32]? = order.map { o in
            var inv = [Int32](repeating: 0, count: length)
            for (j, p) in o.enumerated() { inv[Int(p)] = Int32(j) }
            return inv
        }
        var layout = BlockLayout(length: length, blockSize: blockSize, order: order, inverse: inverse,
                                 rows: rows, masks: masks, causal: false, name: name)
        layout = BlockLayout(length: length, blockSize: blockSize, order: order, inverse: inverse,
                             rows: rows, masks: masks, causal: layout.checkCausal(), name: name)
        return layout
    }
}

extension BlockLayout {
    /// True when no present pair has k > q: O(entries) for identity-order layouts (block
    /// bounds and rules decide), O(present pairs) with a permuted order.
    func checkCausal() -> Bool {
        for (qb, row) in rows.enumerated() {
            for e in row {
                let kb = Int(e.keyBlock)
                if order == nil {
                    if kb < qb { continue }
                    if e.mask < 0 { return false }
                    let rules = masks[Int(e.mask)].rules
                    if rules.allSatisfy({ ($0.maxDelta ?? 1) <= 0 }) { continue }
                    if rules.allSatisfy(\.isBandOnly) {
                        // Some k − q > 0 inside both the band and the block pair's range of k − q?
                        let q0 = blockRange(qb).lowerBound, q1 = blockRange(qb).upperBound - 1
                        let k0 = blockRange(kb).lowerBound, k1 = blockRange(kb).upperBound - 1
                        for r in rules {
                            let lo = max(r.minDelta ?? Int.min / 2, 1, k0 - q1), hi = min(r.maxDelta ?? Int.max / 2, k1 - q0)
                            if lo <= hi { return false }
                        }
                        continue
                    }
                } else if e.mask < 0, blockRange(qb).contains(where: { qi in
                    blockRange(kb).contains { position($0) > position(qi) } }) {
                    return false
                }
                for qi in blockRange(qb) {
                    for kj in blockRange(kb) where present(e, qi: qi, kj: kj) && position(kj) > position(qi) {
                        return false
                    }
                }
            }
        }
        return true
    }

    /// A compact text description: a summary line, the distinct element masks, and for up to
    /// `maxBlocks` blocks an ASCII block matrix (rows: query blocks, columns: key blocks;
    /// `#` full, `+` partial, `.` absent, `2`–`9` a block counted that many times).
    public func rendered(maxBlocks: Int = 48) -> String {
        let nb = blockCount
        let pairs = (0..<nb).reduce(0) { acc, qb in
            acc + rows[qb].reduce(0) { $0 + blockRange(qb).count * blockRange(Int($1.keyBlock)).count }
        }
        let density = Double(pairs) / Double(length * length) * 100
        var lines = [
            "\(name): L=\(length), block \(blockSize) (\(nb)×\(nb) blocks\(length % blockSize == 0 ? "" : ", last ragged")), "
                + "\(entryCount) computed blocks (\(String(format: "%.1f", density))% of L×L), "
                + (causal ? "causal" : "not causal") + (order == nil ? "" : ", permuted order"),
        ]
        for (i, m) in masks.enumerated() { lines.append("  mask \(i): \(m)") }
        guard nb <= maxBlocks else {
            let per = rows.map(\.count)
            lines.append("  blocks per query block: min \(per.min() ?? 0), max \(per.max() ?? 0)")
            return lines.joined(separator: "\n")
        }
        for row in rows {
            var chars = [Character](repeating: ".", count: nb)
            var counts = [Int](repeating: 0, count: nb)
            for e in row {
                let kb = Int(e.keyBlock)
                counts[kb] += 1
                chars[kb] = counts[kb] > 1 ? Character(String(min(counts[kb], 9))) : (e.mask < 0 ? "#" : "+")
            }
            lines.append("  " + String(chars))
        }
        return lines.joined(separator: "\n")
    }
}

/// A module whose attention is a block-sparse pattern; `attend info` prints it.
public protocol BlockSparseModule: AttentionModule {
    /// The pattern at sequence length `length`: parts (pair sets whose softmax is joint, see
    /// `BlockSparseAttention.multiHead(parts:)`), each one layout per head or one for all heads.
    func layouts(length: Int) throws -> [[BlockLayout]]
    /// A small length that shows the pattern well in `attend info`.
    var exampleLength: Int { get }
}

extension BlockSparseModule {
    /// The rendered layouts at `length` (distinct ones once, with the heads that use them).
    public func layoutDescription(length: Int? = nil) throws -> String {
        let parts = try layouts(length: length ?? exampleLength)
        var text: [String] = []
        for (pi, ls) in parts.enumerated() {
            var seen: [(String, [Int])] = []
            for (h, l) in ls.enumerated() {
                let r = l.rendered()
                if let i = seen.firstIndex(where: { $0.0 == r }) { seen[i].1.append(h) } else { seen.append((r, [h])) }
            }
            let title = parts.count > 1 ? "part \(pi + 1) of \(parts.count) (one softmax over all parts)" : nil
            if let title { text.append(title) }
            if seen.count == 1 {
                text.append(seen[0].0)
            } else {
                for (r, hs) in seen { text.append("heads \(hs.map(String.init).joined(separator: ",")):\n" + r) }
            }
        }
        return text.joined(separator: "\n")
    }
}

/// Remembers a module's layouts for the last sequence length it ran at (a forward pass at the
/// same length reuses them; layouts depend only on the length and the config).
public final class LayoutCache: @unchecked Sendable {
    private let lock = NSLock()
    private var length = -1
    private var value: [[BlockLayout]] = []

    public init() {}

    public func layouts(length: Int, build: () throws -> [[BlockLayout]]) rethrows -> [[BlockLayout]] {
        lock.lock()
        if length == self.length { defer { lock.unlock() }; return value }
        lock.unlock()
        let v = try build()
        lock.lock()
        self.length = length
        value = v
        lock.unlock()
        return v
    }
}

/// The present pairs of a layout's masked entries, one bit per (query row, key column) of the
/// entry's block pair, so the kernel masks an edge block with a bit test per logit instead of
/// evaluating the entry's rules (`ElementMask.contains`) per pair. Entries whose mask is a
/// per-row key interval on an identity-order layout (`ElementMask.isInterval`) are masked by
/// bounds instead and get no bits. Made once per layout (O(edge pairs)), shared by its copies.
final class EdgeBitsCache: @unchecked Sendable {
    struct Bits {
        /// 64-bit words per query row (⌈blockSize/64⌉).
        let words: Int
        /// offsets[qb][e]: where entry e of query block qb starts in `bits` (rows × words),
        /// or −1 for an entry without bits.
        let offsets: [[Int]]
        let bits: [UInt64]
    }

    private let lock = NSLock()
    private var value: Bits?

    func bits(_ layout: BlockLayout) -> Bits {
        lock.lock(); defer { lock.unlock() }
        if let value { return value }
        let v = Self.make(layout)
        value = v
        return v
    }

    static func make(_ lay: BlockLayout) -> Bits {
        let words = (lay.blockSize + 63) / 64
        var offsets: [[Int]] = [], bits: [UInt64] = []
        for (qb, row) in lay.rows.enumerated() {
            let qr = lay.blockRange(qb)
            var offs = [Int](repeating: -1, count: row.count)
            for (ei, e) in row.enumerated() where e.mask >= 0 {
                let mask = lay.masks[Int(e.mask)]
                if lay.order == nil && mask.isInterval { continue }
                let kr = lay.blockRange(Int(e.keyBlock))
                offs[ei] = bits.count
                var block = [UInt64](repeating: 0, count: qr.count * words)
                for (r, qi) in qr.enumerated() {
                    let qpos = lay.position(qi)
                    for (c, kj) in kr.enumerated() where mask.contains(qpos, lay.position(kj)) {
                        block[r * words + c >> 6] |= 1 << UInt64(c & 63)
                    }
                }
                bits += block
            }
            offsets.append(offs)
        }
        return Bits(words: words, offsets: offsets, bits: bits)
    }
}
