// Elementwise ops: `+ - * /` between tensors with PyTorch broadcasting and with Float scalars,
// compound assignment, `maximum`/`minimum`, masked fill, unary maths (`exp(x)`, `sqrt(x)`, …),
// and the naive reference (`Naive.broadcast`) the tests compare broadcasting with.
//
// Broadcasting is torch's: shapes align on the right and a size-1 axis stretches. Operands are
// never materialised at the output shape: each is given per-axis strides (0 on stretched axes),
// adjacent axes that are contiguous in every operand are merged, and the remaining loop nest
// runs its innermost axis with a specialised inner loop for the stride pairs (1,1), (1,0), (0,1).
// So equal shapes, a scalar, a trailing vector (bias over channels-last) and a leading block
// (N×C×1×1 gates over N×C×H×W) all become one or two flat loops.

import CKernels
import Foundation

/// A scalar binary operation as a type, so each strided loop is specialised for it.
public protocol BinaryKernel {
    func callAsFunction(_ a: Float, _ b: Float) -> Float
}

struct AddKernel: BinaryKernel { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a + b } }
struct SubKernel: BinaryKernel { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a - b } }
struct MulKernel: BinaryKernel { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a * b } }
struct DivKernel: BinaryKernel { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a / b } }
/// NaN-propagating, as torch.maximum / torch.minimum.
struct MaxKernel: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { (a > b || a != a) ? a : b }
}
struct MinKernel: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { (a < b || a != a) ? a : b }
}
struct MaskFillKernel: BinaryKernel {
    let value: Float
    @inline(__always) func callAsFunction(_ a: Float, _ m: Float) -> Float { m != 0 ? value : a }
}

