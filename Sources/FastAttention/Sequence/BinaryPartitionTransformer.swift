// BP-Transformer: Modelling Long-Range Context via Binary Partitioning.
// Ye, Guo, Gan, Qiu, Zhang, 2019. https://arxiv.org/abs/1911.04070
// Reference: yzh119/BPT (3ce980d) `modules/attention.py` BPTBlock, `modules/model.py`
// BinaryPartitionTransformer.layers, `graph_builder/builder.pyx` BinaryPartition. It needs DGL,
// Cython and a CUDA kernel (no CPU support), so Tools/reference/bp_transformer.py is a pure
// PyTorch reference written for this package (its edge builder reproduces the Cython one
// exactly; dense masked attention over the node graph).

import Foundation
import TensorCore

/// BP-Transformer's layer stack over the causal binary-partition graph (the LM graph,
/// `triu=True`), on the block-sparse kernel.
///
/// - Input N×L×C leaf states (embedded tokens), output N×L×C: the leaves after `n_layers`
///   `BPTBlock`s. Span nodes (a binary tree over the tokens: ⌈L/2⌉ level-1 nodes, …, one root)
///   start at zero, as DGL's zero initialiser leaves them, and are updated by every layer.
/// - Graph (per leaf i, k = `step`): itself and the k previous leaves, then k nodes per level
///   further left, each a span of 2^j tokens, a left child standing in for a node whose span
///   would overlap the level below; so leaf i reads ≈ k·log(L/k) nodes that tile 0…i exactly.
///   A span node reads every token of its span (the builder's bottom-up edges).
/// - Each layer (all nodes at once): q, k, v = no-bias projections, per-head softmax of
///   q·k/√d_k over the node's in-edges, h = LN_in(h + W_o a), h = LN_inter(h + FFN(h))
///   (post-norm, FFN = w_2 relu(w_1 ·)).
/// - Cost O(N·k·log(N/k)·D): kernel rows are the nodes in in-order numbering, so every edge
///   family is a banded PairRule (BinaryPartitionGraph.swift); blocks of `block_size` rows.
/// - Quirks: with one layer the span nodes are still zero when read (keys and values 0, no bias):
///   they only take softmax mass (logit 0), hence `n_layers` ≥ 2 for the multi-scale context.
///   `rel_pos=True` (the paper's LM configs; an embedding per edge type added to q·k) is not
///   supported: the kernel has no per-edge logit terms. `triu=False` (encoder graph) is refused:
///   its right-side substitutes index past a level for ragged L in the reference.
/// - Map (per-query): the last layer's softmax weights of the query token over its in-nodes
///   (mean over heads or one head), each span node's weight spread evenly over its tokens.
/// - Keys (`layers.<i>.` prefix, as BinaryPartitionTransformer): `proj_q/proj_k/proj_v/proj_o.weight`
///   (C×C), `norm_in.*`, `norm_inter.*`, `ffn.0.w_1.{weight,bias}` (dim_ff×C, dim_ff),
///   `ffn.0.w_2.{weight,bias}`. Untrained: proj_k = proj_q per layer (similarity initialisation).
public final class BinaryPartitionTransformer: BlockSparseModule {
    public static let info = ModuleInfo(
        id: "bp-transformer", title: "BP-Transformer: Modelling Long-Range Context via Binary Partitioning",
        arxiv: "1911.04070", year: 2019, complexity: "O(N k log(N/k) D)", complexityExponent: 1.0,
        kind: .sequence, causal: true,
        reference: "yzh119/BPT BPTBlock stack over BinaryPartition(triu=True) (PyTorch reference in Tools/reference/bp_transformer.py)",
        mapKind: .perQuery,
        mapDescription: "last layer's weights of the query token over its graph nodes: the k previous tokens, then k spans per level, each span's weight spread over its tokens (coarser further back); zero after the query",
        notes: ["causal LM graph (triu=true) only; rel_pos=true (edge-type embeddings) is not supported",
                "span nodes start at zero (DGL default): use n_layers >= 2 for span summaries to carry content",
                "keys layers.<i>.{proj_q,proj_k,proj_v,proj_o,norm_in,norm_inter,ffn.0.w_1,ffn.0.w_2}; untrained proj_k = proj_q",
                "dim_ff unset: 4·dim_model; block_size is the kernel's block (toolkit key)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim_model", .int(1...65536), default: .none, "channels C (taken from the input when unset)"),
        ConfigKey("h", .int(1...1024), default: .int(4), "attention heads (dim_model divisible by h)"),
        ConfigKey("dim_ff", .int(1...262_144), default: .none, "FFN hidden width (unset: 4·dim_model)"),
        ConfigKey("n_layers", .int(1...64), default: .int(2), "BPTBlocks stacked over the graph"),
        ConfigKey("step", .int(1...65536), default: .int(4), "k: nodes read per level (BinaryPartition step)"),
        ConfigKey("triu", .bool, default: .bool(true), "causal LM graph (only true is supported)"),
        ConfigKey("rel_pos", .bool, default: .bool(false), "edge-type embeddings (only false is supported)"),
        ConfigKey("clip_dist", .int(0...1000), default: .int(10), "edge-type level clip (used only with rel_pos)"),
        ConfigKey("drop_h", .float(0...1), default: .float(0.1), "dropout (training only; no effect here)"),
        ConfigKey("drop_a", .float(0...1), default: .float(0.1), "attention dropout (training only; no effect here)"),
        ConfigKey("block_size", .int(1...1024), default: .int(16), "the block-sparse kernel's block (toolkit key)"),
    ]

