// A tour of FastAttention as a library: build modules by id and by type, load PyTorch weights,
// run them on tensors, and read their attention maps — for a feature map and for tokens.
//
//   swift run library-tour [weights.safetensors]
//
// With a weights file (a state_dict of mmcv's NonLocal2d(32) saved with safetensors), the
// non-local block loads it strictly; without, it is seeded.

import FastAttention
import Foundation
import TensorCore

// 1. A feature map N×C×H×W (here random; in practice a backbone's output, e.g. NPY.read).
var generator = SeededGenerator(seed: 42)
let features = Tensor.randomNormal([1, 32, 12, 16], generator: &generator)

// 2. A module by its modules.tsv id, configured with the reference constructor's kwargs.
let weights = CommandLine.arguments.count > 1
    ? try SafeTensors.read(contentsOf: URL(fileURLWithPath: CommandLine.arguments[1])) : nil
let nonLocal = try Registry.make(id: "non-local", settings: ["reduction": "2"], inputShape: features.shape,
                                 weights: weights, seed: 7)
let y = try nonLocal(features)
print("non-local: \(Shape.format(features.shape)) → \(Shape.format(y.shape))")

// 3. Its map for one query cell: weights over all 12×16 positions, summing to 1.
let map = try nonLocal.attentionMap(features, query: MapQuery(row: 5, column: 9))
print("non-local map: \(map.kind.rawValue) \(Shape.format(map.values.shape)), sum \(map.values.scalars.reduce(0, +))")

// 4. The same by type, with a config built explicitly (keys are checked, unknown ones refused).
let config = try Config(module: NonLocal2d.info.id, schema: NonLocal2d.configSchema,
                        settings: ["mode": "dot_product", "reduction": "4"])
let dot = try NonLocal2d(config: config, inputShape: features.shape, parameters: .seeded(1))
print("non-local dot_product: \(Shape.format(try dot(features).shape))")

// 5. Which keys a checkpoint must carry (PyTorch state_dict names and shapes).
for r in try Registry.parameterRecords(id: "non-local", inputShape: features.shape) {
    print("  \(r.key) \(Shape.format(r.shape))")
}

// 6. A sequence module on tokens N×L×C, and the same module on the map (flattened in raster
//    order and folded back) — every sequence module runs on both.
if Registry.ids.contains("linear-transformer") {
    let tokens = features.mapToTokens()                        // N, L = H·W, C
    let lt = try Registry.make(id: "linear-transformer", settings: ["n_heads": "4"], inputShape: tokens.shape)
    print("linear-transformer on tokens: \(Shape.format(try lt(tokens).shape))")
    print("linear-transformer on the map: \(Shape.format(try lt.apply(features).shape))")
    let m = try lt.map(onGrid: features, query: MapQuery(row: 5, column: 9))
    print("linear-transformer map: \(Shape.format(m.values.shape)) (\(m.labels.first ?? ""))")
}
