// The four projections of the `AttentionLayer` wrapper that fast-transformers and Informer2020
// share (keys `query_projection`, `key_projection`, `value_projection`, `out_projection`), with
// their config keys `d_model`, `n_heads`, `d_keys`, `d_values`.

import TensorCore

struct AttentionLayerProjections {
    let dModel: Int, nHeads: Int, dKeys: Int, dValues: Int
    let query: Linear, key: Linear, value: Linear, out: Linear

    /// Resolves `d_model` from the N×L×C input (recording it in `config`), `d_keys` and
    /// `d_values` (default d_model // n_heads), and pulls the four Linear layers. Seeded, the key
    /// projection starts equal to the query projection (similarity initialisation).
    init(config: inout Config, inputShape: [Int], parameters p: Parameters, module: String) throws {
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: module, expected: "N×L×C", found: inputShape)
        }
        try config.resolveChannels("d_model", from: inputShape[2])
        dModel = config.int("d_model")
        nHeads = config.int("n_heads")
        guard config.isSet("d_keys") && config.isSet("d_values") || dModel / nHeads > 0 else {
            throw ConfigError.inconsistent(module: module, message: "n_heads=\(nHeads) > d_model=\(dModel) leaves d_model // n_heads = 0")
        }
        dKeys = config.optionalInt("d_keys") ?? dModel / nHeads
        dValues = config.optionalInt("d_values") ?? dModel / nHeads
        query = Linear(p.scoped("query_projection"), inFeatures: dModel, outFeatures: dKeys * nHeads)
        var k = Linear(p.scoped("key_projection"), inFeatures: dModel, outFeatures: dKeys * nHeads)
        if !p.isLoading {
            k.weight = query.weight      // similarity initialisation
            k.bias = query.bias
        }
        key = k
        value = Linear(p.scoped("value_projection"), inFeatures: dModel, outFeatures: dValues * nHeads)
        out = Linear(p.scoped("out_projection"), inFeatures: dValues * nHeads, outFeatures: dModel)
    }
}
