// BP-Transformer: Modelling Long-Range Context via Binary Partitioning.
// Ye, Guo, Gan, Qiu, Zhang, 2019. https://arxiv.org/abs/1911.04070
// Reference: yzh119/BPT (3ce980d) `modules/attention.py` `BPTBlock` and
// `graph_builder/builder.pyx` `BinaryPartition` (DGL + CUDA kernels: no CPU support). The graph
// is ported here; Tools/reference/bp_transformer.py checks it against the compiled Cython
// builder and computes the block with a dense masked PyTorch equivalent of BPTBlock's math.

import Foundation
import TensorCore

/// The binary-partition graph of BPT's `BinaryPartition(length, triu, step)`: L leaf tokens,
/// then span nodes level by level (level j has ⌈L/2^j⌉ nodes while that is ≥ 2), then a root.
/// `inEdges[dst]` lists the source nodes of dst's incoming edges in the builder's order,
/// duplicates included (the builder emits some edges twice; DGL's edge softmax counts both).
public struct BinaryPartitionGraph: Sendable {
    public let length: Int
    public let levelSizes: [Int]
    /// First node id of each level.
    public let levelStart: [Int]
    public let inEdges: [[Int]]
    public var nodeCount: Int { levelStart.last! + levelSizes.last! }

    public init(length: Int, triu: Bool, step: Int) {
        var sizes: [Int] = []
        var starts: [Int] = [0]
        var n = length, total = 0
        while n >= 2 {
            sizes.append(n)
            total += n
            starts.append(total)
            n = (n + 1) >> 1
        }
        sizes.append(1)                                     // the root (for L = 1 the leaf itself)
        self.length = length
        levelSizes = sizes
        levelStart = starts
        let nodes = levelStart.last! + levelSizes.last!
        var edges = [[Int]](repeating: [], count: nodes)
        let levels = levelSizes.count
        for i in 0..<length {
            var v = i, shift = 0
            var l = i - 1, r = i + 1, lOverlap = false, rOverlap = false
            for j in 0..<levels {
                // Top-down: `step` neighbours on each side at level j; after climbing a level,
                // a neighbour whose parent would overlap covered nodes is replaced by its child.
                for _ in 0..<step {
                    if !triu && r < levelSizes[j] {
                        edges[i].append(rOverlap ? levelStart[j - 1] + 2 * r + 1 : levelStart[j] + r)
                        rOverlap = false
                    }
                    r += 1
                    if l >= 0 {
                        edges[i].append(lOverlap ? levelStart[j - 1] + 2 * l : levelStart[j] + l)
                        lOverlap = false
                    }
                    l -= 1
                }
                if l & 1 == 0 { lOverlap = true }
                if r & 1 == 1 { rOverlap = true }
                r >>= 1
                l >>= 1
                // Bottom-up: leaf i → its level-j ancestor (j = 0: itself).
                edges[shift + v].append(i)
                shift += levelSizes[j]
                v >>= 1
            }
        }
        inEdges = edges
    }

    /// Leaf positions a node stands for: a leaf itself, a span node its span.
    public func span(ofNode u: Int) -> Range<Int> {
        let level = levelStart.lastIndex { $0 <= u }!
        if level == levelSizes.count - 1 && levelSizes.count > 1 { return 0..<length }   // root
        let v = u - levelStart[level]
        return min(length, v << level)..<min(length, (v + 1) << level)
    }
}