    struct Block {
        let projQ, projK, projV, projO: Linear
        let normIn, normInter: LayerNorm
        let w1, w2: Linear
    }

    public let config: Config
    let channels: Int, heads: Int, step: Int, blockSize: Int
    let layers: [Block]
    private let cache = BinaryPartitionGraphCache()

    public var expectedInput: String { "N×L×\(channels)" }
    public var exampleLength: Int { 40 }
    public var mapHeads: Int { heads }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 3 else { throw ModuleError.badInput(module: id, expected: "N×L×C", found: inputShape) }
        try config.resolveChannels("dim_model", from: inputShape[2])
        self.config = config
        channels = config.int("dim_model")
        heads = config.int("h")
        step = config.int("step")
        blockSize = config.int("block_size")
        guard channels % heads == 0 else {
            throw ConfigError.inconsistent(module: id, message: "dim_model=\(channels) is not divisible by h=\(heads)")
        }
        guard config.bool("triu") else {
            throw ConfigError.inconsistent(module: id, message: "only the causal LM graph (triu=true) is implemented")
        }
        guard !config.bool("rel_pos") else {
            throw ConfigError.inconsistent(module: id, message: "rel_pos=true (edge-type embeddings) is not supported: use absolute positions (rel_pos=false)")
        }
        let c = channels, ff = config.optionalInt("dim_ff") ?? 4 * channels
        layers = (0..<config.int("n_layers")).map { i in
            let l = p.scoped("layers").scoped("\(i)")
            let q = Linear(l.scoped("proj_q"), inFeatures: c, outFeatures: c, bias: false)
            let k = Linear(l.scoped("proj_k"), inFeatures: c, outFeatures: c, bias: false)
            let ffn = l.scoped("ffn").scoped("0")
            return Block(projQ: q, projK: p.isLoading ? k : Linear(weight: q.weight, bias: nil),
                         projV: Linear(l.scoped("proj_v"), inFeatures: c, outFeatures: c, bias: false),
                         projO: Linear(l.scoped("proj_o"), inFeatures: c, outFeatures: c, bias: false),
                         normIn: LayerNorm(l.scoped("norm_in"), normalizedShape: c),
                         normInter: LayerNorm(l.scoped("norm_inter"), normalizedShape: c),
                         w1: Linear(ffn.scoped("w_1"), inFeatures: c, outFeatures: ff),
                         w2: Linear(ffn.scoped("w_2"), inFeatures: ff, outFeatures: c))
        }
    }

    func graph(length: Int) -> BinaryPartitionGraph {
        cache.get(length) { BinaryPartitionGraph(length: length, step: step, blockSize: blockSize) }
    }

    public func layouts(length: Int) throws -> [[BlockLayout]] {
        guard length >= 1 else { throw ModuleError.badInput(module: Self.info.id, expected: "L ≥ 1", found: [length]) }
        return [[graph(length: length).layout]]
    }

    func check(_ x: Tensor) throws -> (n: Int, l: Int) {
        guard x.rank == 3, x.shape[2] == channels, x.shape[0] > 0, x.shape[1] > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        return (x.shape[0], x.shape[1])
    }

    var scale: Float { 1 / Float(channels / heads).squareRoot() }

    /// Node states N×n×C (level-major, leaves first) before the first layer: leaves = x, spans 0.
    func initialNodes(_ x: Tensor, graph g: BinaryPartitionGraph) -> Tensor {
        let (n, l, c) = (x.shape[0], x.shape[1], x.shape[2])
        var h = Tensor(zeros: [n, g.nodeCount, c])                                // N, nodes, C
        x.withUnsafeBufferPointer { xp in
            h.withUnsafeMutableBufferPointer { hp in
                for b in 0..<n { (hp.baseAddress! + b * g.nodeCount * c).update(from: xp.baseAddress! + b * l * c, count: l * c) }
            }
        }
        return h
    }

    /// One BPTBlock on node states h (N×n×C).
    func layer(_ blk: Block, _ h: Tensor, graph g: BinaryPartitionGraph) throws -> Tensor {
        let q = g.toRows(try blk.projQ(h)), k = g.toRows(try blk.projK(h)), v = g.toRows(try blk.projV(h))   // N, rows, C
        let a = BlockSparseAttention.multiHead(q: q, k: k, v: v, heads: heads, layouts: [g.layout], scale: scale)
        let o = try blk.projO(g.fromRows(a))                                      // N, nodes, C
        let h1 = try blk.normIn(h + o)
        return try blk.normInter(h1 + blk.w2(blk.w1(h1).relu()))
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (_, l) = try check(x)
        let g = graph(length: l)
        var h = initialNodes(x, graph: g)
        for blk in layers { h = try layer(blk, h, graph: g) }
        return h.sliced(axis: 1, range: 0..<l)                                    // N, L, C
    }

    public func attentionMap(_ x: Tensor, query mq: MapQuery) throws -> AttentionMap {
        let (_, l) = try check(x)
        guard mq.row == 0, (0..<l).contains(mq.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(mq.column) is outside 0..<\(l)")
        }
        if let hd = mq.head, !(0..<heads).contains(hd) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(hd) is outside 0..<\(heads)")
        }
        let g = graph(length: l)
        var h = initialNodes(x.batchItem(0), graph: g)
        for blk in layers.dropLast() { h = try layer(blk, h, graph: g) }
        let last = layers[layers.count - 1]
        let q = g.toRows(try last.projQ(h)), k = g.toRows(try last.projK(h))    // 1, rows, C
        let w = BlockSparseAttention.mapRow(q: q, k: k, heads: heads, layouts: [g.layout],
                                            query: BinaryPartitionGraph.row(level: 0, index: mq.column),
                                            head: mq.head, scale: scale)
        let label = "binary partition k=\(step), layer \(layers.count)" + (mq.head.map { ", head \($0)" } ?? ", mean of \(heads) heads")
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: g.spread(w)), labels: [label])
    }
}

