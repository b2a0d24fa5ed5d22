// Reductions over axes (sum, mean, max, min, variance, L2 norm, logsumexp), argmax/argmin,
// top-k and stable sorting along an axis, and their naive references.
//
// Axes are a list (negative counts from the end; nil = all), with torch's keepdim as `keepDims`.
// The reduced axes are brought into the middle of an outer×R×inner view: a contiguous run of
// axes needs no copy; scattered axes are permuted to the end first. Sums accumulate in Double,
// as torch's CPU kernels accumulate float in double (`acc_type<float>`), so results do not drift
// with R.

import Foundation

extension Tensor {
    /// The tensor read as outer×size×inner around one axis.
    func axisSplit(_ axis: Int) -> (outer: Int, size: Int, inner: Int) {
        let a = normalizedAxis(axis)
        return (shape[..<a].reduce(1, *), shape[a], shape[(a + 1)...].reduce(1, *))
    }

    /// Normalised, sorted, unique axes; nil means every axis.
    func reductionAxes(_ axes: [Int]?) -> [Int] {
        guard let axes else { return Array(0..<rank) }
        return Array(Set(axes.map { normalizedAxis($0) })).sorted()
    }

    /// The output shape of reducing `axes` (normalised), with or without kept size-1 axes.
    func reducedShape(_ axes: [Int], keepDims: Bool) -> [Int] {
        keepDims ? shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
                 : shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
    }

    /// A tensor whose data reads as outer×R×inner with the reduced axes as R.
    func reductionView(_ axes: [Int]) -> (data: Tensor, outer: Int, size: Int, inner: Int) {
        if axes.isEmpty { return (self, count, 1, 1) }
        if axes.last! - axes.first! + 1 == axes.count {
            return (self, shape[..<axes.first!].reduce(1, *), axes.map { shape[$0] }.reduce(1, *),
                    shape[(axes.last! + 1)...].reduce(1, *))
        }
        let kept = (0..<rank).filter { !axes.contains($0) }
        let p = permuted(kept + axes)  // kept axes, then reduced axes
        let r = axes.map { shape[$0] }.reduce(1, *)
        return (p, r == 0 ? 0 : count / r, r, 1)
    }

    /// The reduction engine: dst[o, i] = finish(fold over r of combine(acc, src[o, r, i] − center[o, i])).
    /// Rows are spread over threads when outer is large, columns when inner is. The fold is a
    /// `ReduceKernel` type, not closures, so each loop is specialised (closures through the
    /// thread pool cost an indirect call per element).
    @inline(__always)
    static func reduceLines<K: ReduceKernel>(outer: Int, size: Int, inner: Int, src: UnsafePointer<Float>,
                                             dst: UnsafeMutablePointer<Float>, center: UnsafePointer<Float>? = nil,
                                             _ k: K) {
        let initial = k.initial
        let grain = 1 << 15
        if inner == 1 {
            Threads.parallelFor(outer, minChunk: Swift.max(1, grain / Swift.max(size, 1))) { rows in
                for o in rows {
                    let p = src + o * size, c = center.map { Double($0[o]) } ?? 0
                    var acc = initial
                    for i in 0..<size { acc = k.combine(acc, Double(p[i]) - c) }
                    dst[o] = k.finish(acc)
                }
            }
            return
        }
        let byColumns = outer < 4 * Threads.count && inner >= 256
        let tasks = byColumns ? inner : outer
        let chunk = byColumns ? Swift.max(64, grain / Swift.max(outer * size, 1)) : Swift.max(1, grain / Swift.max(size * inner, 1))
        Threads.parallelFor(tasks, minChunk: chunk) { part in
            let cols = byColumns ? part : 0..<inner, rows = byColumns ? 0..<outer : part
            var acc = [Double](repeating: initial, count: cols.count)
            acc.withUnsafeMutableBufferPointer { a in
                for o in rows {
                    for j in 0..<a.count { a[j] = initial }
                    let base = src + o * size * inner + cols.lowerBound, out = o * inner + cols.lowerBound
                    for r in 0..<size {
                        let p = base + r * inner
                        if let c = center {
                            for j in 0..<a.count { a[j] = k.combine(a[j], Double(p[j]) - Double(c[out + j])) }
                        } else {
                            for j in 0..<a.count { a[j] = k.combine(a[j], Double(p[j])) }
                        }
                    }
                    for j in 0..<a.count { dst[out + j] = k.finish(a[j]) }
                }
            }
        }
    }

