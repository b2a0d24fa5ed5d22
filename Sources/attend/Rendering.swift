// Drawing attention maps over photos: panels, legends, query markers, categorical bases,
// channel bar charts and labelled sheets. Shared by map, gallery and batch.

import FastAttention
import Foundation
import ImageIO
import TensorCore

/// One rendered map: the photo with the map over it, what it shows, and its value range.
struct Panel {
    var image: Image
    var label: String
    var range: ClosedRange<Float>
}

enum ScaleMode: String, CaseIterable {
    /// Each map normalised by its own range.
    case perMap = "per-map"
    /// One range over all maps of the figure, so they compare.
    case shared
}

struct MapRenderer {
    var colormap: Colormap = .viridis
    var alpha: Float = 0.6
    var scale: ScaleMode = .perMap
    /// Bases maps as one categorical colouring (each pixel coloured by its strongest base).
    var categorical = false

    static let palette: [Color] = [
        Color(hex: 0xE6194B), Color(hex: 0x3CB44B), Color(hex: 0xFFE119), Color(hex: 0x4363D8), Color(hex: 0xF58231),
        Color(hex: 0x911EB4), Color(hex: 0x46F0F0), Color(hex: 0xF032E6), Color(hex: 0xBCF60C), Color(hex: 0xFABEBE),
        Color(hex: 0x008080), Color(hex: 0xE6BEFF), Color(hex: 0x9A6324), Color(hex: 0xFFFAC8), Color(hex: 0x800000),
        Color(hex: 0xAAFFC3), Color(hex: 0x808000), Color(hex: 0xFFD8B1), Color(hex: 0x000075), Color(hex: 0x808080),
    ]

    /// The slices of `map` as panels over `photo` (channel maps as a bar chart).
    func panels(_ map: AttentionMap, photo: Image, labelPrefix: String = "",
                fixedRange: ClosedRange<Float>? = nil) throws -> [Panel] {
        let v = map.values
        if map.kind == .channel {
            let values = v.scalars
            let lo = min(values.min() ?? 0, 0), hi = max(values.max() ?? 1, lo + 1e-6)
            return [Panel(image: barChart(values, width: photo.width, height: photo.height, range: lo...hi),
                          label: labelPrefix + (map.labels.first ?? "channel weights"), range: lo...hi)]
        }
        let (k, h, w) = (v.shape[0], v.shape[1], v.shape[2])
        let all = v.scalars
        if map.kind == .bases && categorical && k > 1 {
            return [Panel(image: try categoricalOverlay(all, k: k, width: w, height: h, photo: photo),
                          label: labelPrefix + "strongest of \(k) (categorical)", range: 0...Float(k - 1))]
        }
        let slices = (0..<k).map { Array(all[($0 * h * w)..<(($0 + 1) * h * w)]) }
        let sharedRange = range(of: all)
        return try slices.enumerated().map { i, slice in
            let r = fixedRange ?? (scale == .shared ? sharedRange : range(of: slice))
            let img = try HeatMap.overlay(photo: photo, values: slice, mapWidth: w, mapHeight: h, alpha: alpha,
                                          colormap: colormap, range: r)
            let label = i < map.labels.count ? map.labels[i] : "map \(i)"
            return Panel(image: img, label: labelPrefix + label, range: r)
        }
    }

    func range(of values: [Float]) -> ClosedRange<Float> {
        let finite = values.filter(\.isFinite)
        let lo = finite.min() ?? 0
        return lo...max(finite.max() ?? 1, lo + 1e-12)
    }

    /// Each cell coloured by its argmax base, blended over the photo (nearest upsampling, so
    /// the boundaries stay crisp).
    func categoricalOverlay(_ values: [Float], k: Int, width w: Int, height h: Int, photo: Image) throws -> Image {
        var out = photo.toRGB()
        let a = alpha
        for y in 0..<photo.height {
            let gy = min(h - 1, y * h / photo.height)
            for x in 0..<photo.width {
                let gx = min(w - 1, x * w / photo.width)
                var best = 0, bv = -Float.infinity
                for b in 0..<k where values[b * h * w + gy * w + gx] > bv { bv = values[b * h * w + gy * w + gx]; best = b }
                let c = Self.palette[best % Self.palette.count], o = out.color(x: x, y: y)
                func mix(_ p: UInt8, _ q: UInt8) -> UInt8 { UInt8((Float(p) * a + Float(q) * (1 - a)).rounded()) }
                out.setColor(Color(mix(c.r, o.r), mix(c.g, o.g), mix(c.b, o.b)), x: x, y: y)
            }
        }
        return out
    }

