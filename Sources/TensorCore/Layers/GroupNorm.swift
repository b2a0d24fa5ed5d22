// GroupNorm: torch.nn's group normalisation over channel groups and all positions.

/// Group normalisation, `torch.nn.GroupNorm(num_groups, num_channels, eps, affine)`: for each
/// batch item, the channels split into `numGroups` groups normalised together over all positions
/// (biased variance), then a per-channel scale and shift. Input N×C×* (maps, sequences, vectors).
///
/// Keys: `weight`, `bias` (C each) when `affine`. Seeded: weight 1, bias 0.
public struct GroupNorm: Sendable {
    public let numGroups: Int
    public let numChannels: Int
    public let eps: Float
    public var weight: Tensor?
    public var bias: Tensor?

    /// Throws when `numChannels` is not divisible by `numGroups` (torch's ValueError).
    public init(_ p: Parameters, numGroups: Int, numChannels: Int, eps: Float = 1e-5, affine: Bool = true) throws {
        guard numGroups > 0, numChannels % numGroups == 0 else {
            throw ShapeError.invalid("GroupNorm: num_channels \(numChannels) must be divisible by num_groups \(numGroups)")
        }
        (self.numGroups, self.numChannels, self.eps) = (numGroups, numChannels, eps)
        if affine {
            weight = p.parameter("weight", shape: [numChannels], initializer: .ones)
            bias = p.parameter("bias", shape: [numChannels], initializer: .zeros)
        }
    }

    public var name: String { "GroupNorm(\(numGroups), \(numChannels))" }

    /// x: N×C×* → same shape.
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard x.rank >= 2, x.shape[1] == numChannels else {
            throw ShapeError.mismatch(what: name, expected: "N×\(numChannels)×*", found: x.shape)
        }
        return try groupNorm(x, groups: numGroups, weight: weight, bias: bias, eps: eps)
    }
}
