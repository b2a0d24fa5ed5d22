// Linear: the fully connected layer of torch.nn, as one GEMM over all leading dims.

/// A fully connected layer, `torch.nn.Linear(in_features, out_features, bias)`:
/// y = x·Wᵀ + b on x of shape *×in → *×out.
///
/// The leading dims are flattened (a reshape, no copy) and the product is a single
/// `cblas_sgemm` with W transposed in the call, not in memory; the bias is written first and
/// the GEMM accumulates onto it.
///
/// Keys: `weight` (out×in), `bias` (out) when `bias` is true. Seeded initial values follow
/// torch: U(±1/√in) for both.
public struct Linear: Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    public var weight: Tensor
    public var bias: Tensor?

    public init(_ p: Parameters, inFeatures: Int, outFeatures: Int, bias: Bool = true) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        weight = p.parameter("weight", shape: [outFeatures, inFeatures], initializer: .pytorchDefault(fanIn: inFeatures))
        self.bias = bias ? p.parameter("bias", shape: [outFeatures], initializer: .pytorchDefault(fanIn: inFeatures)) : nil
    }

    /// "Linear(64→32)", as errors name the layer.
    public var name: String { "Linear(\(inFeatures)→\(outFeatures))" }

    /// x: *×in → *×out.
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard x.rank >= 1, x.shape[x.rank - 1] == inFeatures else {
            throw ShapeError.mismatch(what: name, expected: "*×\(inFeatures)", found: x.shape)
        }
        let rows = x.count / max(inFeatures, 1)
        var y = Tensor(zeros: Array(x.shape.dropLast()) + [outFeatures])
        if y.count == 0 { return y }
        let (n, k) = (outFeatures, inFeatures)
        if let bias {
            bias.withUnsafeBufferPointer { b in
                y.withUnsafeMutableBufferPointer { yp in
                    for r in 0..<rows { (yp.baseAddress! + r * n).update(from: b.baseAddress!, count: n) }
                }
            }
        }
        x.withUnsafeBufferPointer { xp in
            weight.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    // rows×in · (out×in)ᵀ → rows×out
                    BLAS.gemm(transB: true, m: rows, n: n, k: k, a: xp.baseAddress!, lda: k,
                              b: wp.baseAddress!, ldb: k, beta: 1, c: yp.baseAddress!, ldc: n)
                }
            }
        }
        return y
    }
}
