import ArgumentParser
import FastAttention
import Foundation
import ImageIO
import TensorCore

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "How far each module's output and maps are from a reference module on the same features.",
        discussion: """
        Runs the reference (default: non-local, exact softmax attention) and each module on the
        same features (the photo through the image stem, or --features), then prints, per module:
        the relative error of its output against the reference's (‖y − y_ref‖ / ‖y_ref‖, when the
        shapes agree), the KL divergence KL(ref ‖ module) and total variation between their maps
        for each query (maps clipped at 0 and normalised to sum 1), and its time. Writes
        OUT/NAME-compare.png: the reference's map and each module's for the first query, on one
        colour scale.

        Untrained modules have different seeded projections, so the figures mix the
        approximation with the different weights; load trained weights with --weights ID=FILE
        (repeatable) to compare trained modules. Per-query maps compare directly; global and
        bases maps compare their first map.

        Examples:
          attend compare photo.jpg --modules efficient-attention,linear-transformer --query 120,80
          attend compare photo.jpg --modules performer --reference non-local --weights performer=p.safetensors
        """
    )

    @Argument(help: "A PNG or JPEG photo.") var image: String
    @Option(help: "Comma-separated module ids.") var modules: String
    @Option(help: "The reference module id.") var reference = "non-local"
    @Option(help: "Query pixel X,Y (repeatable; default: the centre).") var query: [String] = []
    @Option(help: "Trained weights for a module, as ID=FILE (repeatable).") var weights: [String] = []
    @Option(help: "Backbone features (.npy/.safetensors, 1×C×H×W) instead of the image stem.") var features: String?
    @Option(help: "Feature grid: cells on the photo's long side.") var grid = 32
    @Option(help: "Output folder for the picture.") var out = "."
    @Option(help: "Seed for untrained weights.") var seed: UInt64 = 0
    @Option(help: "Largest image accepted, in pixels.") var maxPixels = 100_000_000
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        for q in query where parsePoint(q) == nil { throw ValidationError("--query \(q): expected X,Y") }
        for w in weights where !w.contains("=") { throw ValidationError("--weights \(w): expected ID=FILE") }
    }

    struct Row { var id: String; var relError: Double?; var kl: Double?; var tv: Double?; var ms: Double; var map: AttentionMap? }

    func run() throws {
        let photo = try InputFile.image(image, maxPixels: maxPixels).toRGB()
        let x = try features.map { try InputFile.featureMap($0, module: reference) } ?? ImageStem().features(photo, grid: grid)
        let (gh, gw) = (x.shape[2], x.shape[3])
        var files: [String: String] = [:]
        for w in weights { let p = w.split(separator: "=", maxSplits: 1).map(String.init); files[p[0]] = p[1] }
        let points = query.isEmpty ? [(x: photo.width / 2, y: photo.height / 2)] : query.map { parsePoint($0)! }
        let queries = points.map { gridQuery(x: $0.x, y: $0.y, photo: photo, rows: gh, columns: gw) }

        func evaluate(_ id: String) throws -> (y: Tensor, maps: [AttentionMap], ms: Double) {
            let m = try Registry.make(id: id, inputShape: x.shape, weights: try files[id].map(InputFile.weights), seed: seed)
            let t0 = DispatchTime.now().uptimeNanoseconds
            let y = try m.apply(x)
            let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            return (y, try queries.map { try m.map(onGrid: x, query: $0) }, ms)
        }
        let ref = try evaluate(reference)
        var rows = [Row(id: reference, relError: 0, kl: 0, tv: 0, ms: ref.ms, map: ref.maps.first)]
        for id in modules.split(separator: ",").map(String.init) {
            let r = try evaluate(id)
            var row = Row(id: id, ms: r.ms, map: r.maps.first)
            if r.y.shape == ref.y.shape { row.relError = relativeError(r.y, ref.y) }
            let pairs = zip(ref.maps, r.maps).compactMap { divergence($0.0, $0.1) }
            if !pairs.isEmpty {
                row.kl = pairs.map(\.kl).reduce(0, +) / Double(pairs.count)
                row.tv = pairs.map(\.tv).reduce(0, +) / Double(pairs.count)
            }
            rows.append(row)
        }
        if json {
            try printJSON(rows.map { ["module": $0.id, "output_relative_error": $0.relError.map { $0 as Any } ?? NSNull(),
                                      "map_kl": $0.kl.map { $0 as Any } ?? NSNull(), "map_tv": $0.tv.map { $0 as Any } ?? NSNull(),
                                      "ms": $0.ms] as [String: Any] })
        } else {
            func f(_ v: Double?) -> String { v.map { String(format: "%.4g", $0) } ?? "n/a" }
            print("against \(reference) on \(Shape.format(x.shape)), \(queries.count) quer\(queries.count == 1 ? "y" : "ies")")
            printTable(header: ["module", "output rel. error", "map KL(ref||m)", "map TV", "ms"],
                       rows: rows.map { [$0.id, f($0.relError), f($0.kl), f($0.tv), String(format: "%.2f", $0.ms)] })
        }
        // The picture: every module's first map for the first query, one colour scale.
        let renderer = MapRenderer(scale: .shared)
        let drawn = rows.compactMap { r -> (String, AttentionMap)? in
            guard let m = r.map, m.kind != .channel else { return nil }
            let (h, w) = (m.values.shape[1], m.values.shape[2])
            return (r.id, AttentionMap(kind: m.kind, values: Tensor(shape: [1, h, w], scalars: normalised(Array(m.values.scalars.prefix(h * w)))),
                                       labels: [m.labels.first ?? ""]))
        }
        let shared = renderer.range(of: drawn.flatMap { $0.1.values.scalars })
        var panels: [Panel] = []
        for (id, m) in drawn {
            for var p in try renderer.panels(m, photo: photo, labelPrefix: "\(id): ", fixedRange: shared) {
                renderer.markQuery(&p.image, x: points[0].x, y: points[0].y)
                panels.append(p)
            }
        }
        try OutputFile.ensureDirectory(out)
        let name = ((image as NSString).lastPathComponent as NSString).deletingPathExtension
        let path = (out as NSString).appendingPathComponent("\(name)-compare.png")
        try renderer.sheet(panels, title: "maps normalised to sum 1, one scale; reference \(reference)").write(to: URL(fileURLWithPath: path))
        FileHandle.standardError.write(Data("picture: \(path)\n".utf8))
    }

    func relativeError(_ a: Tensor, _ b: Tensor) -> Double {
        var d = 0.0, n = 0.0
        let x = a.scalars, y = b.scalars
        for i in x.indices { d += Double(x[i] - y[i]) * Double(x[i] - y[i]); n += Double(y[i]) * Double(y[i]) }
        return (d / max(n, 1e-30)).squareRoot()
    }

    /// A map as a distribution: negatives clipped, normalised to sum 1 (all zero stays zero).
    func normalised(_ v: [Float]) -> [Float] {
        let c = v.map { $0.isFinite ? max($0, 0) : 0 }
        let s = c.reduce(0, +)
        return s > 0 ? c.map { $0 / s } : c
    }

    func divergence(_ p: AttentionMap, _ q: AttentionMap) -> (kl: Double, tv: Double)? {
        guard p.kind != .channel, q.kind != .channel, p.values.rank == 3, q.values.rank == 3,
              p.values.shape[1...] == q.values.shape[1...] else { return nil }
        let n = p.values.shape[1] * p.values.shape[2]
        let a = normalised(Array(p.values.scalars.prefix(n))), b = normalised(Array(q.values.scalars.prefix(n)))
        guard a.reduce(0, +) > 0, b.reduce(0, +) > 0 else { return nil }
        var kl = 0.0, tv = 0.0
        for i in 0..<n {
            let pi = Double(a[i]), qi = max(Double(b[i]), 1e-12)
            if pi > 0 { kl += pi * log(pi / qi) }
            tv += abs(pi - Double(b[i]))
        }
        return (kl, tv / 2)
    }
}
