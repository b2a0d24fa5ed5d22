// Shape ops: permute/transpose, concatenate/split/chunk, slice, pad, squeeze/unsqueeze,
// expand/broadcast, repeat, flip, roll, flatten, and the NCHW ↔ tokens conversions; with naive
// references built from explicit multi-indices.
//
// Tensors are contiguous, so every op that moves data copies (torch would return a view).
// All of them run on one engine, `stridedCopy`: both sides are addressed by per-axis strides
// (zero strides broadcast, negative ones flip), neighbouring axes that are contiguous on both
// sides are merged, equal-stride runs become memcpy, and a (batched) 2-D transpose is copied in
// 32×32 tiles so neither side walks memory with a large stride.

import Foundation

extension Tensor {
    /// dst[x] = src[x] for every multi-index x of `shape`, with arbitrary strides on both sides.
    static func stridedCopy(shape: [Int], src: UnsafePointer<Float>, srcStrides: [Int],
                            dst: UnsafeMutablePointer<Float>, dstStrides: [Int]) {
        let total = shape.reduce(1, *)
        if total == 0 { return }
        let (s, st) = collapse(shape, [srcStrides, dstStrides])
        let ss = st[0], ds = st[1], r = s.count
        // Batched transpose: the destination is contiguous along the last axis and the source
        // along the one before it. Copy tile by tile.
        if r >= 2 && ds[r - 1] == 1 && ss[r - 1] != 1 && ss[r - 2] == 1 {
            let rows = s[r - 2], cols = s[r - 1], sc = ss[r - 1], dr = ds[r - 2], tile = 32
            let batch = Array(s[..<(r - 2)]), rowTiles = (rows + tile - 1) / tile
            let units = batch.reduce(1, *) * rowTiles
            Threads.parallelFor(units, minChunk: Swift.max(1, (1 << 15) / (tile * cols))) { range in
                for u in range {
                    let (bs, bd) = offsets(u / rowTiles, batch, ss, ds)
                    let i0 = (u % rowTiles) * tile, i1 = Swift.min(i0 + tile, rows)
                    for j0 in stride(from: 0, to: cols, by: tile) {
                        let j1 = Swift.min(j0 + tile, cols)
                        for i in i0..<i1 {
                            let sp = src + bs + i, dp = dst + bd + i * dr
                            for j in j0..<j1 { dp[j] = sp[j * sc] }
                        }
                    }
                }
            }
            return
        }
        let inner = s[r - 1], si = ss[r - 1], di = ds[r - 1], outer = Array(s.dropLast())
        Threads.parallelFor(total / inner, minChunk: Swift.max(1, (1 << 15) / inner)) { range in
            for row in range {
                let (os, od) = offsets(row, outer, ss, ds)
                let sp = src + os, dp = dst + od
                if si == 1 && di == 1 {
                    dp.update(from: sp, count: inner)
                } else {
                    for j in 0..<inner { dp[j * di] = sp[j * si] }
                }
            }
        }
    }

