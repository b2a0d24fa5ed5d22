import ArgumentParser
import FastAttention
import Foundation
import ImageIO
import TensorCore

struct MapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "map",
        abstract: "Draw what a module attends to over a photo, as PNGs of the photo's size.",
        discussion: """
        The photo becomes a 16-channel feature map on a grid (its long side --grid cells) through
        the image stem: Lab colour, regional colour, oriented gradients, texture, blobs and
        position, each standardised, with every pixel's vector L2-normalised. Without --weights
        the module is untrained: seeded weights with the query and key projections equal
        (similarity initialisation), so a map shows which pixels resemble the query under the
        module's own pattern. With --weights (a trained state_dict) it shows what the trained
        module attends to — meaningful when --features brings the backbone features it was
        trained on; the photo is then only the background.

        What is drawn follows the module's map kind (`attend info ID`): per-query modules give
        one panel per --query point X,Y (photo pixels, marked on the output); global maps one
        panel; k bases/buckets/clusters k panels (or one categorical colouring with
        --categorical); channel gates a bar chart. Maps are upsampled bilinearly to the photo's
        size and blended over it; each PNG has a colour bar stating its value range. With more
        than one panel, OUT/NAME-ID-sheet.png puts them side by side.

        Examples:
          attend map photo.jpg --module non-local --query 120,80
          attend map photo.jpg --module non-local --query 120,80 --query 300,200 --scale shared --out maps/
          attend map photo.jpg --module non-local --features layer3.npy --weights nl.safetensors --query 64,64
        """
    )

    @Argument(help: "A PNG or JPEG photo.") var image: String
    @Option(help: "Module id (see `attend list`).") var module: String
    @Option(help: "Query pixel X,Y in photo coordinates (repeatable; default: the photo's centre).") var query: [String] = []
    @Option(help: "Output folder.") var out = "."
    @Option(help: "Colour map: \(Colormap.names.joined(separator: ", ")).") var colormap = "viridis"
    @Option(help: "Colour scale: per-map (each map its own range) or shared (one range for all panels).")
    var scale = "per-map"
    @Option(help: "Head: a number, 'mean' (default), or 'all' (one panel per head).") var head = "mean"
    @Flag(help: "Draw k bases/clusters as one categorical colouring instead of k panels.") var categorical = false
    @Option(help: "Feature grid: cells on the photo's long side.") var grid = 48
    @Option(help: "Opacity of the heat-map over the photo (0...1).") var alpha: Float = 0.6
    @Option(name: .customLong("set"), help: "key=value config override, as the reference's constructor kwargs (repeatable).")
    var settings: [String] = []
    @Option(help: "Trained weights (safetensors state_dict under the reference's keys).") var weights: String?
    @Option(help: "Backbone features (.npy/.safetensors, 1×C×H×W) instead of the image stem.") var features: String?
    @Option(help: "Seed for untrained weights and random draws.") var seed: UInt64 = 0
    @Option(help: "Largest image accepted, in pixels.") var maxPixels = 100_000_000
    @Option(help: "Refuse O(N²) modules when N² exceeds this (N = positions).") var maxAttention = AttentionGuard.defaultLimit

    func validate() throws {
        if !(4...512).contains(grid) { throw ValidationError("--grid must be in 4...512") }
        if !(0...1).contains(alpha) { throw ValidationError("--alpha must be in 0...1") }
        if ScaleMode(rawValue: scale) == nil { throw ValidationError("--scale must be per-map or shared") }
        if head != "mean" && head != "all" && Int(head).map({ $0 < 0 }) ?? true {
            throw ValidationError("--head must be a head number (0, 1, ...), 'mean' or 'all'")
        }
        for q in query where parsePoint(q) == nil {
            throw ValidationError("--query \(q): expected X,Y pixel coordinates, e.g. --query 120,80")
        }
    }

    func run() throws {
        let renderer = MapRenderer(colormap: try Colormap(name: colormap), alpha: alpha,
                                   scale: ScaleMode(rawValue: scale)!, categorical: categorical)
        let photo = try InputFile.image(image, maxPixels: maxPixels).toRGB()
        let x = try features.map { try InputFile.featureMap($0, module: module) } ?? ImageStem().features(photo, grid: grid)
        let (gh, gw) = (x.shape[2], x.shape[3])
        try AttentionGuard.check(try Registry.type(id: module).info, inputShape: x.shape, limit: maxAttention)
        let pairs = try Config.settings(from: settings), sd = try weights.map(InputFile.weights)
        let m = try FileError.naming(input: features ?? image, weights: weights) {
            try Registry.make(id: module, settings: pairs, inputShape: x.shape, weights: sd, seed: seed)
        }
        let points = query.isEmpty ? [(x: photo.width / 2, y: photo.height / 2)] : query.map { parsePoint($0)! }
        for p in points where !(0..<photo.width).contains(p.x) || !(0..<photo.height).contains(p.y) {
            throw ModuleError.badQuery(module: module,
                                       message: "query \(p.x),\(p.y) is outside the \(photo.width)×\(photo.height) photo")
        }
        let heads: [Int?]
        switch head {
        case "mean": heads = [nil]
        case "all": heads = m.mapHeads > 1 ? (0..<m.mapHeads).map { $0 } : [nil]
        default:
            let h = Int(head)!
            guard h < m.mapHeads else {
                throw ModuleError.badQuery(module: module, message: "--head \(h): the module has \(m.mapHeads) head(s)")
            }
            heads = [h]
        }
        // Maps first, then panels, so --scale shared can use one range over all of them.
        var maps: [(map: AttentionMap, point: (x: Int, y: Int), prefix: String)] = []
        let perQuery = m.info.mapKind == .perQuery
        for p in perQuery ? points : [points[0]] {
            for h in heads {
                let map = try m.map(onGrid: x, query: gridQuery(x: p.x, y: p.y, photo: photo, rows: gh, columns: gw, head: h))
                var prefix = perQuery ? "query \(p.x),\(p.y): " : ""
                if let h { prefix += "head \(h): " }
                maps.append((map, p, prefix))
            }
        }
        var shared: ClosedRange<Float>?
        if renderer.scale == .shared {
            shared = renderer.range(of: maps.filter { $0.map.kind != .channel }.flatMap { $0.map.values.scalars })
        }
        var panels: [Panel] = []
        for (map, p, prefix) in maps {
            for var panel in try renderer.panels(map, photo: photo, labelPrefix: prefix, fixedRange: shared) {
                if perQuery { renderer.markQuery(&panel.image, x: p.x, y: p.y) }
                panels.append(panel)
            }
        }
        let mode = weights == nil ? "untrained (similarity init, seed \(seed))" : "weights \((weights! as NSString).lastPathComponent)"
        try OutputFile.ensureDirectory(out)
        let name = ((image as NSString).lastPathComponent as NSString).deletingPathExtension
        let base = (out as NSString).appendingPathComponent("\(name)-\(module)")
        for (i, panel) in panels.enumerated() {
            var img = panel.image
            renderer.insetLegend(&img, label: panel.label, range: panel.range, showBar: !(categorical && m.info.mapKind == .bases))
            let path = panels.count == 1 ? base + ".png" : base + "-\(i + 1).png"
            try img.write(to: URL(fileURLWithPath: path))
            print(path)
        }
        if panels.count > 1 {
            let sheet = renderer.sheet(panels, title: "\(m.info.id): \(m.info.mapDescription) - \(mode)")
            try sheet.write(to: URL(fileURLWithPath: base + "-sheet.png"))
            print(base + "-sheet.png")
        }
        FileHandle.standardError.write(Data("\(module): \(mode); features \(Shape.format(x.shape))\n".utf8))
    }
}
