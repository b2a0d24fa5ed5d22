// Interlaced Sparse Self-Attention for Semantic Segmentation.
// Huang, Yuan, Guo, Zhang, Chen, Wang, 2019. https://arxiv.org/abs/1907.12273
// Reference matched: the authors' openseg.pytorch lib/models/modules/isa_block.py `ISA_Block`
// and `SelfAttentionBlock2D` (commit aefc755), read in full, with `ModuleHelper.BNReLU` as
// BatchNorm2d + ReLU (bn_type='torchbn'); mmseg's ISAHead wraps the same core.

import TensorCore

/// Interlaced sparse self-attention: a dense attention among pixels that share an offset inside
/// their block (long range, a strided lattice over the whole map), then a dense attention inside
/// each block (short range). Two sparse hops reach every pixel; no step scores all pairs.
///
/// Matches `ISA_Block(in_channels, key_channels, value_channels, out_channels,
/// down_factor=[8, 8], bn_type='torchbn')` in eval mode.
///
/// - Input N×in_channels×H×W, output N×out_channels×H×W; no residual inside the block
///   (openseg's ISA_Module adds the concatenation and conv_bn around it).
/// - `down_factor` = (dh, dw) is the size of the local BLOCK, not a stride: gh = ⌈H/dh⌉,
///   gw = ⌈W/dw⌉ blocks. The map is zero-padded to gh·dh × gw·dw with pad//2 before (top,
///   left) and the rest after, and cropped back at the end — exactly as the reference. Padding
///   pixels are real keys and values in both hops (their zero input still passes the BN/ReLU
///   projections), so they change the output near the borders, as in the reference.
/// - Long range: for each of the dh·dw offsets, attention among its gh·gw pixels
///   (pixel (gi·dh + li, gj·dw + lj) belongs to offset (li, lj)); short range: attention among
///   the dh·dw pixels of each block, on the long-range output (out_channels wide).
/// - Each hop (`SelfAttentionBlock2D`): q = φ_q(x), k = φ_k(x) with φ = (1×1 conv, no bias →
///   BN → ReLU) twice, v = 1×1 conv (no bias); softmax(q·k · key_channels^−½) over the group;
///   then W = 1×1 conv (no bias) → BN → ReLU.
/// - Cost: O(N·(gh·gw + dh·dw)·key) for the two hops (the blocks are batched through
///   `DenseAttention`), plus O(N·C·key) projections; with blocks of √N pixels, O(N^1.5).
///   Fixed blocks of 8×8 (the default), the long-range hop is O(N²/64) — bench with
///   `--set down_factor=S,S` scaling as √(side) to see the paper's N^1.5.
/// - Map (per-query): the query's long-range weights over its lattice, its short-range
///   weights over its block, and the composed long-then-short map. A pixel p″ reaches the
///   query through exactly one pixel of the query's block (the one with p″'s offset), so the
///   composed weight is short(q → p′)·long(p′ → p″), computed from dh·dw long-range rows:
///   O(N·key) per query. Maps are cropped to H×W; the padding pixels' share is not shown, so
///   near borders the visible mass is below 1.
///
/// Quirks: the reference has no default for key/value/out channels (here in/2, in, in, the ratio
/// openseg's ISANet uses), and bn_type=None fails there; 'torchbn' and 'torchsyncbn' (the same
/// eval math and keys) are accepted. mmseg's value projection has a bias; openseg's has none.
/// Untrained (seeded) weights: PyTorch-default convs, BN at identity, and f_key = f_query
/// (similarity initialisation). At that scale the logits are small (two ReLU'd 1×1 convs), so
/// untrained maps are close to uniform (a few per cent around 1/group size); the colour bar's
/// range shows the contrast, which follows feature similarity.
///
/// Keys, for hop ∈ {long_range_sa, short_range_sa}: `hop.f_key.0.weight`, `hop.f_key.1.0.*`
/// (BatchNorm2d: weight, bias, running_mean, running_var, num_batches_tracked),
/// `hop.f_key.2.weight`, `hop.f_key.3.0.*`, the same under `f_query`, `hop.f_value.weight`,
/// `hop.W.0.weight`, `hop.W.1.0.*`.
public final class InterlacedSparseAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "interlaced-sparse", title: "Interlaced Sparse Self-Attention for Semantic Segmentation", arxiv: "1907.12273",
        year: 2019, complexity: "O(N D^2 + N sqrt(N) D)", complexityExponent: 1.5, kind: .spatial, causal: false,
        reference: "openseg.pytorch ISA_Block (aefc755), bn_type='torchbn'", mapKind: .perQuery,
        mapDescription: "the query's long-range weights over its strided lattice, its short-range weights over its block, and the composed long-then-short map (each pixel reached through one block pixel)",
        notes: ["down_factor is the local block size (dh, dw), not a stride",
                "H, W are zero-padded to block multiples, pad//2 before and the rest after, and cropped back; padding pixels are keys",
                "softmax scale key_channels^-0.5; f_value has no bias (mmseg's has)",
                "the cost exponent 1.5 needs blocks of ~sqrt(N) pixels; a fixed 8x8 block makes the long-range hop quadratic/64",
                "untrained: PyTorch-default convs with f_key = f_query (similarity initialisation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("in_channels", .int(1...65536), default: .none, "input channels (taken from the input when unset)"),
        ConfigKey("key_channels", .int(1...65536), default: .none, "query/key channels (default in_channels // 2)"),
        ConfigKey("value_channels", .int(1...65536), default: .none, "value channels (default in_channels)"),
        ConfigKey("out_channels", .int(1...65536), default: .none, "output channels (default in_channels)"),
        ConfigKey("down_factor", .ints(count: 2...2, each: 1...4096), default: .ints([8, 8]), "local block size: H then W"),
        ConfigKey("bn_type", .choice(["torchbn", "torchsyncbn"]), default: .string("torchbn"), "BatchNorm2d + ReLU after each conv (eval)"),
    ]

    public let config: Config
    let inChannels: Int, keyChannels: Int, valueChannels: Int, outChannels: Int
    let dh: Int, dw: Int
    let longRangeSA: ISASelfAttentionBlock, shortRangeSA: ISASelfAttentionBlock

    public var expectedInput: String { "N×\(inChannels)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 4 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×C×H×W", found: inputShape)
        }
        try config.resolveChannels("in_channels", from: inputShape[1])
        self.config = config
        let c = config.int("in_channels")
        inChannels = c
        keyChannels = config.optionalInt("key_channels") ?? max(c / 2, 1)
        valueChannels = config.optionalInt("value_channels") ?? c
        outChannels = config.optionalInt("out_channels") ?? c
        (dh, dw) = (config.ints("down_factor")[0], config.ints("down_factor")[1])
        longRangeSA = ISASelfAttentionBlock(p.scoped("long_range_sa"), in: c, key: keyChannels,
                                            value: valueChannels, out: outChannels)
        shortRangeSA = ISASelfAttentionBlock(p.scoped("short_range_sa"), in: outChannels, key: keyChannels,
                                             value: valueChannels, out: outChannels)
    }

    /// The padded grid: blocks gh×gw and the padding before (top, left).
    func grid(_ h: Int, _ w: Int) -> (gh: Int, gw: Int, ph: Int, pw: Int) {
        let gh = (h + dh - 1) / dh, gw = (w + dw - 1) / dw
        return (gh, gw, (gh * dh - h) / 2, (gw * dw - w) / 2)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (n, _, h, w) = try checkMap(x, channels: inChannels, module: Self.info.id)
        let long = try longRangeSA(latticeTokens(x))                 // N·dh·dw, gh·gw, out
        let short = try shortRangeSA(blocksFromLattices(long, n: n, h: h, w: w))   // N·gh·gw, dh·dw, out
        return mapFromBlocks(short, n: n, h: h, w: w)               // N, out, H, W
    }

    /// x N×C×H×W → N·dh·dw × gh·gw × C: the zero-padded map regrouped by intra-block offset
    /// (as the reference's view(n, c, gh, dh, gw, dw).permute(0, 3, 5, 1, 2, 4)).
    func latticeTokens(_ x: Tensor) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (gh, gw, ph, pw) = grid(h, w)
        let t = x.mapToTokens()                                       // N, H·W, C
        var out = Tensor(zeros: [n * dh * dw, gh * gw, c])
        t.withUnsafeBufferPointer { tp in
            out.withUnsafeMutableBufferPointer { op in
                for b in 0..<n { for li in 0..<dh { for lj in 0..<dw { for gi in 0..<gh { for gj in 0..<gw {
                    let i = gi * dh + li - ph, j = gj * dw + lj - pw
                    guard (0..<h).contains(i), (0..<w).contains(j) else { continue }   // padding stays 0
                    let dst = op.baseAddress! + (((b * dh + li) * dw + lj) * gh * gw + gi * gw + gj) * c
                    dst.update(from: tp.baseAddress! + (b * h * w + i * w + j) * c, count: c)
                } } } } }
            }
        }
        return out
    }

    /// N·dh·dw × gh·gw × C → N·gh·gw × dh·dw × C (the reference's view(n, dh, dw, c, gh, gw)
    /// .permute(0, 4, 5, 3, 1, 2)).
    func blocksFromLattices(_ t: Tensor, n: Int, h: Int, w: Int) -> Tensor {
        let (gh, gw, _, _) = grid(h, w), c = t.shape[2]
        var out = Tensor(uninitialized: [n * gh * gw, dh * dw, c])
        t.withUnsafeBufferPointer { tp in
            out.withUnsafeMutableBufferPointer { op in
                for b in 0..<n { for g in 0..<(gh * gw) { for l in 0..<(dh * dw) {
                    (op.baseAddress! + ((b * gh * gw + g) * dh * dw + l) * c)
                        .update(from: tp.baseAddress! + ((b * dh * dw + l) * gh * gw + g) * c, count: c)
                } } }
            }
        }
        return out
    }

    /// N·gh·gw × dh·dw × C → N×C×H×W, cropping the padding.
    func mapFromBlocks(_ t: Tensor, n: Int, h: Int, w: Int) -> Tensor {
        let (gh, gw, ph, pw) = grid(h, w), c = t.shape[2]
        var tokens = Tensor(uninitialized: [n, h * w, c])             // N, H·W, C
        t.withUnsafeBufferPointer { tp in
            tokens.withUnsafeMutableBufferPointer { op in
                for b in 0..<n { for i in 0..<h { for j in 0..<w {
                    let pi = i + ph, pj = j + pw
                    let src = ((b * gh * gw + (pi / dh) * gw + pj / dw) * dh * dw + (pi % dh) * dw + pj % dw) * c
                    (op.baseAddress! + (b * h * w + i * w + j) * c).update(from: tp.baseAddress! + src, count: c)
                } } }
            }
        }
        return tokens.tokensToMap(height: h, width: w)               // N, C, H, W
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        let (_, _, h, w) = try checkMap(x, channels: inChannels, module: Self.info.id)
        guard (0..<h).contains(query.row), (0..<w).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id,
                                       message: "query (row \(query.row), column \(query.column)) is outside the \(h)×\(w) grid")
        }
        let (gh, gw, ph, pw) = grid(h, w)
        let (i, j) = (query.row + ph, query.column + pw)              // in the padded grid
        let (gi, li, gj, lj) = (i / dh, i % dh, j / dw, j % dw)
        let block = gi * gw + gj
        // Long range: the query block's pixel of every offset attends over its lattice.
        let lattice = latticeTokens(x.batchItem(0))                  // dh·dw, gh·gw, C
        let (q1, k1, v1) = try longRangeSA.projections(lattice)
        var longRows: [[Float]] = []                                  // [offset][lattice position]
        var blockInput = Tensor(uninitialized: [1, dh * dw, outChannels])   // 1, dh·dw, out
        for o in 0..<(dh * dw) {
            let row = longRangeSA.weights(q: q1, k: k1, batch: o, query: block)
            longRows.append(row)
            let y = try longRangeSA.output(weights: row, v: v1, batch: o)     // out
            blockInput.withUnsafeMutableBufferPointer { bp in
                for ch in 0..<outChannels { bp[o * outChannels + ch] = y[ch] }
            }
        }
        // Short range: the query over its block.
        let (q2, k2, _) = try shortRangeSA.projections(blockInput)
        let shortRow = shortRangeSA.weights(q: q2, k: k2, batch: 0, query: li * dw + lj)
        var maps = [Float](repeating: 0, count: 3 * h * w)
        for r in 0..<h { for c in 0..<w {
            let (pi, pj) = (r + ph, c + pw)
            let (gi2, li2, gj2, lj2) = (pi / dh, pi % dh, pj / dw, pj % dw)
            let o = li2 * dw + lj2, g = gi2 * gw + gj2
            if o == li * dw + lj { maps[r * w + c] = longRows[o][g] }
            if g == block { maps[h * w + r * w + c] = shortRow[o] }
            maps[2 * h * w + r * w + c] = shortRow[o] * longRows[o][g]
        } }
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [3, h, w], scalars: maps),
                            labels: ["long range (its \(gh)x\(gw) lattice)", "short range (its \(dh)x\(dw) block)",
                                     "composed long then short"])
    }
}

