// Cumulative sum and product along an axis (torch.cumsum / torch.cumprod), and their naive
// references.
//
// Accumulation is in Double and each partial result is rounded to Float, which is what torch's
// CPU kernel does (its accumulator type for float is double): so long prefixes, as in causal
// linear attention's running key·value sums, match torch to float rounding instead of drifting
// with the length. The tensor is read as outer×n×inner; for inner > 1 a row of inner Double
// accumulators walks down the axis, so the innermost loop stays contiguous.

import Foundation

extension Tensor {
    /// Running sums along `axis`: out[…, i, …] = Σ_{j ≤ i} self[…, j, …].
    public func cumsum(axis: Int) -> Tensor { cumulative(axis: axis, initial: 0) { $0 + $1 } }

    /// Running products along `axis`: out[…, i, …] = Π_{j ≤ i} self[…, j, …].
    public func cumprod(axis: Int) -> Tensor { cumulative(axis: axis, initial: 1) { $0 * $1 } }

    @inline(__always)
    func cumulative(axis: Int, initial: Double, _ f: (Double, Double) -> Double) -> Tensor {
        let (outer, n, inner) = axisSplit(axis)
        var out = Tensor(uninitialized: shape)
        if count == 0 { return out }
        withUnsafeBufferPointer { sb in
            out.withUnsafeMutableBufferPointer { db in
                let s = sb.baseAddress!, d = db.baseAddress!
                if inner == 1 {
                    Threads.parallelFor(outer, minChunk: Swift.max(1, (1 << 15) / n)) { rows in
                        for o in rows {
                            var acc = initial
                            for i in o * n..<(o + 1) * n { acc = f(acc, Double(s[i])); d[i] = Float(acc) }
                        }
                    }
                    return
                }
                // Units of (outer index, run of ≤ 1024 columns), so a single outer row still parallelises.
                let width = 1024, chunks = (inner + width - 1) / width
                Threads.parallelFor(outer * chunks, minChunk: Swift.max(1, (1 << 15) / (n * Swift.min(inner, width)))) { units in
                    var acc = [Double](repeating: 0, count: Swift.min(inner, width))
                    for u in units {
                        let o = u / chunks, c0 = (u % chunks) * width, w = Swift.min(width, inner - c0)
                        for j in 0..<w { acc[j] = initial }
                        for r in 0..<n {
                            let off = (o * n + r) * inner + c0
                            for j in 0..<w { acc[j] = f(acc[j], Double(s[off + j])); d[off + j] = Float(acc[j]) }
                        }
                    }
                }
            }
        }
        return out
    }
}

extension Naive {
    /// Running sums along `axis` by explicit line walks, in Double.
    public static func cumsum(_ x: Tensor, axis: Int) -> Tensor { cumulative(x, axis: axis, initial: 0, +) }
    /// Running products along `axis` by explicit line walks, in Double.
    public static func cumprod(_ x: Tensor, axis: Int) -> Tensor { cumulative(x, axis: axis, initial: 1, *) }

    static func cumulative(_ x: Tensor, axis: Int, initial: Double, _ f: (Double, Double) -> Double) -> Tensor {
        let (outer, n, inner) = x.axisSplit(axis), v = x.scalars
        var out = v
        for o in 0..<outer {
            for i in 0..<inner {
                var acc = initial
                for r in 0..<n {
                    let k = (o * n + r) * inner + i
                    acc = f(acc, Double(v[k]))
                    out[k] = Float(acc)
                }
            }
        }
        return Tensor(shape: x.shape, scalars: out)
    }
}
