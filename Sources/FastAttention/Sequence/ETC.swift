// ETC: Encoding Long and Structured Inputs in Transformers. Ainslie, Ontañón, Alberti,
// Cvicek, Fisher, Pham, Ravula, Sanghai, Wang, Yang, EMNLP 2020. https://arxiv.org/abs/2004.08483
// The authors' code is TF2 only (google-research `etcmodel`: layers/attention.py,
// layers/transformer.py, layers/wrappers.py, feature_utils.py, models/input_utils.py, read in
// full); the reference is its PyTorch restatement in Tools/reference/etc.py.

import CKernels
import Foundation
import TensorCore

/// ETC's global-local transformer layers on fixed blocks: one global token per block of B long
/// tokens — B = `num_tokens_per_block` when given, else B = ⌈L / global_seq_len⌉ so that at most
/// `global_seq_len` global tokens cover any L — and four attention pieces fused into two
/// softmaxes — a long token over
/// its local window |i − j| ≤ `local_radius` (l2l) and the global tokens (l2g); a global token
/// over all global tokens (g2g) and all long tokens (g2l).
///
/// Matches `ETC(hidden_size, num_attention_heads, local_radius, num_tokens_per_block, ...)` of
/// Tools/reference/etc.py (etcmodel's `GlobalLocalTransformerLayers` with the side inputs of
/// `make_fixed_block_side_inputs`), eval mode.
///
/// - Input N×L×hidden_size, output N×L×hidden_size: the long tokens of the last layer.
/// - Cost per layer: O((L·g + g² + L·(2r+1))·D) — the four pieces are one pattern over the
///   concatenated [globals; long] sequence (`BlockLayout.globalBand`) through
///   `BlockSparseAttention`, relative positions as its `PairBias`; nothing L×L. Linear in L for the default fixed g
///   (`global_seq_len`); a fixed `num_tokens_per_block` B makes g = ⌈L/B⌉ grow with L, and the
///   L·g and g² terms then are L²/B and L²/B².
/// - Map (per-query), three panels for the last layer, mean over heads or one head: (1) l2l, the
///   long token's weights over its window; (2) l2g, its weight on each global token spread evenly
///   over that token's block; (3) l2l plus the l2g weights carried to the tokens by the globals'
///   reach, reach⁰ = 0 (globals start as one learned embedding) and reachᵗ = P_g2l + P_g2g·reachᵗ⁻¹
///   over the earlier layers.
///
/// Quirks of etcmodel kept here:
/// - Every global token starts from the same `global_token_embedding` (make_fixed_block_side_inputs
///   gives them one id): without relative positions (`relative_pos_max_distance=0`) and without
///   `use_hard_g2l_mask` all global tokens stay identical.
/// - Relative positions: logits += q·E[id] + b[id] *before* the 1/√d scale; ids clip the key −
///   query offset (0; 1…M to the right; M+1…2M to the left), l2g/g2l use 2M+1 ("other block") and
///   2M+2 ("own block"); long and global queries have separate tables (relative_vocab_size rows,
///   default 2M+3).
/// - Masked logits get −10000 after the scale in etcmodel; here they are left out of the softmax,
///   which is the same in float32 (e^−10000 underflows to 0).
/// - `share_qkv_projections` is true by default (GlobalLocalTransformerLayers); then all four
///   pieces use the long projections. `share_kv_projections` shares l2l/l2g and g2g/g2l.
/// - Post-LayerNorm (eps 1e-12) residuals, separate norms for long and global; the feed-forward
///   is gelu in its tanh form (BERT's), shared by long and global by default.
/// - One layer gives the long tokens nothing global: the global keys are still the embedding.
/// - Untrained here: key projections start equal to the query projection (similarity
///   initialisation); relative tables N(0, 0.5²) (etcmodel: truncated), biases 0.
///
/// Keys: `global_token_embedding` (hidden); `layers.{t}.fused_att.{long_query,l2l_key,l2l_value,
/// long_output}_projection.{weight,bias}`, with sharing off also `l2g_key/l2g_value`,
/// `global_query/g2g_key/g2g_value/g2l_key/g2l_value`, `global_output` projections;
/// `layers.{t}.fused_att.{long,global}_relative_{emb,bias}_table` with M > 0;
/// `layers.{t}.layer_norm_0` (long), `layer_norm_1` (global);
/// `layers.{t}.feed_forward.{dense_0,dense_1,layer_norm}` (or `long_feed_forward`, `global_feed_forward`).
public final class ETC: AttentionModule {
    public static let info = ModuleInfo(
        id: "etc", title: "ETC: Encoding Long and Structured Inputs in Transformers", arxiv: "2004.08483", year: 2020,
        complexity: "O((N g + g^2 + N k) D)", complexityExponent: 1, kind: .sequence, causal: false,
        reference: "Tools/reference/etc.py (PyTorch restatement of google-research etcmodel GlobalLocalTransformerLayers, fixed blocks)",
        mapKind: .perQuery,
        mapDescription: "last layer: the long token's l2l window, its l2g weights spread over each global token's block, and l2l plus l2g carried by the globals' g2l reach",
        notes: ["one global token per block of B long tokens, all starting from global_token_embedding; B = num_tokens_per_block, or ceil(N/global_seq_len) (default: at most 16 global tokens)",
                "fused softmaxes: long over [window |i-j| <= local_radius, globals]; global over [globals, all long tokens]",
                "relative positions (relative_pos_max_distance > 0) add q.E[id] + b[id] before the 1/sqrt(d) scale; own/other block ids for l2g, g2l",
                "without relative positions and without use_hard_g2l_mask all global tokens stay identical",
                "share_qkv_projections defaults to true (etcmodel GlobalLocalTransformerLayers)",
                "post-LN eps 1e-12, gelu (tanh form) feed-forward shared by long and global",
                "linear in N for a fixed g (global_seq_len); with num_tokens_per_block B set, g = ceil(N/B) grows with N and the N g, g^2 terms are N^2/B, N^2/B^2",
                "untrained: key projections = query projection (similarity initialisation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("hidden_size", .int(1...65536), default: .none, "token width (taken from the input when unset)"),
        ConfigKey("num_attention_heads", .int(1...1024), default: .int(4), "heads; must divide hidden_size"),
        ConfigKey("local_radius", .int(1...1_000_000), default: .int(8), "l2l window |i-j| <= local_radius"),
        ConfigKey("num_tokens_per_block", .int(1...1_000_000), default: .none, "long tokens per global token (make_fixed_block_side_inputs); unset: ceil(L/global_seq_len)"),
        ConfigKey("global_seq_len", .int(1...1_000_000), default: .int(16), "at most this many global tokens when num_tokens_per_block is unset"),
        ConfigKey("num_hidden_layers", .int(1...64), default: .int(2), "layers"),
        ConfigKey("intermediate_size", .int(1...262_144), default: .none, "feed-forward width (default 4·hidden_size)"),
        ConfigKey("relative_pos_max_distance", .int(0...4096), default: .int(4), "clip for relative positions M; 0: none"),
        ConfigKey("relative_vocab_size", .int(1...65536), default: .none, "rows of the relative tables (default 2M+3; at least 2M+3)"),
        ConfigKey("share_feed_forward_params", .bool, default: .bool(true), "one feed-forward for long and global"),
        ConfigKey("share_kv_projections", .bool, default: .bool(false), "l2g keys/values = l2l's, g2l = g2g's"),
        ConfigKey("share_qkv_projections", .bool, default: .bool(true), "all four pieces use the long q/k/v projections"),
        ConfigKey("share_att_output_projection", .bool, default: .bool(false), "global output projection = long's"),
        ConfigKey("use_hard_g2l_mask", .bool, default: .bool(false), "a global token sees only its block's long tokens"),
        ConfigKey("use_hard_l2g_mask", .bool, default: .bool(false), "a long token sees only its block's global token"),
        ConfigKey("use_pre_activation_order", .bool, default: .bool(false), "pre-LayerNorm residual blocks"),
    ]

    public let config: Config
    let hidden: Int, heads: Int
    let radius: Int, maxDistance: Int, hardG2L: Bool, hardL2G: Bool
    /// num_tokens_per_block, or nil: ⌈L / global_seq_len⌉.
    let tokensPerBlock: Int?, globalSeqLen: Int
    let globalEmbedding: Tensor           // C
    let layers: [ETCLayer]

    public var expectedInput: String { "N×L×\(hidden)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        let (c, h) = try config.resolveTokenHeads("hidden_size", heads: "num_attention_heads", inputShape: inputShape)
        if !config.isSet("intermediate_size") { try config.resolveChannels("intermediate_size", from: 4 * c) }
        let m = config.int("relative_pos_max_distance")
        var vocab = 0
        if m > 0 {
            if !config.isSet("relative_vocab_size") { try config.resolveChannels("relative_vocab_size", from: 2 * m + 3) }
            vocab = config.int("relative_vocab_size")
            guard vocab >= 2 * m + 3 else {
                throw ConfigError.inconsistent(module: id,
                    message: "relative_vocab_size=\(vocab) is below 2·relative_pos_max_distance + 3 = \(2 * m + 3)")
            }
        } else if config.isSet("relative_vocab_size") {
            throw ConfigError.inconsistent(module: id, message: "relative_vocab_size needs relative_pos_max_distance > 0")
        }
        self.config = config
        (hidden, heads) = (c, h)
        if config.isSet("num_tokens_per_block") && config.explicit.contains("global_seq_len") {
            throw ConfigError.inconsistent(module: id, message: "set num_tokens_per_block or global_seq_len, not both")
        }
        (radius, maxDistance) = (config.int("local_radius"), m)
        (hardG2L, hardL2G) = (config.bool("use_hard_g2l_mask"), config.bool("use_hard_l2g_mask"))
        (tokensPerBlock, globalSeqLen) = (config.optionalInt("num_tokens_per_block"), config.int("global_seq_len"))
        globalEmbedding = p.parameter("global_token_embedding", shape: [c], initializer: .normal(std: 1))
        let options = ETCLayer.Options(hidden: c, heads: h, intermediate: config.int("intermediate_size"), vocab: vocab,
                                       shareFF: config.bool("share_feed_forward_params"),
                                       shareKV: config.bool("share_kv_projections"),
                                       shareQKV: config.bool("share_qkv_projections"),
                                       shareOutput: config.bool("share_att_output_projection"),
                                       pre: config.bool("use_pre_activation_order"))
        layers = (0..<config.int("num_hidden_layers")).map { ETCLayer(p.scoped("layers").scoped("\($0)"), options) }
    }

    func checkTokens(_ x: Tensor) throws -> (n: Int, l: Int) {
        guard x.rank == 3, x.shape[2] == hidden, x.shape[0] > 0, x.shape[1] > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        return (x.shape[0], x.shape[1])
    }

    /// The fixed blocks and attention patterns for L long tokens.
    func geometry(_ l: Int) -> ETCGeometry {
        ETCGeometry(tokens: l, radius: radius, blockSize: tokensPerBlock ?? (l + globalSeqLen - 1) / globalSeqLen,
                    maxDistance: maxDistance, hardG2L: hardG2L, hardL2G: hardL2G,
                    rows: config.bool("share_qkv_projections") ? [.all] : [.globals, .tokens])
    }

    /// The global tokens' input: the embedding for each of the ⌈L/B⌉ blocks, N×g×C.
    func globalInput(n: Int, _ geo: ETCGeometry) -> Tensor {
        globalEmbedding.reshaped([1, 1, hidden]).repeated([n, geo.globals, 1])
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (n, l) = try checkTokens(x)
        let geo = geometry(l)
        var (long, glob) = (x, globalInput(n: n, geo))
        for layer in layers { (long, glob) = try layer(long, glob, geo, trace: nil) }
        return long
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, l) = try checkTokens(x)
        guard query.row == 0, (0..<l).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query token \(query.column) (row \(query.row)) is outside 0..<\(l)")
        }
        if let h = query.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        let geo = geometry(l), g = geo.globals, i = query.column, bs = geo.blockSize
        let trace = AttentionTrace(row: g + i, head: query.head)
        var (long, glob) = (x.batchItem(0), globalInput(n: 1, geo))
        for layer in layers { (long, glob) = try layer(long, glob, geo, trace: trace) }
        var reach = [Float](repeating: 0, count: g * l)
        for p in trace.sideRowsPerLayer.dropLast() { reach = carry(p, previous: reach, side: g, keys: g + l) }
        let row = trace.queryRows.last!                                    // g global weights, then L tokens
        let l2g = Array(row[..<g]), local = Array(row[g...])
        var spread = [Float](repeating: 0, count: l), composed = local
        for j in 0..<l {
            let k = j / bs
            spread[j] = l2g[k] / Float(min(bs, l - k * bs))
        }
        for k in 0..<g where l2g[k] != 0 {
            for j in 0..<l { composed[j] += l2g[k] * reach[k * l + j] }
        }
        let who = query.head.map { "head \($0) " } ?? ""
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [3, 1, l], scalars: local + spread + composed),
                            labels: [who + "l2l (radius \(radius))",
                                     who + String(format: "l2g over blocks (%.2f)", l2g.reduce(0, +)),
                                     who + "l2l + via globals"])
    }
}

