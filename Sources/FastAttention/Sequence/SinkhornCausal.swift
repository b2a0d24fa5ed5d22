// The causal variant of SinkhornSelfAttention (`SinkhornCausalAttention`, sinkhorn-transformer 0.11.4).

import Foundation
import TensorCore

extension SinkhornSelfAttention {
    func causalForward(_ x: Tensor) throws -> Tensor {
        throw ModuleError.unsupported(module: Self.info.id, message: "causal=true is not implemented yet")
    }

    func causalMapRow(_ x: Tensor, position: Int, heads: [Int]) throws -> [Float] {
        throw ModuleError.unsupported(module: Self.info.id, message: "causal=true is not implemented yet")
    }
}