    /// Reduces `axes` with the engine above; `center`, when given, has the keepDims output shape.
    @inline(__always)
    func reduce<K: ReduceKernel>(_ axes: [Int]?, keepDims: Bool, center: Tensor? = nil, _ k: K) -> Tensor {
        let ax = reductionAxes(axes)
        let (data, outer, size, inner) = reductionView(ax)
        var out = Tensor(uninitialized: reducedShape(ax, keepDims: keepDims))
        data.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                if d.count == 0 { return }
                if let center {
                    center.withUnsafeBufferPointer { c in
                        Tensor.reduceLines(outer: outer, size: size, inner: inner, src: s.baseAddress!, dst: d.baseAddress!,
                                           center: c.baseAddress!, k)
                    }
                } else {
                    Tensor.reduceLines(outer: outer, size: size, inner: inner, src: s.baseAddress!, dst: d.baseAddress!,
                                       k)
                }
            }
        }
        return out
    }

    /// Σ over `axes` (nil: all, giving a rank-0 tensor unless keepDims).
    public func sum(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        reduce(axes, keepDims: keepDims, SumReduce(scale: 1))
    }
    public func sum(axis: Int, keepDims: Bool = false) -> Tensor { sum(axes: [axis], keepDims: keepDims) }

    /// Arithmetic mean over `axes`; NaN over an empty axis, as torch.
    public func mean(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let ax = reductionAxes(axes), n = Double(ax.map { shape[$0] }.reduce(1, *))
        return reduce(ax, keepDims: keepDims, SumReduce(scale: 1 / n))
    }
    public func mean(axis: Int, keepDims: Bool = false) -> Tensor { mean(axes: [axis], keepDims: keepDims) }

    /// Maximum over `axes` (torch.amax); NaN if any element is NaN. Axes must be non-empty.
    public func amax(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let ax = reductionAxes(axes)
        precondition(ax.allSatisfy { shape[$0] > 0 }, "amax over an empty axis of \(Shape.format(shape))")
        return reduce(ax, keepDims: keepDims, MaxReduce())
    }
    public func amax(axis: Int, keepDims: Bool = false) -> Tensor { amax(axes: [axis], keepDims: keepDims) }

    /// Minimum over `axes` (torch.amin); NaN if any element is NaN.
    public func amin(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let ax = reductionAxes(axes)
        precondition(ax.allSatisfy { shape[$0] > 0 }, "amin over an empty axis of \(Shape.format(shape))")
        return reduce(ax, keepDims: keepDims, MinReduce())
    }
    public func amin(axis: Int, keepDims: Bool = false) -> Tensor { amin(axes: [axis], keepDims: keepDims) }

    /// Variance over `axes`, two-pass in Double. `unbiased` divides by R − 1 (torch's default,
    /// `correction=1`), else by R; R − 1 = 0 gives NaN, as torch.
    public func variance(axes: [Int]? = nil, unbiased: Bool = true, keepDims: Bool = false) -> Tensor {
        let ax = reductionAxes(axes), n = ax.map { shape[$0] }.reduce(1, *)
        let mu = mean(axes: ax, keepDims: true), d = Double(unbiased ? n - 1 : n)
        return reduce(ax, keepDims: keepDims, center: mu, SquareSumReduce(divisor: d, root: false))
    }
    public func variance(axis: Int, unbiased: Bool = true, keepDims: Bool = false) -> Tensor {
        variance(axes: [axis], unbiased: unbiased, keepDims: keepDims)
    }

    /// Euclidean (L2) norm over `axes`, as torch.linalg.vector_norm.
    public func norm(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        reduce(axes, keepDims: keepDims, SquareSumReduce(divisor: 1, root: true))
    }
    public func norm(axis: Int, keepDims: Bool = false) -> Tensor { norm(axes: [axis], keepDims: keepDims) }

    /// log Σ exp over `axes`, stable: the maximum is taken out first, and an infinite maximum is
    /// replaced by 0 as torch does (an all −inf line gives −inf, a +inf element gives +inf).
    public func logsumexp(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let ax = reductionAxes(axes)
        let m = amax(axes: ax, keepDims: true).map { $0.isInfinite ? 0 : $0 }
        let s = reduce(ax, keepDims: true, center: m, LogSumExpReduce())
        let out = s + m
        return keepDims ? out : out.reshaped(reducedShape(ax, keepDims: false))
    }
    public func logsumexp(axis: Int, keepDims: Bool = false) -> Tensor { logsumexp(axes: [axis], keepDims: keepDims) }

    /// The only element of a one-element tensor (torch `.item()`).
    public func item() -> Float {
        precondition(count == 1, "item() needs one element, shape is \(Shape.format(shape))")
        return withUnsafeBufferPointer { $0[0] }
    }

    /// Indices of the maxima along `axis` (first one on ties; NaN counts as the maximum, as torch).
    public func argmax(axis: Int, keepDims: Bool = false) -> IndexTensor { argExtreme(axis, keepDims, largest: true) }
    /// Indices of the minima along `axis` (first one on ties; NaN counts as the minimum, as torch).
    public func argmin(axis: Int, keepDims: Bool = false) -> IndexTensor { argExtreme(axis, keepDims, largest: false) }
    /// Flat index of the maximum over all elements.
    public func argmax() -> Int { reshaped([count]).argmax(axis: 0).scalars[0] }
    /// Flat index of the minimum over all elements.
    public func argmin() -> Int { reshaped([count]).argmin(axis: 0).scalars[0] }

    func argExtreme(_ axis: Int, _ keepDims: Bool, largest: Bool) -> IndexTensor {
        let a = normalizedAxis(axis), (outer, size, inner) = axisSplit(a)
        precondition(size > 0, "argmax/argmin over an empty axis of \(Shape.format(shape))")
        var idx = [Int](repeating: 0, count: outer * inner)
        withUnsafeBufferPointer { p in
            for o in 0..<outer {
                for i in 0..<inner {
                    var best = p[o * size * inner + i], bi = 0
                    if best != best { idx[o * inner + i] = 0; continue }
                    for r in 1..<Swift.max(size, 1) {
                        let v = p[(o * size + r) * inner + i]
                        if v != v { bi = r; break }
                        if largest ? v > best : v < best { best = v; bi = r }
                    }
                    idx[o * inner + i] = bi
                }
            }
        }
        return IndexTensor(shape: reducedShape([a], keepDims: keepDims), scalars: idx)
    }
}

