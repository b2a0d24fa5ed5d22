// Conv1d and Conv2d: the convolution layers of torch.nn over the functional conv1d / conv2d.
// (Named Conv2d.swift, not Conv.swift: one module cannot hold two files of the same name, and
// the functional kernels already live in Sources/TensorCore/Conv.swift.)

/// A 2-d convolution layer, `torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride,
/// padding, dilation, groups, bias)` with padding_mode 'zeros': N×Cin×H×W → N×Cout×Ho×Wo.
///
/// Keys: `weight` (out×in/groups×kh×kw), `bias` (out) when `bias` is true. Seeded initial
/// values follow torch: U(±1/√fanIn), fanIn = in/groups·kh·kw, for both.
public struct Conv2d: Sendable {
    public let inChannels: Int
    public let outChannels: Int
    public let kernelSize: (Int, Int)
    public let stride: (Int, Int)
    public let padding: (Int, Int)
    public let dilation: (Int, Int)
    public let groups: Int
    public var weight: Tensor
    public var bias: Tensor?

    /// Throws when the channel counts are not divisible by `groups` (torch's ValueError).
    public init(_ p: Parameters, inChannels: Int, outChannels: Int, kernelSize: (Int, Int),
                stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1),
                groups: Int = 1, bias: Bool = true) throws {
        guard groups > 0, inChannels % groups == 0, outChannels % groups == 0 else {
            throw ShapeError.invalid("Conv2d: in_channels \(inChannels) and out_channels \(outChannels) must be divisible by groups \(groups)")
        }
        (self.inChannels, self.outChannels, self.kernelSize) = (inChannels, outChannels, kernelSize)
        (self.stride, self.padding, self.dilation, self.groups) = (stride, padding, dilation, groups)
        let fanIn = inChannels / groups * kernelSize.0 * kernelSize.1
        weight = p.parameter("weight", shape: [outChannels, inChannels / groups, kernelSize.0, kernelSize.1],
                             initializer: .pytorchDefault(fanIn: fanIn))
        self.bias = bias ? p.parameter("bias", shape: [outChannels], initializer: .pytorchDefault(fanIn: fanIn)) : nil
    }

    /// Square kernel, equal stride, padding and dilation on both axes.
    public init(_ p: Parameters, inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1,
                padding: Int = 0, dilation: Int = 1, groups: Int = 1, bias: Bool = true) throws {
        try self.init(p, inChannels: inChannels, outChannels: outChannels, kernelSize: (kernelSize, kernelSize),
                      stride: (stride, stride), padding: (padding, padding), dilation: (dilation, dilation),
                      groups: groups, bias: bias)
    }

    /// "Conv2d(64→32, 3×3)", as errors name the layer.
    public var name: String { "Conv2d(\(inChannels)→\(outChannels), \(kernelSize.0)×\(kernelSize.1))" }

    /// x: N×Cin×H×W → N×Cout×Ho×Wo.
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard x.rank == 4, x.shape[1] == inChannels else {
            throw ShapeError.mismatch(what: name, expected: "N×\(inChannels)×H×W", found: x.shape)
        }
        do {
            return try conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding,
                              dilation: dilation, groups: groups)
        } catch ShapeError.invalid(let message) {
            throw ShapeError.invalid("\(name): " + message)
        }
    }
}

/// A 1-d convolution layer, `torch.nn.Conv1d(in_channels, out_channels, kernel_size, stride,
/// padding, dilation, groups, bias)` with padding_mode 'zeros': N×Cin×L → N×Cout×Lo.
///
/// Keys: `weight` (out×in/groups×k), `bias` (out) when `bias` is true. Seeded initial values
/// follow torch: U(±1/√fanIn), fanIn = in/groups·k, for both.
public struct Conv1d: Sendable {
    public let inChannels: Int
    public let outChannels: Int
    public let kernelSize: Int
    public let stride: Int
    public let padding: Int
    public let dilation: Int
    public let groups: Int
    public var weight: Tensor
    public var bias: Tensor?

    /// Throws when the channel counts are not divisible by `groups` (torch's ValueError).
    public init(_ p: Parameters, inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1,
                padding: Int = 0, dilation: Int = 1, groups: Int = 1, bias: Bool = true) throws {
        guard groups > 0, inChannels % groups == 0, outChannels % groups == 0 else {
            throw ShapeError.invalid("Conv1d: in_channels \(inChannels) and out_channels \(outChannels) must be divisible by groups \(groups)")
        }
        (self.inChannels, self.outChannels, self.kernelSize) = (inChannels, outChannels, kernelSize)
        (self.stride, self.padding, self.dilation, self.groups) = (stride, padding, dilation, groups)
        let fanIn = inChannels / groups * kernelSize
        weight = p.parameter("weight", shape: [outChannels, inChannels / groups, kernelSize],
                             initializer: .pytorchDefault(fanIn: fanIn))
        self.bias = bias ? p.parameter("bias", shape: [outChannels], initializer: .pytorchDefault(fanIn: fanIn)) : nil
    }

    /// "Conv1d(64→32, 3)", as errors name the layer.
    public var name: String { "Conv1d(\(inChannels)→\(outChannels), \(kernelSize))" }

    /// x: N×Cin×L → N×Cout×Lo.
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard x.rank == 3, x.shape[1] == inChannels else {
            throw ShapeError.mismatch(what: name, expected: "N×\(inChannels)×L", found: x.shape)
        }
        do {
            return try conv1d(x, weight: weight, bias: bias, stride: stride, padding: padding,
                              dilation: dilation, groups: groups)
        } catch ShapeError.invalid(let message) {
            throw ShapeError.invalid("\(name): " + message)
        }
    }
}