extension Tensor {
    /// The shape of broadcasting `a` with `b` (right-aligned, size 1 stretches), or nil.
    public static func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
        let r = Swift.max(a.count, b.count)
        var out = [Int](repeating: 1, count: r)
        for i in 0..<r {
            let x = i < r - a.count ? 1 : a[i - (r - a.count)]
            let y = i < r - b.count ? 1 : b[i - (r - b.count)]
            if x == y || y == 1 { out[i] = x } else if x == 1 { out[i] = y } else { return nil }
        }
        return out
    }

    /// Strides that read `shape` as if broadcast to `target`: 0 on stretched and missing axes.
    static func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
        let own = Tensor.strides(of: shape), lead = target.count - shape.count
        return (0..<target.count).map { i in
            i < lead || shape[i - lead] == 1 ? 0 : own[i - lead]
        }
    }

    /// Drops size-1 axes and merges neighbours that are contiguous in every operand's strides.
    /// Never returns an empty shape: a scalar loop is `[1]` with zero strides.
    static func collapse(_ shape: [Int], _ strides: [[Int]]) -> (shape: [Int], strides: [[Int]]) {
        var s: [Int] = [], st = [[Int]](repeating: [], count: strides.count)
        for d in shape.indices where shape[d] != 1 {
            if let last = s.indices.last,
               strides.indices.allSatisfy({ st[$0][last] == strides[$0][d] * shape[d] }) {
                s[last] *= shape[d]
                for o in strides.indices { st[o][last] = strides[o][d] }
            } else {
                s.append(shape[d])
                for o in strides.indices { st[o].append(strides[o][d]) }
            }
        }
        if s.isEmpty { return ([1], strides.map { _ in [0] }) }
        return (s, st)
    }

    /// out[i] = k(a[i·ia], b[i·ib]) for i < n, with the common stride pairs unrolled by the compiler.
    @inline(__always)
    static func binaryRun<K: BinaryKernel>(_ k: K, _ n: Int, _ a: UnsafePointer<Float>, _ ia: Int,
                                           _ b: UnsafePointer<Float>, _ ib: Int, _ o: UnsafeMutablePointer<Float>) {
        if ia == 1 && ib == 1 {
            for i in 0..<n { o[i] = k(a[i], b[i]) }
        } else if ia == 1 && ib == 0 {
            let y = b[0]
            for i in 0..<n { o[i] = k(a[i], y) }
        } else if ia == 0 && ib == 1 {
            let x = a[0]
            for i in 0..<n { o[i] = k(x, b[i]) }
        } else {
            for i in 0..<n { o[i] = k(a[i * ia], b[i * ib]) }
        }
    }

    /// out (contiguous, `shape`) = k(a, b) with `a`, `b` read through broadcast strides.
    /// `out` may alias `a` when `a` is read with its own contiguous strides (in-place ops).
    static func broadcastLoop<K: BinaryKernel>(_ k: K, shape: [Int],
                                               a: UnsafePointer<Float>, aStrides: [Int],
                                               b: UnsafePointer<Float>, bStrides: [Int],
                                               out: UnsafeMutablePointer<Float>) {
        let total = shape.reduce(1, *)
        if total == 0 { return }
        let (s, st) = collapse(shape, [aStrides, bStrides, Tensor.strides(of: shape)])
        let sa = st[0], sb = st[1], inner = s[s.count - 1], ia = sa[s.count - 1], ib = sb[s.count - 1]
        let grain = 1 << 15
        if s.count == 1 {
            Threads.parallelFor(inner, minChunk: grain) { r in
                binaryRun(k, r.count, a + r.lowerBound * ia, ia, b + r.lowerBound * ib, ib, out + r.lowerBound)
            }
            return
        }
        let outer = Array(s.dropLast()), rows = total / inner
        Threads.parallelFor(rows, minChunk: Swift.max(1, grain / inner)) { range in
            // Odometer over the outer axes, started at the chunk's first row.
            var idx = [Int](repeating: 0, count: outer.count)
            var rem = range.lowerBound, offA = 0, offB = 0
            for d in stride(from: outer.count - 1, through: 0, by: -1) {
                idx[d] = rem % outer[d]; rem /= outer[d]
                offA += idx[d] * sa[d]; offB += idx[d] * sb[d]
            }
            for row in range {
                binaryRun(k, inner, a + offA, ia, b + offB, ib, out + row * inner)
                var d = outer.count - 1
                while d >= 0 {
                    idx[d] += 1; offA += sa[d]; offB += sb[d]
                    if idx[d] < outer[d] { break }
                    offA -= idx[d] * sa[d]; offB -= idx[d] * sb[d]; idx[d] = 0
                    d -= 1
                }
            }
        }
    }

    /// k(a, b) elementwise with broadcasting; the result has the broadcast shape.
    public static func broadcasting<K: BinaryKernel>(_ a: Tensor, _ b: Tensor, _ k: K) -> Tensor {
        guard let shape = broadcastShape(a.shape, b.shape) else {
            preconditionFailure("shapes \(Shape.format(a.shape)) and \(Shape.format(b.shape)) do not broadcast")
        }
        var out = Tensor(uninitialized: shape)
        let sa = broadcastStrides(a.shape, to: shape), sb = broadcastStrides(b.shape, to: shape)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { po in
                    broadcastLoop(k, shape: shape, a: pa.baseAddress!, aStrides: sa,
                                  b: pb.baseAddress!, bStrides: sb, out: po.baseAddress!)
                }
            }
        }
        return out
    }

    /// self = k(self, b) in place; `b` must broadcast to self's shape (as torch's in-place ops).
    public mutating func applyBroadcasting<K: BinaryKernel>(_ b: Tensor, _ k: K) {
        guard Tensor.broadcastShape(shape, b.shape) == shape else {
            preconditionFailure("in-place op: \(Shape.format(b.shape)) does not broadcast to \(Shape.format(shape))")
        }
        let shape = self.shape, sa = strides, sb = Tensor.broadcastStrides(b.shape, to: shape)
        b.withUnsafeBufferPointer { pb in
            withUnsafeMutableBufferPointer { po in
                Tensor.broadcastLoop(k, shape: shape, a: UnsafePointer(po.baseAddress!), aStrides: sa,
                                     b: pb.baseAddress!, bStrides: sb, out: po.baseAddress!)
            }
        }
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor { broadcasting(a, b, AddKernel()) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { broadcasting(a, b, SubKernel()) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { broadcasting(a, b, MulKernel()) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { broadcasting(a, b, DivKernel()) }

    public static func + (a: Tensor, s: Float) -> Tensor { broadcasting(a, Tensor(scalar: s), AddKernel()) }
    public static func - (a: Tensor, s: Float) -> Tensor { broadcasting(a, Tensor(scalar: s), SubKernel()) }
    public static func * (a: Tensor, s: Float) -> Tensor { broadcasting(a, Tensor(scalar: s), MulKernel()) }
    /// Divides (not multiplies by 1/s), so results match torch bit for bit.
    public static func / (a: Tensor, s: Float) -> Tensor { broadcasting(a, Tensor(scalar: s), DivKernel()) }
    public static func + (s: Float, a: Tensor) -> Tensor { broadcasting(Tensor(scalar: s), a, AddKernel()) }
    public static func - (s: Float, a: Tensor) -> Tensor { broadcasting(Tensor(scalar: s), a, SubKernel()) }
    public static func * (s: Float, a: Tensor) -> Tensor { broadcasting(Tensor(scalar: s), a, MulKernel()) }
    public static func / (s: Float, a: Tensor) -> Tensor { broadcasting(Tensor(scalar: s), a, DivKernel()) }

    public static func += (a: inout Tensor, b: Tensor) { a.applyBroadcasting(b, AddKernel()) }
    public static func -= (a: inout Tensor, b: Tensor) { a.applyBroadcasting(b, SubKernel()) }
    public static func *= (a: inout Tensor, b: Tensor) { a.applyBroadcasting(b, MulKernel()) }
    public static func /= (a: inout Tensor, b: Tensor) { a.applyBroadcasting(b, DivKernel()) }
    public static func += (a: inout Tensor, s: Float) { a.applyBroadcasting(Tensor(scalar: s), AddKernel()) }
    public static func -= (a: inout Tensor, s: Float) { a.applyBroadcasting(Tensor(scalar: s), SubKernel()) }
    public static func *= (a: inout Tensor, s: Float) { a.applyBroadcasting(Tensor(scalar: s), MulKernel()) }
    public static func /= (a: inout Tensor, s: Float) { a.applyBroadcasting(Tensor(scalar: s), DivKernel()) }

    /// Elementwise maximum with broadcasting; NaN wins, as torch.maximum.
    public static func maximum(_ a: Tensor, _ b: Tensor) -> Tensor { broadcasting(a, b, MaxKernel()) }
    /// Elementwise minimum with broadcasting; NaN wins, as torch.minimum.
    public static func minimum(_ a: Tensor, _ b: Tensor) -> Tensor { broadcasting(a, b, MinKernel()) }

    /// `value` where `mask` is non-zero, self elsewhere (torch `masked_fill`). The mask holds
    /// 0/1 floats and broadcasts to self's shape, e.g. an L×L causal mask over N×H×L×L logits.
    public func maskedFill(_ mask: Tensor, value: Float) -> Tensor {
        guard Tensor.broadcastShape(shape, mask.shape) == shape else {
            preconditionFailure("maskedFill: mask \(Shape.format(mask.shape)) does not broadcast to \(Shape.format(shape))")
        }
        return Tensor.broadcasting(self, mask, MaskFillKernel(value: value))
    }
}

// MARK: - Unary

/// A scalar function as a type, so `applying` gets a specialised, vectorisable loop. (A closure
/// passed through `map` and into the thread pool stays an indirect call per element: about 8×
/// slower for cheap ops, so `map` is for expensive bodies — libm calls — and one-off code.)
public protocol UnaryKernel {
    func callAsFunction(_ x: Float) -> Float
}

struct NegKernel: UnaryKernel { @inline(__always) func callAsFunction(_ x: Float) -> Float { -x } }
struct AbsKernel: UnaryKernel { @inline(__always) func callAsFunction(_ x: Float) -> Float { Swift.abs(x) } }
struct SquareKernel: UnaryKernel { @inline(__always) func callAsFunction(_ x: Float) -> Float { x * x } }
struct SqrtKernel: UnaryKernel { @inline(__always) func callAsFunction(_ x: Float) -> Float { x.squareRoot() } }
struct RsqrtKernel: UnaryKernel { @inline(__always) func callAsFunction(_ x: Float) -> Float { 1 / x.squareRoot() } }
struct ReciprocalKernel: UnaryKernel { @inline(__always) func callAsFunction(_ x: Float) -> Float { 1 / x } }
struct SignKernel: UnaryKernel { @inline(__always) func callAsFunction(_ x: Float) -> Float { x > 0 ? 1 : (x < 0 ? -1 : x) } }
struct ClampKernel: UnaryKernel {
    let lo: Float, hi: Float
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x < lo ? lo : (x > hi ? hi : x) }
}

extension Tensor {
    /// k applied to every element, with a loop specialised for K; large tensors are split over `Threads`.
    @inline(__always)
    public func applying<K: UnaryKernel>(_ k: K) -> Tensor {
        var out = Tensor(uninitialized: shape)
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let s = src.baseAddress!, d = dst.baseAddress!
                Threads.parallelFor(src.count, minChunk: 1 << 15) { r in
                    for i in r { d[i] = k(s[i]) }
                }
            }
        }
        return out
    }

    /// f applied to every element. Convenient, but an indirect call per element: prefer
    /// `applying(_:)` with a `UnaryKernel` in hot code.
    public func map(_ f: (Float) -> Float) -> Tensor {
        var out = Tensor(uninitialized: shape)
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let s = src.baseAddress!, d = dst.baseAddress!
                Threads.parallelFor(src.count, minChunk: 1 << 15) { r in
                    for i in r { d[i] = f(s[i]) }
                }
            }
        }
        return out
    }

    /// self[i] = f(self[i]) for every element (an indirect call per element, as `map`).
    public mutating func mapInPlace(_ f: (Float) -> Float) {
        withUnsafeMutableBufferPointer { buf in
            let d = buf.baseAddress!
            Threads.parallelFor(buf.count, minChunk: 1 << 15) { r in
                for i in r { d[i] = f(d[i]) }
            }
        }
    }

    public static prefix func - (a: Tensor) -> Tensor { a.applying(NegKernel()) }
    /// 1/√x (exact division, not the hardware estimate).
    public func rsqrt() -> Tensor { applying(RsqrtKernel()) }
    public func squared() -> Tensor { applying(SquareKernel()) }
    public func reciprocal() -> Tensor { applying(ReciprocalKernel()) }
    /// Clamped to [min, max] (either bound may be nil); NaN stays NaN, as torch.clamp.
    public func clamped(min lo: Float? = nil, max hi: Float? = nil) -> Tensor {
        let l = lo ?? -.infinity, h = hi ?? .infinity
        return applying(ClampKernel(lo: l, hi: h))
    }
    /// −1, 0 or 1; NaN stays NaN.
    public func sign() -> Tensor { applying(SignKernel()) }
}

