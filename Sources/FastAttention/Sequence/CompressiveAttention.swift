// Compressive Transformers for Long-Range Sequence Modelling. Rae, Potapenko, Jayakumar,
// Hillier, Lillicrap, ICLR 2020. https://arxiv.org/abs/1911.05507
// Reference matched: pip compressive-transformer-pytorch 0.4.0 (lucidrains) `SelfAttention`
// (compressive_transformer_pytorch/compressive_transformer_pytorch.py), read in full. DeepMind
// released no model code.

import Foundation
import TensorCore

/// The memories a compressive attention layer carries between segments.
public struct CompressiveMemories: Sendable {
    /// N×m×dim: the most recent inputs (at most mem_len rows).
    public var mem: Tensor
    /// N×c×dim: conv-compressed older inputs (at most cmem_len rows).
    public var cmem: Tensor

    public init(mem: Tensor, cmem: Tensor) {
        self.mem = mem
        self.cmem = cmem
    }

    /// No memories yet (what the reference starts from when `memories` is None).
    public static func empty(batch: Int, dim: Int) -> CompressiveMemories {
        CompressiveMemories(mem: Tensor(zeros: [batch, 0, dim]), cmem: Tensor(zeros: [batch, 0, dim]))
    }
}

/// Compressive attention: causal multi-head attention over [compressed memory; memory; segment],
/// after which the segment enters the memory FIFO and what falls out is compressed by a strided
/// convolution into the compressed memory.
///
/// Matches `SelfAttention(dim, seq_len, mem_len, cmem_len, cmem_ratio, heads)` in eval mode,
/// `forward(x, memories=(mem, cmem))` without `pos_emb` or `input_mask`:
///   q = x W_qᵀ;  k, v = chunk₂([cmem; mem; x] W_kvᵀ);  per head softmax(q kᵀ·d_h^-½) v with query
///   i seeing every memory row and segment positions ≤ i;  y = out W_oᵀ + b_o.
///   When L ≥ seq_len: [mem; x] is split into old and the last mem_len rows (the new mem); old is
///   left-padded with zeros by len % ratio rows and compressed by Conv1d(dim, dim, ratio, stride
///   ratio); the new cmem is the last cmem_len rows of [cmem; compressed].
///
/// - State is explicit: `forward(_:memories:)` takes `CompressiveMemories` and returns the next
///   ones (`SegmentMemoryModule`: `attend run --segments N` feeds N segments in order and saves
///   `mem`/`cmem`). `callAsFunction` runs one segment from empty memories, which is plain causal
///   attention over the segment.
/// - Input N×L×dim, output N×L×dim.
/// - Map (per-query): the query's softmax row over [cmem | mem | segment] (mean over heads),
///   drawn over the segment positions; the memory parts are listed in the label (their total
///   weight and sizes) and returned whole by `attentionRow(_:memories:query:)`.
/// - Cost per segment O(L·(L + mem_len + cmem_len)·dim): quadratic in the segment (the paper's
///   O(N²)), linear in the number of segments; the rows are tiled through `DenseAttention`.
///
/// Quirks of the reference (reproduced):
/// - Memories are updated only when L ≥ `seq_len` (a shorter segment leaves them unchanged).
/// - The old memory is left-padded by len % ratio rows, not ratio − len % ratio, and the conv
///   (no padding) drops the trailing rows that do not fill a window: e.g. 5 old rows, ratio 4 →
///   pad 1 → one compressed row from rows 0–2 (the 4th and 5th are lost). When the padded rows are
///   fewer than the ratio the reference's Conv1d raises; here nothing is compressed then.
/// - No `pos_emb` (it belongs to `CompressiveTransformer`, not to this layer) and no
///   `input_mask`; the training-only reconstruction loss is not computed.
/// - The causal pass runs `DenseAttention` on m + c zero dummy queries followed by the segment, so
///   the kernel's top-left causal mask becomes "every memory row and positions ≤ i".
///
/// Keys: `to_q.weight` (dim×dim), `to_kv.weight` (2·dim×dim), no biases; `to_out.weight`,
/// `to_out.bias`; `compress_mem_fn.conv.weight` (dim×dim×ratio), `compress_mem_fn.conv.bias`.
/// Untrained: PyTorch-default weights with W_k = W_q (similarity initialisation) and the conv as
/// the block mean of each channel, so a compressed row is the mean of the rows it summarises.
public final class CompressiveAttention: SegmentMemoryModule {
    public static let info = ModuleInfo(
        id: "compressive", title: "Compressive Transformers for Long-Range Sequence Modelling",
        arxiv: "1911.05507", year: 2020, complexity: "O(N^2 D)", complexityExponent: 2, kind: .sequence, causal: true,
        reference: "compressive_transformer_pytorch SelfAttention (pip compressive-transformer-pytorch 0.4.0)",
        mapKind: .perQuery,
        mapDescription: "the query's causal softmax row over [compressed memory | memory | segment], drawn over the segment positions (memory weights in the label; empty memories on a single segment)",
        notes: ["always causal: query i sees all memory rows and segment positions <= i",
                "memories are explicit: forward(_:memories:) / attend run --segments N (saved as mem, cmem); a plain call starts from empty memories",
                "memories update only when L >= seq_len; the old memory is left-padded by len % ratio (reference quirk) and the conv drops rows that do not fill a window",
                "no pos_emb / input_mask (CompressiveTransformer's), no training reconstruction loss",
                "untrained: W_k = W_q and the compression conv is the block mean"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("seq_len", .int(1...1_000_000), default: .none, "segment length (taken from the input when unset); memories update when L >= seq_len"),
        ConfigKey("mem_len", .int(0...1_000_000), default: .none, "memory rows kept (default seq_len)"),
        ConfigKey("cmem_len", .int(0...1_000_000), default: .none, "compressed memory rows kept (default mem_len // cmem_ratio)"),
        ConfigKey("cmem_ratio", .int(1...4096), default: .int(4), "compression conv kernel and stride"),
        ConfigKey("heads", .int(1...4096), default: .int(8), "attention heads (dim must divide by it)"),
        ConfigKey("attn_dropout", .float(0...1), default: .float(0), "inactive in eval"),
        ConfigKey("dropout", .float(0...1), default: .float(0), "inactive in eval"),
        ConfigKey("reconstruction_attn_dropout", .float(0...1), default: .float(0), "training-only loss; inactive"),
    ]

    public static let memoryNames = ["mem", "cmem"]

    public let config: Config
    let dim: Int, heads: Int, dimHead: Int, seqLen: Int, memLen: Int, cmemLen: Int, ratio: Int
    let toQ: Linear, toKV: Linear, toOut: Linear
    let conv: Conv1d

    public var expectedInput: String { "N×L×\(dim)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×C tokens", found: inputShape)
        }
        try config.resolveChannels("dim", from: inputShape[2])
        dim = config.int("dim")
        heads = config.int("heads")
        guard dim % heads == 0 else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "dim=\(dim) must be divisible by heads=\(heads)")
        }
        dimHead = dim / heads
        ratio = config.int("cmem_ratio")
        seqLen = config.optionalInt("seq_len") ?? max(inputShape[1], 1)
        memLen = config.optionalInt("mem_len") ?? seqLen
        cmemLen = config.optionalInt("cmem_len") ?? memLen / ratio
        self.config = config
        let toQ = Linear(p.scoped("to_q"), inFeatures: dim, outFeatures: dim, bias: false)
        var toKV = Linear(p.scoped("to_kv"), inFeatures: dim, outFeatures: 2 * dim, bias: false)
        toOut = Linear(p.scoped("to_out"), inFeatures: dim, outFeatures: dim)
        var conv = try Conv1d(p.scoped("compress_mem_fn").scoped("conv"), inChannels: dim, outChannels: dim,
                              kernelSize: ratio, stride: ratio)
        if !p.isLoading {
            // Similarity initialisation (W_k = W_q) and a block-mean compression.
            let kv = toKV.weight.split(sizes: [dim, dim], axis: 0)
            toKV.weight = Tensor.concatenated([toQ.weight, kv[1]], axis: 0)
            let (c, r) = (dim, ratio)
            conv.weight = Tensor(shape: [c, c, r], scalars: (0..<c * c * r).map { e in
                e / (c * r) == (e / r) % c ? 1 / Float(r) : 0
            })
            conv.bias = Tensor(zeros: [dim])
        }
        (self.toQ, self.toKV, self.conv) = (toQ, toKV, conv)
    }

    var scale: Float { 1 / Float(dimHead).squareRoot() }

    func check(_ x: Tensor, _ m: CompressiveMemories) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] > 0, x.shape[2] == dim else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        for (name, t) in [("mem", m.mem), ("cmem", m.cmem)] where t.rank != 3 || t.shape[0] != x.shape[0] || t.shape[2] != dim {
            throw ModuleError.badInput(module: Self.info.id, expected: "\(name) memory \(x.shape[0])×rows×\(dim)", found: t.shape)
        }
    }

    /// q (N×L×dim) and the keys/values (N×(c+m+L)×2·dim: k then v channels) over [cmem; mem; x].
    func projections(_ x: Tensor, _ m: CompressiveMemories) throws -> (q: Tensor, kv: Tensor) {
        let kvIn = Tensor.concatenated([m.cmem, m.mem, x], axis: 1)        // N, c+m+L, dim
        return (try toQ(x), try toKV(kvIn))
    }

    /// One segment: the output and the memories after it.
    public func forward(_ x: Tensor, memories: CompressiveMemories) throws -> (Tensor, CompressiveMemories) {
        try check(x, memories)
        let (n, l) = (x.shape[0], x.shape[1]), total = memories.mem.shape[1] + memories.cmem.shape[1]
        let (q, kv) = try projections(x, memories)
        let lk = total + l
        // Dummy zero queries in front: row total + i of the kernel's causal (j ≤ row) mask sees
        // every memory row and segment positions ≤ i.
        let qx = total > 0 ? q.padded([(0, 0), (total, 0), (0, 0)]) : q      // N, c+m+L, dim
        var out = Tensor(uninitialized: [n, lk, dim])                         // N, c+m+L, dim
        qx.withUnsafeBufferPointer { qp in
            kv.withUnsafeBufferPointer { kp in
                out.withUnsafeMutableBufferPointer { op in
                    DenseAttention.forward(
                        batch: n, heads: heads, lq: lk, lk: lk, d: dimHead, dv: dimHead,
                        q: .init(base: qp.baseAddress!, ld: dim, batchStride: lk * dim, headStride: dimHead),
                        k: .init(base: kp.baseAddress!, ld: 2 * dim, batchStride: lk * 2 * dim, headStride: dimHead),
                        v: .init(base: kp.baseAddress! + dim, ld: 2 * dim, batchStride: lk * 2 * dim, headStride: dimHead),
                        out: op.baseAddress!, outLd: dim, outBatchStride: lk * dim, outHeadStride: dimHead,
                        scale: scale, causal: true)
                }
            }
        }
        let y = try toOut(total > 0 ? out.sliced(axis: 1, range: total..<lk) : out)   // N, L, dim
        return (y, try update(x, memories))
    }

    /// The memories after a segment (unchanged when L < seq_len, as the reference).
    func update(_ x: Tensor, _ m: CompressiveMemories) throws -> CompressiveMemories {
        guard x.shape[1] >= seqLen else { return m }
        let queue = Tensor.concatenated([m.mem, x], axis: 1)                 // N, m+L, dim
        let len = queue.shape[1], cut = memLen > 0 ? max(len - memLen, 0) : len
        var old = queue.sliced(axis: 1, range: 0..<cut)                       // N, cut, dim
        let newMem = queue.sliced(axis: 1, range: cut..<len)                  // N, ≤ mem_len, dim
        let pad = old.shape[1] % ratio                                        // the reference's len % ratio
        if pad != 0 { old = old.padded([(0, 0), (pad, 0), (0, 0)]) }
        guard old.shape[1] >= ratio, cmemLen > 0 else { return CompressiveMemories(mem: newMem, cmem: m.cmem) }
        let compressed = try conv(old.permuted(0, 2, 1))                      // N, dim, rows
            .permuted(0, 2, 1)                                                // N, rows, dim
        let all = Tensor.concatenated([m.cmem, compressed], axis: 1)          // N, c+rows, dim
        let keep = min(cmemLen, all.shape[1])
        return CompressiveMemories(mem: newMem, cmem: all.sliced(axis: 1, range: (all.shape[1] - keep)..<all.shape[1]))
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard x.rank == 3, x.shape[0] > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        return try forward(x, memories: .empty(batch: x.shape[0], dim: dim)).0
    }

    public func step(_ x: Tensor, memories: [String: Tensor]?) throws -> (output: Tensor, memories: [String: Tensor]) {
        let n = x.rank == 3 ? x.shape[0] : 1
        var m = CompressiveMemories.empty(batch: n, dim: dim)
        if let memories {
            guard let mem = memories["mem"], let cmem = memories["cmem"] else {
                throw ModuleError.unsupported(module: Self.info.id, message: "memories need both 'mem' and 'cmem' (found \(memories.keys.sorted().joined(separator: ", ")))")
            }
            m = CompressiveMemories(mem: mem, cmem: cmem)
        }
        let (y, next) = try forward(x, memories: m)
        return (y, ["mem": next.mem, "cmem": next.cmem])
    }

    /// Query `query.column`'s softmax row (batch item 0, mean over heads or one head) over the
    /// compressed memory, the memory and the segment, in that order.
    public func attentionRow(_ x: Tensor, memories: CompressiveMemories, query: MapQuery)
        throws -> (cmem: [Float], mem: [Float], segment: [Float]) {
        try check(x, memories)
        let l = x.shape[1]
        let i = try KernelizedAttention.checkQuery(query, length: l, heads: heads, module: Self.info.id)
        let first = CompressiveMemories(mem: memories.mem.batchItem(0), cmem: memories.cmem.batchItem(0))
        let (q, kv) = try projections(x.batchItem(0), first)
        let (c, m) = (memories.cmem.shape[1], memories.mem.shape[1]), lk = c + m + l
        let chosen = query.head.map { [$0] } ?? Array(0..<heads)
        var w = [Float](repeating: 0, count: lk)
        q.withUnsafeBufferPointer { qp in
            kv.withUnsafeBufferPointer { kp in
                for h in chosen {
                    let r = DenseAttention.weights(query: qp.baseAddress! + i * dim + h * dimHead,
                                                   keys: kp.baseAddress! + h * dimHead, ldk: 2 * dim, lk: lk,
                                                   d: dimHead, scale: scale, visible: c + m + i + 1)
                    for j in 0..<lk { w[j] += r[j] / Float(chosen.count) }
                }
            }
        }
        return (Array(w[0..<c]), Array(w[c..<c + m]), Array(w[(c + m)...]))
    }

    /// The map with memories: the row over the segment positions (1×1×L), memory weights in the label.
    public func attentionMap(_ x: Tensor, memories: CompressiveMemories, query: MapQuery) throws -> AttentionMap {
        let row = try attentionRow(x, memories: memories, query: query)
        let who = query.head.map { ", head \($0)" } ?? (heads == 1 ? "" : ", mean of \(heads) heads")
        let f = { (v: [Float]) in String(format: "%.3f", v.reduce(0, +)) }
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, row.segment.count], scalars: row.segment),
                            labels: ["causal row over the segment; cmem \(f(row.cmem)) (\(row.cmem.count) rows), mem \(f(row.mem)) (\(row.mem.count) rows)\(who)"])
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        guard x.rank == 3, x.shape[0] > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        return try attentionMap(x, memories: .empty(batch: x.shape[0], dim: dim), query: query)
    }
}
