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

    func validate() throws {
        if let t = threads, t < 1 { throw ValidationError("--threads must be ≥ 1") }
        if !(4...1024).contains(grid) { throw ValidationError("--grid must be in 4...1024") }
        // Checked before any work, so a typo does not cost a whole run.
        if !["npy", "safetensors"].contains((output as NSString).pathExtension.lowercased()) {
            throw ValidationError("--output \(output): expected a .npy or .safetensors file name")
        }
    }

    func run() throws {
        if let t = threads { Threads.count = t }
        let t = try Registry.type(id: module)
        let x: Tensor
        if InputFile.isTensorFile(input) {
            x = try InputFile.tensor(input, key: key)
        } else {
            let image = try InputFile.image(input, maxPixels: maxPixels)
            x = ImageStem().features(image, grid: grid)
        }
        try checkRank(x, for: t)
        try AttentionGuard.check(t.info, inputShape: x.shape, limit: maxAttention)
        let sd = try weights.map(InputFile.weights)
        let pairs = try Config.settings(from: settings)
        let y = try FileError.naming(input: input, weights: weights) {
            try Registry.make(id: module, settings: pairs, inputShape: x.shape, weights: sd, seed: seed).apply(x)
        }
        try OutputFile.write(y, to: output)
        FileHandle.standardError.write(Data("\(module): \(Shape.format(x.shape)) → \(Shape.format(y.shape)) written to \(output)\n".utf8))
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
