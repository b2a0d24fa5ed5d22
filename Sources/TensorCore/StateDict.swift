// A state dict as PyTorch has it: dotted keys to tensors, plus the file's metadata.

/// Named tensors, converted to float32 on load. Integer and bool tensors (`num_batches_tracked`,
/// `kmeans.initted`) are kept too, converted to float, with their original dtype in `dtypes`.
public struct StateDict: Sendable {
    public var tensors: [String: Tensor]
    /// The dtype each key had in its file (`F32`, `F16`, `BF16`, `F64`, `I64`, `BOOL`, ...).
    public var dtypes: [String: String]
    /// The safetensors `__metadata__` map (string to string).
    public var metadata: [String: String]

    public init(tensors: [String: Tensor] = [:], dtypes: [String: String] = [:], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.dtypes = dtypes
        self.metadata = metadata
    }

    public subscript(key: String) -> Tensor? {
        get { tensors[key] }
        set { tensors[key] = newValue }
    }

    public var keys: [String] { tensors.keys.sorted() }

    /// The keys under `prefix.`, with the prefix removed.
    public func scoped(_ prefix: String) -> StateDict {
        let p = prefix + "."
        var out = StateDict(metadata: metadata)
        for (k, v) in tensors where k.hasPrefix(p) {
            let s = String(k.dropFirst(p.count))
            out.tensors[s] = v
            out.dtypes[s] = dtypes[k]
        }
        return out
    }
}

/// Loading weights: what a user reads when a checkpoint does not fit.
public enum WeightsError: Error, CustomStringConvertible, Equatable {
    public struct Mismatch: Sendable, Equatable {
        public let key: String
        public let expected: [Int]
        public let found: [Int]
    }

    /// `load_state_dict(strict=True)` failed.
    case strict(missing: [String], unexpected: [String], mismatched: [Mismatch])
    /// The file itself is unreadable or malformed (safetensors, npy).
    case malformed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .strict(missing, unexpected, mismatched):
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing keys: " + missing.joined(separator: ", ")) }
            if !unexpected.isEmpty { parts.append("unexpected keys: " + unexpected.joined(separator: ", ")) }
            for m in mismatched {
                parts.append("size mismatch for \(m.key): checkpoint has \(Shape.format(m.found)), module expects \(Shape.format(m.expected))")
            }
            return "weights do not fit the module (strict loading): " + parts.joined(separator: "; ")
        case let .malformed(path, reason):
            return "\(path): \(reason)"
        }
    }
}
