// The registry: every module by its modules.tsv id.

import TensorCore

public enum Registry {
    /// Every registered module type, in modules.tsv order.
    public static let modules: [any AttentionModule.Type] = [
        NonLocal2d.self,
        CBAM.self,
        CrissCrossAttention.self,
        GlobalContextBlock.self,
        EfficientAttention.self,
        EMAU.self,
        AutoNL.self,
        FastAttModule.self,
        InterlacedSparseAttention.self,
        AxialAttention.self,
        SCRAM.self,
        PermutohedralAttention.self,
        TensorLowRankReconstruction.self,
        FracTAL.self,
        LinearTransformerAttention.self,
        PerformerFavorAttention.self,
        PerformerAttention.self,
        MemoryCompressedAttention.self,
        SynthesizerAttention.self,
        InputIndependentAttention.self,
        LinformerAttention.self,
        SetTransformer.self,
        KroneckerSelfAttention.self,
        LambdaLayer.self,
        SlimPerformerAttention.self,
        FastWeightsAttention.self,
        RandomFeatureAttention.self,
        MemoryCompressedAttention.self,
        NystromformerAttention.self,
        StarTransformer.self,
        SparseTransformerAttention.self,
        ETC.self,
        GMAT.self,
        BinaryPartitionTransformer.self,
        TransformerOnDietAttention.self,
        LongformerSelfAttention.self,
        MultiscaleRetinaAttention.self,
        JukeboxFactoredAttention.self,
        BigBirdBlockSparseAttention.self,
        LSHSelfAttention.self,
        SmyrfAttention.self,
        ProductKeyMemory.self,
        CompressiveAttention.self,
        TaLKConv.self,
        SparseAdaptiveConnection.self,
        Memformer.self,
        InformerProbSparseAttention.self,
        RoutingAttention.self,
        ClusteredAttention.self,
        SinkhornSelfAttention.self,

    ]

    public static var ids: [String] { modules.map { $0.info.id } }

    public static func type(id: String) throws -> any AttentionModule.Type {
        guard let t = modules.first(where: { $0.info.id == id }) else {
            throw ModuleError.unknownModule(id, known: ids)
        }
        return t
    }

    /// Builds module `id` for inputs of `inputShape`, with `settings` (`--set` pairs) over its
    /// defaults. With `weights`, parameters load strictly from it; otherwise they are drawn from
    /// `seed` (with a similarity initialisation where the module has query/key projections).
    public static func make(id: String, settings: [String: String] = [:], inputShape: [Int],
                            weights: StateDict? = nil, seed: UInt64 = 0) throws -> any AttentionModule {
        let t = try type(id: id)
        let config = try Config(module: id, schema: t.configSchema, settings: settings)
        let p = weights.map { Parameters.loading($0, seed: seed) } ?? .seeded(seed)
        let m = try t.init(config: config, inputShape: moduleInputShape(t, inputShape), parameters: p)
        try p.finish()
        return m
    }

    /// The parameters and buffers module `id` declares for `inputShape` under `settings`.
    public static func parameterRecords(id: String, settings: [String: String] = [:],
                                        inputShape: [Int]) throws -> [ParameterRecord] {
        let t = try type(id: id)
        let config = try Config(module: id, schema: t.configSchema, settings: settings)
        let p = Parameters.seeded(0)
        _ = try t.init(config: config, inputShape: moduleInputShape(t, inputShape), parameters: p)
        return p.records
    }

    /// A sequence module given a feature map is built for its flattened tokens N×(H·W)×C.
    static func moduleInputShape(_ t: any AttentionModule.Type, _ shape: [Int]) -> [Int] {
        t.info.kind == .sequence && shape.count == 4 ? [shape[0], shape[2] * shape[3], shape[1]] : shape
    }
}