extension BinaryPartitionGraph {
    /// Node states N×n×C → kernel rows N×rows×C (padding rows zero).
    func toRows(_ h: Tensor) -> Tensor {
        let (n, c) = (h.shape[0], h.shape[2])
        var out = Tensor(zeros: [n, rows, c])                                     // N, rows, C
        h.withUnsafeBufferPointer { hp in
            out.withUnsafeMutableBufferPointer { op in
                for b in 0..<n {
                    let src = hp.baseAddress! + b * nodeCount * c, dst = op.baseAddress! + b * rows * c
                    for (i, r) in nodeRows.enumerated() { (dst + Int(r) * c).update(from: src + i * c, count: c) }
                }
            }
        }
        return out
    }

    /// Kernel rows N×rows×C → node states N×n×C.
    func fromRows(_ a: Tensor) -> Tensor {
        let (n, c) = (a.shape[0], a.shape[2])
        var out = Tensor(uninitialized: [n, nodeCount, c])                        // N, nodes, C
        a.withUnsafeBufferPointer { ap in
            out.withUnsafeMutableBufferPointer { op in
                for b in 0..<n {
                    let src = ap.baseAddress! + b * rows * c, dst = op.baseAddress! + b * nodeCount * c
                    for (i, r) in nodeRows.enumerated() { (dst + i * c).update(from: src + Int(r) * c, count: c) }
                }
            }
        }
        return out
    }
}

/// The graph of the last length seen (building it is O(L log L); forward and map reuse it).
final class BinaryPartitionGraphCache: @unchecked Sendable {
    private let lock = NSLock()
    private var last: BinaryPartitionGraph?

    func get(_ length: Int, build: () -> BinaryPartitionGraph) -> BinaryPartitionGraph {
        lock.lock()
        defer { lock.unlock() }
        if let g = last, g.length == length { return g }
        let g = build()
        last = g
        return g
    }
}