/// openseg's `SelfAttentionBlock2D` on token groups B×L×C_in → B×L×C_out (one dense softmax
/// attention per group, all groups in one batched `DenseAttention` call).
struct ISASelfAttentionBlock {
    let fKey: [ISAConvBNReLU], fQuery: [ISAConvBNReLU]
    let fValue: Tensor                    // value, in (the 1×1 conv weight, no bias)
    let out: ISAConvBNReLU
    let keyChannels: Int, valueChannels: Int

    init(_ p: Parameters, in c: Int, key: Int, value: Int, out o: Int) {
        keyChannels = key
        valueChannels = value
        // Similarity initialisation: the query convs are drawn first and the key convs start
        // equal to them (declared in the reference's state_dict order: f_key first).
        let drawn = p.withGenerator { g in
            [(c, [key, c, 1, 1]), (key, [key, key, 1, 1])].map { fanIn, shape in
                let bound = 1 / Float(fanIn).squareRoot()           // PyTorch's default conv init
                return Tensor.randomUniform(shape, low: -bound, high: bound, generator: &g)
            }
        }
        func stack(_ name: String) -> [ISAConvBNReLU] {
            let s = p.scoped(name)
            return [ISAConvBNReLU(s, conv: "0", bn: "1", in: c, out: key, initial: drawn[0]),
                    ISAConvBNReLU(s, conv: "2", bn: "3", in: key, out: key, initial: drawn[1])]
        }
        fKey = stack("f_key")
        fQuery = stack("f_query")
        fValue = p.scoped("f_value").parameter("weight", shape: [value, c, 1, 1], initializer: .pytorchDefault(fanIn: c))
            .reshaped([value, c])
        out = ISAConvBNReLU(p.scoped("W"), conv: "0", bn: "1", in: value, out: o, initial: nil)
    }

