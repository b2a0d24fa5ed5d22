// GMAT: Global Memory Augmentation for Transformers. Gupta, Berant, 2020.
// https://arxiv.org/abs/2006.03274
// No code of the authors exists (ag1988/gmat holds only a README): the reference is
// Tools/reference/gmat.py, written from the paper on Hugging Face `BertLayer`s.

import CKernels
import Foundation
import TensorCore

/// A stack of BERT layers over [M learned memory tokens; L tokens] with GMAT's attention
/// pattern: memory rows attend densely to all M + L positions; token rows attend to all M
/// memory slots plus their own window |i − j| ≤ `local_radius` (all tokens once the radius
/// reaches L − 1: the paper's "BERT + memory"), one softmax per row, the same projections for
/// memory and tokens.
///
/// Matches `GMAT(hidden_size, num_attention_heads, num_memory, local_radius, num_hidden_layers,
/// intermediate_size, hidden_act, layer_norm_eps)` of Tools/reference/gmat.py (written from the
/// paper; see there), eval mode.
///
/// - Input N×L×hidden_size, output N×L×hidden_size: the token rows of the last layer (the memory
///   rows are internal).
/// - Cost per layer: O(M·(M+L)·D) for the memory rows + O(L·(M + 2r+1)·D) for the token rows
///   (windowed: linear in L); O(L²·D) once local_radius ≥ L − 1. Nothing (M+L)² is built either
///   way: windowed token rows are a `BlockLayout.globalBand` over the M+L rows through
///   `BlockSparseAttention`, memory rows and full rows go through `DenseAttention`.
/// - Map (per-query), two panels for the last layer, mean over heads or one head: (1) the query
///   token's direct weights over the tokens (its window, or the full row); (2) those plus its
///   memory weights carried to the tokens by the memory's reach: reach⁰ = 0 (the memory starts
///   as learned slots, holding nothing of the input) and reachᵗ = P_mem→tok + P_mem→mem·reachᵗ⁻¹
///   over the earlier layers. With one layer the memory reaches nothing.
///
/// Quirks (of the paper's design, as the reference realises it):
/// - A single layer gives the tokens nothing global: in layer 1 the memory keys are still the
///   learned embeddings; the memory's summary of the input reaches the tokens from layer 2 on.
/// - BERT layers, post-LayerNorm (eps 1e-12): a = LN(x + W_o·attn), y = LN(a + W₂·act(W₁·a));
///   `hidden_act` gelu is the exact erf form (gelu_new: tanh form).
/// - Logits scale 1/√(hidden_size/num_attention_heads).
/// - The paper's chunked memory and its memory-only "compression" decoding are not part of it.
/// - Untrained here: key = query projection (similarity initialisation); memory N(0, 1).
///
/// Keys: `memory` (M×hidden), `layer.{t}.attention.self.{query,key,value}.{weight,bias}`,
/// `layer.{t}.attention.output.dense.*`, `layer.{t}.attention.output.LayerNorm.*`,
/// `layer.{t}.intermediate.dense.*`, `layer.{t}.output.dense.*`, `layer.{t}.output.LayerNorm.*`
/// (Hugging Face `BertLayer` names, so BERT weights lift into it).
public final class GMAT: AttentionModule {
    public static let info = ModuleInfo(
        id: "gmat", title: "GMAT: Global Memory Augmentation for Transformers", arxiv: "2006.03274", year: 2020,
        complexity: "O(m (N+m) D)", complexityExponent: 1, kind: .sequence, causal: false,
        reference: "Tools/reference/gmat.py (written from the paper: HF BertLayer stack + memory; no authors' code)",
        mapKind: .perQuery,
        mapDescription: "last layer: the query token's direct weights over the tokens (its window), and those plus its memory weights carried by the memory's reach",
        notes: ["memory rows attend to all M+L positions; token rows to all memory slots + |i-j| <= local_radius (local_radius >= L-1: all tokens, the paper's BERT+memory, O(N^2))",
                "one layer gives the tokens nothing global (memory keys are still the learned slots); use num_hidden_layers >= 2",
                "BERT layers, post-LN eps 1e-12, hidden_act gelu = erf form; keys are HF BertLayer names under layer.{t}",
                "cost: O(M (M+N) D) memory rows + O(N (M + 2r+1) D) windowed token rows",
                "untrained: key = query projection (similarity initialisation), memory N(0,1)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("hidden_size", .int(1...65536), default: .none, "token width (taken from the input when unset)"),
        ConfigKey("num_attention_heads", .int(1...1024), default: .int(4), "heads; must divide hidden_size"),
        ConfigKey("num_memory", .int(1...4096), default: .int(8), "memory tokens M"),
        ConfigKey("local_radius", .int(0...1_000_000), default: .int(8), "token window |i-j| <= r (r >= L-1: full attention over the tokens)"),
        ConfigKey("num_hidden_layers", .int(1...64), default: .int(2), "BERT layers"),
        ConfigKey("intermediate_size", .int(1...262_144), default: .none, "feed-forward width (default 4·hidden_size)"),
        ConfigKey("hidden_act", .choice(["gelu", "gelu_new", "relu"]), default: .string("gelu"), "feed-forward activation (gelu: erf form)"),
        ConfigKey("layer_norm_eps", .float(0...1), default: .float(1e-12), "LayerNorm epsilon"),
    ]

    public let config: Config
    let hidden: Int, heads: Int, numMemory: Int
    /// The token window; full rows once it reaches L − 1.
    let radius: Int
    let memory: Tensor                 // M, C
    let layers: [BertLayerWeights]

    public var expectedInput: String { "N×L×\(hidden)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let (c, h) = try config.resolveTokenHeads("hidden_size", heads: "num_attention_heads", inputShape: inputShape)
        if !config.isSet("intermediate_size") { try config.resolveChannels("intermediate_size", from: 4 * c) }
        self.config = config
        (hidden, heads, numMemory) = (c, h, config.int("num_memory"))
        radius = config.int("local_radius")
        memory = p.parameter("memory", shape: [numMemory, c], initializer: .normal(std: 1))
        let (inter, act, eps) = (config.int("intermediate_size"), config.string("hidden_act"), Float(config.float("layer_norm_eps")))
        layers = (0..<config.int("num_hidden_layers")).map {
            BertLayerWeights(p.scoped("layer").scoped("\($0)"), hidden: c, intermediate: inter, act: act, eps: eps)
        }
    }

    /// The token rows' pattern over the M + L rows (memory + window), or nil once the window
    /// covers every token.
    func tokenRows(_ l: Int) -> BlockLayout? {
        radius >= l - 1 ? nil : BlockLayout.globalBand(globals: numMemory, tokens: l, radius: radius, rows: .tokens)
    }

    func checkTokens(_ x: Tensor) throws -> (n: Int, l: Int) {
        guard x.rank == 3, x.shape[2] == hidden, x.shape[0] > 0, x.shape[1] > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        return (x.shape[0], x.shape[1])
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (n, l) = try checkTokens(x)
        var h = Tensor.concatenated([memory.reshaped([1, numMemory, hidden]).repeated([n, 1, 1]), x], axis: 1)  // N, M+L, C
        let rows = tokenRows(l)
        for layer in layers { h = try layer(h, memory: numMemory, tokenRows: rows, heads: heads, trace: nil) }
        return h.sliced(axis: 1, range: numMemory..<(numMemory + l))                                          // N, L, C
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, l) = try checkTokens(x)
        guard query.row == 0, (0..<l).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query token \(query.column) (row \(query.row)) is outside 0..<\(l)")
        }
        if let h = query.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        let m = numMemory, t = m + l
        let trace = AttentionTrace(row: m + query.column, head: query.head)
        var h = Tensor.concatenated([memory.reshaped([1, m, hidden]), x.batchItem(0)], axis: 1)                // 1, M+L, C
        let rows = tokenRows(l)
        for layer in layers { h = try layer(h, memory: m, tokenRows: rows, heads: heads, trace: trace) }
        // reach⁰ = 0; reachᵗ = P_mem→tok + P_mem→mem · reachᵗ⁻¹ (M×L), over the layers before the last.
        var reach = [Float](repeating: 0, count: m * l)
        for p in trace.sideRowsPerLayer.dropLast() { reach = carry(p, previous: reach, side: m, keys: t) }
        let row = trace.queryRows.last!                                            // M+L weights
        let direct = Array(row[m...])
        var composed = direct
        for mu in 0..<m where row[mu] != 0 {
            for j in 0..<l { composed[j] += row[mu] * reach[mu * l + j] }
        }
        let memShare = row[..<m].reduce(0, +)
        let who = query.head.map { "head \($0) " } ?? ""
        let pattern = rows == nil ? "full row" : "window r=\(radius)"
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [2, 1, l], scalars: direct + composed),
                            labels: [who + "tokens, direct (\(pattern))",
                                     who + String(format: "direct + via memory (memory %.2f)", memShare)])
    }
}

