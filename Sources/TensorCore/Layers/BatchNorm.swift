// BatchNorm1d and BatchNorm2d: torch.nn's batch normalisation in eval mode, over the
// functional `batchNorm`. Both share their parameters and differ only in the input ranks taken.

/// The parameters and buffers of torch's `_BatchNorm`, loaded under its key names.
struct BatchNormState: Sendable {
    let numFeatures: Int
    let eps: Float
    var weight, bias, runningMean, runningVar: Tensor?

    init(_ p: Parameters, numFeatures: Int, eps: Float, affine: Bool, trackRunningStats: Bool) {
        (self.numFeatures, self.eps) = (numFeatures, eps)
        if affine {
            weight = p.parameter("weight", shape: [numFeatures], initializer: .ones)
            bias = p.parameter("bias", shape: [numFeatures], initializer: .zeros)
        }
        if trackRunningStats {
            runningMean = p.buffer("running_mean", shape: [numFeatures], initializer: .zeros)
            runningVar = p.buffer("running_var", shape: [numFeatures], initializer: .ones)
            p.ignored("num_batches_tracked")
        }
    }

    func apply(_ x: Tensor) throws -> Tensor {
        try batchNorm(x, runningMean: runningMean, runningVar: runningVar, weight: weight, bias: bias, eps: eps)
    }
}

/// Batch normalisation of N×C×H×W maps, `torch.nn.BatchNorm2d(num_features, eps, affine,
/// track_running_stats)` in eval mode: y = (x − running_mean)/√(running_var + eps)·weight + bias
/// per channel. With `trackRunningStats: false` torch (and this) uses the batch's statistics.
///
/// Keys: `weight`, `bias` (when affine), `running_mean`, `running_var` (buffers, when tracking),
/// and `num_batches_tracked`, accepted and ignored. Seeded: weight 1, bias 0, mean 0, var 1.
public struct BatchNorm2d: Sendable {
    var state: BatchNormState
    public var numFeatures: Int { state.numFeatures }
    public var eps: Float { state.eps }
    public var weight: Tensor? { get { state.weight } set { state.weight = newValue } }
    public var bias: Tensor? { get { state.bias } set { state.bias = newValue } }
    public var runningMean: Tensor? { get { state.runningMean } set { state.runningMean = newValue } }
    public var runningVar: Tensor? { get { state.runningVar } set { state.runningVar = newValue } }

    public init(_ p: Parameters, numFeatures: Int, eps: Float = 1e-5, affine: Bool = true,
                trackRunningStats: Bool = true) {
        state = BatchNormState(p, numFeatures: numFeatures, eps: eps, affine: affine, trackRunningStats: trackRunningStats)
    }

    public var name: String { "BatchNorm2d(\(numFeatures))" }

    /// x: N×C×H×W → same shape.
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard x.rank == 4, x.shape[1] == numFeatures else {
            throw ShapeError.mismatch(what: name, expected: "N×\(numFeatures)×H×W", found: x.shape)
        }
        return try state.apply(x)
    }
}

/// Batch normalisation of N×C vectors or N×C×L sequences, `torch.nn.BatchNorm1d(num_features,
/// eps, affine, track_running_stats)` in eval mode; the same per-channel formula as BatchNorm2d.
///
/// Keys: `weight`, `bias` (when affine), `running_mean`, `running_var` (buffers, when tracking),
/// and `num_batches_tracked`, accepted and ignored. Seeded: weight 1, bias 0, mean 0, var 1.
public struct BatchNorm1d: Sendable {
    var state: BatchNormState
    public var numFeatures: Int { state.numFeatures }
    public var eps: Float { state.eps }
    public var weight: Tensor? { get { state.weight } set { state.weight = newValue } }
    public var bias: Tensor? { get { state.bias } set { state.bias = newValue } }
    public var runningMean: Tensor? { get { state.runningMean } set { state.runningMean = newValue } }
    public var runningVar: Tensor? { get { state.runningVar } set { state.runningVar = newValue } }

    public init(_ p: Parameters, numFeatures: Int, eps: Float = 1e-5, affine: Bool = true,
                trackRunningStats: Bool = true) {
        state = BatchNormState(p, numFeatures: numFeatures, eps: eps, affine: affine, trackRunningStats: trackRunningStats)
    }

    public var name: String { "BatchNorm1d(\(numFeatures))" }

    /// x: N×C or N×C×L → same shape.
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard x.rank == 2 || x.rank == 3, x.shape[1] == numFeatures else {
            throw ShapeError.mismatch(what: name, expected: "N×\(numFeatures) or N×\(numFeatures)×L", found: x.shape)
        }
        return try state.apply(x)
    }
}
