// Parameters are pulled from a scoped source while a layer is constructed (as candle's
// `vb.pp("query")`): the PyTorch key sits on the line that uses it, and the same code path
// takes seeded initial values or a checkpoint's tensors.

/// How a parameter is initialised when no checkpoint supplies it.
public enum Initializer: Sendable {
    case zeros
    case ones
    case constant(Float)
    case normal(std: Float)
    /// U(-bound, bound).
    case uniform(bound: Float)
    /// PyTorch's default for Linear/Conv weights and biases: U(-1/√fanIn, 1/√fanIn).
    case pytorchDefault(fanIn: Int)
    /// A tensor computed by the module (e.g. a similarity initialisation W_q = W_k).
    case tensor(Tensor)
}

/// A parameter or buffer a module declared, for `attend info` and strict loading.
public struct ParameterRecord: Sendable, Equatable {
    public enum Kind: String, Sendable { case parameter, buffer }
    public let key: String
    public let shape: [Int]
    public let kind: Kind
}

/// The scoped source of a module's parameters.
///
/// A root `Parameters` is either seeded (values from `Initializer`s drawn in declaration order)
/// or loading (values from a `StateDict`). Child scopes share the root's bookkeeping. After
/// construction, `finish()` performs PyTorch's `load_state_dict(strict=True)` check: every
/// declared key present with its shape, and no key left unused.
public final class Parameters: @unchecked Sendable {
    final class Root {
        var generator: SeededGenerator
        let stateDict: StateDict?
        var records: [ParameterRecord] = []
        var used: Set<String> = []
        var missing: [String] = []
        var mismatched: [WeightsError.Mismatch] = []
        init(generator: SeededGenerator, stateDict: StateDict?) {
            self.generator = generator
            self.stateDict = stateDict
        }
    }

    let root: Root
    public let prefix: String

    init(root: Root, prefix: String) {
        self.root = root
        self.prefix = prefix
    }

    /// Fresh parameters drawn from a seeded generator.
    public static func seeded(_ seed: UInt64) -> Parameters {
        Parameters(root: Root(generator: SeededGenerator(seed: seed), stateDict: nil), prefix: "")
    }

    /// Parameters read from a state dict. Keys absent from it are reported by `finish()`.
    public static func loading(_ stateDict: StateDict, seed: UInt64 = 0) -> Parameters {
        Parameters(root: Root(generator: SeededGenerator(seed: seed), stateDict: stateDict), prefix: "")
    }

    public var isLoading: Bool { root.stateDict != nil }

    /// A child scope: `p.scoped("theta").scoped("conv")` reads keys under `theta.conv.`.
    public func scoped(_ name: String) -> Parameters {
        Parameters(root: root, prefix: key(name) + ".")
    }

    public func key(_ name: String) -> String { prefix + name }

    /// The seeded generator shared by this module tree (for random draws a module makes).
    public func withGenerator<R>(_ body: (inout SeededGenerator) -> R) -> R { body(&root.generator) }

    /// A learnable parameter named `name` in this scope.
    public func parameter(_ name: String, shape: [Int], initializer: Initializer) -> Tensor {
        value(name, shape: shape, initializer: initializer, kind: .parameter, required: true)
    }

    /// A buffer (running statistics, fixed projections, random draws).
    public func buffer(_ name: String, shape: [Int], initializer: Initializer) -> Tensor {
        value(name, shape: shape, initializer: initializer, kind: .buffer, required: true)
    }

    /// A buffer that a checkpoint may carry but need not (a random draw that is otherwise made
    /// from the seed). Returns nil when absent from the checkpoint or when seeded.
    public func optionalBuffer(_ name: String, shape: [Int]) -> Tensor? {
        let k = key(name)
        guard let sd = root.stateDict, let t = sd.tensors[k] else { return nil }
        root.used.insert(k)
        if t.shape != shape {
            root.mismatched.append(.init(key: k, expected: shape, found: t.shape))
            return nil
        }
        return t
    }

    /// A key the reference's state_dict carries that does not affect the forward pass
    /// (`num_batches_tracked`): accepted when present, never required.
    public func ignored(_ name: String) {
        let k = key(name)
        if root.stateDict?.tensors[k] != nil { root.used.insert(k) }
    }

    private func value(_ name: String, shape: [Int], initializer: Initializer,
                       kind: ParameterRecord.Kind, required: Bool) -> Tensor {
        let k = key(name)
        root.records.append(ParameterRecord(key: k, shape: shape, kind: kind))
        if let sd = root.stateDict {
            guard let t = sd.tensors[k] else {
                root.missing.append(k)
                return Tensor(zeros: shape)
            }
            root.used.insert(k)
            if t.shape != shape {
                // PyTorch also refuses a shape change of the same element count.
                root.mismatched.append(.init(key: k, expected: shape, found: t.shape))
                return Tensor(zeros: shape)
            }
            return t
        }
        return Parameters.initialise(shape, initializer, &root.generator)
    }

    static func initialise(_ shape: [Int], _ initializer: Initializer, _ g: inout SeededGenerator) -> Tensor {
        switch initializer {
        case .zeros: return Tensor(zeros: shape)
        case .ones: return Tensor(shape: shape, repeating: 1)
        case .constant(let v): return Tensor(shape: shape, repeating: v)
        case .normal(let std): return .randomNormal(shape, std: std, generator: &g)
        case .uniform(let b): return .randomUniform(shape, low: -b, high: b, generator: &g)
        case .pytorchDefault(let fanIn):
            let b = fanIn > 0 ? 1 / Float(fanIn).squareRoot() : 0
            return .randomUniform(shape, low: -b, high: b, generator: &g)
        case .tensor(let t):
            precondition(t.shape == shape, "initial tensor \(t.shape) for \(shape)")
            return t
        }
    }

    /// Everything declared so far, in declaration order.
    public var records: [ParameterRecord] { root.records }

    /// The strict check of `load_state_dict(strict=True)`: throws one error naming every
    /// missing, unexpected and mis-shaped key. Does nothing for seeded parameters.
    public func finish() throws {
        guard let sd = root.stateDict else { return }
        let unexpected = sd.tensors.keys.filter { !root.used.contains($0) }.sorted()
        if !root.missing.isEmpty || !unexpected.isEmpty || !root.mismatched.isEmpty {
            throw WeightsError.strict(missing: root.missing, unexpected: unexpected, mismatched: root.mismatched)
        }
    }
}