/// reachᵗ = P[:, side...] + P[:, ..<side] · reachᵗ⁻¹ for side rows P (side × keys, keys = side + L).
func carry(_ p: [Float], previous: [Float], side: Int, keys: Int) -> [Float] {
    let l = keys - side
    var out = [Float](repeating: 0, count: side * l)
    for a in 0..<side {
        for j in 0..<l { out[a * l + j] = p[a * keys + side + j] }
        for c in 0..<side where p[a * keys + c] != 0 {
            let w = p[a * keys + c]
            for j in 0..<l { out[a * l + j] += w * previous[c * l + j] }
        }
    }
    return out
}

/// What a map needs from one forward pass of batch item 0: per layer, the side rows' (memory or
/// global tokens') weights over all keys and the query row's weights, for `head` (nil: the mean
/// over heads). Rows are positions of the concatenated [side; tokens] sequence.
final class AttentionTrace {
    let row: Int
    let head: Int?
    var sideRowsPerLayer: [[Float]] = []
    var queryRows: [[Float]] = []
    init(row: Int, head: Int?) {
        self.row = row
        self.head = head
    }
}

/// Hugging Face `BertLayer` (eval): self-attention with one shared projection set, then
/// post-LayerNorm residual blocks around the attention output and the feed-forward.
struct BertLayerWeights {
    let query: Linear, key: Linear, value: Linear, attnDense: Linear, attnNorm: LayerNorm
    let intermediate: Linear, output: Linear, outNorm: LayerNorm
    let act: String

