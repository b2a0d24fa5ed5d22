// Activation functions with torch.nn.functional semantics (eval mode), and Double-precision
// naive references for the ones that take a fast path (`fa_exp`).

import CKernels
import Foundation

/// How `gelu` is computed: torch's `approximate='none'` (erf) or `'tanh'`.
public enum GeluApproximation: String, Sendable {
    case none
    case tanh
}

struct ReluKernel: UnaryKernel { @inline(__always) func callAsFunction(_ x: Float) -> Float { x > 0 ? x : (x != x ? x : 0) } }
struct LeakyReluKernel: UnaryKernel {
    let slope: Float
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x >= 0 ? x : x * slope }
}
struct HardSigmoidKernel: UnaryKernel {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { let y = x + 3; return (y < 0 ? 0 : (y > 6 ? 6 : y)) / 6 }
}
struct HardSwishKernel: UnaryKernel {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { let y = x + 3; return x * (y < 0 ? 0 : (y > 6 ? 6 : y)) / 6 }
}

extension Tensor {
    /// max(x, 0); NaN stays NaN, as torch.relu.
    public func relu() -> Tensor { applying(ReluKernel()) }

    /// self = max(self, 0) in place (F.relu(inplace=True)); NaN stays NaN. A select, not a
    /// branch, so it vectorises (a `where x < 0` loop mispredicts on every other random sign).
    public mutating func formRelu() {
        withUnsafeMutableBufferPointer { buf in
            let p = buf.baseAddress!
            Threads.parallelFor(buf.count, minChunk: 1 << 15) { r in
                for i in r { p[i] = p[i] < 0 ? 0 : p[i] }
            }
        }
    }

    /// self = max(self + other, 0) in one pass (a residual then ReLU); same shapes only.
    public mutating func formRelu(adding other: Tensor) {
        precondition(shape == other.shape, "formRelu(adding:) needs equal shapes, got \(shape) and \(other.shape)")
        other.withUnsafeBufferPointer { ob in
            withUnsafeMutableBufferPointer { buf in
                let p = buf.baseAddress!, q = ob.baseAddress!
                Threads.parallelFor(buf.count, minChunk: 1 << 15) { r in
                    for i in r { let v = p[i] + q[i]; p[i] = v < 0 ? 0 : v }
                }
            }
        }
    }

    /// self += max(other, 0) in one pass (a ReLU branch added to a residual); same shapes only.
    public mutating func formSum(withReluOf other: Tensor) {
        precondition(shape == other.shape, "formSum(withReluOf:) needs equal shapes, got \(shape) and \(other.shape)")
        other.withUnsafeBufferPointer { ob in
            withUnsafeMutableBufferPointer { buf in
                let p = buf.baseAddress!, q = ob.baseAddress!
                Threads.parallelFor(buf.count, minChunk: 1 << 15) { r in
                    for i in r { p[i] += q[i] < 0 ? 0 : q[i] }
                }
            }
        }
    }

    /// min(max(x, 0), 6), as torch.nn.ReLU6.
    public func relu6() -> Tensor { applying(ClampKernel(lo: 0, hi: 6)) }

    /// x for x ≥ 0, slope·x below (torch default slope 0.01).
    public func leakyRelu(negativeSlope: Float = 0.01) -> Tensor { applying(LeakyReluKernel(slope: negativeSlope)) }

    /// x for x > 0, α(eˣ − 1) otherwise (expm1, as torch).
    public func elu(alpha: Float = 1) -> Tensor { map { $0 > 0 ? $0 : alpha * Foundation.expm1($0) } }

    /// torch's default GELU is the exact x·Φ(x) = x/2·(1 + erf(x/√2)); `.tanh` is the
    /// approximation x/2·(1 + tanh(√(2/π)(x + 0.044715x³))).
    public func gelu(approximate: GeluApproximation = .none) -> Tensor {
        switch approximate {
        case .none:
            let r: Float = 0.70710678118654752
            return map { 0.5 * $0 * (1 + Foundation.erf($0 * r)) }
        case .tanh:
            let c: Float = 0.79788456080286536
            return map { 0.5 * $0 * (1 + Foundation.tanh(c * ($0 + 0.044715 * $0 * $0 * $0))) }
        }
    }

    /// 1/(1 + e⁻ˣ), with e⁻ˣ from the vectorised `fa_exp`. Saturates to exactly 0 and 1.
    public func sigmoid() -> Tensor {
        var out = -self
        out.withUnsafeMutableBufferPointer { buf in
            let p = buf.baseAddress!
            Threads.parallelFor(buf.count, minChunk: 1 << 15) { r in
                let q = p + r.lowerBound
                fa_exp(q, q, r.count)
                for i in 0..<r.count { q[i] = 1 / (1 + q[i]) }
            }
        }
        return out
    }

    /// x·sigmoid(x) (a.k.a. swish).
    public func silu() -> Tensor {
        var s = sigmoid()
        s *= self
        return s
    }

    /// log(1 + e^{βx})/β, and x itself where βx > threshold, exactly as torch.nn.functional.softplus.
    public func softplus(beta: Float = 1, threshold: Float = 20) -> Tensor {
        map { x in
            let bx = beta * x
            return bx > threshold ? x : Foundation.log1p(Foundation.exp(bx)) / beta
        }
    }

    /// relu6(x + 3)/6, as timm's hard_sigmoid and torch.nn.Hardsigmoid (up to rounding).
    public func hardSigmoid() -> Tensor { applying(HardSigmoidKernel()) }

    /// x·relu6(x + 3)/6, as torch.nn.Hardswish.
    public func hardSwish() -> Tensor { applying(HardSwishKernel()) }
}

/// Hyperbolic tangent elementwise (a free function: see the note in Elementwise.swift).
public func tanh(_ x: Tensor) -> Tensor { x.map { Foundation.tanh($0) } }

extension Naive {
    /// f evaluated in Double, element by element.
    public static func unary(_ x: Tensor, _ f: (Double) -> Double) -> Tensor {
        Tensor(shape: x.shape, scalars: x.scalars.map { Float(f(Double($0))) })
    }

    public static func sigmoid(_ x: Tensor) -> Tensor { unary(x) { 1 / (1 + Foundation.exp(-$0)) } }
    public static func silu(_ x: Tensor) -> Tensor { unary(x) { $0 / (1 + Foundation.exp(-$0)) } }
    public static func gelu(_ x: Tensor) -> Tensor { unary(x) { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) } }
    public static func geluTanh(_ x: Tensor) -> Tensor {
        unary(x) { 0.5 * $0 * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) }
    }
    public static func softplus(_ x: Tensor, beta: Double = 1, threshold: Double = 20) -> Tensor {
        unary(x) { beta * $0 > threshold ? $0 : Foundation.log1p(Foundation.exp(beta * $0)) / beta }
    }
}