/// The fixed-block layout and masks of `make_fixed_block_side_inputs`, over the concatenated
/// sequence [g globals; L long tokens] the layers attend over.
struct ETCGeometry {
    let tokens: Int, radius: Int, blockSize: Int, maxDistance: Int
    let hardG2L: Bool, hardL2G: Bool
    /// The attention patterns, by the rows they hold (`.all`, or `.globals` and `.tokens` when
    /// the two kinds of rows meet different keys).
    let layouts: [BlockLayout.GlobalBandRows: BlockLayout]

    init(tokens l: Int, radius: Int, blockSize: Int, maxDistance: Int, hardG2L: Bool, hardL2G: Bool,
         rows: [BlockLayout.GlobalBandRows]) {
        (tokens, self.radius, self.blockSize, self.maxDistance) = (l, radius, blockSize, maxDistance)
        (self.hardG2L, self.hardL2G) = (hardG2L, hardL2G)
        let g = (l + blockSize - 1) / blockSize
        layouts = Dictionary(uniqueKeysWithValues: rows.map { kind in
            (kind, BlockLayout.globalBand(globals: g, tokens: l, radius: radius, rows: kind, globalBlock: blockSize,
                                          hardTokenToGlobal: hardL2G, hardGlobalToToken: hardG2L))
        })
    }

