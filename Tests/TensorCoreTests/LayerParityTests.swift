// Parity with PyTorch: every layer and functional op against Fixtures/layers.safetensors,
// written by Tools/reference/layers.py (torch 2.x, CPU, float32, eval mode).
//
// Each case carries its torch keyword arguments as JSON in the file's metadata. Layers are built
// from `Parameters.loading` of the case's own state_dict, and `finish()` runs the strict check,
// so this also proves that every key name and shape is PyTorch's (num_batches_tracked included).

import Foundation
import TensorCore
import TestSupport
import XCTest

final class LayerParityTests: XCTestCase {
    /// One fixture case: torch op name, its keyword arguments, input, expected output, weights.
    struct Case {
        let name: String
        let op: String
        let args: [String: Any]
        let input: Tensor
        let output: Tensor
        let weights: StateDict

        func int(_ key: String, _ fallback: Int? = nil) -> Int { (args[key] as? Int) ?? fallback! }
        func bool(_ key: String, _ fallback: Bool) -> Bool { (args[key] as? Bool) ?? fallback }
        func float(_ key: String, _ fallback: Float) -> Float { (args[key] as? Double).map(Float.init) ?? fallback }
        func ints(_ key: String) -> [Int] { (args[key] as? [Int]) ?? [(args[key] as? Int)!] }
        /// torch's `_pair`: an int or a two-element list; `fallback` when absent or None.
        func pair(_ key: String, _ fallback: (Int, Int)? = nil) -> (Int, Int) {
            if let v = args[key] as? Int { return (v, v) }
            if let v = args[key] as? [Int], v.count == 2 { return (v[0], v[1]) }
            return fallback!
        }
    }

    static let cases: Result<[Case], Error> = Result {
        let sd = try SafeTensors.read(contentsOf: fixturesDirectory().appendingPathComponent("layers.safetensors"))
        let names = try JSONSerialization.jsonObject(with: Data((sd.metadata["cases"] ?? "[]").utf8)) as? [String] ?? []
        return try names.map { name in
            let config = try JSONSerialization.jsonObject(with: Data((sd.metadata[name] ?? "{}").utf8)) as? [String: Any] ?? [:]
            var weights = sd.scoped(name)
            weights.tensors["input"] = nil
            weights.tensors["output"] = nil
            weights.metadata = [:]
            return Case(name: name, op: config["op"] as? String ?? "?", args: config["args"] as? [String: Any] ?? [:],
                        input: sd["\(name).input"]!, output: sd["\(name).output"]!, weights: weights)
        }
    }

