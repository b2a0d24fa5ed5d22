// Transformer on a Diet — dilated, dilated-memory and cascade windows for language models.
// Wang, Wu, Yang, Zhang, Song, Huang, 2020. https://arxiv.org/abs/2002.06170
// Reference: cgraywang/transformer-on-diet (47d9d40) scripts/language_model/transformer_model.py,
// `_windowed_mask`, `_dilated_windowed_mask`, `_dilated_mem_windowed_mask` and
// `TransformerEncoder(model=...)` (MXNet/GluonNLP; no PyTorch code exists).
// Tools/reference/transformer_on_diet.py is a PyTorch masked-dense reference written for this
// package from those functions and the paper.

import Foundation
import TensorCore

/// Transformer-on-a-Diet self-attention of encoder layer `layer`: GluonNLP multi-head attention
/// (scaled dot product) under the layer's mask, then the cell's output projection.
///
/// - Input N×L×units, output N×L×units: `proj(MultiHeadAttention(x, x, x, mask_layer))` — the
///   attention part of a `TransformerEncoderCell` (its dropout, residual, LayerNorm and FFN,
///   and the encoder's √units input scaling and positional encoding, are outside).
/// - Masks (causal; q query, k key, i = `layer`):
///   - `dilated`: k = q − m·d for m = 0…kernel_size−1, d = d_base^i (k ≥ 0).
///   - `dilated_mem`: the union of the dilated masks of layers 0…i (the reference ORs into the
///     previous layer's mask).
///   - `cascade`: q − (w_i − 1) ≤ k ≤ q, w_i = window_size·window_size_multiplier^i.
///   - `full`: k ≤ q.
/// - Logits q·k/√(units/num_heads) (`scaled=true`) or q·k.
/// - Cost O(N·k·d_head) per layer: every (query block, offset) pair meets one or two key blocks.
/// - Map (per-query): the query's softmax row over its few keys (k ≤ kernel_size·(i+1) for
///   dilated_mem), mean over heads.
/// - Keys (the Gluon block structure with PyTorch names, as conventions.md does for FracTAL):
///   `attention_cell.proj_query.weight (units, units)`, `attention_cell.proj_key.weight`,
///   `attention_cell.proj_value.weight`, `proj.weight (units, units)` — no biases: the
///   repository's `TransformerEncoderCell` builds its cell with `_get_attention_cell(...)`, whose
///   `use_bias` defaults to False and is not passed. `use_bias=true` (toolkit option) adds
///   `.bias (units)` to the three projections. Untrained: proj_key = proj_query (similarity
///   initialisation).
public final class TransformerOnDietAttention: BlockSparseModule {
    public static let info = ModuleInfo(
        id: "transformer-on-a-diet", title: "Transformer on a Diet (dilated / dilated-memory / cascade masks)",
        arxiv: "2002.06170", year: 2020, complexity: "O(N k D)", complexityExponent: 1,
        kind: .sequence, causal: true,
        reference: "cgraywang/transformer-on-diet 47d9d40 mask functions + GluonNLP multi-head attention (PyTorch masked-dense port in Tools/reference/transformer_on_diet.py)",
        mapKind: .perQuery,
        mapDescription: "softmax weights of the query over its layer's mask: {q, q-d, q-2d} with d = d_base^layer (dilated), the union over layers 0..layer (dilated_mem), or the last w positions (cascade); mean over heads",
        notes: ["`layer` (toolkit key) selects the encoder layer whose mask is used: d = d_base^layer",
                "output = proj(attention): the cell's residual, LayerNorm and FFN are not part of the module",
                "no PyTorch reference exists: the fixture comes from a PyTorch port of the repository's mask functions",
                "proj_query/proj_key/proj_value have no bias, as the repository's cell (_get_attention_cell use_bias=False); use_bias=true adds them",
                "untrained: proj_key = proj_query (similarity initialisation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("units", .int(1...65536), default: .none, "channels (taken from the input when unset)"),
        ConfigKey("num_heads", .int(1...1024), default: .int(4), "heads"),
        ConfigKey("model", .choice(["dilated", "dilated_mem", "cascade", "full"]), default: .string("dilated"), "mask kind"),
        ConfigKey("layer", .int(0...30), default: .int(2), "encoder layer index i of the mask (toolkit key)"),
        ConfigKey("kernel_size", .int(1...1024), default: .int(3), "dilated: keys per query"),
        ConfigKey("d_base", .int(1...64), default: .int(2), "dilated: d = d_base^layer"),
        ConfigKey("window_size", .int(1...1_000_000), default: .int(2), "cascade: first layer's window"),
        ConfigKey("window_size_multiplier", .int(1...64), default: .int(2), "cascade: window growth per layer"),
        ConfigKey("scaled", .bool, default: .bool(true), "scale logits by 1/sqrt(d_head)"),
        ConfigKey("use_bias", .bool, default: .bool(false), "bias in the query/key/value projections (the repository's cell has none)"),
    ]

    public let config: Config
    let units: Int, heads: Int, model: String, layer: Int, kernel: Int, dBase: Int
    let window: Int, multiplier: Int, scaled: Bool
    let projQuery: Linear, projKey: Linear, projValue: Linear, proj: Linear
    let cache = LayoutCache()

    public var expectedInput: String { "N×L×\(units)" }
    public var exampleLength: Int { 256 }
    var scale: Float { scaled ? 1 / Float(units / heads).squareRoot() : 1 }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        (units, heads) = try config.resolveTokenHeads("units", heads: "num_heads", inputShape: inputShape)
        self.config = config
        model = config.string("model")
        layer = config.int("layer")
        kernel = config.int("kernel_size")
        dBase = config.int("d_base")
        window = config.int("window_size")
        multiplier = config.int("window_size_multiplier")
        scaled = config.bool("scaled")
        let bias = config.bool("use_bias"), cell = p.scoped("attention_cell")
        projQuery = Linear(cell.scoped("proj_query"), inFeatures: units, outFeatures: units, bias: bias)
        let k = Linear(cell.scoped("proj_key"), inFeatures: units, outFeatures: units, bias: bias)
        projKey = p.isLoading ? k : Linear(weight: projQuery.weight, bias: projQuery.bias)
        projValue = Linear(cell.scoped("proj_value"), inFeatures: units, outFeatures: units, bias: bias)
        proj = Linear(p.scoped("proj"), inFeatures: units, outFeatures: units, bias: false)
    }