    var globals: Int { (tokens + blockSize - 1) / blockSize }

    func layout(_ rows: BlockLayout.GlobalBandRows) -> BlockLayout {
        guard let layout = layouts[rows] else { preconditionFailure("no \(rows) layout built") }
        return layout
    }

    /// etcmodel's RelativePositionGenerator id for a key − query offset.
    func relativeId(_ offset: Int) -> Int { offset >= 0 ? min(offset, maxDistance) : maxDistance + min(-offset, maxDistance) }
    /// l2g / g2l id: "other block" 2M+1, "own block" 2M+2.
    func blockId(own: Bool) -> Int { 2 * maxDistance + 1 + (own ? 1 : 0) }

    /// The relative ids of the pairs (q, k), k ∈ keys, of positions in [globals; long] into
    /// ids[k − keys.lowerBound]: the clipped offset within a kind (l2l, g2g), own or other block
    /// across kinds (l2g, g2l).
    func relativeIds(query q: Int, keys: Range<Int>, into ids: UnsafeMutablePointer<Int32>) {
        let g = globals, out = ids - keys.lowerBound
        let (own, other) = (Int32(blockId(own: true)), Int32(blockId(own: false)))
        let globalKeys = keys.clamped(to: 0..<g), longKeys = keys.clamped(to: g..<Int.max)
        if q < g {
            for k in globalKeys { out[k] = Int32(relativeId(k - q)) }
            for k in longKeys { out[k] = (k - g) / blockSize == q ? own : other }
        } else {
            let owner = (q - g) / blockSize
            for k in globalKeys { out[k] = k == owner ? own : other }
            for k in longKeys { out[k] = Int32(relativeId(k - q)) }
        }
    }
}