    /// Source and destination offsets of row-major position `index` within `shape`.
    @inline(__always)
    static func offsets(_ index: Int, _ shape: [Int], _ a: [Int], _ b: [Int]) -> (Int, Int) {
        var rem = index, oa = 0, ob = 0
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            let ix = rem % shape[d]; rem /= shape[d]
            oa += ix * a[d]; ob += ix * b[d]
        }
        return (oa, ob)
    }

    /// A new contiguous tensor of `shape` read from self at `offset` with `strides`.
    func gatherStrided(shape: [Int], offset: Int = 0, strides: [Int]) -> Tensor {
        var out = Tensor(uninitialized: shape)
        withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                Tensor.stridedCopy(shape: shape, src: s.baseAddress! + offset, srcStrides: strides,
                                   dst: d.baseAddress!, dstStrides: Tensor.strides(of: shape))
            }
        }
        return out
    }

    /// Axes reordered: result axis i is self's axis dims[i] (torch `permute`).
    public func permuted(_ dims: [Int]) -> Tensor {
        let p = dims.map { normalizedAxis($0) }
        precondition(p.count == rank && Set(p).count == rank, "permuted: \(dims) is not a permutation of \(rank) axes")
        if p == Array(0..<rank) { return self }
        let st = strides
        return gatherStrided(shape: p.map { shape[$0] }, strides: p.map { st[$0] })
    }
    public func permuted(_ dims: Int...) -> Tensor { permuted(dims) }

    /// Two axes swapped (torch `transpose(a, b)`).
    public func transposed(_ a: Int, _ b: Int) -> Tensor {
        var p = Array(0..<rank)
        p.swapAt(normalizedAxis(a), normalizedAxis(b))
        return permuted(p)
    }
    /// The last two axes swapped (torch `.mT`).
    public func transposed() -> Tensor { transposed(-2, -1) }

    /// Tensors joined along `axis`; all other sizes must agree (torch.cat).
    public static func concatenated(_ tensors: [Tensor], axis: Int) -> Tensor {
        precondition(!tensors.isEmpty, "concatenated: no tensors")
        let a = tensors[0].normalizedAxis(axis)
        var shape = tensors[0].shape
        shape[a] = 0
        for t in tensors {
            precondition(t.rank == shape.count && (0..<t.rank).allSatisfy { $0 == a || t.shape[$0] == shape[$0] },
                         "concatenated: \(Shape.format(t.shape)) does not match \(Shape.format(tensors[0].shape)) off axis \(a)")
            shape[a] += t.shape[a]
        }
        var out = Tensor(uninitialized: shape)
        let ds = Tensor.strides(of: shape)
        var start = 0
        out.withUnsafeMutableBufferPointer { d in
            for t in tensors {
                t.withUnsafeBufferPointer { s in
                    stridedCopy(shape: t.shape, src: s.baseAddress!, srcStrides: t.strides,
                                dst: d.baseAddress! + start * ds[a], dstStrides: ds)
                }
                start += t.shape[a]
            }
        }
        return out
    }

    /// Elements `range` (with `step`) along `axis`, copied (torch `x[..., a:b:step, ...]`).
    public func sliced(axis: Int, range: Range<Int>, step: Int = 1) -> Tensor {
        let a = normalizedAxis(axis)
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[a] && step > 0,
                     "sliced: \(range) step \(step) out of bounds for axis \(a) of \(Shape.format(shape))")
        var s = shape, st = strides
        s[a] = (range.count + step - 1) / step
        let offset = range.lowerBound * st[a]
        st[a] *= step
        return gatherStrided(shape: s, offset: offset, strides: st)
    }

    /// Pieces of the given sizes along `axis` (torch.split with a list); sizes must sum to the axis.
    public func split(sizes: [Int], axis: Int) -> [Tensor] {
        let a = normalizedAxis(axis)
        precondition(sizes.reduce(0, +) == shape[a], "split: sizes \(sizes) do not sum to axis \(a) of \(Shape.format(shape))")
        var start = 0
        return sizes.map { n in
            defer { start += n }
            return sliced(axis: a, range: start..<start + n)
        }
    }

    /// torch.chunk: pieces of ⌈size/n⌉ along `axis`, the last one smaller; may give fewer than n.
    public func chunked(_ n: Int, axis: Int) -> [Tensor] {
        let a = normalizedAxis(axis), size = shape[a]
        precondition(n > 0, "chunked: n must be positive")
        let step = Swift.max(1, (size + n - 1) / n)
        return stride(from: 0, to: size, by: step).map { sliced(axis: a, range: $0..<Swift.min($0 + step, size)) }
    }

    /// Padded with `value`: pads[i] = (before, after) for axis i, one pair per axis. Negative
    /// amounts crop, as torch.nn.functional.pad.
    public func padded(_ pads: [(Int, Int)], value: Float = 0) -> Tensor {
        precondition(pads.count == rank, "padded: \(pads.count) pad pairs for rank \(rank)")
        let outShape = zip(shape, pads).map { $0 + $1.0 + $1.1 }
        precondition(outShape.allSatisfy { $0 >= 0 }, "padded: negative size from \(Shape.format(shape)) and \(pads)")
        var out = Tensor(shape: outShape, repeating: value)
        // The region kept from the source, and where it lands.
        let lo = pads.map { Swift.max(0, -$0.0) }, dlo = pads.map { Swift.max(0, $0.0) }
        let region = (0..<rank).map { Swift.max(0, Swift.min(shape[$0] - lo[$0], outShape[$0] - dlo[$0])) }
        let ss = strides, ds = Tensor.strides(of: outShape)
        let so = zip(lo, ss).map(*).reduce(0, +), doff = zip(dlo, ds).map(*).reduce(0, +)
        withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                Tensor.stridedCopy(shape: region, src: s.baseAddress! + so, srcStrides: ss,
                                   dst: d.baseAddress! + doff, dstStrides: ds)
            }
        }
        return out
    }

    /// torch.nn.functional.pad order: (left, right) of the last axis first, then the one before, …
    /// `x.padded(torchPads: [1, 1, 2, 0])` pads W by 1|1 and H by 2|0.
    public func padded(torchPads: [Int], value: Float = 0) -> Tensor {
        precondition(torchPads.count % 2 == 0 && torchPads.count / 2 <= rank, "padded: bad torch pads \(torchPads)")
        var pairs = [(Int, Int)](repeating: (0, 0), count: rank)
        for i in 0..<(torchPads.count / 2) { pairs[rank - 1 - i] = (torchPads[2 * i], torchPads[2 * i + 1]) }
        return padded(pairs, value: value)
    }

    /// Size-1 axes removed: `axes` (each must have size 1) or, when nil, all of them.
    public func squeezed(axes: [Int]? = nil) -> Tensor {
        let drop = axes.map { $0.map { normalizedAxis($0) } } ?? shape.indices.filter { shape[$0] == 1 }
        precondition(drop.allSatisfy { shape[$0] == 1 }, "squeezed: axes \(drop) of \(Shape.format(shape)) are not all 1")
        return reshaped(shape.indices.filter { !drop.contains($0) }.map { shape[$0] })
    }

    /// A size-1 axis inserted at `axis` (−1 appends), as torch.unsqueeze.
    public func unsqueezed(axis: Int) -> Tensor {
        let a = axis < 0 ? axis + rank + 1 : axis
        precondition(a >= 0 && a <= rank, "unsqueezed: axis \(axis) out of range for rank \(rank)")
        var s = shape
        s.insert(1, at: a)
        return reshaped(s)
    }

    /// Axes startAxis…endAxis merged into one (torch.flatten).
    public func flattened(startAxis: Int = 0, endAxis: Int = -1) -> Tensor {
        if rank == 0 { return reshaped([1]) }
        let a = normalizedAxis(startAxis), b = normalizedAxis(endAxis)
        return reshaped(Array(shape[..<a]) + [shape[a...b].reduce(1, *)] + Array(shape[(b + 1)...]))
    }

    /// Materialised broadcast to `target` (torch.broadcast_to, but copied).
    public func broadcast(to target: [Int]) -> Tensor {
        precondition(Tensor.broadcastShape(shape, target) == target,
                     "broadcast: \(Shape.format(shape)) does not broadcast to \(Shape.format(target))")
        if target == shape { return self }
        return gatherStrided(shape: target, strides: Tensor.broadcastStrides(shape, to: target))
    }

    /// torch.expand (copied): like `broadcast(to:)`, and −1 keeps an existing size.
    public func expanded(to sizes: [Int]) -> Tensor {
        let lead = sizes.count - rank
        return broadcast(to: sizes.enumerated().map { $0.element == -1 ? shape[$0.offset - lead] : $0.element })
    }

    /// Tiled `repeats[i]` times along axis i (torch.Tensor.repeat); extra leading repeats add axes.
    public func repeated(_ repeats: [Int]) -> Tensor {
        precondition(repeats.count >= rank, "repeated: \(repeats.count) repeats for rank \(rank)")
        let s = [Int](repeating: 1, count: repeats.count - rank) + shape
        let st = Tensor.strides(of: s)
        // Read as (r0, s0, r1, s1, …) with stride 0 on every repeat axis.
        let view = zip(repeats, s).flatMap { [$0, $1] }, vst = st.flatMap { [0, $0] }
        return gatherStrided(shape: view, strides: vst).reshaped(zip(repeats, s).map(*))
    }

    /// Reversed along `axes` (torch.flip).
    public func flipped(axes: [Int]) -> Tensor {
        var st = strides, offset = 0
        for a in Set(axes.map { normalizedAxis($0) }) where shape[a] > 0 {
            offset += (shape[a] - 1) * st[a]
            st[a] = -st[a]
        }
        return gatherStrided(shape: shape, offset: offset, strides: st)
    }

    /// torch.roll along one axis: element i moves to (i + shift) mod size.
    public func rolled(shift: Int, axis: Int) -> Tensor {
        let a = normalizedAxis(axis), n = shape[a]
        guard n > 0 else { return self }
        let s = ((shift % n) + n) % n
        if s == 0 { return self }
        return Tensor.concatenated([sliced(axis: a, range: n - s..<n), sliced(axis: a, range: 0..<n - s)], axis: a)
    }

    /// N×C×H×W feature map → N×(H·W)×C tokens, raster order.
    public func mapToTokens() -> Tensor {
        precondition(rank == 4, "mapToTokens: expected N×C×H×W, found \(Shape.format(shape))")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        return reshaped([n, c, h * w])  // N, C, L
            .permuted(0, 2, 1)          // N, L, C
    }

    /// N×L×C tokens (L = height·width, raster order) → N×C×H×W feature map.
    public func tokensToMap(height: Int, width: Int) -> Tensor {
        precondition(rank == 3 && shape[1] == height * width,
                     "tokensToMap: expected N×\(height * width)×C, found \(Shape.format(shape))")
        let (n, c) = (shape[0], shape[2])
        return permuted(0, 2, 1)              // N, C, L
            .reshaped([n, c, height, width])  // N, C, H, W
    }
}

