// Every module runs on feature maps: a sequence module sees an N×C×H×W map as N×(H·W)×C
// tokens in raster order (row-major, L = H·W) and its output is folded back.
//
// Convention for sequence modules' `attentionMap`: the input is tokens N×L×C, the query's
// `column` is the token position (its `row` is 0), and per-query or bases maps come back as
// k×1×L. `map(onGrid:query:)` turns a grid query into that position and the result into k×H×W.

import TensorCore

extension AttentionModule {
    /// Runs the module on `x`: spatial modules directly; a sequence module on a 4-D map through
    /// its raster-order tokens, folded back to N×C′×H×W.
    public func apply(_ x: Tensor) throws -> Tensor {
        guard Self.info.kind == .sequence, x.rank == 4 else { return try self(x) }
        let (h, w) = (x.shape[2], x.shape[3])
        let y = try self(x.mapToTokens())                           // N, L, C′
        guard y.rank == 3, y.shape[1] == h * w else { return y }    // e.g. PMA pools to k seeds
        return y.tokensToMap(height: h, width: w)                   // N, C′, H, W
    }

    /// The attention map for a query cell of a grid, k×H×W, whatever the module's kind.
    public func map(onGrid x: Tensor, query: MapQuery) throws -> AttentionMap {
        guard Self.info.kind == .sequence, x.rank == 4 else { return try attentionMap(x, query: query) }
        let (h, w) = (x.shape[2], x.shape[3])
        guard (0..<h).contains(query.row), (0..<w).contains(query.column) else {
            throw ModuleError.badQuery(module: Self.info.id,
                                       message: "query (row \(query.row), column \(query.column)) is outside the \(h)×\(w) grid")
        }
        var q = query
        q.column = query.row * w + query.column
        q.row = 0
        let m = try attentionMap(x.mapToTokens(), query: q)
        // Only k×1×L maps over the tokens fold onto the grid (a memory-slot grid stays as it is).
        guard m.kind != .channel, m.values.rank == 3, m.values.shape[1] == 1, m.values.shape[2] == h * w else { return m }
        return AttentionMap(kind: m.kind, values: m.values.reshaped([m.values.shape[0], h, w]), labels: m.labels)
    }
}