    init(_ p: Parameters, hidden c: Int, intermediate inter: Int, act: String, eps: Float) {
        let s = p.scoped("attention").scoped("self")
        query = Linear(s.scoped("query"), inFeatures: c, outFeatures: c)
        var k = Linear(s.scoped("key"), inFeatures: c, outFeatures: c)
        if !p.isLoading { (k.weight, k.bias) = (query.weight, query.bias) }    // similarity initialisation
        key = k
        value = Linear(s.scoped("value"), inFeatures: c, outFeatures: c)
        let o = p.scoped("attention").scoped("output")
        attnDense = Linear(o.scoped("dense"), inFeatures: c, outFeatures: c)
        attnNorm = LayerNorm(o.scoped("LayerNorm"), normalizedShape: c, eps: eps)
        intermediate = Linear(p.scoped("intermediate").scoped("dense"), inFeatures: c, outFeatures: inter)
        output = Linear(p.scoped("output").scoped("dense"), inFeatures: inter, outFeatures: c)
        outNorm = LayerNorm(p.scoped("output").scoped("LayerNorm"), normalizedShape: c, eps: eps)
        self.act = act
    }

    func activation(_ x: Tensor) -> Tensor {
        switch act {
        case "relu": return x.relu()
        case "gelu_new": return x.gelu(approximate: .tanh)
        default: return x.gelu()
        }
    }

    /// h: N×(M+L)×C, the first `memory` rows memory → N×(M+L)×C. `tokenRows` is the token rows'
    /// pattern, memory + window (`BlockLayout.globalBand`, rows `.tokens`); nil: all keys.
    func callAsFunction(_ h: Tensor, memory m: Int, tokenRows: BlockLayout?, heads: Int, trace: AttentionTrace?) throws -> Tensor {
        let (n, t, c) = (h.shape[0], h.shape[1], h.shape[2]), d = c / heads
        let q = try query(h), k = try key(h), v = try value(h)                 // N, M+L, C
        let scale = 1 / Float(d).squareRoot()
        var ctx: Tensor                                                        // N, M+L, C
        if let tokenRows {
            // Token rows over the memory + their window (memory rows left zero), then the
            // memory rows over all M+L keys.
            ctx = BlockSparseAttention.multiHead(q: q, k: k, v: v, heads: heads, layouts: [tokenRows], scale: scale)
            let mem = DenseAttention.multiHead(q: q.sliced(axis: 1, range: 0..<m), k: k, v: v, heads: heads,
                                               scale: scale)                   // N, M, C
            ctx.withUnsafeMutableBufferPointer { cp in
                mem.withUnsafeBufferPointer { mp in
                    for b in 0..<n { (cp.baseAddress! + b * t * c).update(from: mp.baseAddress! + b * m * c, count: m * c) }
                }
            }
        } else {
            ctx = DenseAttention.multiHead(q: q, k: k, v: v, heads: heads, scale: scale)
        }
        if let trace {
            let l = t - m
            let memoryRows = BlockLayout.globalBand(globals: m, tokens: l, radius: 0, rows: .globals)
            let queryRows = tokenRows ?? BlockLayout.globalBand(globals: m, tokens: l, radius: l, rows: .tokens)
            func row(_ i: Int, _ layout: BlockLayout) -> [Float] {
                BlockSparseAttention.mapRow(q: q, k: k, heads: heads, layouts: [layout], query: i, head: trace.head, scale: scale)
            }
            trace.sideRowsPerLayer.append((0..<m).flatMap { row($0, memoryRows) })
            trace.queryRows.append(row(trace.row, queryRows))
        }
        let a = try attnNorm(try attnDense(ctx) + h)                              // N, M+L, C
        return try outNorm(try output(activation(try intermediate(a))) + a)        // N, M+L, C
    }
}
