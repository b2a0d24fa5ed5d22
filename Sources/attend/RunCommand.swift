import ArgumentParser
import FastAttention
import Foundation
import TensorCore

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Apply a module to features (or an image) and save its output.",
        discussion: """
        A 4-D input is N×C×H×W (a feature map); a 3-D input is N×L×C tokens (sequence modules).
        An image input goes through the image stem first (see `attend map --help`).
        With --weights, parameters load strictly from a PyTorch state_dict saved as safetensors
        under the reference's own keys (missing, unexpected or mis-shaped keys are errors);
        without, they are seeded (--seed). The output is written atomically.

        Examples:
          attend run --module non-local --input feats.npy --output out.npy
          attend run --module non-local --set reduction=4 --weights nl.safetensors \\
                     --input feats.safetensors --key layer3 --output out.safetensors

        Modules with memories (compressive, memformer) carry them explicitly: --segments N
        splits L (H·W for a map, raster order) into N equal segments run in order, each from
        the memories the previous one left, and the memories after the last segment are saved
        beside the output as OUTPUT-STEM.memories.safetensors; --memories starts from such a
        file instead of the module's initial memories (to continue over the next file):
          attend run --module compressive --input seq.npy --segments 4 --output out.npy
          attend run --module compressive --input next.npy --memories out.memories.safetensors \\
                     --output next-out.npy

        Many inputs: give --input a folder or a manifest (.txt/.lst, one path a line) and
        --output a folder; this runs `attend batch` (resumable, summary.csv, shards):
          attend run --module non-local --input photos/ --output feats/
        """
    )

    @Option(help: "Module id.") var module: String
    @Option(name: .customLong("set"), help: "key=value config override, as the reference's constructor kwargs (repeatable).")
    var settings: [String] = []
    @Option(help: "Weights: a safetensors state_dict under the reference's keys.") var weights: String?
    @Option(help: "Input: .npy, .safetensors or a PNG/JPEG image.") var input: String
    @Option(help: "Tensor name inside a .safetensors input (default: 'input' or its only tensor).") var key: String?
    @Option(help: "Output: .npy or .safetensors (key 'output').") var output: String
    @Option(help: "Seed for untrained weights and random draws.") var seed: UInt64 = 0
    @Option(help: "Feature grid (long side) when the input is an image.") var grid = 48
    @Option(help: "Largest image accepted, in pixels.") var maxPixels = 100_000_000
    @Option(help: "Threads (default: all cores).") var threads: Int?
    @Option(help: "Refuse O(N²) modules when N² exceeds this (N = positions).") var maxAttention = AttentionGuard.defaultLimit
    @Option(help: "Modules with memories: split L into this many equal segments, run in order.") var segments = 1
    @Option(help: "Modules with memories: a .safetensors of memories to start from (as saved by a previous run).")
    var memories: String?

    func validate() throws {
        if let t = threads, t < 1 { throw ValidationError("--threads must be ≥ 1") }
        if !(4...1024).contains(grid) { throw ValidationError("--grid must be in 4...1024") }
        // Checked before any work, so a typo does not cost a whole run.
        if !isMany && !["npy", "safetensors"].contains((output as NSString).pathExtension.lowercased()) {
            throw ValidationError("--output \(output): expected a .npy or .safetensors file name")
        }
        if segments < 1 { throw ValidationError("--segments must be ≥ 1") }
    }

    /// A folder or a manifest of inputs (then --output is a folder).
    var isMany: Bool {
        var dir: ObjCBool = false
        if FileManager.default.fileExists(atPath: input, isDirectory: &dir), dir.boolValue { return true }
        return ["txt", "lst"].contains((input as NSString).pathExtension.lowercased())
    }

    func run() throws {
        if let t = threads { Threads.count = t }
        if isMany {
            guard segments == 1, memories == nil, key == nil else {
                throw ValidationError("--segments, --memories and --key take a single input, not a folder or manifest")
            }
            var args = [input, "--module", module, "--out", output, "--seed", String(seed), "--grid", String(grid),
                        "--max-pixels", String(maxPixels), "--max-attention", String(maxAttention)]
            args += settings.flatMap { ["--set", $0] }
            if let weights { args += ["--weights", weights] }
            let batch = try Batch.parse(args)
            try batch.run()
            return
        }
        let t = try Registry.type(id: module)
        let x: Tensor
        if InputFile.isTensorFile(input) {
            x = try InputFile.tensor(input, key: key)
        } else {
            let image = try InputFile.image(input, maxPixels: maxPixels)
            x = ImageStem().features(image, grid: grid)
        }
        try checkRank(x, for: t)
        // A module with memories attends within one segment at a time.
        let positions = x.rank == 4 ? x.shape[2] * x.shape[3] : x.shape[1]
        let checked = t is any SegmentMemoryModule.Type ? [x.shape[0], max(positions / segments, 1), 1] : x.shape
        try AttentionGuard.check(t.info, inputShape: checked, limit: maxAttention)
        let sd = try weights.map(InputFile.weights)
        guard t is any SegmentMemoryModule.Type || (segments == 1 && memories == nil) else {
            throw ValidationError("--segments and --memories are for modules with memories (compressive, memformer); \(module) has none")
        }
        if t is any SegmentMemoryModule.Type {
            return try FileError.naming(input: input, weights: weights) { try runWithMemories(x, weights: sd) }
        }
        let pairs = try Config.settings(from: settings)
        let y = try FileError.naming(input: input, weights: weights) {
            try Registry.make(id: module, settings: pairs, inputShape: x.shape, weights: sd, seed: seed).apply(x)
        }
        try OutputFile.write(y, to: output)
        FileHandle.standardError.write(Data("\(module): \(Shape.format(x.shape)) → \(Shape.format(y.shape)) written to \(output)\n".utf8))
    }

    /// A module with memories: the input's tokens in `segments` equal segments, memories carried
    /// from one to the next (from --memories, else the module's initial ones) and saved beside
    /// the output. The module is built for one segment (its `seq_len` defaults to it).
    func runWithMemories(_ x: Tensor, weights sd: StateDict?) throws {
        let tokens = x.rank == 4 ? x.mapToTokens() : x                                // N, L, C
        let (n, l, c) = (tokens.shape[0], tokens.shape[1], tokens.shape[2])
        guard l % segments == 0 else {
            throw ValidationError("--segments \(segments) does not divide L = \(l) (\(x.rank == 4 ? "H·W of the map" : "the token count"))")
        }
        let m = try Registry.make(id: module, settings: try Config.settings(from: settings), inputShape: [n, l / segments, c],
                                  weights: sd, seed: seed)
        guard let stateful = m as? any SegmentMemoryModule else { preconditionFailure("checked by the caller") }
        let start = try memories.map { try InputFile.weights($0).tensors }
        let (out, state) = try stateful.runSegments(tokens, segments: segments, memories: start)   // N, L, C′
        let y = x.rank == 4 && out.rank == 3 && out.shape[1] == l ? out.tokensToMap(height: x.shape[2], width: x.shape[3]) : out
        let url = URL(fileURLWithPath: output)
        let statePath = url.deletingPathExtension().appendingPathExtension("memories.safetensors")
        try OutputFile.write(y, to: output)
        try SafeTensors.write(StateDict(tensors: state), to: statePath)
        let sizes = state.keys.sorted().map { "\($0) \(Shape.format(state[$0]!.shape))" }.joined(separator: ", ")
        FileHandle.standardError.write(Data("\(module): \(Shape.format(x.shape)) in \(segments) segment(s) → \(Shape.format(y.shape)) written to \(output); memories (\(sizes)) to \(statePath.path)\n".utf8))
    }

    func checkRank(_ x: Tensor, for t: any AttentionModule.Type) throws {
        let kind = t.info.kind
        // Sequence modules also take maps (flattened to raster-order tokens and back).
        let ok = x.rank == 4 || (x.rank == 3 && kind != .spatial)
        if !ok {
            throw InputError.rank(path: input, shape: x.shape, module: t.info.id,
                                  kind: kind == .spatial ? "N×C×H×W feature maps" :
                                        kind == .sequence ? "N×L×C tokens" : "N×C×H×W maps or N×L×C tokens")
        }
    }
}
