// Modules that carry memories from one segment of a sequence to the next (compressive,
// memformer). Their state is explicit: a segment goes in with the memories it starts from and
// comes out with the memories the next segment starts from. `callAsFunction` is one segment from
// the initial memories; `attend run --segments N` splits L into N segments and saves the final
// memories beside the output (`--memories` starts from saved ones).

import TensorCore

/// A module whose forward takes memories and returns new ones.
public protocol SegmentMemoryModule: AttentionModule {
    /// The names of the memory tensors, as saved and loaded by `attend run` (e.g. `mem`, `cmem`).
    static var memoryNames: [String] { get }

    /// One segment N×l×C from `memories` (nil: the module's initial memories) → its output and
    /// the memories after it, under `memoryNames`.
    func step(_ x: Tensor, memories: [String: Tensor]?) throws -> (output: Tensor, memories: [String: Tensor])
}

extension SegmentMemoryModule {
    /// Splits tokens N×L×C into `segments` equal consecutive segments and runs them in order,
    /// each starting from the memories the previous one returned. Returns the segment outputs
    /// side by side (N×L×C′) and the memories after the last segment.
    public func runSegments(_ x: Tensor, segments: Int, memories: [String: Tensor]? = nil) throws
        -> (output: Tensor, memories: [String: Tensor]) {
        guard x.rank == 3, segments >= 1, x.shape[1] % segments == 0 else {
            throw ModuleError.badInput(module: Self.info.id,
                                       expected: "N×L×C tokens with L divisible by \(segments) segments", found: x.shape)
        }
        let l = x.shape[1] / segments
        var state = memories
        var outputs: [Tensor] = []
        for s in 0..<segments {
            let (y, next) = try step(x.sliced(axis: 1, range: s * l..<(s + 1) * l), memories: state)  // N, l, C′
            outputs.append(y)
            state = next
        }
        return (Tensor.concatenated(outputs, axis: 1), state ?? [:])                                 // N, L, C′
    }
}
