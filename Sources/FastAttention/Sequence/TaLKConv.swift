// Time-aware Large Kernel Convolutions. Lioutas, Guo, ICML 2020. https://arxiv.org/abs/2002.03184
// Reference: lioutasb/TaLKConvolutions @ 501a457 `TaLKConv` (talkconv_fairseq/talkconv_module.py)
// and its CUDA kernels `TaLKConvEncoderKernel` / `TaLKConvDecoderKernel`
// (talkconv_module/talk_convolution_cuda.cu), read in full. That code needs CUDA, fairseq and
// apex; the parity fixtures come from a pure-PyTorch reference written from the paper and the
// kernels' arithmetic (Tools/reference/talk_conv.py).

import CKernels
import Foundation
import TensorCore

/// TaLK convolution: each token predicts how far its window reaches left and right, and the
/// output is the sum of the inputs in that window (fractional edges linearly interpolated) over
/// a fixed K — an adaptive box filter computed from prefix sums, O(L·C) whatever the window.
///
/// Matches `TaLKConv(hid_dim, offsets_dropout, decode, num_heads, min_len_left, min_len_right)`
/// in eval mode without incremental state (the reference is time-major T×B×C; this is N×L×C):
///   K = min_len_left + min_len_right + 1;  S = cumsum_t(x / K) per head (C = H·R);
///   l, r = sigmoid(offsets(x)) per token and head;  a = clamp(t − l·min_len_left, 0, L−1),
///   z = clamp(t + r·min_len_right, 0, L−1) (`decode`: z = t, causal);
///   out_t = (1−α_z)·S[⌊z⌋] + α_z·S[⌈z⌉] − (α_a·S[⌊a⌋−1] + (1−α_a)·S[⌈a⌉−1]), S[−1] = 0,
///   α_z = z − ⌊z⌋, α_a = ⌈a⌉ − a.
///
/// - Input N×L×hid_dim, output N×L×hid_dim (the op alone; the paper's layer adds GLU/FF around it).
/// - Map (per-query): the query's box — 1/K on every position strictly inside [a, z], the
///   interpolated fractions at the two edges, zero elsewhere — mean over heads (or one head).
///   The output row of a head's channels is exactly Σ_j w_j x_j. O(L) per query.
/// - Cost O(L·C): one prefix sum and four reads per output, independent of the window size.
///   The prefix sum is sequential in L but vectorised across channels (CKernels `fa_talk_prefix`,
///   accumulated in double and rounded per row exactly as torch.cumsum on float32); with fewer
///   (batch, head) problems than threads the channels of long sequences are split between threads.
///
/// Quirks of the reference (reproduced):
/// - The sum is divided by the **largest** window K, not by the window's own length, so weights
///   sum to (z − a + 1)/K ≤ 1; `min_len_*` are in fact the maximum reach.
/// - K includes min_len_right even with `decode` (the decoder layer passes min_len_right=0).
/// - The window is clamped to the sequence: near the ends it simply shrinks (no padding).
/// - `offsets` has H outputs with `decode` (left only), else 2H: left ones first, then right.
///
/// Keys: `offsets.weight` ((2)H×hid_dim), `offsets.bias`. Untrained: PyTorch-default weights.
public final class TaLKConv: AttentionModule {
    public static let info = ModuleInfo(
        id: "talk-conv", title: "Time-aware Large Kernel Convolutions",
        arxiv: "2002.03184", year: 2020, complexity: "O(N D)", complexityExponent: 1, kind: .sequence, causal: true,
        reference: "lioutasb/TaLKConvolutions TaLKConv @ 501a457 (CUDA kernel math; pure-PyTorch reference in Tools/reference/talk_conv.py)",
        mapKind: .perQuery,
        mapDescription: "the query's adaptive box: 1/K inside its predicted window [t - l·Lmax, t + r·Rmax], linearly interpolated at the fractional edges (mean over heads)",
        notes: ["divides by the largest window K = min_len_left + min_len_right + 1, not the window's own length",
                "decode=true: causal (window [t - l·Lmax, t]); K still counts min_len_right",
                "windows are clamped to the sequence; prefix sums make the cost independent of the window",
                "the fairseq/CUDA reference cannot run on CPU: fixtures from a pure-PyTorch transcription of the kernels"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("hid_dim", .int(1...65536), default: .none, "channels (taken from the input when unset)"),
        ConfigKey("offsets_dropout", .float(0...1), default: .float(0), "dropout on the offsets (inactive in eval)"),
        ConfigKey("decode", .bool, default: .bool(false), "causal: the window ends at the token itself"),
        ConfigKey("num_heads", .int(1...4096), default: .int(1), "heads: each predicts its own window for C/H channels"),
        ConfigKey("min_len_left", .int(0...1_000_000), default: .int(1), "largest reach to the left (Lmax)"),
        ConfigKey("min_len_right", .int(0...1_000_000), default: .int(1), "largest reach to the right (Rmax)"),
    ]

    public let config: Config
    let hidDim: Int, heads: Int, decode: Bool, maxLeft: Int, maxRight: Int
    let offsets: Linear

    public var expectedInput: String { "N×L×\(hidDim)" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        var config = config
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×L×C tokens", found: inputShape)
        }
        try config.resolveChannels("hid_dim", from: inputShape[2])
        self.config = config
        hidDim = config.int("hid_dim")
        heads = config.int("num_heads")
        guard hidDim % heads == 0 else {
            throw ConfigError.inconsistent(module: Self.info.id, message: "hid_dim=\(hidDim) must be divisible by num_heads=\(heads)")
        }
        decode = config.bool("decode")
        maxLeft = config.int("min_len_left")
        maxRight = config.int("min_len_right")
        offsets = Linear(p.scoped("offsets"), inFeatures: hidDim, outFeatures: heads * (decode ? 1 : 2))
    }

