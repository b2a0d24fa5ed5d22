// The permutohedral lattice (Adams, Baek, Davis, "Fast High-Dimensional Filtering Using the
// Permutohedral Lattice", Eurographics 2010): a Gaussian filter over d-dimensional features in
// O(N·d²), as PAM's reference (SamuelJoutard/Permutohedral_attention_module,
// PAM/PL_with_grad_torch_HT.py) computes it. Embed every point in d+1 dimensions, splat its value
// with barycentric weights onto the d+1 vertices of its enclosing simplex (a hash table of lattice
// points), blur along each of the d+1 lattice directions, slice back with the same weights.

import Foundation
import TensorCore

/// The lattice built for one set of feature vectors; `filter` applies it to any values.
///
/// Matches the reference lattice exactly (checked against it on the CPU, 0 difference on the
/// fixtures' features), including its conventions:
/// - elevation E (column k = (1,…,1, −k, 0,…,0)/√(k(k+1)), k = 1…d) times √(2/3)·(d+1), applied
///   to the features as they are (the Gaussian has σ = 1 in feature units);
/// - rounding half to even (torch.round);
/// - blur weights [½, 1, ½] per direction, each direction from the previous one's values, lattice
///   points missing from the table contributing 0 (no new points are created);
/// - slice scaled by α = 1/(1 + 2^−d), no normalisation: y ≈ κ_d·Σⱼ exp(−‖fᵢ − fⱼ‖²/2)·vⱼ with
///   κ_d ≈ 0.9, 0.85, 0.7, 0.6 for d = 1, 2, 3, 4 (measured);
/// - ONE table for the whole batch: lattice points another image created carry blur between
///   this image's points (so an image's output depends slightly on its batch, as in the
///   reference). The reference hashes keys into 2³⁰ float-polynomial slots and would merge
///   colliding points; this table is keyed on the exact integer coordinates.
public struct PermutohedralLattice {
    /// Feature dimension d (the lattice lives in d+1 dimensions).
    public let d: Int
    /// Points filtered: batch × count.
    public let batch: Int, count: Int
    /// Lattice points in the table.
    public private(set) var pointCount = 0
    /// Per simplex vertex k and point p (k·batch·count + p): lattice point index, weight.
    var vertex: [Int32]
    var weight: [Float]
    /// Per direction r and lattice point m: neighbours at ±offset_r ((r·M + m)·2 + 0/1), M if absent.
    var neighbours: [Int32] = []
    /// Points whose features are not finite (or beyond ±2²⁰, where lattice coordinates would
    /// overflow): placed at the origin with zero weight, so they disturb nobody, and sliced as NaN —
    /// a non-finite input propagates to that pixel's output instead of trapping.
    var invalid: [Bool] = []