    /// The key offsets q − k of layer `i`'s dilated mask (d computed as the reference does:
    /// a float power truncated to an int).
    func dilatedOffsets(layer i: Int) -> [Int] {
        let d = Int(pow(Double(dBase), Double(i)))
        return (0..<kernel).map { $0 * d }
    }

    public func layouts(length: Int) throws -> [[BlockLayout]] {
        try cache.layouts(length: length) { try buildLayouts(length: length) }
    }

    func buildLayouts(length l: Int) throws -> [[BlockLayout]] {
        guard l >= 1 else { throw ModuleError.badInput(module: Self.info.id, expected: "L ≥ 1", found: [l]) }
        switch model {
        case "full": return [[SparsePatterns.all(length: l, block: 64, causal: true)]]
        case "cascade":
            let w = window * Int(pow(Double(multiplier), Double(layer)))
            return [[SparsePatterns.local(length: l, block: 32, ctx: w, causal: true)]]
        default:
            let offsets = model == "dilated" ? dilatedOffsets(layer: layer)
                : Array(Set((0...layer).flatMap { dilatedOffsets(layer: $0) })).sorted()
            // Each offset δ is one shifted diagonal: query block [q0, q1] meets keys [q0−δ, q1−δ].
            let block = 16
            var b = BlockLayoutBuilder(length: l, blockSize: block)
            for qb in 0..<b.blockCount {
                let q0 = qb * block, q1 = min(l, q0 + block) - 1
                for delta in offsets where q1 - delta >= 0 {
                    b.add(max(0, q0 - delta) / block..<((q1 - delta) / block + 1), rule: .band(-delta, -delta))
                }
                b.endRow()
            }
            return [[b.build(name: "\(model) layer \(layer): offsets \(offsets.map(String.init).joined(separator: ","))")]]
        }
    }

    func check(_ x: Tensor) throws -> Int {
        guard x.rank == 3, x.shape[2] == units, x.shape[0] > 0, x.shape[1] > 0 else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
        return x.shape[1]
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let l = try check(x)
        let q = try projQuery(x), k = try projKey(x), v = try projValue(x)       // N, L, units each
        let a = BlockSparseAttention.multiHead(q: q, k: k, v: v, heads: heads, parts: try layouts(length: l), scale: scale)
        return try proj(a)                                                       // N, L, units
    }

    public func attentionMap(_ x: Tensor, query mq: MapQuery) throws -> AttentionMap {
        let l = try check(x)
        guard mq.row == 0, (0..<l).contains(mq.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(mq.column) is outside 0..<\(l)")
        }
        if let h = mq.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        let x0 = x.batchItem(0)
        let w = BlockSparseAttention.mapRow(q: try projQuery(x0), k: try projKey(x0), heads: heads,
                                            parts: try layouts(length: l), query: mq.column, head: mq.head, scale: scale)
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: w),
                            labels: ["\(model) layer \(layer), " + (mq.head.map { "head \($0)" } ?? "mean of \(heads) heads")])
    }
}