    var scale: Float { 1 / Float(keyChannels).squareRoot() }

    /// q, k B×L×key and v B×L×value.
    func projections(_ t: Tensor) throws -> (Tensor, Tensor, Tensor) {
        let q = try fQuery[1](fQuery[0](t)), k = try fKey[1](fKey[0](t))
        return (q, k, tokenLinear(t, fValue))
    }

    func callAsFunction(_ t: Tensor) throws -> Tensor {
        let (q, k, v) = try projections(t)
        let ctx = DenseAttention.multiHead(q: q, k: k, v: v, heads: 1, scale: scale)   // B, L, value
        return try out(ctx)                                                            // B, L, out
    }

    /// Softmax weights of token `query` of group `batch` over that group: O(L·key).
    func weights(q: Tensor, k: Tensor, batch: Int, query: Int) -> [Float] {
        let l = q.shape[1], d = keyChannels
        return q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                DenseAttention.weights(query: qp.baseAddress! + (batch * l + query) * d,
                                       keys: kp.baseAddress! + batch * l * d, ldk: d, lk: l, d: d, scale: scale)
            }
        }
    }

    /// The block's output for one token given its attention weights over group `batch`.
    func output(weights: [Float], v: Tensor, batch: Int) throws -> [Float] {
        let l = v.shape[1]
        var ctx = Tensor(uninitialized: [1, 1, valueChannels])        // 1, 1, value
        weights.withUnsafeBufferPointer { wp in
            v.withUnsafeBufferPointer { vp in
                ctx.withUnsafeMutableBufferPointer { cp in
                    BLAS.gemm(m: 1, n: valueChannels, k: l, a: wp.baseAddress!, lda: l,
                              b: vp.baseAddress! + batch * l * valueChannels, ldb: valueChannels,
                              c: cp.baseAddress!, ldc: valueChannels)
                }
            }
        }
        return try out(ctx).scalars
    }
}

