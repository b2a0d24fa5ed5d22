// PatchMatch k-nearest-neighbour search for attention (Barnes, Shechtman, Finkelstein, Goldman,
// "PatchMatch", SIGGRAPH 2009; the k-NN generalisation of Barnes et al., ECCV 2010), as SCRAM
// (arXiv 1905.10308) uses it: for every query pixel, the keys of largest inner product q·k,
// found by random initialisation, propagation from scan-order neighbours and random search at
// exponentially shrinking radii — O(n·log n·D) for a fixed k, never the n×n score matrix.
// The exact procedure (and its draws) is the one of Tools/reference/scram.py.

import Foundation

/// The candidate sets of all queries in flat storage (no allocation per query): query i holds
/// `count[i]` ≤ k distinct keys `index[i·k + r]` with scores `score[i·k + r]`.
struct CandidateSets {
    let k: Int
    var index: [Int32]
    var score: [Double]
    var count: [Int32]

    init(queries n: Int, k: Int) {
        self.k = k
        index = [Int32](repeating: 0, count: n * k)
        score = [Double](repeating: 0, count: n * k)
        count = [Int32](repeating: 0, count: n)
    }

    /// (Callers skip scoring keys already held: `contains` first.)
    /// Keeps the k best distinct keys offered to query i: a new key enters when the set has
    /// room or it beats the worst (the first worst on ties), which it replaces in place.
    @inline(__always)
    mutating func offer(_ i: Int, _ j: Int, _ s: Double) {
        let base = i * k, c = Int(count[i]), key = Int32(j)
        for r in 0..<c where index[base + r] == key { return }
        if c < k {
            index[base + c] = key; score[base + c] = s; count[i] += 1
            return
        }
        var worst = 0
        for r in 1..<k where score[base + r] < score[base + worst] { worst = r }
        if s > score[base + worst] { index[base + worst] = key; score[base + worst] = s }
    }

    func contains(_ i: Int, _ j: Int) -> Bool {
        let base = i * k
        for r in 0..<Int(count[i]) where index[base + r] == Int32(j) { return true }
        return false
    }

    /// Query i's keys best first (ties in set order) into `out` (at least k long); returns how many.
    func ranked(_ i: Int, into out: UnsafeMutablePointer<Int>) -> Int {
        let base = i * k, c = Int(count[i])
        for r in 0..<c {
            // Insertion sort of positions by (score descending, position ascending).
            var t = r
            while t > 0 {
                let p = out[t - 1]
                if score[base + p] < score[base + r] { out[t] = p; t -= 1 } else { break }
            }
            out[t] = r
        }
        for r in 0..<c { out[r] = Int(index[base + out[r]]) }
        return c
    }
}

public enum PatchMatch {
    /// Random-search radii per candidate: max(H, W)/2^m for m = 0…M−1, M = ⌊log₂ max(H, W)⌋ + 1.
    public static func radiusCount(height h: Int, width w: Int) -> Int {
        Int(Foundation.log2(Double(max(h, w))).rounded(.down)) + 1
    }

    /// The uniform draws one image's search takes: `k·n` for the initialisation, then
    /// `iterations·n·k·M·2` for the random search (the layout of `init_draws[b]`, `search_draws[b]`).
    public static func drawCounts(height h: Int, width w: Int, k: Int, iterations: Int) -> (initial: Int, search: Int) {
        let n = h * w
        return (n * k, iterations * n * k * radiusCount(height: h, width: w) * 2)
    }

