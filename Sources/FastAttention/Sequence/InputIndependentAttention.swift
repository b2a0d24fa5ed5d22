// Input-independent attention weights, after "Input-independent Attention Weights Are Expressive
// Enough: A Study of Attention in Self-supervised Audio Transformers".
// Wu, Hsieh, Chen, Chi, Lee, 2020. https://arxiv.org/abs/2006.05174
// Reference matched: Tools/reference/input_independent.py `InputIndependentAttention`, written
// for this toolkit from the paper — the authors published no code.

import CKernels
import Foundation
import TensorCore

/// Attention whose weights do not depend on the input: each head h has a learned L×L logit matrix
/// A_h, softmax-normalised over keys, applied to the values of a self-attention layer whose query
/// and key projections are gone (the paper's finding: in self-supervised audio transformers such
/// input-independent weights do about as well as dot-product attention, ~20% faster).
///
///   y = to_out(concat_h softmax(A_h) · (x W_vᵀ + b_v)_h).
///
/// - Input N×L×dim (L = seq_len), output N×L×dim.
/// - Map (per-query): the learned row softmax(A_h)[i, :] (mean over heads unless one is chosen) —
///   the same for every input. O(L) per query.
/// - Cost: O(L²·D) to apply (the weights are computed once, when the module is built, not per
///   call: that is where the paper's speed-up comes from); H·L² parameters.
///
/// Written from the paper (no official code); the decisions made here:
/// - Heads as channel slices of width dim_head (default dim // heads), value and output
///   projections with bias as in a BERT/Mockingjay layer, no 1/√d (there are no dot products).
/// - `causal=true` masks A_h[i, j] for j > i before the softmax (the paper's model is an encoder;
///   the mask is for autoregressive use).
/// - `init`: "local" (default) starts head h as a Gaussian band exp(−(i−j)²/(2·4^h)) — from a
///   near-diagonal head to near-uniform ones, hand-crafted in the spirit of the paper's "specific
///   set of attention weights" used for initialisation, not its exact set; "random" draws logits
///   U(±√(3/L)) (xavier-uniform of one L×L head, Synthesizer-Random style). Linear layers are
///   PyTorch-default. On a feature map tokens are in raster order, so "local" means a horizontal
///   band around the query that wraps to the neighbouring rows.
///
/// Keys: `attention_logits` (H×L×L), `to_v.weight` (H·dim_head×dim), `to_v.bias`,
/// `to_out.weight` (dim×H·dim_head), `to_out.bias`.
public final class InputIndependentAttention: AttentionModule {
    public static let info = ModuleInfo(
        id: "input-independent",
        title: "Input-independent Attention Weights Are Expressive Enough (audio transformers)",
        arxiv: "2006.05174", year: 2020, complexity: "O(N^2 D)", complexityExponent: 2, kind: .sequence, causal: true,
        reference: "Tools/reference/input_independent.py (written from the paper; no official code)",
        mapKind: .perQuery,
        mapDescription: "the learned, input-independent row softmax(A_h)[i, :] for the query position",
        notes: ["no official code: the reference is this toolkit's PyTorch module written from the paper",
                "weights are a learned L x L logit matrix per head, softmax over keys, applied to to_v(x); no query or key",
                "L must equal seq_len; causal masks the future before the softmax",
                "init=local (default): head h is a Gaussian band of width 2^h positions (raster order on maps); init=random: U(+-sqrt(3/L))"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("dim", .int(1...65536), default: .none, "model width (taken from the input when unset)"),
        ConfigKey("seq_len", .int(1...1 << 20), default: .none, "sequence length L (taken from the input when unset)"),
        ConfigKey("heads", .int(1...4096), default: .int(8), "heads, each with its own L×L weights"),
        ConfigKey("dim_head", .int(1...65536), default: .none, "value channels per head (default dim // heads)"),
        ConfigKey("causal", .bool, default: .bool(false), "mask weights to future positions"),
        ConfigKey("init", .choice(["local", "random"]), default: .string("local"),
                  "untrained logits: Gaussian bands of width 2^h, or U(±sqrt(3/L))"),
    ]

    public let config: Config
    let dim: Int, seqLen: Int, heads: Int, dimHead: Int, causal: Bool
    let toV: Linear, toOut: Linear
    /// softmax over keys of the (masked) logits, H×L×L: the weights every input gets.
    let weights: Tensor

    public var expectedInput: String { "N×\(seqLen)×\(dim)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        let id = Self.info.id
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: id, expected: "N×L×C tokens", found: inputShape)
        }
        try config.resolveChannels("dim", from: inputShape[2])
        let l = inputShape[1]
        if let s = config.optionalInt("seq_len"), s != l {
            throw ConfigError.inconsistent(module: id,
                message: "seq_len=\(s) but the input has L=\(l) tokens (the weights are seq_len×seq_len: they must be equal)")
        }
        config.fill("seq_len", l)
        dim = config.int("dim")
        heads = config.int("heads")
        if let d = config.optionalInt("dim_head") {
            dimHead = d
        } else {
            guard dim % heads == 0 else {
                throw ConfigError.inconsistent(module: id, message: "dim=\(dim) must be divisible by heads=\(heads) unless dim_head is set")
            }
            dimHead = dim / heads
            config.fill("dim_head", dimHead)
        }
        seqLen = l
        causal = config.bool("causal")
        self.config = config