// Math functions whose names are also global scalar functions (abs, exp, log, sqrt, pow, and
// tanh in Activations.swift) are free functions, as torch.exp(x): a *method* named `exp` would
// shadow Foundation's `exp` inside every `extension Tensor` of the package (a compile error
// there), while a free overload on Tensor coexists with the scalar ones. For the same reason the
// reductions are `amax`/`amin` (torch's names), not `max`/`min`.

public func abs(_ x: Tensor) -> Tensor { x.applying(AbsKernel()) }

/// eˣ through the vectorised `fa_exp` (≈2 ulp; flushes to 0 below −87.3, as expf underflows).
public func exp(_ x: Tensor) -> Tensor {
    var out = Tensor(uninitialized: x.shape)
    x.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { d in
            let sp = s.baseAddress!, dp = d.baseAddress!
            Threads.parallelFor(s.count, minChunk: 1 << 16) { r in
                fa_exp(sp + r.lowerBound, dp + r.lowerBound, r.count)
            }
        }
    }
    return out
}

/// Natural logarithm; −inf at 0 and NaN below, as torch.
public func log(_ x: Tensor) -> Tensor { x.map { Foundation.log($0) } }

public func sqrt(_ x: Tensor) -> Tensor { x.applying(SqrtKernel()) }

