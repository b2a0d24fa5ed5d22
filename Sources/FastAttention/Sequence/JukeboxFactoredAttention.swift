// Jukebox: A Generative Model for Music — factorized attention (row, column, previous-row).
// Dhariwal, Jun, Payne, Kim, Radford, Sutskever, 2020. https://arxiv.org/abs/2005.00341
// Reference matched: openai/jukebox `jukebox/transformer/factored_attention.py`
// `FactoredAttention` (commit 08efbbc), non-sampling forward, read in full.

import Foundation
import TensorCore

/// Jukebox's factorized attention: the sequence is viewed as `blocks` rows of
/// block_ctx = n_ctx/blocks positions, and each layer attends along one factor.
///
/// - Input N×L×n_in, output N×L×n_in: `c_proj(attention(c_attn(x)))`, L a multiple of block_ctx
///   (the reference's `view`s need it; L = n_ctx as in Jukebox).
/// - `attn_func` 0 dense: all k ≤ q. 1 row: k in q's own block (k ≤ q with `mask`).
///   2 column: k ≡ q mod block_ctx (k ≤ q with `mask`) — Sparse Transformer's strided pattern
///   with stride block_ctx, run on the kernel's strided transpose. 3 previous row: every key of
///   block ⌊q/block_ctx⌋ − 1, never the own position, no mask needed (causal by construction).
/// - Quirks: Conv1D weights are stored **(in, out)**: y = x·w + b (no transpose). Logits are
///   q·k/√(n_state/n_head) (the reference scales q and k by d^-1/4 each in training, the product
///   by 1/√d in eval — the same value). Masked logits −1e9 (exactly a softmax over the pattern).
///   Previous-row block 0 attends to zero-padded keys and values: a uniform softmax over zero
///   vectors, i.e. output 0 before `c_proj` — here an empty row, also 0. `mask` defaults to true
///   here (the reference's default is false; Jukebox's priors set it). `scale`,
///   `checkpoint_attn`, the dropouts do not change the eval forward; `zero_out`/`init_scale`
///   only the untrained weights. attn_func 4–7 (summary, decoder, prime) are not ported.
/// - `blocks` unset: L / image_width with `image_width=W` (rows and columns of an H×W map: the
///   paper's factorisation of a 2-D structure), else the divisor of L closest to √L.
/// - Cost O(N·block_ctx·d) for row and previous row, O(N·(N/block_ctx)·d) for column: N·√N
///   with block_ctx ≈ √N. q, k and v are read in place from c_attn's output (no split copies);
///   both Conv1Ds split their rows over our threads.
/// - Map (per-query): the query's softmax row over its factor (zero elsewhere), mean over heads.
/// - Keys: `c_attn.w (n_in, 3·n_state)`, `c_attn.b (3·n_state)`, `c_proj.w (n_state, n_in)`,
///   `c_proj.b (n_in)`. Untrained: N(0, 0.02·init_scale) weights, zero biases (the reference's
///   init) with the key columns of c_attn.w equal to the query columns (similarity init).
public final class JukeboxFactoredAttention: BlockSparseModule {
    public static let info = ModuleInfo(
        id: "jukebox", title: "Jukebox: A Generative Model for Music (factorized attention)",
        arxiv: "2005.00341", year: 2020, complexity: "O(N sqrt(N) D)", complexityExponent: 1.5,
        kind: .sequence, causal: true,
        reference: "openai/jukebox 08efbbc jukebox/transformer/factored_attention.py FactoredAttention (attn_func 0-3)",
        mapKind: .perQuery,
        mapDescription: "softmax weights of the query over its factor: its own row up to itself (attn_func 1), its column above (2), the whole previous row (3) or everything before it (0); mean over heads",
        notes: ["Conv1D weights are (in, out): y = x @ w + b",
                "L must be a multiple of block_ctx = n_ctx/blocks; blocks unset: L/image_width, else the divisor of L nearest sqrt(L)",
                "previous-row block 0 sees only zero padding in the reference: its output is c_proj's bias",
                "mask defaults to true here (reference default false; Jukebox's priors set it)",
                "untrained: N(0, 0.02) weights as the reference, key columns = query columns"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("n_in", .int(1...65536), default: .none, "input channels (taken from the input when unset)"),
        ConfigKey("n_ctx", .int(1...10_000_000), default: .none, "context length (taken from the input when unset)"),
        ConfigKey("n_state", .int(1...65536), default: .none, "attention width (unset: n_in)"),
        ConfigKey("n_head", .int(1...1024), default: .int(2), "heads (n_state divisible by n_head)"),
        ConfigKey("mask", .bool, default: .bool(true), "causal masks (reference default false)"),
        ConfigKey("attn_func", .int(0...3), default: .int(1), "0 dense, 1 row, 2 column, 3 previous row"),
        ConfigKey("blocks", .int(1...10_000_000), default: .none, "rows: block_ctx = n_ctx / blocks"),
        ConfigKey("image_width", .int(1...10_000_000), default: .none, "tokens are an H×W map: block_ctx = W (toolkit key)"),
        ConfigKey("scale", .bool, default: .bool(true), "accepted; the reference always scales"),
        ConfigKey("zero_out", .bool, default: .bool(false), "untrained c_proj.w = 0"),
        ConfigKey("init_scale", .float(0...1000), default: .float(1), "untrained weights N(0, 0.02·init_scale)"),
        ConfigKey("attn_dropout", .float(0...1), default: .float(0), "accepted; eval has no dropout"),
        ConfigKey("resid_dropout", .float(0...1), default: .float(0), "accepted; eval has no dropout"),
        ConfigKey("checkpoint_attn", .int(0...2), default: .int(0), "accepted; no effect on the forward"),
    ]

    public let config: Config
    let nIn: Int, nState: Int, heads: Int, causal: Bool, attnFunc: Int, blockCtx: Int
    let cAttnW: Tensor, cAttnB: Tensor, cProjW: Tensor, cProjB: Tensor
    let cache = LayoutCache()

    public var expectedInput: String { "N×L×\(nIn) (L a multiple of \(blockCtx))" }
    public var exampleLength: Int { attnFunc == 2 ? blockCtx * 16 : max(blockCtx * 8, 16) }
    var scale: Float { 1 / Float(nState / heads).squareRoot() }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 3 else { throw ModuleError.badInput(module: id, expected: "N×L×C", found: inputShape) }
        try config.resolveChannels("n_in", from: inputShape[2])
        if !config.isSet("n_ctx") { try config.resolveChannels("n_ctx", from: inputShape[1]) }
        self.config = config
        nIn = config.int("n_in")
        nState = config.optionalInt("n_state") ?? nIn
        heads = config.int("n_head")
        causal = config.bool("mask")
        attnFunc = config.int("attn_func")
        let nCtx = config.int("n_ctx")
        guard nState % heads == 0 else {
            throw ConfigError.inconsistent(module: id, message: "n_state=\(nState) is not divisible by n_head=\(heads)")
        }
        let blocks: Int
        if let b = config.optionalInt("blocks") {
            blocks = b
            if let w = config.optionalInt("image_width"), w * b != nCtx {
                throw ConfigError.inconsistent(module: id, message: "blocks=\(b) but image_width=\(w) gives \(nCtx / max(w, 1)) rows of n_ctx=\(nCtx)")
            }
        } else if let w = config.optionalInt("image_width") {
            guard nCtx % w == 0 else {
                throw ConfigError.inconsistent(module: id, message: "n_ctx=\(nCtx) is not a multiple of image_width=\(w)")
            }
            blocks = nCtx / w
        } else {
            let root = Double(nCtx).squareRoot()
            blocks = (1...nCtx).filter { nCtx % $0 == 0 }.min { abs(Double($0) - root) < abs(Double($1) - root) }!
        }
        guard nCtx % blocks == 0 else {
            throw ConfigError.inconsistent(module: id, message: "n_ctx=\(nCtx) is not divisible by blocks=\(blocks) (the reference asserts it)")
        }
        blockCtx = nCtx / blocks
        let std = Float(0.02 * config.float("init_scale"))
        let a = p.scoped("c_attn"), o = p.scoped("c_proj")
        var w = a.parameter("w", shape: [nIn, 3 * nState], initializer: .normal(std: std))
        var b = a.parameter("b", shape: [3 * nState], initializer: .zeros)
        if !p.isLoading {
            // Similarity initialisation: the key columns repeat the query columns.
            let (ni, ns) = (nIn, nState)
            w.withUnsafeMutableBufferPointer { wp in
                for r in 0..<ni { for c in 0..<ns { wp[r * 3 * ns + ns + c] = wp[r * 3 * ns + c] } }
            }
            b.withUnsafeMutableBufferPointer { bp in for c in 0..<ns { bp[ns + c] = bp[c] } }
        }
        cAttnW = w
        cAttnB = b
        cProjW = o.parameter("w", shape: [nState, nIn],
                             initializer: config.bool("zero_out") ? .zeros : .normal(std: std))
        cProjB = o.parameter("b", shape: [nIn], initializer: .zeros)
    }