        let initial: Initializer
        if p.isLoading {
            initial = .zeros                                        // the checkpoint supplies them
        } else if config.string("init") == "random" {
            initial = .uniform(bound: (3 / Float(l)).squareRoot())
        } else {
            initial = .tensor(Tensor(shape: [heads, l, l], scalars: (0..<heads * l * l).map { e in
                let (h, i, j) = (e / (l * l), (e / l) % l, e % l)
                let d = Float(i - j)
                return -d * d / (2 * Float(1 << (2 * min(h, 30))))
            }))
        }
        let logits = p.parameter("attention_logits", shape: [heads, l, l], initializer: initial)
        weights = Self.softmaxWeights(logits, causal: causal)
        toV = Linear(p.scoped("to_v"), inFeatures: dim, outFeatures: heads * dimHead)
        toOut = Linear(p.scoped("to_out"), inFeatures: heads * dimHead, outFeatures: dim)
    }

    /// softmax over the last axis, with −∞ above the diagonal when causal: H×L×L.
    static func softmaxWeights(_ logits: Tensor, causal: Bool) -> Tensor {
        let (h, l) = (logits.shape[0], logits.shape[1])
        var w = logits
        w.withUnsafeMutableBufferPointer { p in
            if causal {
                for r in 0..<(h * l) {
                    let i = r % l
                    if i + 1 < l { (p.baseAddress! + r * l + i + 1).update(repeating: -.infinity, count: l - i - 1) }
                }
            }
            fa_softmax_rows(p.baseAddress!, h * l, l, l, 1)
        }
        return w
    }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] == seqLen, x.shape[2] == dim else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        let v = try toV(x)                                          // N, L, H·dh
        let n = x.shape[0], l = seqLen, inner = heads * dimHead
        var out = Tensor(uninitialized: [n, l, inner])              // N, L, H·dh
        weights.withUnsafeBufferPointer { wp in
            v.withUnsafeBufferPointer { vp in
                out.withUnsafeMutableBufferPointer { op in
                    let (w, vv, o) = (wp.baseAddress!, vp.baseAddress!, op.baseAddress!)
                    Threads.parallelFor(n * heads) { range in
                        for item in range {
                            let b = item / heads, h = item % heads, off = b * l * inner + h * dimHead
                            // out_bh (L×dh) = P_h (L×L) · v_bh (L×dh), heads read in place
                            BLAS.gemm(m: l, n: dimHead, k: l, a: w + h * l * l, lda: l,
                                      b: vv + off, ldb: inner, c: o + off, ldc: inner)
                        }
                    }
                }
            }
        }
        return try toOut(out)                                       // N, L, dim
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try check(x)
        guard query.row == 0, (0..<seqLen).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id, message: "query position \(query.column) is outside 0..<\(seqLen)")
        }
        if let h = query.head, !(0..<heads).contains(h) {
            throw ModuleError.badQuery(module: Self.info.id, message: "head \(h) is outside 0..<\(heads)")
        }
        let chosen = query.head.map { [$0] } ?? Array(0..<heads), l = seqLen, i = query.column
        var row = [Float](repeating: 0, count: l)
        weights.withUnsafeBufferPointer { wp in
            for h in chosen {
                for j in 0..<l { row[j] += wp[(h * l + i) * l + j] / Float(chosen.count) }
            }
        }
        let label = query.head.map { "head \($0): learned row" } ?? (heads == 1 ? "learned row" : "learned row (mean of \(heads) heads)")
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, 1, l], scalars: row), labels: [label])
    }
}

extension Config {
    /// Records a value the module derived for an optional key, so `config` lists every key resolved.
    fileprivate mutating func fill(_ name: String, _ value: Int) { try? resolveChannels(name, from: value) }
}
