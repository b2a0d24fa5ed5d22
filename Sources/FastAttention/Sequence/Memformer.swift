// Memformer: A Memory-Augmented Transformer for Sequence Modeling. Wu, Lan, Qiu, Gu, Yu,
// AACL 2022 (arXiv 2020). https://arxiv.org/abs/2010.06891
// Reference matched: pip memformer 0.3.1 (lucidrains, marked work in progress; no official code)
// `Memformer(encoder_only=True)` (memformer/memformer.py), read in full.

import Foundation
import TensorCore

/// Memformer's encoder with its external memory: every segment's tokens read a fixed set of
/// memory slots, and the slots are rewritten from the segment before the next one.
///
/// Matches `Memformer(dim, num_memory_slots, num_mem_updates, encoder_only=True,
/// mem_update_attn_heads, enc_depth, enc_heads, ...)` in eval mode, `forward(src, mems=mems)` →
/// `(enc_out, mem)`, with the input being the embedded tokens (what `encoder.token_emb` makes of
/// the ids; the embedding itself is accepted in a checkpoint and unused):
///   per layer (pre-norm residuals): x += SelfAttn(LN x) with the T5 relative bias;
///   x += CrossAttn(LN x → memory M); x += FF(LN x);  enc = LN(x).
///   Memory write, num_mem_updates times: M′ = Attn(M → [M; enc]) where slot s sees only itself
///   and the tokens; M = GRUCell(M′, M); M = M + FF(LN M).
///
/// - State is explicit: `forward(_:memories:)` takes the N×slots×dim memory (nil: the learned
///   `memory_slots`) and returns the next one (`SegmentMemoryModule`, saved as `mem` by `attend
///   run --segments N`). `callAsFunction` runs one segment from `memory_slots`.
/// - Input N×L×dim, output N×L×dim (`enc_out`).
/// - Map (per-query, 2×1×L): (0) the last encoder layer's self-attention row of the query with the
///   relative bias (mean over heads, or `enc_heads` head h); (1) the memory write: the first
///   update's weights on the tokens, averaged over slots and heads (query-independent: where the
///   memory reads the segment). Both start from `memory_slots`.
/// - Cost per segment O(L²·dim) (the self-attention) + O(L·slots·dim); linear in segments.
///
/// Quirks of the reference (reproduced):
/// - The non-causal T5 buckets use n = max(i − j, 0): every key at or to the right of the query
///   shares bucket 0 with the query itself; n < 16 exact, log-spaced up to 128, 32 buckets; one
///   bias table shared by all layers.
/// - The memory writer is a GRUCell (the paper uses a bias-normalised forgetting update) and the
///   writer attends with an eye mask: each slot sees only itself among the slots.
/// - The cross-attention reads the raw memory (only the tokens are layer-normalised).
/// - The biased self-attention: each row is `DenseAttention`'s softmax row reweighted by
///   exp(bias) and renormalised (softmax(s + b) = softmax(s)·eᵇ / Σ), then multiplied by V.
/// - No masks (`src_mask`) and no decoder: the decoder of `encoder_only=False` returns only its
///   training loss, so `encoder_only=false` is refused; not causal.
///
/// Keys: `memory_slots` (slots×dim); `encoder.layer_blocks.rel_pos_emb.relative_attention_bias.weight`
/// (32×enc_heads); per layer i `encoder.layer_blocks.layers.i.{0,1}.fn.norm.{weight,bias}` and
/// `.fn.fn.{to_q,to_kv,to_out}.{weight,bias}` (self, cross), `encoder.layer_blocks.layers.i.2.fn.norm.*`,
/// `.2.fn.fn.net.{0,2}.*` (FF); `encoder.norm.*`; `mem_updater.{to_q,to_kv,to_out}.*`;
/// `gru.{weight_ih,weight_hh,bias_ih,bias_hh}`; `mem_ff.fn.norm.*`, `mem_ff.fn.fn.net.{0,2}.*`;
/// optional `encoder.token_emb.weight` (ignored). Untrained: PyTorch defaults (slots and bias
/// N(0, 1)) with every attention's key half of `to_kv` equal to `to_q` (similarity initialisation).
public final class Memformer: SegmentMemoryModule {
    public static let info = ModuleInfo(
        id: "memformer", title: "Memformer: The Memory-Augmented Transformer",
        arxiv: "2010.06891", year: 2020, complexity: "O(N D) (O(L^2 D) per segment)", complexityExponent: 2, kind: .sequence, causal: false,
        reference: "memformer.Memformer(encoder_only=True) (pip memformer 0.3.1)",
        mapKind: .perQuery,
        mapDescription: "(0) the last encoder layer's self-attention row with the T5 relative bias; (1) the memory write: the slots' update weights on the tokens (mean over slots and heads)",
        notes: ["input = embedded tokens (encoder.token_emb output); encoder.token_emb.weight is accepted and unused",
                "memories explicit: forward(_:memories:) / attend run --segments N (saved as mem); a plain call starts from memory_slots",
                "non-causal T5 buckets n = max(i - j, 0): keys right of the query share its bucket 0",
                "memory writer: slot sees itself + tokens (eye mask), GRUCell, then FF residual (the paper's forgetting update differs)",
                "encoder only (the reference decoder returns a loss); no src_mask; O(L^2) within a segment, linear in segments",
                "untrained: PyTorch defaults with every to_kv key half = to_q"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("num_memory_slots", .int(1...4096), default: .int(8), "memory slots"),
        ConfigKey("num_mem_updates", .int(1...64), default: .int(1), "memory write iterations per segment"),
        ConfigKey("encoder_only", .bool, default: .bool(true), "only true is supported (the decoder returns a loss)"),
        ConfigKey("mem_update_attn_heads", .int(1...1024), default: .int(8), "heads of the memory writer"),
        ConfigKey("enc_depth", .int(1...64), default: .int(1), "encoder layers"),
        ConfigKey("enc_heads", .int(1...1024), default: .int(8), "encoder heads"),
        ConfigKey("enc_num_tokens", .int(1...10_000_000), default: .none, "vocabulary of encoder.token_emb (accepted; the input is embedded)"),
        ConfigKey("enc_max_seq_len", .int(1...10_000_000), default: .none, "accepted, unused (as in the reference)"),
    ]

    public static let memoryNames = ["mem"]

    struct Layer {
        let norm1: LayerNorm, selfAttn: MemformerAttention
        let norm2: LayerNorm, crossAttn: MemformerAttention
        let norm3: LayerNorm, ff: MemformerFeedForward
    }

    public let config: Config
    let dim: Int, slots: Int, updates: Int, heads: Int
    let memorySlots: Tensor
    let bias: MemformerRelativeBias
    let layers: [Layer]
    let encoderNorm: LayerNorm
    let memUpdater: MemformerAttention
    let gru: GRUCell
    let memFFNorm: LayerNorm, memFF: MemformerFeedForward

    public var expectedInput: String { "N×L×\(dim)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×C tokens", found: inputShape)
        }
        try config.resolveChannels("dim", from: inputShape[2])
        self.config = config
        let id = Self.info.id
        let dim = config.int("dim")
        self.dim = dim
        slots = config.int("num_memory_slots")
        updates = config.int("num_mem_updates")
        let heads = config.int("enc_heads")
        self.heads = heads
        let writerHeads = config.int("mem_update_attn_heads")
        guard config.bool("encoder_only") else {
            throw ModuleError.unsupported(module: id, message: "encoder_only=false: the reference decoder returns only a training loss; use the encoder")
        }
        for (k, h) in [("enc_heads", heads), ("mem_update_attn_heads", writerHeads)] where dim % h != 0 {
            throw ConfigError.inconsistent(module: id, message: "dim=\(dim) must be divisible by \(k)=\(h)")
        }
        let enc = p.scoped("encoder"), blocks = enc.scoped("layer_blocks")
        enc.scoped("token_emb").ignored("weight")
        bias = MemformerRelativeBias(blocks.scoped("rel_pos_emb"), heads: heads)
        layers = (0..<config.int("enc_depth")).map { i in
            let l = blocks.scoped("layers").scoped("\(i)")
            let (a, c, f) = (l.scoped("0").scoped("fn"), l.scoped("1").scoped("fn"), l.scoped("2").scoped("fn"))
            return Layer(norm1: LayerNorm(a.scoped("norm"), normalizedShape: dim),
                         selfAttn: MemformerAttention(a.scoped("fn"), dim: dim, heads: heads),
                         norm2: LayerNorm(c.scoped("norm"), normalizedShape: dim),
                         crossAttn: MemformerAttention(c.scoped("fn"), dim: dim, heads: heads),
                         norm3: LayerNorm(f.scoped("norm"), normalizedShape: dim),
                         ff: MemformerFeedForward(f.scoped("fn"), dim: dim))
        }
        encoderNorm = LayerNorm(enc.scoped("norm"), normalizedShape: dim)
        memorySlots = p.parameter("memory_slots", shape: [slots, dim], initializer: .normal(std: 1))
        memUpdater = MemformerAttention(p.scoped("mem_updater"), dim: dim, heads: writerHeads)
        gru = GRUCell(p.scoped("gru"), dim: dim)
        memFFNorm = LayerNorm(p.scoped("mem_ff").scoped("fn").scoped("norm"), normalizedShape: dim)
        memFF = MemformerFeedForward(p.scoped("mem_ff").scoped("fn").scoped("fn"), dim: dim)
    }

    func check(_ x: Tensor, _ memories: Tensor?) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] > 0, x.shape[2] == dim else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        if let m = memories, m.shape != [x.shape[0], slots, dim] {
            throw ModuleError.badInput(module: Self.info.id, expected: "memory \(x.shape[0])×\(slots)×\(dim)", found: m.shape)
        }
    }

    /// `memory_slots` for a batch of n: n×slots×dim.
    func initialMemory(batch n: Int) -> Tensor { memorySlots.reshaped([1, slots, dim]).broadcast(to: [n, slots, dim]) }

    /// The encoder on x with memory `mem`; `lastInput` gets the last layer's normalised input.
    func encode(_ x: Tensor, memory mem: Tensor, lastInput: ((Tensor) -> Void)? = nil) throws -> Tensor {
        var h = x                                                            // N, L, dim
        for (i, layer) in layers.enumerated() {
            let xn = try layer.norm1(h)
            if i == layers.count - 1 { lastInput?(xn) }
            h = h + (try layer.selfAttn.selfAttention(xn, bias: bias))
            h = h + (try layer.crossAttn.crossAttention(try layer.norm2(h), context: mem))
            h = h + (try layer.ff(try layer.norm3(h)))
        }
        return try encoderNorm(h)
    }

    /// One segment: `enc_out` and the memory after it (from `memory_slots` when nil).
    public func forward(_ x: Tensor, memories: Tensor?) throws -> (Tensor, Tensor) {
        try check(x, memories)
        let n = x.shape[0]
        var mem = memories ?? initialMemory(batch: n)                        // N, slots, dim
        let enc = try encode(x, memory: mem)                                 // N, L, dim
        for _ in 0..<updates {
            let updated = try memUpdater.memoryUpdate(mems: mem, enc: enc)   // N, slots, dim
            mem = gru(updated, mem).reshaped([n, slots, dim])
            mem = mem + (try memFF(try memFFNorm(mem)))
        }
        return (enc, mem)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try forward(x, memories: nil).0 }

    /// The T5 bucket of a query-to-key distance n = max(i − j, 0) (0...31).
    public static func relativeBucket(_ n: Int) -> Int { MemformerRelativeBias.bucket(max(n, 0)) }

    public func step(_ x: Tensor, memories: [String: Tensor]?) throws -> (output: Tensor, memories: [String: Tensor]) {
        let mem = try memories.map { m -> Tensor in
            guard let t = m["mem"] else {
                throw ModuleError.unsupported(module: Self.info.id, message: "memories need 'mem' (found \(m.keys.sorted().joined(separator: ", ")))")
            }
            return t
        }
        let (y, next) = try forward(x, memories: mem)
        return (y, ["mem": next])
    }

    /// The map with a given memory (N×slots×dim, nil: `memory_slots`), for batch item 0.
    public func attentionMap(_ x: Tensor, memories: Tensor?, query: MapQuery) throws -> AttentionMap {
        try check(x, memories)
        let l = x.shape[1]
        let i = try KernelizedAttention.checkQuery(query, length: l, heads: heads, module: Self.info.id)
        let x0 = x.batchItem(0), mem = memories?.batchItem(0) ?? initialMemory(batch: 1)
        var last = x0
        let enc = try encode(x0, memory: mem) { last = $0 }
        let hs = query.head.map { [$0] } ?? Array(0..<heads)
        var row = [Float](repeating: 0, count: l)
        for h in hs {
            let r = try layers[layers.count - 1].selfAttn.selfAttentionRow(last, bias: bias, query: i, head: h)
            for j in 0..<l { row[j] += r[j] / Float(hs.count) }
        }
        let writes = try memUpdater.memoryUpdateWeights(mems: mem, enc: enc)   // H·slots rows of 1+L
        var write = [Float](repeating: 0, count: l)
        var own: Float = 0
        for w in writes {
            own += w[0] / Float(writes.count)
            for j in 0..<l { write[j] += w[1 + j] / Float(writes.count) }
        }
        let who = query.head.map { "head \($0)" } ?? "mean of \(heads) heads"
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [2, 1, l], scalars: row + write),
                            labels: ["token \(i): last layer's self-attention (T5 bias), \(who)",
                                     "memory write: \(slots) slots' weights on the tokens (own slot \(String(format: "%.3f", own)))"])
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try attentionMap(x, memories: nil, query: query)
    }
}
