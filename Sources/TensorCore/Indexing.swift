// Integer index tensors and the ops that use them: gather, index_select, scatter_add, stack,
// one-hot; with naive references.

import Foundation

/// Integer indices with a shape: what `argmax`, `topK` and `sorted` return and what `gathered`
/// and `scatterAdd` take (torch's int64 index tensors). Row-major, like `Tensor`.
public struct IndexTensor: Equatable, Sendable, CustomStringConvertible {
    public private(set) var shape: [Int]
    public private(set) var scalars: [Int]

    public init(shape: [Int], scalars: [Int]) {
        precondition(shape.reduce(1, *) == scalars.count, "IndexTensor: shape \(shape) needs \(shape.reduce(1, *)) indices, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
    }

    /// A 1-D index tensor.
    public init(_ scalars: [Int]) { self.init(shape: [scalars.count], scalars: scalars) }

    /// From a float tensor holding whole numbers (an index buffer read from safetensors or .npy).
    public init(_ tensor: Tensor) {
        let v = tensor.scalars
        precondition(v.allSatisfy { $0 == $0.rounded() && $0.magnitude <= 16_777_216 },
                     "IndexTensor: \(Shape.format(tensor.shape)) holds values that are not exact integers")
        self.init(shape: tensor.shape, scalars: v.map { Int($0) })
    }

    public var count: Int { scalars.count }
    public var rank: Int { shape.count }

    public subscript(_ index: Int...) -> Int {
        precondition(index.count == rank, "index \(index) has rank \(index.count), indices have rank \(rank)")
        var o = 0
        for (i, n) in zip(index, shape) { precondition(i >= 0 && i < n, "index \(index) out of range \(shape)"); o = o * n + i }
        return scalars[o]
    }

    public func reshaped(_ newShape: [Int]) -> IndexTensor { IndexTensor(shape: newShape, scalars: scalars) }

    /// The indices as floats (exact below 2²⁴).
    public var asTensor: Tensor { Tensor(shape: shape, scalars: scalars.map { Float($0) }) }

    public var description: String {
        "IndexTensor(shape: \(shape), \(scalars.prefix(8))\(count > 8 ? "…" : ""))"
    }
}

extension Tensor {
    /// torch.gather: out[…, i, …] = self[…, indices[…, i, …], …] along `axis`. `indices` has
    /// self's rank, no larger than self off `axis`; the result has the shape of `indices`.
    public func gathered(axis: Int, indices: IndexTensor) -> Tensor {
        let a = normalizedAxis(axis)
        precondition(indices.rank == rank && (0..<rank).allSatisfy { $0 == a || indices.shape[$0] <= shape[$0] },
                     "gathered: indices \(Shape.format(indices.shape)) do not fit \(Shape.format(shape)) on axis \(a)")
        var out = Tensor(uninitialized: indices.shape)
        let st = strides, n = shape[a], ishape = indices.shape
        withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                var pos = [Int](repeating: 0, count: rank), base = 0
                for (k, ix) in indices.scalars.enumerated() {
                    precondition(ix >= 0 && ix < n, "gathered: index \(ix) out of range \(n) on axis \(a)")
                    d[k] = s[base + ix * st[a]]
                    // Advance the multi-index; `base` holds Σ_{d≠a} pos[d]·stride[d].
                    var dd = rank - 1
                    while dd >= 0 {
                        pos[dd] += 1
                        if dd != a { base += st[dd] }
                        if pos[dd] < ishape[dd] { break }
                        if dd != a { base -= pos[dd] * st[dd] }
                        pos[dd] = 0
                        dd -= 1
                    }
                }
            }
        }
        return out
    }

    /// torch.index_select: the slices at `indices` along `axis`, in that order (repeats allowed).
    public func indexSelect(axis: Int, indices: [Int]) -> Tensor {
        let a = normalizedAxis(axis), (outer, n, inner) = axisSplit(a)
        var s = shape
        s[a] = indices.count
        var out = Tensor(uninitialized: s)
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for o in 0..<outer {
                    for (j, ix) in indices.enumerated() {
                        precondition(ix >= 0 && ix < n, "indexSelect: index \(ix) out of range \(n) on axis \(a)")
                        (dst.baseAddress! + (o * indices.count + j) * inner)
                            .update(from: src.baseAddress! + (o * n + ix) * inner, count: inner)
                    }
                }
            }
        }
        return out
    }

    /// torch.Tensor.scatter_add_: self[…, indices[…, i, …], …] += source[…, i, …] along `axis`.
    /// `indices` has self's rank and is no larger than `source` anywhere, nor than self off `axis`.
    public mutating func scatterAdd(axis: Int, indices: IndexTensor, source: Tensor) {
        let a = normalizedAxis(axis), r = rank
        precondition(indices.rank == r && source.rank == r &&
                     (0..<r).allSatisfy { indices.shape[$0] <= source.shape[$0] && ($0 == a || indices.shape[$0] <= shape[$0]) },
                     "scatterAdd: indices \(Shape.format(indices.shape)), source \(Shape.format(source.shape)) and self \(Shape.format(shape)) do not fit")
        let st = strides, sst = source.strides, n = shape[a], ishape = indices.shape
        source.withUnsafeBufferPointer { src in
            withUnsafeMutableBufferPointer { d in
                var pos = [Int](repeating: 0, count: r)
                for ix in indices.scalars {
                    precondition(ix >= 0 && ix < n, "scatterAdd: index \(ix) out of range \(n) on axis \(a)")
                    var o = 0, so = 0
                    for k in 0..<r { o += (k == a ? ix : pos[k]) * st[k]; so += pos[k] * sst[k] }
                    d[o] += src[so]
                    var k = r - 1
                    while k >= 0 { pos[k] += 1; if pos[k] < ishape[k] { break }; pos[k] = 0; k -= 1 }
                }
            }
        }
    }

    /// Non-mutating `scatterAdd` (torch.scatter_add).
    public func scatterAdded(axis: Int, indices: IndexTensor, source: Tensor) -> Tensor {
        var t = self
        t.scatterAdd(axis: axis, indices: indices, source: source)
        return t
    }

    /// Equal-shaped tensors stacked along a new axis (torch.stack); −1 appends the axis.
    public static func stack(_ tensors: [Tensor], axis: Int = 0) -> Tensor {
        precondition(!tensors.isEmpty, "stack: no tensors")
        let shape = tensors[0].shape
        precondition(tensors.allSatisfy { $0.shape == shape },
                     "stack: shapes differ: \(tensors.map { Shape.format($0.shape) }.joined(separator: ", "))")
        let a = axis < 0 ? axis + shape.count + 1 : axis
        return concatenated(tensors.map { $0.unsqueezed(axis: a) }, axis: a)
    }

    /// torch.nn.functional.one_hot as floats: shape indices.shape + [classes].
    public static func oneHot(_ indices: IndexTensor, classes: Int) -> Tensor {
        var out = Tensor(zeros: indices.shape + [classes])
        out.withUnsafeMutableBufferPointer { d in
            for (k, ix) in indices.scalars.enumerated() {
                precondition(ix >= 0 && ix < classes, "oneHot: index \(ix) out of range \(classes)")
                d[k * classes + ix] = 1
            }
        }
        return out
    }
}

extension Naive {
    /// torch.gather by multi-indices.
    public static func gather(_ x: Tensor, axis: Int, indices: IndexTensor) -> Tensor {
        let a = x.normalizedAxis(axis), ist = Tensor.strides(of: indices.shape)
        return tensor(shape: indices.shape) { idx in
            var src = idx
            src[a] = indices.scalars[zip(idx, ist).map(*).reduce(0, +)]
            return element(x, src)
        }
    }

    /// torch.scatter_add by multi-indices.
    public static func scatterAdd(_ x: Tensor, axis: Int, indices: IndexTensor, source: Tensor) -> Tensor {
        let a = x.normalizedAxis(axis)
        var out = x.scalars
        let ist = Tensor.strides(of: indices.shape)
        for k in 0..<indices.count {
            var idx = [Int](repeating: 0, count: x.rank)
            for d in 0..<x.rank { idx[d] = (k / ist[d]) % indices.shape[d] }
            let v = element(source, idx)
            idx[a] = indices.scalars[k]
            out[x.offset(idx)] += v
        }
        return Tensor(shape: x.shape, scalars: out)
    }
}
