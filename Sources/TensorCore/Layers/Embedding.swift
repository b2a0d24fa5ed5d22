// Embedding: torch.nn's lookup table from integer ids to rows of a weight matrix.

/// A lookup table, `torch.nn.Embedding(num_embeddings, embedding_dim, padding_idx)`: each index
/// selects a row of `weight`; indices of shape S give S×embeddingDim.
///
/// Keys: `weight` (numEmbeddings×embeddingDim). Seeded: N(0, 1), as torch, with the
/// `paddingIdx` row zeroed when given (it only affects initialisation and training in torch).
public struct Embedding: Sendable {
    public let numEmbeddings: Int
    public let embeddingDim: Int
    public let paddingIdx: Int?
    public var weight: Tensor

    public init(_ p: Parameters, numEmbeddings: Int, embeddingDim: Int, paddingIdx: Int? = nil) {
        (self.numEmbeddings, self.embeddingDim) = (numEmbeddings, embeddingDim)
        self.paddingIdx = paddingIdx.map { $0 < 0 ? $0 + numEmbeddings : $0 }
        weight = p.parameter("weight", shape: [numEmbeddings, embeddingDim], initializer: .normal(std: 1))
        if let row = self.paddingIdx, !p.isLoading, row >= 0, row < numEmbeddings {
            weight.withUnsafeMutableBufferPointer { w in
                (w.baseAddress! + row * embeddingDim).update(repeating: 0, count: embeddingDim)
            }
        }
    }

    public var name: String { "Embedding(\(numEmbeddings), \(embeddingDim))" }

    /// `indices` in row-major order of `shape` → shape×embeddingDim.
    public func callAsFunction(indices: [Int], shape: [Int]) throws -> Tensor {
        guard shape.reduce(1, *) == indices.count, shape.allSatisfy({ $0 >= 0 }) else {
            throw ShapeError.invalid("\(name): \(indices.count) indices do not fill shape \(Shape.format(shape))")
        }
        if let bad = indices.first(where: { $0 < 0 || $0 >= numEmbeddings }) {
            throw ShapeError.invalid("\(name): index \(bad) out of range 0..<\(numEmbeddings)")
        }
        var out = Tensor(uninitialized: shape + [embeddingDim])
        let d = embeddingDim
        if out.count == 0 { return out }
        weight.withUnsafeBufferPointer { w in
            out.withUnsafeMutableBufferPointer { o in
                for (i, ix) in indices.enumerated() {
                    (o.baseAddress! + i * d).update(from: w.baseAddress! + ix * d, count: d)
                }
            }
        }
        return out
    }

    /// Indices held as whole numbers in a float tensor (as integer tensors load from a
    /// safetensors file) → x.shape×embeddingDim.
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let values = x.scalars
        guard let bad = values.first(where: { $0.rounded() != $0 || abs($0) > 1e9 }) else {
            return try self(indices: values.map { Int($0) }, shape: x.shape)
        }
        throw ShapeError.invalid("\(name): index \(bad) is not an integer")
    }
}
