// A 1×1 convolution that reads and writes either layout without a transpose pass:
// maps (N×C×H×W) in, tokens (N×L×C) out, and back. Most modules project with 1×1 convs and
// then attend over positions, so this saves a copy on both sides of every attention kernel.

import TensorCore

/// `nn.Conv2d(in, out, kernel_size=1)` with keys `weight` (out×in×1×1) and `bias` (out).
public struct PointwiseConv {
    public let weight: Tensor      // out, in, 1, 1
    public let bias: Tensor?       // out
    public let inChannels: Int
    public let outChannels: Int

    public init(_ p: Parameters, inChannels: Int, outChannels: Int, bias: Bool = true,
                weight initialWeight: Tensor? = nil, initialBias: Tensor? = nil) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        let shape = [outChannels, inChannels, 1, 1]
        weight = p.parameter("weight", shape: shape,
                             initializer: initialWeight.map { .tensor($0) } ?? .pytorchDefault(fanIn: inChannels))
        self.bias = bias ? p.parameter("bias", shape: [outChannels],
                                       initializer: initialBias.map { .tensor($0) } ?? .pytorchDefault(fanIn: inChannels)) : nil
    }

    /// N×C×H×W → N×(H·W)×out: per image, tokens = xᵀ Wᵀ (+ b), one GEMM.
    public func tokens(_ x: Tensor) -> Tensor {
        let n = x.shape[0], l = x.shape[2] * x.shape[3]
        var out = Tensor(uninitialized: [n, l, outChannels])
        x.withUnsafeBufferPointer { xp in
            weight.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in
                    for b in 0..<n {
                        BLAS.gemm(transA: true, transB: true, m: l, n: outChannels, k: inChannels,
                                  a: xp.baseAddress! + b * inChannels * l, lda: l,
                                  b: wp.baseAddress!, ldb: inChannels,
                                  c: op.baseAddress! + b * l * outChannels, ldc: outChannels)
                    }
                    if let bias { addRowBias(op.baseAddress!, rows: n * l, cols: outChannels, bias) }
                }
            }
        }
        return out   // N, L, out
    }

    /// N×L×in tokens → N×out×H×W map: per image, W · tokensᵀ (+ b), one GEMM.
    public func map(fromTokens t: Tensor, height: Int, width: Int) -> Tensor {
        let n = t.shape[0], l = t.shape[1]
        precondition(l == height * width && t.shape[2] == inChannels)
        var out = Tensor(uninitialized: [n, outChannels, height, width])
        t.withUnsafeBufferPointer { tp in
            weight.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in
                    for b in 0..<n {
                        BLAS.gemm(transB: true, m: outChannels, n: l, k: inChannels,
                                  a: wp.baseAddress!, lda: inChannels,
                                  b: tp.baseAddress! + b * l * inChannels, ldb: inChannels,
                                  c: op.baseAddress! + b * outChannels * l, ldc: l)
                    }
                    if let bias {
                        bias.withUnsafeBufferPointer { bp in
                            for b in 0..<n {
                                for o in 0..<outChannels {
                                    let row = op.baseAddress! + (b * outChannels + o) * l
                                    let v = bp[o]
                                    for j in 0..<l { row[j] += v }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out   // N, out, H, W
    }

    /// N×C×H×W → N×out×H×W.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let n = x.shape[0], h = x.shape[2], w = x.shape[3], l = h * w
        var out = Tensor(uninitialized: [n, outChannels, h, w])
        x.withUnsafeBufferPointer { xp in
            weight.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in
                    for b in 0..<n {
                        BLAS.gemm(m: outChannels, n: l, k: inChannels, a: wp.baseAddress!, lda: inChannels,
                                  b: xp.baseAddress! + b * inChannels * l, ldb: l,
                                  c: op.baseAddress! + b * outChannels * l, ldc: l)
                    }
                    if let bias {
                        bias.withUnsafeBufferPointer { bp in
                            for r in 0..<(n * outChannels) {
                                let row = op.baseAddress! + r * l, v = bp[r % outChannels]
                                for j in 0..<l { row[j] += v }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// One position's projection: out = W x_i (+ b), for maps (O(in·out)).
    public func project(_ x: Tensor, batch: Int, position: Int) -> [Float] {
        let l = x.shape[2] * x.shape[3]
        var out = [Float](repeating: 0, count: outChannels)
        x.withUnsafeBufferPointer { xp in
            weight.withUnsafeBufferPointer { wp in
                for o in 0..<outChannels {
                    var s: Float = bias.map { $0.withUnsafeBufferPointer { $0[o] } } ?? 0
                    for c in 0..<inChannels { s += wp[o * inChannels + c] * xp[(batch * inChannels + c) * l + position] }
                    out[o] = s
                }
            }
        }
        return out
    }
}

/// rows×cols matrix += bias (cols) on every row.
func addRowBias(_ p: UnsafeMutablePointer<Float>, rows: Int, cols: Int, _ bias: Tensor) {
    bias.withUnsafeBufferPointer { bp in
        for r in 0..<rows {
            let row = p + r * cols
            for c in 0..<cols { row[c] += bp[c] }
        }
    }
}
