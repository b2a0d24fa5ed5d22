// LayerNorm: torch.nn's layer normalisation over the trailing normalized_shape dims.

/// Layer normalisation, `torch.nn.LayerNorm(normalized_shape, eps, elementwise_affine, bias)`:
/// each leading index is normalised over the trailing `normalizedShape` dims (biased variance),
/// then scaled and shifted elementwise. For tokens N×L×C, `normalizedShape` is `[C]`.
///
/// Keys: `weight` and `bias`, both of shape `normalizedShape`, when `elementwiseAffine`
/// (`bias` only when `bias` is true, as torch ≥ 2.1). Seeded: weight 1, bias 0.
public struct LayerNorm: Sendable {
    public let normalizedShape: [Int]
    public let eps: Float
    public var weight: Tensor?
    public var bias: Tensor?

    public init(_ p: Parameters, normalizedShape: [Int], eps: Float = 1e-5, elementwiseAffine: Bool = true,
                bias: Bool = true) {
        (self.normalizedShape, self.eps) = (normalizedShape, eps)
        if elementwiseAffine {
            weight = p.parameter("weight", shape: normalizedShape, initializer: .ones)
            if bias { self.bias = p.parameter("bias", shape: normalizedShape, initializer: .zeros) }
        }
    }

    /// `LayerNorm(p, normalizedShape: C)` for the common last-dim case.
    public init(_ p: Parameters, normalizedShape: Int, eps: Float = 1e-5, elementwiseAffine: Bool = true,
                bias: Bool = true) {
        self.init(p, normalizedShape: [normalizedShape], eps: eps, elementwiseAffine: elementwiseAffine, bias: bias)
    }

    public var name: String { "LayerNorm(\(normalizedShape.map(String.init).joined(separator: "×")))" }

    /// x: *×normalizedShape → same shape.
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard x.rank >= normalizedShape.count, Array(x.shape.suffix(normalizedShape.count)) == normalizedShape else {
            throw ShapeError.mismatch(what: name, expected: "*×" + Shape.format(normalizedShape), found: x.shape)
        }
        return try layerNorm(x, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps)
    }
}