    var k: Int { maxLeft + maxRight + 1 }

    func check(_ x: Tensor) throws {
        guard x.rank == 3, x.shape[0] > 0, x.shape[1] > 0, x.shape[2] == hidDim else {
            throw ModuleError.badInput(module: Self.info.id, expected: expectedInput, found: x.shape)
        }
    }

    /// One window: fractional edges a ≤ z and their floors/ceils, as the kernel computes them.
    struct Window {
        let a: Float, z: Float
        let fl: Int, cl: Int, fr: Int, cr: Int
        let alphaLeft: Float, alphaRight: Float

        init(t: Int, length l: Int, left: Float, right: Float, maxLeft: Int, maxRight: Int, decode: Bool) {
            let last = Float(l - 1)
            // A NaN offset (from a NaN input) would trap in Int(_:): the window collapses onto the
            // token and its edge weights become NaN, so the NaN reaches this output instead.
            let bad = left.isNaN || (!decode && right.isNaN)
            a = bad ? Float(t) : min(max(Float(t) - left * Float(maxLeft), 0), last)
            z = decode || bad ? Float(t) : min(max(Float(t) + right * Float(maxRight), 0), last)
            (fl, cl) = (min(max(Int(a.rounded(.down)), 0), l - 1), min(max(Int(a.rounded(.up)), 0), l - 1))
            (fr, cr) = (min(max(Int(z.rounded(.down)), 0), l - 1), min(max(Int(z.rounded(.up)), 0), l - 1))
            alphaLeft = bad ? .nan : Float(cl) - a
            alphaRight = bad ? .nan : z - Float(fr)
        }
    }

    /// sigmoid(offsets(x)): N×L×(2)H.
    func predictedOffsets(_ x: Tensor) throws -> Tensor { try offsets(x).sigmoid() }

