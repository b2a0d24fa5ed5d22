import ArgumentParser
import FastAttention
import Foundation
import TensorCore

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Describe a module: paper, config keys, parameters, what its map means.",
        discussion: """
        Parameter names and shapes are the reference's state_dict keys for the given config and
        input channels (--channels, default 64), i.e. what --weights must contain.

        Examples:
          attend info non-local
          attend info non-local --set reduction=4 --channels 256 --json
          attend info sparse-transformer --length 64     (block-sparse modules print their layout)
        """
    )

    @Argument(help: "Module id (see `attend list --ids`).") var id: String
    @Option(name: .customLong("set"), help: "key=value config override (repeatable).") var settings: [String] = []
    @Option(help: "Input channels assumed for parameter shapes.") var channels = 64
    @Option(help: "Sequence length at which a block-sparse module's layout is drawn (default: the module's example).")
    var length: Int?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let t = try Registry.type(id: id)
        let info = t.info
        let settings = try Config.settings(from: self.settings)
        let config = try Config(module: id, schema: t.configSchema, settings: settings)
        let shape = info.kind == .sequence ? [1, 64, channels] : [1, channels, 16, 16]
        let records = try Registry.parameterRecords(id: id, settings: settings, inputShape: shape)
        // Block-sparse modules draw their layout; a length the module refuses says why instead.
        var layout: String?
        if let m = (try? Registry.make(id: id, settings: settings, inputShape: shape)) as? any BlockSparseModule {
            do { layout = try m.layoutDescription(length: length) } catch { layout = "  (\(error))" }
        }
        if json {
            let keys: [[String: Any]] = t.configSchema.map {
                ["name": $0.name, "type": $0.typeDescription, "default": $0.defaultValue.json,
                 "value": config.values[$0.name]?.json ?? NSNull(), "help": $0.help]
            }
            let params: [[String: Any]] = records.map { ["key": $0.key, "shape": $0.shape, "kind": $0.kind.rawValue] }
            try printJSON([
                "id": info.id, "title": info.title, "arxiv": info.arxiv, "year": info.year,
                "kind": info.kind.rawValue, "complexity": info.complexity, "causal": info.causal,
                "reference": info.reference, "map": ["kind": info.mapKind.rawValue, "meaning": info.mapDescription],
                "notes": info.notes, "config": keys, "parameters": params, "input_channels": channels,
                "layout": layout.map { $0 as Any } ?? NSNull(),
            ] as [String: Any])
            return
        }
        print("\(info.id) — \(info.title) (\(info.year))")
        print("  paper:      https://arxiv.org/abs/\(info.arxiv)")
        print("  kind:       \(info.kind.rawValue)   complexity: \(info.complexity)   causal: \(info.causal ? "yes" : "no")")
        print("  reference:  \(info.reference)")
        print("  map:        \(info.mapKind.rawValue): \(info.mapDescription)")
        for n in info.notes { print("  note:       \(n)") }
        print("\nconfig keys (--set key=value):")
        printTable(header: ["key", "default", "type", "meaning"],
                   rows: t.configSchema.map { [$0.name, $0.defaultValue.description, $0.typeDescription, $0.help] })
        print("\nparameters for \(Shape.format(shape)) input (state_dict keys):")
        printTable(header: ["key", "shape", "kind"],
                   rows: records.map { [$0.key, Shape.format($0.shape), $0.kind.rawValue] })
        if let layout { print("\nlayout (rows: query blocks, columns: key blocks; # full, + edge-masked, . absent, 2-9 counted that often):\n" + layout) }
    }
}
