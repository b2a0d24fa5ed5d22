// Softmax and log-softmax along any axis, numerically stable, and their Double references.
//
// The last axis goes through the C kernel `fa_softmax_rows` (AVX-512 or AVX2 when available, KernelISA), rows split
// over threads. Another axis is read as outer×n×inner: the tensor is cut into units of one outer
// index and up to 256 contiguous inner columns; each unit takes the column maxima, subtracts,
// exponentiates whole row segments with `fa_exp`, and normalises, so every inner loop runs on
// contiguous memory.

import CKernels
import Foundation

extension Tensor {
    /// exp(x − max) / Σ exp(x − max) along `axis` (torch.softmax).
    ///
    /// A line that is entirely −inf (a fully masked query) gives zeros here, where torch gives
    /// NaN: zeros let such a row contribute nothing downstream instead of poisoning every later
    /// sum. Otherwise values agree with torch to float rounding.
    public func softmax(axis: Int = -1) -> Tensor {
        let (outer, n, inner) = axisSplit(axis)
        var out = self
        if count == 0 { return out }
        out.withUnsafeMutableBufferPointer { buf in
            let p = buf.baseAddress!
            if inner == 1 {
                Threads.parallelFor(outer, minChunk: Swift.max(1, (1 << 14) / n)) { rows in
                    fa_softmax_rows(p + rows.lowerBound * n, rows.count, n, n, 1)
                }
                return
            }
            Tensor.columnUnits(outer: outer, n: n, inner: inner) { o, cols in
                let width = cols.count
                var m = [Float](repeating: -.infinity, count: width), s = [Float](repeating: 0, count: width)
                let base = p + o * n * inner + cols.lowerBound
                for r in 0..<n {
                    let row = base + r * inner
                    for j in 0..<width where row[j] > m[j] { m[j] = row[j] }
                }
                for j in 0..<width where m[j] == -.infinity { m[j] = 0 }  // all −inf: exp gives 0s
                for r in 0..<n {
                    let row = base + r * inner
                    for j in 0..<width { row[j] -= m[j] }
                    fa_exp(row, row, width)
                    for j in 0..<width { s[j] += row[j] }
                }
                for j in 0..<width { s[j] = s[j] == 0 ? 0 : 1 / s[j] }
                for r in 0..<n {
                    let row = base + r * inner
                    for j in 0..<width { row[j] *= s[j] }
                }
            }
        }
        return out
    }

    /// x − max − log Σ exp(x − max) along `axis` (torch.log_softmax). An all −inf line gives
    /// −inf (the log of the zeros `softmax` gives), where torch gives NaN.
    public func logSoftmax(axis: Int = -1) -> Tensor {
        let (outer, n, inner) = axisSplit(axis)
        var out = self
        if count == 0 { return out }
        out.withUnsafeMutableBufferPointer { buf in
            let p = buf.baseAddress!
            if inner == 1 {
                Threads.parallelFor(outer, minChunk: Swift.max(1, (1 << 14) / n)) { rows in
                    var e = [Float](repeating: 0, count: n)
                    for o in rows {
                        let row = p + o * n
                        var m = -Float.infinity
                        for j in 0..<n where row[j] > m { m = row[j] }
                        if m == -.infinity { continue }  // stays all −inf
                        for j in 0..<n { e[j] = row[j] - m }
                        e.withUnsafeMutableBufferPointer { q in fa_exp(q.baseAddress!, q.baseAddress!, n) }
                        var s: Float = 0
                        for j in 0..<n { s += e[j] }
                        // (x − max) − log Σ, in that order: x − (max + log Σ) would round at max's ulp.
                        let ls = Foundation.log(s)
                        for j in 0..<n { row[j] = (row[j] - m) - ls }
                    }
                }
                return
            }
            Tensor.columnUnits(outer: outer, n: n, inner: inner) { o, cols in
                let width = cols.count
                var m = [Float](repeating: -.infinity, count: width), s = [Float](repeating: 0, count: width)
                var e = [Float](repeating: 0, count: width)
                let base = p + o * n * inner + cols.lowerBound
                for r in 0..<n {
                    let row = base + r * inner
                    for j in 0..<width where row[j] > m[j] { m[j] = row[j] }
                }
                for j in 0..<width where m[j] == -.infinity { m[j] = 0 }
                for r in 0..<n {
                    let row = base + r * inner
                    for j in 0..<width { e[j] = row[j] - m[j] }
                    e.withUnsafeMutableBufferPointer { q in fa_exp(q.baseAddress!, q.baseAddress!, width) }
                    for j in 0..<width { s[j] += e[j] }
                }
                // An all −inf column has Σ = 0: keep it −inf rather than −inf − (−inf) = NaN.
                for j in 0..<width { s[j] = s[j] == 0 ? 0 : Foundation.log(s[j]) }
                for r in 0..<n {
                    let row = base + r * inner
                    for j in 0..<width { row[j] = (row[j] - m[j]) - s[j] }
                }
            }
        }
        return out
    }

    /// Runs body(o, columns) for every outer index and every run of ≤ 256 inner columns, in parallel.
    static func columnUnits(outer: Int, n: Int, inner: Int, _ body: (Int, Range<Int>) -> Void) {
        let width = 256, chunks = (inner + width - 1) / width
        Threads.parallelFor(outer * chunks, minChunk: Swift.max(1, (1 << 14) / (n * Swift.min(inner, width)))) { units in
            for u in units {
                let o = u / chunks, c0 = (u % chunks) * width
                body(o, c0..<Swift.min(c0 + width, inner))
            }
        }
    }
}

extension Naive {
    /// Softmax along `axis` in Double; an all −inf line gives zeros (as `Tensor.softmax`).
    public static func softmax(_ x: Tensor, axis: Int, log: Bool = false) -> Tensor {
        let (outer, n, inner) = x.axisSplit(axis), v = x.scalars
        var out = v
        for o in 0..<outer {
            for i in 0..<inner {
                let at = { (r: Int) in (o * n + r) * inner + i }
                let m = (0..<n).map { Double(v[at($0)]) }.max() ?? 0
                if m == -.infinity {
                    for r in 0..<n { out[at(r)] = log ? -.infinity : 0 }
                    continue
                }
                let s = (0..<n).map { Foundation.exp(Double(v[at($0)]) - m) }.reduce(0, +)
                for r in 0..<n {
                    let d = Double(v[at(r)]) - m
                    out[at(r)] = Float(log ? d - Foundation.log(s) : Foundation.exp(d) / s)
                }
            }
        }
        return Tensor(shape: x.shape, scalars: out)
    }
}