    /// Runs one case through our layer or op; the weights go through strict loading.
    func run(_ c: Case) throws -> Tensor {
        let p = Parameters.loading(c.weights)
        let x = c.input
        let y: Tensor
        switch c.op {
        case "Linear":
            y = try Linear(p, inFeatures: c.int("in_features"), outFeatures: c.int("out_features"), bias: c.bool("bias", true))(x)
        case "Conv2d":
            y = try Conv2d(p, inChannels: c.int("in_channels"), outChannels: c.int("out_channels"),
                           kernelSize: c.pair("kernel_size"), stride: c.pair("stride", (1, 1)), padding: c.pair("padding", (0, 0)),
                           dilation: c.pair("dilation", (1, 1)), groups: c.int("groups", 1), bias: c.bool("bias", true))(x)
        case "Conv1d":
            y = try Conv1d(p, inChannels: c.int("in_channels"), outChannels: c.int("out_channels"),
                           kernelSize: c.int("kernel_size"), stride: c.int("stride", 1), padding: c.int("padding", 0),
                           dilation: c.int("dilation", 1), groups: c.int("groups", 1), bias: c.bool("bias", true))(x)
        case "BatchNorm2d":
            y = try BatchNorm2d(p, numFeatures: c.int("num_features"), eps: c.float("eps", 1e-5), affine: c.bool("affine", true),
                                trackRunningStats: c.bool("track_running_stats", true))(x)
        case "BatchNorm1d":
            y = try BatchNorm1d(p, numFeatures: c.int("num_features"), eps: c.float("eps", 1e-5), affine: c.bool("affine", true),
                                trackRunningStats: c.bool("track_running_stats", true))(x)
        case "LayerNorm":
            y = try LayerNorm(p, normalizedShape: c.ints("normalized_shape"), eps: c.float("eps", 1e-5),
                              elementwiseAffine: c.bool("elementwise_affine", true))(x)
        case "GroupNorm":
            y = try GroupNorm(p, numGroups: c.int("num_groups"), numChannels: c.int("num_channels"), eps: c.float("eps", 1e-5),
                              affine: c.bool("affine", true))(x)
        case "Embedding":
            y = try Embedding(p, numEmbeddings: c.int("num_embeddings"), embeddingDim: c.int("embedding_dim"))(x)
        case "avg_pool2d":
            y = try avgPool2d(x, kernel: c.pair("kernel_size"), stride: c.pair("stride", c.pair("kernel_size")),
                              padding: c.pair("padding", (0, 0)), ceilMode: c.bool("ceil_mode", false),
                              countIncludePad: c.bool("count_include_pad", true))
        case "max_pool2d":
            y = try maxPool2d(x, kernel: c.pair("kernel_size"), stride: c.pair("stride", c.pair("kernel_size")),
                              padding: c.pair("padding", (0, 0)), dilation: c.pair("dilation", (1, 1)), ceilMode: c.bool("ceil_mode", false))
        case "adaptive_avg_pool2d": y = try adaptiveAvgPool2d(x, outputSize: c.pair("output_size"))
        case "adaptive_max_pool2d": y = try adaptiveMaxPool2d(x, outputSize: c.pair("output_size"))
        case "avg_pool1d":
            y = try avgPool1d(x, kernel: c.int("kernel_size"), stride: c.int("stride", c.int("kernel_size")),
                              padding: c.int("padding", 0), ceilMode: c.bool("ceil_mode", false),
                              countIncludePad: c.bool("count_include_pad", true))
        case "max_pool1d":
            y = try maxPool1d(x, kernel: c.int("kernel_size"), stride: c.int("stride", c.int("kernel_size")),
                              padding: c.int("padding", 0), dilation: c.int("dilation", 1), ceilMode: c.bool("ceil_mode", false))
        case "interpolate":
            let mode = try XCTUnwrap(InterpolationMode(rawValue: c.args["mode"] as? String ?? "nearest"))
            let align = c.bool("align_corners", false)
            if let s = c.args["scale_factor"] as? [Double] {
                y = try interpolate(x, scaleFactor: (s[0], s[1]), mode: mode, alignCorners: align)
            } else {
                y = try interpolate(x, size: c.pair("size"), mode: mode, alignCorners: align)
            }
        default:
            throw ShapeError.invalid("unknown fixture op \(c.op) in case \(c.name)")
        }
        try p.finish()
        return y
    }

    func check(ops: Set<String>, file: StaticString = #filePath, line: UInt = #line) throws {
        let cases = try Self.cases.get().filter { ops.contains($0.op) }
        XCTAssertFalse(cases.isEmpty, "no fixture case for \(ops.sorted())", file: file, line: line)
        for c in cases {
            do {
                assertClose(try run(c), c.output, rtol: 1e-5, c.name, file: file, line: line)
            } catch {
                XCTFail("\(c.name): \(error)", file: file, line: line)
            }
        }
    }

    func testLinear() throws { try check(ops: ["Linear"]) }
    func testConvolutions() throws { try check(ops: ["Conv2d", "Conv1d"]) }
    func testBatchNorm() throws { try check(ops: ["BatchNorm2d", "BatchNorm1d"]) }
    func testLayerAndGroupNorm() throws { try check(ops: ["LayerNorm", "GroupNorm"]) }
    func testEmbedding() throws { try check(ops: ["Embedding"]) }
    func testPooling() throws {
        try check(ops: ["avg_pool2d", "max_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "avg_pool1d", "max_pool1d"])
    }
    func testInterpolate() throws { try check(ops: ["interpolate"]) }

    /// Every case in the file is one of the ops above (a new case cannot go unchecked).
    func testFixtureHasOnlyKnownOps() throws {
        let known: Set<String> = ["Linear", "Conv2d", "Conv1d", "BatchNorm2d", "BatchNorm1d", "LayerNorm", "GroupNorm",
                                  "Embedding", "avg_pool2d", "max_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
                                  "avg_pool1d", "max_pool1d", "interpolate"]
        let cases = try Self.cases.get()
        XCTAssertGreaterThanOrEqual(cases.count, 30)
        for c in cases { XCTAssertTrue(known.contains(c.op), "\(c.name): unknown op \(c.op)") }
    }
}