    func window(_ o: UnsafePointer<Float>, token t: Int, head h: Int, length l: Int) -> Window {
        let width = heads * (decode ? 1 : 2)
        return Window(t: t, length: l, left: o[t * width + h], right: decode ? 0 : o[t * width + heads + h],
                      maxLeft: maxLeft, maxRight: maxRight, decode: decode)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try check(x)
        let (n, l) = (x.shape[0], x.shape[1]), (c, r) = (hidDim, hidDim / heads)
        let off = try predictedOffsets(x)                                 // N, L, (2)H
        let inv = 1 / Float(k), problems = n * heads
        // Windows once per (batch, head, token): rows of S (S[i] is row i + 1) and the edge weights.
        var rows = [Int32](repeating: 0, count: problems * l * 4)
        var alphas = [Float](repeating: 0, count: problems * l * 2)
        off.withUnsafeBufferPointer { op in
            rows.withUnsafeMutableBufferPointer { rp in
                alphas.withUnsafeMutableBufferPointer { ap in
                    let (rBase, aBase) = (rp.baseAddress!, ap.baseAddress!)
                    let width = heads * (decode ? 1 : 2)
                    Threads.parallelFor(n * l, minChunk: 8192) { range in
                        for bt in range {
                            let (b, t) = (bt / l, bt % l)
                            for h in 0..<heads {
                                let w = window(op.baseAddress! + b * l * width, token: t, head: h, length: l)
                                let e = (b * heads + h) * l + t
                                (rBase[4 * e], rBase[4 * e + 1]) = (Int32(w.fr + 1), Int32(w.cr + 1))
                                (rBase[4 * e + 2], rBase[4 * e + 3]) = (Int32(w.fl), Int32(w.cl))
                                (aBase[2 * e], aBase[2 * e + 1]) = (w.alphaRight, w.alphaLeft)
                            }
                        }
                    }
                }
            }
        }
        // Prefix sums and read-out per (batch, head, channel slice): the running sum is sequential
        // in L but independent across channels, so with fewer problems than threads the head's
        // channels are split (slices of ≥ 8 channels and ≥ 2^18 elements: below that, ~0.1 ms,
        // waking a second thread costs more than it saves) and each slice runs on its own thread.
        let want = (Threads.count + problems - 1) / problems
        let slices = max(1, min(want, r / 8, l * r >> 18))
        let span = (r + slices - 1) / slices
        var out = Tensor(uninitialized: [n, l, c])                         // N, L, C
        x.withUnsafeBufferPointer { xp in
            rows.withUnsafeBufferPointer { rp in
                alphas.withUnsafeBufferPointer { ap in
                    out.withUnsafeMutableBufferPointer { yp in
                        let yBase = yp.baseAddress!
                        Threads.parallelFor(problems * slices) { range in
                            // S[t] (t = −1…L−1) of one slice: (L + 1)×span, row 0 is S[−1] = 0.
                            let s = UnsafeMutablePointer<Float>.allocate(capacity: (l + 1) * span)
                            defer { s.deallocate() }
                            for unit in range {
                                let (problem, slice) = (unit / slices, unit % slices)
                                let (b, h) = (problem / heads, problem % heads)
                                let j0 = slice * span, width = min(span, r - j0)
                                guard width > 0 else { continue }
                                let col = b * l * c + h * r + j0
                                fa_talk_prefix(xp.baseAddress! + col, l, c, width, inv, s, width)
                                fa_talk_gather(s, width, width, l, rp.baseAddress! + problem * l * 4,
                                               ap.baseAddress! + problem * l * 2, yBase + col, c)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Head h's box weights for query t over the L positions (batch item 0's offsets `o`).
    func box(_ o: UnsafePointer<Float>, token t: Int, head h: Int, length l: Int) -> [Float] {
        let w = window(o, token: t, head: h, length: l), inv = 1 / Float(k)
        return (0..<l).map { j -> Float in
            let right = (j <= w.fr ? 1 - w.alphaRight : 0) + (j <= w.cr ? w.alphaRight : 0)
            let left = (j <= w.fl - 1 ? w.alphaLeft : 0) + (j <= w.cl - 1 ? 1 - w.alphaLeft : 0)
            return (right - left) * inv
        }
    }

    public func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap {
        try check(x)
        let l = x.shape[1]
        let i = try KernelizedAttention.checkQuery(query, length: l, heads: heads, module: Self.info.id)
        let off = try predictedOffsets(x.batchItem(0))                    // 1, L, (2)H
        var edges: [String] = []
        let map = off.withUnsafeBufferPointer { op in
            KernelizedAttention.headMap(heads: heads, length: l, head: query.head, label: "box of 1/K = 1/\(k)") { h in
                let w = window(op.baseAddress!, token: i, head: h, length: l)
                edges.append(String(format: "[%.1f, %.1f]", w.a, w.z))
                return box(op.baseAddress!, token: i, head: h, length: l)
            }
        }
        let who = query.head.map { ", head \($0)" } ?? (heads == 1 ? "" : ", mean of \(heads) heads")
        return AttentionMap(kind: .perQuery, values: map.values,
                            labels: ["box of 1/K = 1/\(k)\(who), window\(edges.count > 1 ? "s" : "") \(edges.joined(separator: " "))"])
    }
}