    /// Builds the lattice for `batch` sets of `count` feature vectors: feature j of point i of
    /// set b is `features[b·batchStride + j·featureStride + i]` (a slice of an N×C×H×W map).
    public init(features: UnsafePointer<Float>, batch: Int, count: Int, d: Int,
                batchStride: Int, featureStride: Int) {
        precondition(d >= 1)
        self.d = d
        self.batch = batch
        self.count = count
        let d1 = d + 1, total = batch * count
        vertex = [Int32](repeating: 0, count: d1 * total)
        weight = [Float](repeating: 0, count: d1 * total)
        let elevation = Self.elevationMatrix(d)                 // (d+1) × d, Float
        var table = LatticeTable(dimension: d, expected: max(total * d1, 1))
        var f = [Float](repeating: 0, count: d), e = [Float](repeating: 0, count: d1)
        var rem0 = [Int](repeating: 0, count: d1), rank = [Int](repeating: 0, count: d1)
        var diff = [Float](repeating: 0, count: d1), y = [Float](repeating: 0, count: d1)
        var key = [Int32](repeating: 0, count: d)
        let scale = Float(d1)
        invalid = [Bool](repeating: false, count: total)
        for b in 0..<batch {
            for i in 0..<count {
                let p = b * count + i
                for j in 0..<d { f[j] = features[b * batchStride + j * featureStride + i] }
                if !f.allSatisfy({ $0.isFinite && Swift.abs($0) <= 1_048_576 }) {
                    invalid[p] = true
                    for j in 0..<d { f[j] = 0 }
                }
                // 1. Elevate onto the plane Σ = 0 in d+1 dimensions.
                for r in 0..<d1 {
                    var s: Float = 0
                    for j in 0..<d { s += elevation[r * d + j] * f[j] }
                    e[r] = s
                }
                // 2. Nearest remainder-0 point and the ranks of the differences (0 = largest).
                var sum = 0
                for r in 0..<d1 {
                    let v = (e[r] / scale).rounded(.toNearestOrEven)
                    rem0[r] = Int(v) * d1
                    sum += Int(v)
                    diff[r] = e[r] - Float(rem0[r])
                }
                for r in 0..<d1 {
                    var larger = 0
                    for t in 0..<d1 where diff[t] > diff[r] || (diff[t] == diff[r] && t < r) { larger += 1 }
                    rank[r] = larger + sum
                    if rank[r] < 0 { rank[r] += d1; rem0[r] += d1 } else if rank[r] > d { rank[r] -= d1; rem0[r] -= d1 }
                }
                // 3. Barycentric weights from the ascending differences in the canonical simplex.
                for r in 0..<d1 { y[r] = (e[r] - Float(rem0[r])) / scale }
                y.sort()
                for k in 0..<d1 {
                    weight[k * total + p] = invalid[p] ? 0 : (k == 0 ? y[0] - (y[d] - 1) : y[k] - y[k - 1])
                }
                // 4. The enclosing simplex's vertices: rem0 + canonical[k][rank] (first d coordinates).
                for k in 0..<d1 {
                    for j in 0..<d { key[j] = Int32(rem0[j] + (rank[j] < d1 - k ? k : k - d1)) }
                    vertex[k * total + p] = Int32(table.insert(key))
                }
            }
        }
        pointCount = table.count
        // Blur neighbours along direction r: offset +d on coordinate r, −1 on the others
        // (direction d: −1 on all d stored coordinates), both ways.
        let m = pointCount
        neighbours = [Int32](repeating: Int32(m), count: d1 * m * 2)
        for r in 0..<d1 {
            for point in 0..<m {
                for sign in 0..<2 {
                    let s: Int32 = sign == 0 ? 1 : -1
                    for j in 0..<d { key[j] = table.coordinate(point, j) + s * (j == r ? Int32(d) : -1) }
                    if let n = table.find(key) { neighbours[(r * m + point) * 2 + sign] = Int32(n) }
                }
            }
        }
    }

    /// The reference's elevation matrix, (d+1)×d row-major.
    static func elevationMatrix(_ d: Int) -> [Float] {
        var e = [Double](repeating: 0, count: (d + 1) * d)
        let s = (2.0 / 3.0).squareRoot() * Double(d + 1)
        for k in 1...d {
            let c = (1 / Double(k * (k + 1))).squareRoot() * s
            for r in 0..<k { e[r * d + k - 1] = c }
            e[k * d + k - 1] = -Double(k) * c
        }
        return e.map { Float($0) }
    }

    /// Filters `channels` values per point: value c of point i of set b at
    /// `values[b·batchStride + c·channelStride + i]`, the result written to `out` at the same
    /// offsets (`outBatchStride`, `outChannelStride`). Splat, blur, slice: O(N·d·channels).
    public func filter(values: UnsafePointer<Float>, channels c: Int, batchStride: Int, channelStride: Int,
                       out: UnsafeMutablePointer<Float>, outBatchStride: Int, outChannelStride: Int) {
        let d1 = d + 1, m = pointCount, total = batch * count
        let rows = m + 1                                           // row m: absent points, always 0
        let alpha = Float(1 / (1 + pow(2, -Double(d))))
        // Point-major copies of the values and the result ([b·count + i][channel]), so splat and
        // slice move whole contiguous rows.
        var vt = [Float](repeating: 0, count: total * c)
        var grid = [Float](repeating: 0, count: batch * rows * c)  // [b][point][channel]
        var next = grid
        vertex.withUnsafeBufferPointer { vx in
        weight.withUnsafeBufferPointer { wt in
        neighbours.withUnsafeBufferPointer { nb in
            vt.withUnsafeMutableBufferPointer { tp in
                for b in 0..<batch {
                    for ch in 0..<c {
                        let src = values + b * batchStride + ch * channelStride
                        for i in 0..<count { tp[(b * count + i) * c + ch] = src[i] }
                    }
                }
                // Splat: vertex k of point p receives weight_k · v_p.
                grid.withUnsafeMutableBufferPointer { gp in
                    for k in 0..<d1 {
                        for p in 0..<total {
                            let w = wt[k * total + p], b = p / count
                            let row = gp.baseAddress! + (b * rows + Int(vx[k * total + p])) * c
                            let v = tp.baseAddress! + p * c
                            for ch in 0..<c { row[ch] += v[ch] * w }
                        }
                    }
                }
            }
            // Blur: one pass per lattice direction, [½, 1, ½], from the previous pass's values.
            for r in 0..<d1 {
                grid.withUnsafeBufferPointer { gp in
                    next.withUnsafeMutableBufferPointer { np in
                        for b in 0..<batch {
                            let base = b * rows * c
                            for point in 0..<m {
                                let plus = Int(nb[(r * m + point) * 2]), minus = Int(nb[(r * m + point) * 2 + 1])
                                let o = base + point * c, pp = base + plus * c, mp = base + minus * c
                                for ch in 0..<c { np[o + ch] = gp[o + ch] + 0.5 * (gp[pp + ch] + gp[mp + ch]) }
                            }
                            for ch in 0..<c { np[base + m * c + ch] = 0 }
                        }
                    }
                }
                swap(&grid, &next)
            }
            // Slice with the same weights, times α, into the point-major buffer, then out.
            vt.withUnsafeMutableBufferPointer { tp in
                tp.update(repeating: 0)
                grid.withUnsafeBufferPointer { gp in
                    for k in 0..<d1 {
                        for p in 0..<total {
                            let w = wt[k * total + p], b = p / count
                            let row = gp.baseAddress! + (b * rows + Int(vx[k * total + p])) * c
                            let o = tp.baseAddress! + p * c
                            for ch in 0..<c { o[ch] += row[ch] * w * alpha }
                        }
                    }
                }
                for b in 0..<batch {
                    for ch in 0..<c {
                        let dst = out + b * outBatchStride + ch * outChannelStride
                        for i in 0..<count { dst[i] = invalid[b * count + i] ? .nan : tp[(b * count + i) * c + ch] }
                    }
                }
            }
        }
        }
        }
    }

