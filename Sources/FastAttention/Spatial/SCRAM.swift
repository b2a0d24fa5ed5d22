// SCRAM: Spatially Coherent Randomized Attention Maps.
// Calian, Roelants, Cali, Carr, Dubba, Reid, Zhang, 2019. https://arxiv.org/abs/1905.10308
// No public code: this matches the reference written from the paper in Tools/reference/scram.py
// (its doc string defines the layer and the search exactly).

import Foundation
import TensorCore

/// Sparse softmax attention over the keys PatchMatch finds: every query pixel attends to the
/// `topk` keys of largest q·k that a randomized nearest-neighbour search (random init,
/// propagation from neighbours, random search) finds in O(n·log n·D), never scoring all n keys.
///
/// The layer (a non-local mean, as in the paper's setting): q, k, v = 1×1 convs (with bias) of x;
/// N(i) = the keys `PatchMatch.search` finds for query i; yᵢ = Σ_{j∈N(i)} softmax_j(qᵢ·kⱼ/√key_channels)·vⱼ.
///
/// - Input N×in_channels×H×W, output N×value_channels×H×W (no residual, no output projection).
/// - Map (per-query): the query's found keys with their softmax weights, zero elsewhere
///   (the search runs over the whole image, since queries pass candidates to each other;
///   O(n·log n·D), nothing n×n).
/// - Cost: O(H·W·iterations·topk·log max(H, W)·key_channels) for the search, O(H·W·topk·value_channels)
///   for the weighted sums.
///
/// Notes:
/// - The paper's abstract states the idea (PatchMatch finds the argmax key per query, and the
///   sparse approximation is built from it); the exact layer, the k-NN form of the search, the
///   order of propagation and the random search around every candidate are the reference's
///   choices, stated in Tools/reference/scram.py.
/// - Random draws: buffers `init_draws` (B×HW×topk) and `search_draws`
///   (B×iterations×HW×topk×M×2, M = ⌊log₂ max(H, W)⌋ + 1), uniform in [0, 1). When the weights
///   file carries them (for that input size) they are used, which is how parity with the
///   reference is exact; otherwise they are drawn from `seed`, image by image (init, then search).
/// - `topk` is capped at H·W (a smaller map attends to every key).
/// - Untrained: PyTorch-default 1×1 convs with the key projection equal to the query projection
///   (similarity initialisation).
///
/// Keys: `query.{weight,bias}` (key_channels×C×1×1), `key.*` (same), `value.*`
/// (value_channels×C×1×1); optional buffers `init_draws`, `search_draws`.
public final class SCRAM: AttentionModule {
    public static let info = ModuleInfo(
        id: "scram", title: "SCRAM: Spatially Coherent Randomized Attention Maps", arxiv: "1905.10308", year: 2019,
        complexity: "O(N log(N) D)", complexityExponent: 1, kind: .spatial, causal: false,
        reference: "own PyTorch reference from the paper (Tools/reference/scram.py); no public code",
        mapKind: .perQuery,
        mapDescription: "the query's topk keys found by PatchMatch, with their softmax weights (zero elsewhere)",
        notes: ["q, k, v are 1x1 convs; softmax over the found keys only, scaled by 1/sqrt(key_channels); no residual",
                "PatchMatch: random init, propagation from the two scan-order neighbours (same and shifted keys), random search around every candidate at radii max(H,W)/2^m",
                "random draws come from `seed` per image, or from init_draws/search_draws buffers in the weights file",
                "untrained: key projection = query projection (similarity initialisation)"])

    public static let configSchema: [ConfigKey] = [
        ConfigKey("in_channels", .int(1...65536), default: .none, "input channels (taken from the input when unset)"),
        ConfigKey("key_channels", .int(1...65536), default: .none, "query/key channels (default: max(in_channels // 2, 1))"),
        ConfigKey("value_channels", .int(1...65536), default: .none, "value and output channels (default: in_channels)"),
        ConfigKey("topk", .int(1...1024), default: .int(8), "keys each query attends to"),
        ConfigKey("iterations", .int(0...64), default: .int(5), "PatchMatch iterations (propagation + random search)"),
        ConfigKey("seed", .int(0...Int(Int32.max)), default: .int(0), "seed of the random draws when the weights carry none"),
    ]

    public let config: Config
    let inChannels: Int, keyChannels: Int, valueChannels: Int, topk: Int, iterations: Int
    let query: PointwiseConv, key: PointwiseConv, value: PointwiseConv
    /// Draws from the weights file, for inputs of `drawShape` (B, H, W).
    let initDraws: Tensor?, searchDraws: Tensor?
    let drawShape: [Int]

    public var expectedInput: String { "N×\(inChannels)×H×W" }

    public init(config: Config, inputShape: [Int], parameters p: Parameters) throws {
        guard inputShape.count == 4 else {
            throw ModuleError.badInput(module: Self.info.id, expected: "N×C×H×W", found: inputShape)
        }
        var config = config
        try config.resolveChannels("in_channels", from: inputShape[1])
        inChannels = inputShape[1]
        if !config.isSet("key_channels") { try config.resolveChannels("key_channels", from: max(inChannels / 2, 1)) }
        if !config.isSet("value_channels") { try config.resolveChannels("value_channels", from: inChannels) }
        self.config = config
        (keyChannels, valueChannels) = (config.int("key_channels"), config.int("value_channels"))
        (topk, iterations) = (config.int("topk"), config.int("iterations"))
        query = PointwiseConv(p.scoped("query"), inChannels: inChannels, outChannels: keyChannels)
        // Similarity initialisation: the key projection starts equal to the query projection.
        key = PointwiseConv(p.scoped("key"), inChannels: inChannels, outChannels: keyChannels,
                            weight: query.weight, initialBias: query.bias)
        value = PointwiseConv(p.scoped("value"), inChannels: inChannels, outChannels: valueChannels)
        let (b, h, w) = (inputShape[0], inputShape[2], inputShape[3])
        drawShape = [b, h, w]
        initDraws = p.optionalBuffer("init_draws", shape: [b, h * w, topk])
        searchDraws = p.optionalBuffer("search_draws", shape: [b, iterations, h * w, topk,
                                                               PatchMatch.radiusCount(height: h, width: w), 2])
    }