/// One BP-Transformer block over the binary-partition graph, applied to leaf tokens whose span
/// nodes start at zero (as BPT's first layer: DGL's zero initializer).
///
/// - Input N×L×dim_model (leaf states: the model's embedding + position, after its LayerNorm),
///   output N×L×dim_model: the leaves' new states h = LN_in(h + proj_o(a)),
///   h = LN_inter(h + FFN(h)) (post-norm; dropout off).
/// - Attention: every leaf attends over its in-edges — itself, `step` leaf neighbours per side,
///   and per level j the span nodes beside its own ancestors (left only with `triu`, the LM
///   setting) — with e = q·k/√d_k, a softmax over the edges (duplicate edges count twice) and
///   a = Σ e·v. Span nodes hold zeros in this first pass, so their keys and values are zero
///   (projections have no bias): each contributes a logit of 0 and no value. Span nodes' own
///   updates (attention over their leaves) are not returned.
/// - Runs through the block-sparse kernel on the L + (nodes − L) node sequence, the edge set
///   as an explicit adjacency; duplicate edges form a second layout part merged by
///   log-sum-exp. Cost O(N·step·log(N/step)·d).
/// - Not ported: relative position embeddings (`rel_pos=True`, `embed_ak`), BPTMemBlock.
/// - Map (per-query): the leaf's softmax weights over its in-edges; a span node's weight is
///   spread evenly over the leaves it covers. Mean over heads.
/// - Keys: `proj_q/proj_k/proj_v/proj_o.weight (D,D)` (no bias), `norm_in.*`, `norm_inter.*`,
///   `ffn.0.w_1.weight (dim_ff,D)`, `.bias`, `ffn.0.w_2.weight (D,dim_ff)`, `.bias`.
///   Untrained: proj_k = proj_q (similarity initialisation).
public final class BPTransformerBlock: BlockSparseModule {
    public static let info = ModuleInfo(
        id: "bp-transformer", title: "BP-Transformer: Modelling Long-Range Context via Binary Partitioning",
        arxiv: "1911.04070", year: 2019, complexity: "O(N k log(N/k) D)", complexityExponent: 1,
        kind: .sequence, causal: true,
        reference: "yzh119/BPT 3ce980d BPTBlock over graph_builder BinaryPartition (graph checked against the compiled builder; dense masked PyTorch block in Tools/reference/bp_transformer.py)",
        mapKind: .perQuery,
        mapDescription: "softmax weights of the leaf over its binary-partition in-edges: itself, step neighbours per side and multi-scale span nodes (each span node's weight spread over its span); mean over heads",
        notes: ["one BPTBlock (attention + post-norm residuals + FFN) on leaf states, span nodes at zero as in BPT's first layer",
                "span nodes hold zeros: each adds a logit of 0 and no value to a leaf's softmax",
                "the builder emits some edges twice; both count in the softmax, as DGL's edge softmax does",
                "triu=true (LM) drops right-hand edges; rel_pos is not ported",
                "untrained: proj_k = proj_q (similarity initialisation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim_model", .int(1...65536), default: .none, "channels (taken from the input when unset)"),
        ConfigKey("h", .int(1...1024), default: .int(4), "heads"),
        ConfigKey("dim_ff", .int(1...262_144), default: .none, "FFN width (unset: 4·dim_model)"),
        ConfigKey("step", .int(1...1024), default: .int(4), "k: neighbours per side at each level (BinaryPartition step)"),
        ConfigKey("triu", .bool, default: .bool(false), "LM graph: left edges only"),
        ConfigKey("rel_pos", .bool, default: .bool(false), "relative position embeddings (only false is ported)"),
        ConfigKey("drop_h", .float(0...1), default: .float(0.1), "accepted; eval has no dropout"),
        ConfigKey("drop_a", .float(0...1), default: .float(0.1), "accepted; eval has no dropout"),
    ]

    public let config: Config
    let dim: Int, heads: Int, step: Int, triu: Bool
    let projQ: Linear, projK: Linear, projV: Linear, projO: Linear
    let normIn: LayerNorm, normInter: LayerNorm
    let w1: Linear, w2: Linear
    let cache = LayoutCache()
    let graphCache = NSCache<NSNumber, GraphBox>()

    final class GraphBox { let graph: BinaryPartitionGraph; init(_ g: BinaryPartitionGraph) { graph = g } }