    /// For each of the h·w queries (rows of `q`, d floats each, `ldq` apart), the min(k, h·w) keys
    /// (rows of `keys`) of largest q·k that the search finds, best first, with their scores:
    /// `index[i·k′ + r]`, `score[i·k′ + r]`.
    ///
    /// `initialDraws` holds the image's init draws (n × k uniform in [0, 1)), `searchDraws` its
    /// random-search draws (iterations × n × k × M × 2), both as the reference's buffers lay
    /// them out (when k′ < k, each query uses its first k′ draws).
    public static func search(q: UnsafePointer<Float>, ldq: Int, keys: UnsafePointer<Float>, ldk: Int, d: Int,
                              height h: Int, width w: Int, k: Int, iterations: Int,
                              initialDraws: UnsafePointer<Float>, searchDraws: UnsafePointer<Float>)
        -> (index: [Int], score: [Double], k: Int) {
        let n = h * w, kk = min(k, n), radii = radiusCount(height: h, width: w)
        @inline(__always) func score(_ i: Int, _ j: Int) -> Double {
            // In Double (as the reference scores), four partial sums to break the add chain.
            let a = q + i * ldq, b = keys + j * ldk
            var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
            var c = 0
            while c + 4 <= d {
                s0 += Double(a[c]) * Double(b[c]); s1 += Double(a[c + 1]) * Double(b[c + 1])
                s2 += Double(a[c + 2]) * Double(b[c + 2]); s3 += Double(a[c + 3]) * Double(b[c + 3])
                c += 4
            }
            while c < d { s0 += Double(a[c]) * Double(b[c]); c += 1 }
            return (s0 + s1) + (s2 + s3)
        }
        var sets = CandidateSets(queries: n, k: kk)
        // Initialisation: k′ random keys; a set left short by duplicates is filled with the keys
        // after its first one.
        for i in 0..<n {
            for r in 0..<kk {
                let j = min(Int((Double(initialDraws[i * k + r]) * Double(n)).rounded(.down)), n - 1)
                sets.offer(i, j, score(i, j))
            }
            let j0 = Int(sets.index[i * kk])
            var step = 1
            while Int(sets.count[i]) < kk {
                let j = (j0 + step) % n
                sets.offer(i, j, score(i, j))
                step += 1
            }
        }
        // Scratch: a neighbour's keys (a snapshot) and the query's ranked centres.
        let snapshot = UnsafeMutablePointer<Int>.allocate(capacity: kk)
        let centres = UnsafeMutablePointer<Int>.allocate(capacity: kk)
        defer { snapshot.deallocate(); centres.deallocate() }
        let maxSide = Double(max(h, w))
        for t in 0..<iterations {
            let forward = t % 2 == 0
            for step in 0..<n {
                let i = forward ? step : n - 1 - step
                let y = i / w, x = i % w
                // Propagation from the two scan-order predecessors (t even: left, then up; odd:
                // right, then down): their keys, and their keys shifted by the query offset.
                for side in 0..<2 {
                    let (ny, nx) = forward ? (side == 0 ? (y, x - 1) : (y - 1, x)) : (side == 0 ? (y, x + 1) : (y + 1, x))
                    guard ny >= 0, ny < h, nx >= 0, nx < w else { continue }
                    let other = ny * w + nx, dy = y - ny, dx = x - nx, c = Int(sets.count[other])
                    for r in 0..<c { snapshot[r] = Int(sets.index[other * kk + r]) }
                    for r in 0..<c {
                        let j = snapshot[r]
                        if !sets.contains(i, j) { sets.offer(i, j, score(i, j)) }
                        let sy = j / w + dy, sx = j % w + dx, js = sy * w + sx
                        if sy >= 0, sy < h, sx >= 0, sx < w, !sets.contains(i, js) { sets.offer(i, js, score(i, js)) }
                    }
                }
                // Random search around each candidate, best first, at radii max(H, W)/2^m.
                let c = sets.ranked(i, into: centres)
                for r in 0..<c {
                    let y0 = centres[r] / w, x0 = centres[r] % w
                    var radius = maxSide
                    for m in 0..<radii {
                        let u = searchDraws + ((((t * n + i) * k + r) * radii + m) * 2)
                        let sy = min(max(y0 + Int((radius * (2 * Double(u[0]) - 1) + 0.5).rounded(.down)), 0), h - 1)
                        let sx = min(max(x0 + Int((radius * (2 * Double(u[1]) - 1) + 0.5).rounded(.down)), 0), w - 1)
                        let j = sy * w + sx
                        if !sets.contains(i, j) { sets.offer(i, j, score(i, j)) }
                        radius /= 2
                    }
                }
            }
        }
        var index = [Int](repeating: 0, count: n * kk), scores = [Double](repeating: 0, count: n * kk)
        for i in 0..<n {
            let c = sets.ranked(i, into: centres)
            precondition(c == kk)
            for r in 0..<c {
                index[i * kk + r] = centres[r]
                for p in 0..<kk where Int(sets.index[i * kk + p]) == centres[r] { scores[i * kk + r] = sets.score[i * kk + p] }
            }
        }
        return (index, scores, kk)
    }
}