/// One reduction as a type: start value, fold step, and the final conversion to Float.
protocol ReduceKernel {
    var initial: Double { get }
    func combine(_ acc: Double, _ x: Double) -> Double
    func finish(_ acc: Double) -> Float
}

/// Σx·scale: sum (scale 1) and mean (scale 1/R).
struct SumReduce: ReduceKernel {
    let scale: Double
    var initial: Double { 0 }
    @inline(__always) func combine(_ acc: Double, _ x: Double) -> Double { acc + x }
    @inline(__always) func finish(_ acc: Double) -> Float { Float(acc * scale) }
}
/// Σx²/divisor, or its square root: variance (about a centre) and the L2 norm.
struct SquareSumReduce: ReduceKernel {
    let divisor: Double, root: Bool
    var initial: Double { 0 }
    @inline(__always) func combine(_ acc: Double, _ x: Double) -> Double { acc + x * x }
    @inline(__always) func finish(_ acc: Double) -> Float { Float(root ? (acc / divisor).squareRoot() : acc / divisor) }
}
/// NaN-propagating maximum.
struct MaxReduce: ReduceKernel {
    var initial: Double { -.infinity }
    @inline(__always) func combine(_ acc: Double, _ x: Double) -> Double { (x > acc || x != x) ? x : acc }
    @inline(__always) func finish(_ acc: Double) -> Float { Float(acc) }
}
/// NaN-propagating minimum.
struct MinReduce: ReduceKernel {
    var initial: Double { .infinity }
    @inline(__always) func combine(_ acc: Double, _ x: Double) -> Double { (x < acc || x != x) ? x : acc }
    @inline(__always) func finish(_ acc: Double) -> Float { Float(acc) }
}
/// log Σ exp(x − centre), the centre added back by the caller.
struct LogSumExpReduce: ReduceKernel {
    var initial: Double { 0 }
    @inline(__always) func combine(_ acc: Double, _ x: Double) -> Double { acc + Foundation.exp(x) }
    @inline(__always) func finish(_ acc: Double) -> Float { Float(Foundation.log(acc)) }
}