    public func layouts(length: Int) throws -> [[BlockLayout]] {
        try cache.layouts(length: length) { try buildLayouts(length: length) }
    }

    func buildLayouts(length l: Int) throws -> [[BlockLayout]] {
        guard l >= 1, l % blockCtx == 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "L a multiple of block_ctx=\(blockCtx)", found: [l])
        }
        let bc = blockCtx
        switch attnFunc {
        case 0:
            return [[SparsePatterns.all(length: l, block: 64, causal: causal)]]
        case 1:
            // One kernel block per row: the row itself, causal inside when masked.
            var b = BlockLayoutBuilder(length: l, blockSize: bc)
            for qb in 0..<b.blockCount { b.add(qb, rule: causal ? .causal : nil); b.endRow() }
            return [[b.build(name: "row (block_ctx \(bc))")]]
        case 2:
            return [[SparsePatterns.strided(length: l, block: min(64, max(1, l / bc)), stride: bc, causal: causal,
                                            excludeLocal: false)]]
        default:
            var b = BlockLayoutBuilder(length: l, blockSize: bc)
            for qb in 0..<b.blockCount { b.add(qb - 1); b.endRow() }
            return [[b.build(name: "previous row (block_ctx \(bc))")]]
        }
    }

    func check(_ x: Tensor) throws -> Int {
        guard x.rank == 3, x.shape[2] == nIn, x.shape[0] > 0, x.shape[1] > 0, x.shape[1] % blockCtx == 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        return x.shape[1]
    }

    /// Jukebox's Conv1D: x (N, L, in) · w (in, out) + b → N, L, out. Rows are split over our
    /// threads (one single-threaded GEMM each), so the whole forward stays on one thread pool:
    /// handing over between OpenBLAS's pool and ours left OpenBLAS's workers spinning in
    /// sched_yield on the cores our workers needed (a third of the 2-thread profile).
    static func conv1D(_ x: Tensor, _ w: Tensor, _ b: Tensor) -> Tensor {
        let rows = x.shape[0] * x.shape[1], nIn = w.shape[0], nOut = w.shape[1]
        var y = Tensor(uninitialized: [x.shape[0], x.shape[1], nOut])
        y.withUnsafeMutableBufferPointer { yp in
            b.withUnsafeBufferPointer { bp in
                x.withUnsafeBufferPointer { xp in
                    w.withUnsafeBufferPointer { wp in
                        Threads.parallelFor(rows, minChunk: 256) { range in
                            let y0 = yp.baseAddress! + range.lowerBound * nOut
                            for r in 0..<range.count { (y0 + r * nOut).update(from: bp.baseAddress!, count: nOut) }
                            BLAS.gemm(m: range.count, n: nOut, k: nIn, a: xp.baseAddress! + range.lowerBound * nIn, lda: nIn,
                                      b: wp.baseAddress!, ldb: nOut, beta: 1, c: y0, ldc: nOut)
                        }
                    }
                }
            }
        }
        return y
    }

    /// q, k, v: the three chunks of c_attn's output, N×L×n_state each.
    func qkv(_ x: Tensor) -> (Tensor, Tensor, Tensor) {
        let y = Self.conv1D(x, cAttnW, cAttnB)                                   // N, L, 3·n_state
        let parts = y.split(sizes: [nState, nState, nState], axis: 2)
        return (parts[0], parts[1], parts[2])
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let l = try check(x)
        let parts = try layouts(length: l)
        let y = Self.conv1D(x, cAttnW, cAttnB)                                   // N, L, 3·n_state
        guard parts.count == 1 else {
            let qkv = y.split(sizes: [nState, nState, nState], axis: 2)
            return Self.conv1D(BlockSparseAttention.multiHead(q: qkv[0], k: qkv[1], v: qkv[2], heads: heads, parts: parts,
                                                              scale: scale), cProjW, cProjB)
        }
        // q, k, v read in place from c_attn's output (row stride 3·n_state): no split copies.
        let n = x.shape[0], ns = nState, d = nState / heads, ld = 3 * nState
        var a = Tensor(uninitialized: [n, l, ns])                                // N, L, n_state
        y.withUnsafeBufferPointer { yp in
            a.withUnsafeMutableBufferPointer { ap in
                let base = yp.baseAddress!
                BlockSparseAttention.forward(
                    layouts: parts[0], batch: n, heads: heads, d: d, dv: d,
                    q: .init(base: base, ld: ld, batchStride: l * ld, headStride: d),
                    k: .init(base: base + ns, ld: ld, batchStride: l * ld, headStride: d),
                    v: .init(base: base + 2 * ns, ld: ld, batchStride: l * ld, headStride: d),
                    out: ap.baseAddress!, outLd: ns, outBatchStride: l * ns, outHeadStride: d, scale: scale)
            }
        }
        return Self.conv1D(a, cProjW, cProjB)                                    // N, L, n_in
    }

    public func attentionMap(_ x: Tensor, query mq: MapQuery) throws -> AttentionMap {
        let l = try check(x)
        guard mq.row == 0, (0..<l).contains(mq.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(mq.column) is outside 0..<\(l)")
        }
        if let h = mq.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        let (q, k, _) = qkv(x.batchItem(0))
        let w = BlockSparseAttention.mapRow(q: q, k: k, heads: heads, parts: try layouts(length: l), query: mq.column,
                                            head: mq.head, scale: scale)
        let name = ["dense", "row", "column", "previous row"][attnFunc]
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: w),
                            labels: ["\(name), block_ctx \(blockCtx), " + (mq.head.map { "head \($0)" } ?? "mean of \(heads) heads")])
    }
}
