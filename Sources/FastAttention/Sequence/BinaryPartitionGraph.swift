// BP-Transformer's causal binary-partition graph (yzh119/BPT graph_builder/builder.pyx,
// BinaryPartition(length, triu=True, step=k)) as a layout of the block-sparse kernel.
//
// Kernel rows are the graph's nodes in *in-order* numbering: leaf i is row 2i, the level-j span
// node p (leaves p·2^j ..< (p+1)·2^j) is row p·2^(j+1) + 2^j − 1, the midpoint of its leaves'
// rows. In that numbering every edge family of the graph is a delta band on (key row − query
// row) plus a key-row residue (which level, which parity), i.e. a PairRule; the kernel visits
// rows level by level (its permuted order), each level padded with unused rows to a whole block,
// so a query block never mixes leaves and span nodes.
//
// The edges, derived from the builder's pointer loop (checked against it in
// Tools/reference/bp_transformer.py and in the tests): with c_j = (2^j − 1)·k + 1,
//   leaf i ← itself and leaves i−k ..< i                                   (level 0)
//   leaf i ← level-j nodes whose first leaf s has −c_j − k·2^j + 1 ≤ s − i ≤ −c_j − 2^(j−1)
//   leaf i ← the level-(j−1) node with −c_j − 2^(j−1) + 1 ≤ s − i ≤ −c_j when its index is even
//            (the builder's "overlap" substitute: a left child standing in for its parent)
//   span node ← every leaf of its span                                      (bottom-up)
// so leaf i's in-nodes tile the leaves 0...i exactly once: causal, k nodes per level, log(L/k) levels.

import TensorCore

struct BinaryPartitionGraph: Sendable {
    let length: Int
    let step: Int
    let blockSize: Int
    /// Nodes per level, counts[0] = L leaves … counts.last = 1 (the root; for L = 1 the leaf).
    let counts: [Int]
    /// Kernel rows: every node's in-order id plus the unused ids used as padding.
    let rows: Int
    /// Kernel row of each node in the reference's level-major numbering (leaves first).
    let nodeRows: [Int32]
    let layout: BlockLayout

    var nodeCount: Int { nodeRows.count }
    var top: Int { counts.count - 1 }

    /// The in-order id (kernel row) of node `p` of level `j`.
    @inline(__always) static func row(level j: Int, index p: Int) -> Int { (p << (j + 1)) + (1 << j) - 1 }

    /// (level, index) of a node's kernel row.
    static func node(row r: Int) -> (level: Int, index: Int) {
        let j = (r + 1).trailingZeroBitCount
        return (j, ((r + 1) >> j - 1) / 2)
    }

    init(length: Int, step k: Int, blockSize bs: Int) {
        precondition(length >= 1 && k >= 1 && bs >= 1)
        self.length = length
        step = k
        blockSize = bs
        var counts = [length]
        while counts.last! > 1 { counts.append((counts.last! + 1) / 2) }
        self.counts = counts
        let top = counts.count - 1

        // Rows: node ids; the kernel's order visits them level after level, each padded to a block.
        var nodeRows: [Int32] = []
        nodeRows.reserveCapacity(2 * length)
        let levels = (0...top).map { j in (0..<counts[j]).map { Self.row(level: j, index: $0) } }
        for l in levels { nodeRows += l.map(Int32.init) }
        let seg = PaddedSegments(levels, rows: levels.map { $0.last! }.max()! + 1, blockSize: bs)
        let (order, segment, rows) = (seg.order, seg.starts, seg.rows)
        self.rows = rows
        self.nodeRows = nodeRows

        var b = BlockLayoutBuilder(length: rows, blockSize: bs, order: order)
        let keyRules = (0...top).map { Self.leafRules(keyLevel: $0, step: k, top: top) }
        for qb in 0..<b.blockCount {
            let q0 = qb * bs
            // The level of this query block, and its real nodes' index range.
            if let j = segment.lastIndex(where: { $0 <= q0 }), q0 - segment[j] < counts[j] {
                let pa = q0 - segment[j], pb = min(counts[j], pa + bs) - 1
                if j == 0 {
                    for t in 0...top {
                        guard let (lo, hi) = Self.leafKeyRange(keyLevel: t, leaves: pa...pb, step: k, top: top),
                              lo <= hi, hi >= 0, lo < counts[t] else { continue }
                        let blocks = (segment[t] + max(lo, 0)) / bs..<((segment[t] + min(hi, counts[t] - 1)) / bs + 1)
                        for r in keyRules[t] { b.add(blocks, rule: r) }
                    }
                } else {
                    // A span node reads every leaf of its span.
                    let w = 1 << j
                    let rule = PairRule(minDelta: -(w - 1), maxDelta: w - 1, keyPeriod: 2, keyPhases: 0..<1,
                                        keys: 0..<(2 * length))
                    b.add((pa * w) / bs..<(min(length, (pb + 1) * w) - 1) / bs + 1, rule: rule)
                }
            }
            b.endRow()
        }
        layout = b.build(name: "binary partition k=\(k)")
    }