    func barChart(_ values: [Float], width: Int, height: Int, range: ClosedRange<Float>) -> Image {
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

    /// A white-ringed red disc at the query pixel.
    func markQuery(_ img: inout Image, x: Int, y: Int) {
        let r = Double(max(4, min(img.width, img.height) / 80))
        img.drawDisc(centerX: Double(x), centerY: Double(y), radius: r + 2, color: .white)
        img.drawDisc(centerX: Double(x), centerY: Double(y), radius: r, color: .red)
    }

    /// A label (top left) and a colour bar with its range (bottom right) inside the image, on
    /// white boxes so they read over any photo.
    func insetLegend(_ img: inout Image, label: String, range: ClosedRange<Float>, showBar: Bool = true) {
        let scale = max(1, min(img.width, img.height) / 250)
        let pad = 3 * scale, line = BitmapFont.lineHeight * scale
        let text = ascii(label)
        let tw = min(Image.textWidth(text, scale: scale), img.width - 2 * pad)
        img.drawRect(x: 0, y: 0, width: tw + 2 * pad, height: line + 2 * pad, color: .white, filled: true)
        img.drawText(text, x: pad, y: pad, color: .black, scale: scale)
        guard showBar else { return }
        let barHeight = max(img.height / 4, 3 * line)
        let bar = HeatMap.colorBar(height: barHeight, width: 8 * scale, colormap: colormap, range: range, scale: scale)
        let bx = img.width - bar.width - 2 * pad, by = img.height - bar.height - 2 * pad
        guard bx > 0, by > 0 else { return }
        img.drawRect(x: bx - pad, y: by - pad, width: bar.width + 2 * pad, height: bar.height + 2 * pad, color: .white, filled: true)
        img.blit(bar, x: bx, y: by)
    }

    /// Panels in rows of at most `perRow` under a title, each with its label and colour bar.
    func sheet(_ panels: [Panel], title: String, perRow: Int = 4) -> Image {
        let scale = panels.first.map { max(1, $0.image.width / 300) } ?? 1
        let pad = 8 * scale, line = BitmapFont.lineHeight * scale
        var cells: [Image] = []
        for p in panels {
            let bar = HeatMap.colorBar(height: p.image.height, width: 12 * scale, colormap: colormap, range: p.range, scale: scale)
            var cell = Image(width: p.image.width + pad + bar.width, height: line + pad / 2 + p.image.height)
            cell.drawText(ascii(p.label), x: 0, y: 0, color: .black, scale: scale)
            cell.blit(p.image, x: 0, y: line + pad / 2)
            cell.blit(bar, x: p.image.width + pad, y: line + pad / 2)
            cells.append(cell)
        }
        let rows = stride(from: 0, to: cells.count, by: max(perRow, 1)).map { Array(cells[$0..<min($0 + perRow, cells.count)]) }
        let width = rows.map { $0.map(\.width).reduce(0, +) + pad * ($0.count + 1) }.max() ?? 0
        let rowHeights = rows.map { ($0.map(\.height).max() ?? 0) + pad }
        var out = Image(width: max(width, Image.textWidth(ascii(title), scale: scale) + 2 * pad),
                        height: 2 * pad + line + rowHeights.reduce(0, +) + pad)
        out.drawText(ascii(title), x: pad, y: pad, color: .black, scale: scale)
        var yo = 2 * pad + line
        for (row, h) in zip(rows, rowHeights) {
            var xo = pad
            for c in row {
                out.blit(c, x: xo, y: yo)
                xo += c.width + pad
            }
            yo += h
        }
        return out
    }
}

/// The bitmap font covers ASCII; fold the few other characters our labels use.
func ascii(_ s: String) -> String {
    let table: [Character: String] = ["×": "x", "·": "*", "—": "-", "–": "-", "√": "sqrt", "θ": "theta", "φ": "phi",
                                      "ρ": "rho", "Σ": "sum", "≤": "<=", "≥": ">=", "→": "->", "²": "^2", "′": "'",
                                      "λ": "lambda", "α": "alpha", "γ": "gamma", "⊗": "(x)", "⊕": "(+)", "∈": "in"]
    return String(s.flatMap { c -> String in c.isASCII ? String(c) : (table[c] ?? "?") })
}

/// Photo pixel (x, y) → the feature grid cell it falls in.
func gridQuery(x: Int, y: Int, photo: Image, rows: Int, columns: Int, head: Int? = nil) -> MapQuery {
    MapQuery(row: min(rows - 1, y * rows / max(photo.height, 1)), column: min(columns - 1, x * columns / max(photo.width, 1)),
             head: head)
}
