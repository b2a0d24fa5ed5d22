import ArgumentParser
import FastAttention
import Foundation
import ImageIO
import TensorCore

struct MapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "map",
        abstract: "Draw what a module attends to over a photo, as a PNG.",
        discussion: """
        The photo becomes a 16-channel feature map on a grid (its long side --grid cells) through
        the image stem: Lab colour, regional colour, oriented gradients, texture, blobs and
        position, each standardised, with every pixel's vector L2-normalised. Without --weights
        the module is untrained: seeded weights with the query and key projections equal
        (similarity initialisation), so a map shows which pixels resemble the query under the
        module's own pattern. With --weights (a trained state_dict) it shows what the trained
        module attends to — meaningful when --features brings the backbone features it was
        trained on.

        For a per-query module each --query point X,Y (photo pixels) gives one panel, marked on
        the photo; a global map gives one panel; k bases give k panels. The map is upsampled
        bilinearly to the photo's size and blended over it; the colour bar states the range.

        Examples:
          attend map photo.jpg --module non-local --query 120,80
          attend map photo.jpg --module non-local --query 120,80 --query 300,200 --colormap magma --out maps/
        """
    )

    @Argument(help: "A PNG or JPEG photo.") var image: String
    @Option(help: "Module id.") var module: String
    @Option(help: "Query pixel X,Y in photo coordinates (repeatable; default: the centre).") var query: [String] = []
    @Option(help: "Output folder.") var out = "."
    @Option(help: "Colour map: \(Colormap.names.joined(separator: ", ")).") var colormap = "viridis"
    @Option(help: "Feature grid: cells on the photo's long side.") var grid = 48
    @Option(help: "Opacity of the heat-map over the photo (0...1).") var alpha: Float = 0.6
    @Option(name: .customLong("set"), help: "key=value config override (repeatable).") var settings: [String] = []
    @Option(help: "Trained weights (safetensors state_dict).") var weights: String?
    @Option(help: "Backbone features (.npy/.safetensors, 1×C×H×W) instead of the image stem.") var features: String?
    @Option(help: "Seed for untrained weights and random draws.") var seed: UInt64 = 0
    @Option(help: "Largest image accepted, in pixels.") var maxPixels = 100_000_000

    func validate() throws {
        if !(4...512).contains(grid) { throw ValidationError("--grid must be in 4...512") }
        if !(0...1).contains(alpha) { throw ValidationError("--alpha must be in 0...1") }
        for q in query where parsePoint(q) == nil {
            throw ValidationError("--query \(q): expected X,Y pixel coordinates, e.g. --query 120,80")
        }
    }

    func run() throws {
        let cmap = try Colormap(name: colormap)
        let photo = try InputFile.image(image, maxPixels: maxPixels).toRGB()
        let x: Tensor
        if let features {
            x = try InputFile.tensor(features)
            guard x.rank == 4, x.shape[0] >= 1 else {
                throw InputError.rank(path: features, shape: x.shape, module: module, kind: "1×C×H×W feature maps")
            }
        } else {
            x = ImageStem().features(photo, grid: grid)
        }
        let (gh, gw) = (x.shape[2], x.shape[3])
        let m = try Registry.make(id: module, settings: try Config.settings(from: settings), inputShape: x.shape,
                                  weights: try weights.map(InputFile.weights), seed: seed)
        let points = query.isEmpty ? [(x: photo.width / 2, y: photo.height / 2)] : query.map { parsePoint($0)! }
        for p in points where !(0..<photo.width).contains(p.x) || !(0..<photo.height).contains(p.y) {
            throw ModuleError.badQuery(module: module,
                                       message: "query \(p.x),\(p.y) is outside the \(photo.width)×\(photo.height) photo")
        }
        var panels: [(Image, String)] = []
        var ranges: [ClosedRange<Float>] = []
        let queries = m.info.mapKind == .perQuery ? points : [points[0]]
        for p in queries {
            let q = MapQuery(row: min(gh - 1, p.y * gh / photo.height), column: min(gw - 1, p.x * gw / photo.width))
            let map = try m.map(onGrid: x, query: q)
            for (k, label) in map.labels.enumerated() {
                let (img, range) = try render(map, index: k, photo: photo, colormap: cmap)
                var panel = img
                if m.info.mapKind == .perQuery { markQuery(&panel, p) }
                let text = m.info.mapKind == .perQuery ? "query \(p.x),\(p.y): \(label)" : label
                panels.append((panel, text))
                ranges.append(range)
            }
        }
        let mode = weights == nil ? "untrained (similarity init, seed \(seed))" : "weights \((weights! as NSString).lastPathComponent)"
        try OutputFile.ensureDirectory(out)
        let name = ((image as NSString).lastPathComponent as NSString).deletingPathExtension
        let base = (out as NSString).appendingPathComponent("\(name)-\(module)")
        // One PNG per panel at the photo's own size, legend inset; with several panels, a
        // labelled sheet of all of them as well.
        for (i, ((panel, label), range)) in zip(panels, ranges).enumerated() {
            var img = panel
            insetLegend(&img, label: label, range: range, colormap: cmap)
            let path = panels.count == 1 ? base + ".png" : base + "-\(i + 1).png"
            try img.write(to: URL(fileURLWithPath: path))
            print(path)
        }
        if panels.count > 1 {
            let title = ascii("\(m.info.id): \(m.info.mapDescription) - \(mode)")
            let sheet = try compose(panels: panels, ranges: ranges, colormap: cmap, title: title)
            try sheet.write(to: URL(fileURLWithPath: base + "-sheet.png"))
            print(base + "-sheet.png")
        }
        FileHandle.standardError.write(Data("\(module): \(mode); features \(Shape.format(x.shape)) on a \(gh)x\(gw) grid\n".utf8))
    }

    /// A label (top left) and a colour bar with its range (bottom right) drawn inside the image,
    /// on white boxes so they read over any photo.
    func insetLegend(_ img: inout Image, label: String, range: ClosedRange<Float>, colormap: Colormap) {
        let scale = max(1, min(img.width, img.height) / 250)
        let pad = 3 * scale, line = BitmapFont.lineHeight * scale
        let text = ascii(label)
        let tw = min(Image.textWidth(text, scale: scale), img.width - 2 * pad)
        img.drawRect(x: 0, y: 0, width: tw + 2 * pad, height: line + 2 * pad, color: .white, filled: true)
        img.drawText(text, x: pad, y: pad, color: .black, scale: scale)
        let barHeight = max(img.height / 4, 3 * line)
        let bar = HeatMap.colorBar(height: barHeight, width: 8 * scale, colormap: colormap, range: range, scale: scale)
        let bx = img.width - bar.width - 2 * pad, by = img.height - bar.height - 2 * pad
        guard bx > 0, by > 0 else { return }
        img.drawRect(x: bx - pad, y: by - pad, width: bar.width + 2 * pad, height: bar.height + 2 * pad, color: .white, filled: true)
        img.blit(bar, x: bx, y: by)
    }

    /// One map slice over the photo (or a bar chart for channel weights), and its value range.
    func render(_ map: AttentionMap, index k: Int, photo: Image, colormap: Colormap) throws -> (Image, ClosedRange<Float>) {
        let v = map.values
        if map.kind == .channel {
            let values = v.scalars
            let lo = min(values.min() ?? 0, 0), hi = max(values.max() ?? 1, lo + 1e-6)
            return (barChart(values, height: photo.height, width: photo.width, colormap: colormap, range: lo...hi), lo...hi)
        }
        let (h, w) = (v.shape[1], v.shape[2])
        let slice = Array(v.scalars[(k * h * w)..<((k + 1) * h * w)])
        let finite = slice.filter(\.isFinite)
        let lo = finite.min() ?? 0, hi = max(finite.max() ?? 1, lo + 1e-12)
        return (try HeatMap.overlay(photo: photo, values: slice, mapWidth: w, mapHeight: h, alpha: alpha,
                                    colormap: colormap, range: lo...hi), lo...hi)
    }

    func markQuery(_ img: inout Image, _ p: (x: Int, y: Int)) {
        let r = Double(max(4, min(img.width, img.height) / 80))
        img.drawDisc(centerX: Double(p.x), centerY: Double(p.y), radius: r + 2, color: .white)
        img.drawDisc(centerX: Double(p.x), centerY: Double(p.y), radius: r, color: .red)
    }

    func barChart(_ values: [Float], height: Int, width: Int, colormap: Colormap, range: ClosedRange<Float>) -> Image {
        var img = Image(width: width, height: height)
        let n = max(values.count, 1), span = range.upperBound - range.lowerBound
        for (i, v) in values.enumerated() {
            let x0 = i * width / n, x1 = max(x0 + 1, (i + 1) * width / n - 1)
            let t = (v - range.lowerBound) / span
            let top = height - Int(Float(height - 1) * t)
            img.drawRect(x: x0, y: top, width: x1 - x0, height: height - top, color: colormap.color(at: t), filled: true)
        }
        return img
    }

    /// Panels side by side under a title, each with its label and colour bar.
    func compose(panels: [(Image, String)], ranges: [ClosedRange<Float>], colormap: Colormap, title: String) throws -> Image {
        let scale = panels.first.map { max(1, $0.0.width / 300) } ?? 1
        let pad = 8 * scale, line = BitmapFont.lineHeight * scale
        var cells: [Image] = []
        for ((panel, label), range) in zip(panels, ranges) {
            let bar = HeatMap.colorBar(height: panel.height, width: 12 * scale, colormap: colormap, range: range, scale: scale)
            var cell = Image(width: panel.width + pad + bar.width, height: line + pad / 2 + panel.height)
            cell.drawText(ascii(label), x: 0, y: 0, color: .black, scale: scale)
            cell.blit(panel, x: 0, y: line + pad / 2)
            cell.blit(bar, x: panel.width + pad, y: line + pad / 2)
            cells.append(cell)
        }
        let width = cells.map(\.width).reduce(0, +) + pad * (cells.count + 1)
        let height = (cells.map(\.height).max() ?? 0) + 2 * pad + line + pad
        var sheet = Image(width: max(width, Image.textWidth(title, scale: scale) + 2 * pad), height: height)
        sheet.drawText(title, x: pad, y: pad, color: .black, scale: scale)
        var xo = pad
        for c in cells {
            sheet.blit(c, x: xo, y: 2 * pad + line)
            xo += c.width + pad
        }
        return sheet
    }
}

/// The bitmap font covers ASCII; fold the few other characters our labels use.
func ascii(_ s: String) -> String {
    let table: [Character: String] = ["×": "x", "·": "*", "—": "-", "–": "-", "√": "sqrt", "θ": "theta", "φ": "phi",
                                      "ρ": "rho", "Σ": "sum", "≤": "<=", "≥": ">=", "→": "->", "²": "^2", "′": "'"]
    return String(s.flatMap { c -> String in c.isASCII ? String(c) : (table[c] ?? "?") })
}