    /// The dense Gaussian the lattice approximates, yᵢ = Σⱼ exp(−‖fᵢ − fⱼ‖²/2)·vⱼ, for one set of
    /// `count` points (features d×count, values c×count, row-major): O(count²·(d + c)), the
    /// naive reference for tests.
    public static func exactGaussian(features: [Float], values: [Float], d: Int, channels c: Int, count n: Int) -> [Float] {
        var out = [Float](repeating: 0, count: c * n)
        for i in 0..<n {
            for j in 0..<n {
                var s = 0.0
                for k in 0..<d { let t = Double(features[k * n + i] - features[k * n + j]); s += t * t }
                let w = Float(Foundation.exp(-0.5 * s))
                for ch in 0..<c { out[ch * n + i] += w * values[ch * n + j] }
            }
        }
        return out
    }
}

/// Open addressing over integer keys of `dimension` coordinates stored flat: the lattice's hash
/// table, with no per-key allocation.
struct LatticeTable {
    let dimension: Int
    private var slots: [Int32]        // point index + 1, 0 = empty
    private var keys: [Int32] = []    // point-major, `dimension` per point
    private let mask: Int
    private(set) var count = 0

    init(dimension: Int, expected: Int) {
        self.dimension = dimension
        var capacity = 16
        while capacity < 2 * expected { capacity <<= 1 }
        slots = [Int32](repeating: 0, count: capacity)
        mask = capacity - 1
        keys.reserveCapacity(expected * dimension)
    }

    private func hash(_ key: UnsafeBufferPointer<Int32>) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for v in key { h = (h ^ UInt64(UInt32(bitPattern: v))) &* 0x0000_0100_0000_01b3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29)) & mask
    }

    private func matches(_ point: Int, _ key: UnsafeBufferPointer<Int32>) -> Bool {
        let base = point * dimension
        for j in 0..<dimension where keys[base + j] != key[j] { return false }
        return true
    }

    /// The point index of `key`, inserting it when new.
    mutating func insert(_ key: [Int32]) -> Int {
        key.withUnsafeBufferPointer { k in
            var s = hash(k)
            while slots[s] != 0 {
                let point = Int(slots[s]) - 1
                if matches(point, k) { return point }
                s = (s + 1) & mask
            }
            slots[s] = Int32(count + 1)
            keys.append(contentsOf: k)
            count += 1
            return count - 1
        }
    }

    func find(_ key: [Int32]) -> Int? {
        key.withUnsafeBufferPointer { k in
            var s = hash(k)
            while slots[s] != 0 {
                let point = Int(slots[s]) - 1
                if matches(point, k) { return point }
                s = (s + 1) & mask
            }
            return nil
        }
    }

    /// Coordinate `j` of lattice point `point`.
    func coordinate(_ point: Int, _ j: Int) -> Int32 { keys[point * dimension + j] }
}