/// 1×1 conv (no bias) → BatchNorm2d (eval) → ReLU, applied to tokens B×L×in → B×L×out.
/// Keys: `<conv>.weight` (out×in×1×1) and `<bn>.0.{weight,bias,running_mean,running_var}`
/// (`num_batches_tracked` accepted) — the layout of openseg's `Conv2d, BNReLU` pairs.
struct ISAConvBNReLU {
    let weight: Tensor                    // out, in
    let scale: [Float], shift: [Float]

    init(_ p: Parameters, conv: String, bn: String, in c: Int, out o: Int, initial: Tensor?) {
        weight = p.scoped(conv).parameter("weight", shape: [o, c, 1, 1],
                                          initializer: initial.map { .tensor($0) } ?? .pytorchDefault(fanIn: c))
            .reshaped([o, c])
        let norm = BatchNorm2d(p.scoped(bn).scoped("0"), numFeatures: o)
        let g = norm.weight!.scalars, b = norm.bias!.scalars
        let mean = norm.runningMean!.scalars, variance = norm.runningVar!.scalars
        scale = (0..<o).map { g[$0] / (variance[$0] + norm.eps).squareRoot() }
        shift = (0..<o).map { b[$0] - mean[$0] * g[$0] / (variance[$0] + norm.eps).squareRoot() }
    }

    func callAsFunction(_ t: Tensor) throws -> Tensor {
        var y = tokenLinear(t, weight)
        let o = weight.shape[0]
        y.withUnsafeMutableBufferPointer { yp in
            scale.withUnsafeBufferPointer { sp in
                shift.withUnsafeBufferPointer { hp in
                    let (y0, s0, h0) = (yp.baseAddress!, sp.baseAddress!, hp.baseAddress!)
                    Threads.parallelFor(yp.count / o, minChunk: Swift.max(1, (1 << 14) / o)) { rows in
                        for r in rows {
                            let row = y0 + r * o
                            for ch in 0..<o { row[ch] = max(row[ch] * s0[ch] + h0[ch], 0) }
                        }
                    }
                }
            }
        }
        return y
    }
}

/// Tokens B×L×in times a 1×1 conv weight (out×in) → B×L×out, one GEMM.
fileprivate func tokenLinear(_ t: Tensor, _ weight: Tensor) -> Tensor {
    let (o, c) = (weight.shape[0], weight.shape[1])
    let rows = t.count / c
    return t.reshaped([rows, c]).matmul(weight, transposeOther: true)  // rows, out
        .reshaped(Array(t.shape.dropLast()) + [o])
}