    public var expectedInput: String { "N×L×\(dim)" }
    public var exampleLength: Int { 256 }
    var scale: Float { 1 / Float(dim / heads).squareRoot() }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×C", found: inputShape)
        }
        try config.resolveChannels("dim_model", from: inputShape[2])
        self.config = config
        dim = config.int("dim_model")
        heads = config.int("h")
        step = config.int("step")
        triu = config.bool("triu")
        guard dim % heads == 0 else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "dim_model=\(dim) is not divisible by h=\(heads)")
        }
        guard !config.bool("rel_pos") else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "rel_pos=true (relative position embeddings) is not ported")
        }
        let ff = config.optionalInt("dim_ff") ?? 4 * dim
        projQ = Linear(p.scoped("proj_q"), inFeatures: dim, outFeatures: dim, bias: false)
        let k = Linear(p.scoped("proj_k"), inFeatures: dim, outFeatures: dim, bias: false)
        projK = p.isLoading ? k : Linear(weight: projQ.weight, bias: nil)
        projV = Linear(p.scoped("proj_v"), inFeatures: dim, outFeatures: dim, bias: false)
        projO = Linear(p.scoped("proj_o"), inFeatures: dim, outFeatures: dim, bias: false)
        normIn = LayerNorm(p.scoped("norm_in"), normalizedShape: dim)
        normInter = LayerNorm(p.scoped("norm_inter"), normalizedShape: dim)
        let f = p.scoped("ffn").scoped("0")
        w1 = Linear(f.scoped("w_1"), inFeatures: dim, outFeatures: ff)
        w2 = Linear(f.scoped("w_2"), inFeatures: ff, outFeatures: dim)
    }

    func graph(length: Int) -> BinaryPartitionGraph {
        if let g = graphCache.object(forKey: NSNumber(value: length)) { return g.graph }
        let g = BinaryPartitionGraph(length: length, triu: triu, step: step)
        graphCache.setObject(GraphBox(g), forKey: NSNumber(value: length))
        return g
    }

    public func layouts(length: Int) throws -> [[BlockLayout]] {
        try cache.layouts(length: length) { try buildLayouts(length: length) }
    }

    /// Leaf rows over the node sequence; part p holds the edges present more than p times.
    func buildLayouts(length l: Int) throws -> [[BlockLayout]] {
        guard l >= 1 else { throw ModuleError.badInput(module: Self.info.id, expected: "L ≥ 1", found: [l]) }
        let g = graph(length: l), nodes = g.nodeCount, block = 16
        var counts = [[Int: Int]](repeating: [:], count: l)
        for i in 0..<l { for s in g.inEdges[i] { counts[i][s, default: 0] += 1 } }
        let maxCount = counts.map { $0.values.max() ?? 0 }.max() ?? 0
        return (0..<maxCount).map { part in
            let keysOf = (0..<nodes).map { u in u < l ? counts[u].filter { $0.value > part }.map(\.key) : [] }
            let adj = Adjacency(name: "binary partition (step \(step)\(triu ? ", triu" : ""))" + (part > 0 ? " copy \(part + 1)" : ""),
                                keysOf: keysOf)
            var b = BlockLayoutBuilder(length: nodes, blockSize: block)
            for qb in 0..<b.blockCount {
                let q0 = qb * block, q1 = min(nodes, q0 + block)
                if q0 < l {
                    let kbs = Set((q0..<min(q1, l)).flatMap { keysOf[$0].map { $0 / block } })
                    for kb in kbs.sorted() { b.add(kb, rule: PairRule(adjacency: adj)) }
                }
                b.endRow()
            }
            return [b.build(name: "BPT graph, \(nodes) nodes" + (part > 0 ? " (duplicate edges, copy \(part + 1))" : ""))]
        }
    }

    func check(_ x: Tensor) throws -> Int {
        guard x.rank == 3, x.shape[2] == dim, x.shape[0] > 0, x.shape[1] > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        return x.shape[1]
    }

    /// Leaves then zero span nodes: N×nodes×dim.
    func nodeStates(_ x: Tensor, nodes: Int) -> Tensor {
        x.padded(torchPads: [0, 0, 0, nodes - x.shape[1]])
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let l = try check(x)
        let nodes = graph(length: l).nodeCount
        let z = nodeStates(x, nodes: nodes)                                      // N, nodes, D
        let a = BlockSparseAttention.multiHead(q: try projQ(z), k: try projK(z), v: try projV(z), heads: heads,
                                               parts: try layouts(length: l), scale: scale)  // N, nodes, D
        var h = try normIn(x + (try projO(a.sliced(axis: 1, range: 0..<l))))    // N, L, D
        h = try normInter(h + (try w2(try w1(h).relu())))
        return h
    }

    public func attentionMap(_ x: Tensor, query mq: MapQuery) throws -> AttentionMap {
        let l = try check(x)
        guard mq.row == 0, (0..<l).contains(mq.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(mq.column) is outside 0..<\(l)")
        }
        if let h = mq.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        let g = graph(length: l)
        let z = nodeStates(x.batchItem(0), nodes: g.nodeCount)
        let wz = BlockSparseAttention.mapRow(q: try projQ(z), k: try projK(z), heads: heads, parts: try layouts(length: l),
                                             query: mq.column, head: mq.head, scale: scale)
        var w = [Float](repeating: 0, count: l)
        for (u, x) in wz.enumerated() where x != 0 {
            let s = g.span(ofNode: u)
            for t in s { w[t] += x / Float(s.count) }
        }
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: w),
                            labels: ["BPT step \(step)\(triu ? " triu" : ""), spans spread, " + (mq.head.map { "head \($0)" } ?? "mean of \(heads) heads")])
    }
}