extension Naive {
    /// A tensor whose element at each multi-index is f(index).
    public static func tensor(shape: [Int], _ f: ([Int]) -> Float) -> Tensor {
        let n = shape.reduce(1, *)
        var v = [Float](repeating: 0, count: n), idx = [Int](repeating: 0, count: shape.count)
        for i in 0..<n {
            var rem = i
            for d in stride(from: shape.count - 1, through: 0, by: -1) { idx[d] = rem % shape[d]; rem /= shape[d] }
            v[i] = f(idx)
        }
        return Tensor(shape: shape, scalars: v)
    }

    /// x[index] for a full multi-index.
    public static func element(_ x: Tensor, _ index: [Int]) -> Float {
        x.withUnsafeBufferPointer { $0[x.offset(index)] }
    }

    public static func permute(_ x: Tensor, _ dims: [Int]) -> Tensor {
        tensor(shape: dims.map { x.shape[$0] }) { idx in
            var src = [Int](repeating: 0, count: dims.count)
            for (i, d) in dims.enumerated() { src[d] = idx[i] }
            return element(x, src)
        }
    }

    public static func pad(_ x: Tensor, _ pads: [(Int, Int)], value: Float) -> Tensor {
        tensor(shape: zip(x.shape, pads).map { $0 + $1.0 + $1.1 }) { idx in
            let src = zip(idx, pads).map { $0 - $1.0 }
            return zip(src, x.shape).allSatisfy { $0 >= 0 && $0 < $1 } ? element(x, src) : value
        }
    }
}