/// xᵖ elementwise; the exponents 2, 1/2, 1 and −1 take exact shortcuts.
public func pow(_ x: Tensor, _ p: Float) -> Tensor {
    switch p {
    case 1: return x
    case 2: return x.squared()
    case 0.5: return sqrt(x)
    case -1: return x.reciprocal()
    default: return x.map { Foundation.pow($0, p) }
    }
}

/// Reference implementations, slow and obvious, that the tests compare the optimised ops with.
/// Not for production use.
public enum Naive {
    /// f(a, b) with broadcasting by explicit multi-indices, one element at a time.
    public static func broadcast(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        let shape = Tensor.broadcastShape(a.shape, b.shape)!
        let n = shape.reduce(1, *)
        var out = [Float](repeating: 0, count: n)
        let av = a.scalars, bv = b.scalars
        for i in 0..<n {
            var rem = i, oa = 0, ob = 0, mulA = 1, mulB = 1
            for d in stride(from: shape.count - 1, through: 0, by: -1) {
                let ix = rem % shape[d]; rem /= shape[d]
                let da = d - (shape.count - a.rank), db = d - (shape.count - b.rank)
                if da >= 0 { oa += (a.shape[da] == 1 ? 0 : ix) * mulA; mulA *= a.shape[da] }
                if db >= 0 { ob += (b.shape[db] == 1 ? 0 : ix) * mulB; mulB *= b.shape[db] }
            }
            out[i] = f(av[oa], bv[ob])
        }
        return Tensor(shape: shape, scalars: out)
    }
}