// MARK: - Top-k and sorting

extension Tensor {
    /// The k largest (or smallest) elements along `axis`, best first, with their indices, as
    /// torch.topk(sorted=True). Ties go to the lower index; NaN ranks above every number.
    public func topK(_ k: Int, axis: Int = -1, largest: Bool = true) -> (values: Tensor, indices: IndexTensor) {
        ordered(axis: axis, k: k, largest: largest)
    }

    /// Stable sort along `axis` (torch.sort(stable=True)): equal elements keep their order.
    /// NaN sorts last ascending and first descending, as torch.
    public func sorted(axis: Int = -1, descending: Bool = false) -> (values: Tensor, indices: IndexTensor) {
        ordered(axis: axis, k: shape[normalizedAxis(axis)], largest: descending)
    }

    /// The permutation that sorts along `axis` (stable).
    public func argsort(axis: Int = -1, descending: Bool = false) -> IndexTensor {
        sorted(axis: axis, descending: descending).indices
    }

    /// The first k of each line along `axis` in rank order: a size-k heap when k is small
    /// against the line, a full sort otherwise. The ranking is a strict total order (value, then
    /// index), so heap selection and sorting agree and ties are deterministic.
    func ordered(axis: Int, k: Int, largest: Bool) -> (values: Tensor, indices: IndexTensor) {
        let a = normalizedAxis(axis), (outer, n, inner) = axisSplit(a)
        precondition(k >= 0 && k <= n, "topK: k = \(k) out of range for axis \(a) of \(Shape.format(shape))")
        var outShape = shape
        outShape[a] = k
        var values = Tensor(uninitialized: outShape)
        var idx = [Int](repeating: 0, count: outer * k * inner)
        let lines = outer * inner
        withUnsafeBufferPointer { src in
            values.withUnsafeMutableBufferPointer { dst in
                idx.withUnsafeMutableBufferPointer { ib in
                    let s = src.baseAddress!, d = dst.baseAddress!, ip = ib.baseAddress!
                    Threads.parallelFor(lines, minChunk: Swift.max(1, (1 << 14) / Swift.max(n, 1))) { range in
                        var line = [Float](repeating: 0, count: n)
                        var order = [Int](repeating: 0, count: n)
                        for l in range {
                            let o = l / inner, i = l % inner, base = o * n * inner + i
                            for r in 0..<n { line[r] = s[base + r * inner] }
                            let best = Tensor.rankLine(line, k: k, largest: largest, scratch: &order)
                            let ob = o * k * inner + i
                            for j in 0..<k { d[ob + j * inner] = line[best[j]]; ip[ob + j * inner] = best[j] }
                        }
                    }
                }
            }
        }
        return (values, IndexTensor(shape: outShape, scalars: idx))
    }