    /// One image's draws: from the weights file, or from the seed (image by image, so image b's
    /// draws do not depend on the batch size).
    func draws(batch: Int, height h: Int, width w: Int) throws -> [(initial: [Float], search: [Float])] {
        let counts = PatchMatch.drawCounts(height: h, width: w, k: topk, iterations: iterations)
        if let initDraws, let searchDraws {
            guard batch <= drawShape[0], [h, w] == Array(drawShape.dropFirst()) else {
                throw ModuleError.badInput(module: Self.info.id,
                    expected: "N×\(inChannels)×\(drawShape[1])×\(drawShape[2]) with N ≤ \(drawShape[0]) (the random draws in the weights file are for \(Shape.format(drawShape)))",
                    found: [batch, inChannels, h, w])
            }
            let a = initDraws.scalars, s = searchDraws.scalars
            return (0..<batch).map { b in
                (Array(a[(b * counts.initial)..<((b + 1) * counts.initial)]),
                 Array(s[(b * counts.search)..<((b + 1) * counts.search)]))
            }
        }
        var g = SeededGenerator(seed: UInt64(config.int("seed")))
        return (0..<batch).map { _ in
            ((0..<counts.initial).map { _ in Float(g.nextUniform()) },
             (0..<counts.search).map { _ in Float(g.nextUniform()) })
        }
    }

    /// Per image, per query: the found keys (best first) and their softmax weights, HW×k′ each.
    public func neighbours(_ x: Tensor) throws -> [(index: [Int], weight: [Float], k: Int)] {
        let (n, _, h, w) = try checkMap(x, channels: inChannels, module: Self.info.id)
        let l = h * w
        let q = query.tokens(x), k = key.tokens(x)                 // N, L, Dk
        let all = try draws(batch: n, height: h, width: w)
        let scale = 1 / Double(keyChannels).squareRoot()
        // Images are independent searches: one per worker.
        var results = [(index: [Int], weight: [Float], k: Int)](repeating: ([], [], 0), count: n)
        let lock = NSLock()
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                Threads.parallelFor(n) { range in
                    for b in range {
                        let found = all[b].initial.withUnsafeBufferPointer { ip in
                            all[b].search.withUnsafeBufferPointer { sp in
                                PatchMatch.search(q: qp.baseAddress! + b * l * keyChannels, ldq: keyChannels,
                                                  keys: kp.baseAddress! + b * l * keyChannels, ldk: keyChannels,
                                                  d: keyChannels, height: h, width: w, k: topk, iterations: iterations,
                                                  initialDraws: ip.baseAddress!, searchDraws: sp.baseAddress!)
                            }
                        }
                        // Softmax over each query's found scores (best first, so the first is the max).
                        var weights = [Float](repeating: 0, count: l * found.k)
                        var e = [Double](repeating: 0, count: found.k)
                        for i in 0..<l {
                            let row = i * found.k, top = found.score[row]
                            var total = 0.0
                            for r in 0..<found.k { e[r] = Foundation.exp((found.score[row + r] - top) * scale); total += e[r] }
                            for r in 0..<found.k { weights[row + r] = Float(e[r] / total) }
                        }
                        lock.lock(); results[b] = (found.index, weights, found.k); lock.unlock()
                    }
                }
            }
        }
        return results
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (n, _, h, w) = try checkMap(x, channels: inChannels, module: Self.info.id)
        let l = h * w, dv = valueChannels
        let found = try neighbours(x)
        let v = value.tokens(x)                                    // N, L, Dv
        var out = Tensor(uninitialized: [n, dv, h, w])
        v.withUnsafeBufferPointer { vp in
            out.withUnsafeMutableBufferPointer { op in
                var acc = [Double](repeating: 0, count: dv)
                for b in 0..<n {
                    let f = found[b]
                    for i in 0..<l {
                        for c in 0..<dv { acc[c] = 0 }
                        for r in 0..<f.k {
                            let wgt = Double(f.weight[i * f.k + r]), row = vp.baseAddress! + (b * l + f.index[i * f.k + r]) * dv
                            for c in 0..<dv { acc[c] += wgt * Double(row[c]) }
                        }
                        for c in 0..<dv { op[(b * dv + c) * l + i] = Float(acc[c]) }
                    }
                }
            }
        }
        return out   // N, Dv, H, W
    }

    public func attentionMap(_ x: Tensor, query q: MapQuery) throws -> AttentionMap {
        let (_, _, h, w) = try checkMap(x, channels: inChannels, module: Self.info.id)
        guard (0..<h).contains(q.row), (0..<w).contains(q.column) else {
            throw ModuleError.badQuery(module: Self.info.id,
                                       message: "query (row \(q.row), column \(q.column)) is outside the \(h)×\(w) grid")
        }
        let f = try neighbours(x.batchItem(0))[0], i = q.row * w + q.column
        var map = [Float](repeating: 0, count: h * w)
        for r in 0..<f.k { map[f.index[i * f.k + r]] = f.weight[i * f.k + r] }
        return AttentionMap(kind: .perQuery, values: Tensor(shape: [1, h, w], scalars: map),
                            labels: ["\(f.k) found keys (softmax weights)"])
    }
}