    /// Rules for a leaf query against level-t keys: the level's own k nodes and the level-(t+1)
    /// substitute (a level-t node), as delta bands on in-order rows with a key-row residue.
    static func leafRules(keyLevel t: Int, step k: Int, top: Int) -> [PairRule] {
        let w = 1 << t
        var rules: [PairRule] = []
        if t == 0 {
            rules.append(PairRule(minDelta: -2 * k, maxDelta: 0, keyPeriod: 2, keyPhases: 0..<1))
        } else {
            let c = (w - 1) * k + 1, a = -c - k * w + 1, z = -c - w / 2
            rules.append(PairRule(minDelta: 2 * a + w - 1, maxDelta: 2 * z + w - 1, keyPeriod: 2 * w, keyPhases: (w - 1)..<w))
        }
        if t < top {
            let c = (2 * w - 1) * k + 1, a = -c - w + 1, z = -c
            rules.append(PairRule(minDelta: 2 * a + w - 1, maxDelta: 2 * z + w - 1, keyPeriod: 4 * w, keyPhases: (w - 1)..<w))
        }
        return rules
    }

    /// The level-t node indices that leaves `leaves` can read (hull of both rules, unclipped).
    static func leafKeyRange(keyLevel t: Int, leaves: ClosedRange<Int>, step k: Int, top: Int) -> (Int, Int)? {
        let (qa, qz) = (leaves.lowerBound, leaves.upperBound), w = 1 << t
        var lo = Int.max, hi = Int.min
        if t == 0 {
            (lo, hi) = (qa - k, qz)
        } else {
            let c = (w - 1) * k + 1
            (lo, hi) = (SpanMath.ceilDiv(qa - c - k * w + 1, w), SpanMath.floorDiv(qz - c - w / 2, w))
        }
        if t < top {
            let c = (2 * w - 1) * k + 1
            lo = min(lo, SpanMath.ceilDiv(qa - c - w + 1, w))
            hi = max(hi, SpanMath.floorDiv(qz - c, w))
        }
        return lo <= hi ? (lo, hi) : nil
    }

    /// Node weights (over kernel rows) onto token positions: a span node's weight is divided
    /// evenly over its leaves.
    func spread(_ w: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: length)
        for (r, x) in w.enumerated() where x != 0 {
            let (j, p) = Self.node(row: r)
            let s = p << j, e = min(length, (p + 1) << j)
            guard s < e else { continue }
            let share = x / Float(e - s)
            for t in s..<e { out[t] += share }
        }
        return out
    }
}

/// A kernel order that visits groups of rows (`segments`) one after another, each padded to a
/// whole block with rows no segment uses (rows past `rows` are added when those run out), so no
/// query block mixes two groups; the unused rows left over come last.
struct PaddedSegments {
    let order: [Int]
    /// Permuted index where each segment starts.
    let starts: [Int]
    /// Total kernel rows (≥ the `rows` given).
    let rows: Int

    init(_ segments: [[Int]], rows used: Int, blockSize bs: Int) {
        var taken = [Bool](repeating: false, count: used)
        for s in segments { for r in s { taken[r] = true } }
        let spare = (0..<used).filter { !taken[$0] }
        var nextSpare = 0, rows = used
        var order: [Int] = [], starts: [Int] = []
        order.reserveCapacity(used)
        for s in segments {
            starts.append(order.count)
            order += s
            while order.count % bs != 0 {
                if nextSpare < spare.count { order.append(spare[nextSpare]); nextSpare += 1 } else { order.append(rows); rows += 1 }
            }
        }
        order += spare[nextSpare...]
        (self.order, self.starts, self.rows) = (order, starts, rows)
    }
}

/// Integer division rounding down / up (b > 0), for span bounds left of position 0.
enum SpanMath {
    @inline(__always) static func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
    @inline(__always) static func ceilDiv(_ a: Int, _ b: Int) -> Int { -floorDiv(-a, b) }
}