    /// Indices of the k best entries of `v`, best first.
    static func rankLine(_ v: [Float], k: Int, largest: Bool, scratch: inout [Int]) -> ArraySlice<Int> {
        // a ranks before b: larger (smaller) value first, NaN as the largest, lower index on ties.
        func before(_ a: Int, _ b: Int) -> Bool {
            let x = v[a], y = v[b]
            if x.isNaN || y.isNaN {
                if x.isNaN && y.isNaN { return a < b }
                return largest ? x.isNaN : y.isNaN
            }
            if x != y { return largest ? x > y : x < y }
            return a < b
        }
        let n = v.count
        if k == 0 { return scratch[0..<0] }
        if k * 8 >= n {
            for i in 0..<n { scratch[i] = i }
            scratch.sort(by: before)
            return scratch[0..<k]
        }
        // Heap of the k best so far with the worst at the root.
        var h = Array(0..<k)
        func siftDown(_ start: Int) {
            var p = start
            while true {
                let l = 2 * p + 1, r = l + 1
                var w = p
                if l < k && before(h[w], h[l]) { w = l }
                if r < k && before(h[w], h[r]) { w = r }
                if w == p { return }
                h.swapAt(p, w); p = w
            }
        }
        for p in stride(from: k / 2 - 1, through: 0, by: -1) { siftDown(p) }
        for i in k..<n where before(i, h[0]) { h[0] = i; siftDown(0) }
        h.sort(by: before)
        for j in 0..<k { scratch[j] = h[j] }
        return scratch[0..<k]
    }
}

extension Naive {
    /// Top-k by repeated scanning for the best element not yet taken (ties: lower index; NaN largest).
    public static func topK(_ x: Tensor, _ k: Int, axis: Int, largest: Bool) -> (values: Tensor, indices: IndexTensor) {
        let a = x.normalizedAxis(axis), (outer, n, inner) = x.axisSplit(a), v = x.scalars
        var shape = x.shape
        shape[a] = k
        var vals = [Float](repeating: 0, count: outer * k * inner), idx = [Int](repeating: 0, count: vals.count)
        for o in 0..<outer {
            for i in 0..<inner {
                var taken = Set<Int>()
                for j in 0..<k {
                    var best = -1
                    for r in 0..<n where !taken.contains(r) {
                        let c = v[(o * n + r) * inner + i]
                        if best < 0 { best = r; continue }
                        let b = v[(o * n + best) * inner + i]
                        let better = c.isNaN ? (largest && !b.isNaN) : (b.isNaN ? !largest : (largest ? c > b : c < b))
                        if better { best = r }
                    }
                    taken.insert(best)
                    vals[(o * k + j) * inner + i] = v[(o * n + best) * inner + i]
                    idx[(o * k + j) * inner + i] = best
                }
            }
        }
        return (Tensor(shape: shape, scalars: vals), IndexTensor(shape: shape, scalars: idx))
    }

    /// f folded over `axes` (nil: all) by explicit multi-indices, in Double.
    public static func reduce(_ x: Tensor, axes: [Int]?, keepDims: Bool = false, initial: Double,
                              _ f: (Double, Double) -> Double, finish: (Double, Int) -> Double = { v, _ in v }) -> Tensor {
        let ax = x.reductionAxes(axes), outShape = x.reducedShape(ax, keepDims: true)
        let n = ax.map { x.shape[$0] }.reduce(1, *)
        var acc = [Double](repeating: initial, count: outShape.reduce(1, *))
        let v = x.scalars, outStrides = Tensor.strides(of: outShape)
        for i in 0..<x.count {
            var rem = i, o = 0
            for d in stride(from: x.rank - 1, through: 0, by: -1) {
                let ix = rem % x.shape[d]; rem /= x.shape[d]
                if !ax.contains(d) { o += ix * outStrides[d] }
            }
            acc[o] = f(acc[o], Double(v[i]))
        }
        return Tensor(shape: x.reducedShape(ax, keepDims: keepDims), scalars: acc.map { Float(finish($0, n)) })
    }
}
