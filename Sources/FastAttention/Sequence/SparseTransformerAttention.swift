// Generating Long Sequences with Sparse Transformers — strided and fixed factorised attention.
// Child, Gray, Radford, Sutskever, 2019. https://arxiv.org/abs/1904.10509
// Reference: openai/sparse_attention `attention.py` (c53f3bd): the masks of `get_attn_mask`
// (all / local / strided, dense masked TF) and the block layout of `get_blocksparse_obj` for
// `fixed`. Neither runs on CPU (TF1 + GPU blocksparse); Tools/reference/sparse_transformer.py is
// a PyTorch masked-dense reference of the same masks, written for this package.

import Foundation
import TensorCore

/// Sparse Transformer self-attention: multi-head softmax attention restricted to the strided or
/// fixed factorised patterns, through the block-sparse kernel (never an L×L matrix).
///
/// - Input N×L×C tokens (batch-first), output N×L×C: the attention context, no output
///   projection (as DeepSpeed's `BertSparseSelfAttention`, whose `query/key/value` Linear names
///   the keys use: openai's attention functions take q, k, v and have no parameters).
/// - Logits q·k/√d_head over the pattern; openai adds −1e9 off the pattern (every row keeps its
///   own position, so that is exactly a softmax over the pattern).
/// - Patterns (ℓ = `local_attn_ctx`, q query, k key positions; causal: k ≤ q):
///   - `all`: every k ≤ q. `local`: q − ℓ < k ≤ q.
///   - `strided`: (q − k) mod ℓ = 0 (openai `get_attn_mask('strided')`, the second of the paper's
///     two strided heads). With `merged=true` (default) each head attends to the paper's
///     merged head A⁽¹⁾ ∪ A⁽²⁾ = local ∪ strided (§4.3 "merged head").
///   - `fixed` (openai block layout, `blocksize` granular): k in q's own ℓ-chunk
///     (⌊k/ℓ⌋ = ⌊q/ℓ⌋), or k in a summary block: (⌊k/blocksize⌋ mod ℓ/blocksize) ∈ the head's
///     `vertsize` block offsets, counted down from the chunk's last block, head h using pattern
///     h mod `num_verts` (the paper's c = blocksize·vertsize, "different c per head").
/// - Quirks: openai needs L % blocksize = 0 (and ℓ % blocksize = 0 for fixed, heads % num_verts
///   = 0); any L works here, a ragged last block included. Strided runs on the strided
///   transpose (the kernel's permuted order), as openai's blocksparse path does, so a column is
///   one contiguous run; merged heads run local and strided parts separately and merge them with
///   their log-sum-exps (one exact softmax).
/// - `local_attn_ctx` unset: ℓ = ⌈√L⌉ (the paper's choice, N·√N cost); for `fixed`
///   ℓ = ⌈√(c·L)⌉ (c = blocksize·vertsize: the ℓ that minimises the ℓ + c·L/ℓ keys per query,
///   so the cost stays N·√N) rounded up to a multiple of c, with at least num_verts patterns.
/// - Image alignment (paper §4.1: "ℓ = width" for images): `image_width=W` sets ℓ = W for tokens
///   of an H×W map in raster order, so `strided` is the previous W pixels (row) plus the column
///   above, and `fixed` is the query's own row plus summary columns. `attend map` grids are
///   48 cells on the long side: pass the grid width.
/// - `causal=false` (toolkit key) mirrors every pattern (DeepSpeed's "bidirectional").
/// - Map (per-query): the softmax row of the query over its pattern (zero off it), mean over
///   heads or one head; O(support·d).
/// - Keys: `query.weight (C,C)`, `query.bias (C)`, `key.*`, `value.*`. Untrained: key = query
///   (similarity initialisation).
public final class SparseTransformerAttention: BlockSparseModule {
    public static let info = ModuleInfo(
        id: "sparse-transformer", title: "Generating Long Sequences with Sparse Transformers (strided/fixed)",
        arxiv: "1904.10509", year: 2019, complexity: "O(N sqrt(N) D)", complexityExponent: 1.5,
        kind: .sequence, causal: true,
        reference: "openai/sparse_attention attention.py get_attn_mask / get_blocksparse_obj (masked-dense PyTorch port in Tools/reference/sparse_transformer.py)",
        mapKind: .perQuery,
        mapDescription: "softmax weights of the query over its sparse pattern (strided: local window + every ℓ-th earlier position; fixed: own ℓ-chunk + summary columns), zero elsewhere; mean over heads",
        notes: ["local_attn_ctx unset: ℓ = ceil(sqrt(L)) (fixed: ceil(sqrt(c·L)) rounded to c = blocksize·vertsize); on a photo set image_width=<grid width> so strided = row + column",
                "merged=true (default): strided heads attend to local ∪ strided (paper's merged head); false: openai's strided mask alone",
                "fixed follows openai's block layout: summary columns are blocksize·vertsize wide, head h uses pattern h % num_verts",
                "causal (all openai masks); causal=false mirrors the pattern; any L (openai needs L % blocksize == 0)",
                "keys query/key/value (BertSparseSelfAttention names), no output projection; untrained key = query"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("n_embd", .int(1...65536), default: .none, "channels C (taken from the input when unset)"),
        ConfigKey("heads", .int(1...1024), default: .int(4), "attention heads (C divisible by heads)"),
        ConfigKey("attn_mode", .choice(["all", "local", "strided", "fixed"]), default: .string("strided"), "pattern"),
        ConfigKey("local_attn_ctx", .int(1...1_000_000), default: .none, "ℓ: local window / stride / fixed chunk (unset: ceil(sqrt(L)))"),
        ConfigKey("blocksize", .int(1...1024), default: .int(32), "block size: the fixed pattern's granularity and the kernel's block"),
        ConfigKey("num_verts", .int(1...1024), default: .int(4), "fixed: number of different summary patterns over heads"),
        ConfigKey("vertsize", .int(1...1024), default: .int(1), "fixed: summary blocks per pattern (c = blocksize·vertsize)"),
        ConfigKey("merged", .bool, default: .bool(true), "strided: each head attends to local ∪ strided (toolkit key)"),
        ConfigKey("causal", .bool, default: .bool(true), "k ≤ q (toolkit key; false mirrors the pattern)"),
        ConfigKey("image_width", .int(1...1_000_000), default: .none, "tokens are an H×W map: ℓ = W (toolkit key)"),
    ]

    public let config: Config
    let channels: Int, heads: Int, mode: String, blocksize: Int, numVerts: Int, vertsize: Int
    let merged: Bool, causal: Bool, fixedCtx: Int?
    let query: Linear, key: Linear, value: Linear

    public var expectedInput: String { "N×L×\(channels)" }
    public var exampleLength: Int { 16 * blocksize }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×C", found: inputShape)
        }
        try config.resolveChannels("n_embd", from: inputShape[2])
        self.config = config
        channels = config.int("n_embd")
        heads = config.int("heads")
        mode = config.string("attn_mode")
        blocksize = config.int("blocksize")
        numVerts = config.int("num_verts")
        vertsize = config.int("vertsize")
        merged = config.bool("merged")
        causal = config.bool("causal")
        let id = Self.info.id
        guard channels % heads == 0 else {
            throw ConfigError.inconsistent(module: id, message: "n_embd=\(channels) is not divisible by heads=\(heads)")
        }
        let ctx = config.optionalInt("local_attn_ctx"), width = config.optionalInt("image_width")
        if let ctx, let width, ctx != width {
            throw ConfigError.inconsistent(module: id, message: "local_attn_ctx=\(ctx) but image_width=\(width): give one (image_width sets ℓ = W)")
        }
        fixedCtx = ctx ?? width
        if mode == "fixed" {
            guard heads % numVerts == 0 else {
                throw ConfigError.inconsistent(module: id, message: "fixed needs heads % num_verts == 0 (heads=\(heads), num_verts=\(numVerts))")
            }
            if let l = fixedCtx { try Self.checkFixed(ctx: l, blocksize: blocksize, numVerts: numVerts, vertsize: vertsize) }
        }
        query = Linear(p.scoped("query"), inFeatures: channels, outFeatures: channels)
        // Similarity initialisation: key starts equal to query; a checkpoint overrides both.
        let k = Linear(p.scoped("key"), inFeatures: channels, outFeatures: channels)
        key = p.isLoading ? k : Linear(weight: query.weight, bias: query.bias)
        value = Linear(p.scoped("value"), inFeatures: channels, outFeatures: channels)
    }

    static func checkFixed(ctx: Int, blocksize: Int, numVerts: Int, vertsize: Int) throws {
        let id = info.id
        guard ctx % blocksize == 0 else {
            throw ConfigError.inconsistent(module: id, message: "fixed needs local_attn_ctx (\(ctx)) to be a multiple of blocksize (\(blocksize))")
        }
        let stride = ctx / blocksize
        guard stride % vertsize == 0, stride / vertsize >= numVerts else {
            throw ConfigError.inconsistent(module: id,
                message: "fixed needs local_attn_ctx/blocksize (\(stride)) divisible by vertsize (\(vertsize)) with at least num_verts (\(numVerts)) patterns")
        }
    }

    /// ℓ for sequence length `length`.
    func context(length: Int) -> Int {
        if let c = fixedCtx { return c }
        guard mode == "fixed" else { return max(Int(Double(length).squareRoot().rounded(.up)), 1) }
        // ℓ minimising ℓ + c·L/ℓ (own chunk + summary columns), c = blocksize·vertsize.
        let unit = blocksize * vertsize
        let root = Int(Double(unit * length).squareRoot().rounded(.up))
        return unit * max((root + unit - 1) / unit, numVerts)
    }

    let cache = LayoutCache()

    public func layouts(length: Int) throws -> [[BlockLayout]] {
        try cache.layouts(length: length) { try buildLayouts(length: length) }
    }

    func buildLayouts(length: Int) throws -> [[BlockLayout]] {
        guard length >= 1 else { throw ModuleError.badInput(module: Self.info.id, expected: "L ≥ 1", found: [length]) }
        if let w = config.optionalInt("image_width"), length % w != 0 {
            throw ModuleError.badInput(module: Self.info.id, expected: "L a multiple of image_width=\(w)", found: [length])
        }
        let ell = context(length: length)
        switch mode {
        case "all": return [[SparsePatterns.all(length: length, block: blocksize, causal: causal)]]
        case "local": return [[SparsePatterns.local(length: length, block: blocksize, ctx: ell, causal: causal)]]
        case "strided":
            let strided = SparsePatterns.strided(length: length, block: blocksize, stride: ell, causal: causal,
                                                 excludeLocal: merged)
            guard merged else { return [[strided]] }
            return [[SparsePatterns.local(length: length, block: blocksize, ctx: ell, causal: causal)], [strided]]
        default:
            let pats = (0..<heads).map { $0 % numVerts }
            let built = (0..<min(numVerts, heads)).map {
                SparsePatterns.fixed(length: length, block: blocksize, ctx: ell, pattern: $0, vertsize: vertsize, causal: causal)
            }
            return [numVerts == 1 ? [built[0]] : pats.map { built[$0] }]
        }
    }

    func check(_ x: Tensor) throws -> (n: Int, l: Int) {
        guard x.rank == 3, x.shape[2] == channels, x.shape[0] > 0, x.shape[1] > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        return (x.shape[0], x.shape[1])
    }

    var scale: Float { 1 / Float(channels / heads).squareRoot() }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (_, l) = try check(x)
        let parts = try layouts(length: l)
        let q = try query(x), k = try key(x), v = try value(x)           // N, L, C each
        return BlockSparseAttention.multiHead(q: q, k: k, v: v, heads: heads, parts: parts, scale: scale)
    }

    public func attentionMap(_ x: Tensor, query mq: MapQuery) throws -> AttentionMap {
        let (_, l) = try check(x)
        guard mq.row == 0, (0..<l).contains(mq.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(mq.column) is outside 0..<\(l)")
        }
        if let h = mq.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        let x0 = x.batchItem(0)
        let q = try query(x0), k = try key(x0)                           // 1, L, C
        let w = BlockSparseAttention.mapRow(q: q, k: k, heads: heads, parts: try layouts(length: l),
                                            query: mq.column, head: mq.head, scale: scale)
        // Labels are drawn with the CLI's ASCII bitmap font.
        let label = "\(mode)\(mode == "strided" && merged ? " (local+strided)" : "") l=\(context(length: l))"
            + (mq.head.map { ", head \($0)" } ?? ", mean of \(heads) heads")
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: w), labels: [label])
    }
}
