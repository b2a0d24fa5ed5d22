// HeatMap: float maps -> colour images, overlays on photos, and a colour-bar legend.

import Foundation

/// Renders attention maps (row-major `[Float]`, `height × width`) with a colour map.
///
/// Values are normalised by `range` (or by the finite min/max of the map when nil; a
/// constant map renders at the low end, as matplotlib's Normalize does). NaN means "no
/// value" (e.g. outside a sparse pattern's support) and draws transparent.
public enum HeatMap {
    /// The map as an RGBA image, one pixel per value; NaN cells are fully transparent.
    public static func render(values: [Float], width: Int, height: Int,
                              colormap: Colormap = .viridis, range: ClosedRange<Float>? = nil) throws -> Image {
        try check(values, width, height)
        let (lo, span) = normalisation(values, range)
        var out = [UInt8](repeating: 0, count: width * height * 4)
        for (i, v) in values.enumerated() {
            let c = colormap.color(at: v.isNaN ? .nan : (v - lo) / span)
            out[4 * i] = c.r; out[4 * i + 1] = c.g; out[4 * i + 2] = c.b; out[4 * i + 3] = c.a
        }
        return Image(unchecked: width, height, 4, out)
    }

    /// The photo (as RGB) with the map upsampled to its size and alpha-blended over it.
    ///
    /// Upsampling is bilinear with half-pixel centres (as torch's
    /// `interpolate(..., mode="bilinear", align_corners=False)`), so map cell (i, j) lands
    /// centred on the photo region it was computed from; the colour map is applied after
    /// interpolation so colours blend through the map, not through RGB. NaN regions show the
    /// photo unchanged.
    public static func overlay(photo: Image, values: [Float], mapWidth: Int, mapHeight: Int,
                               alpha: Float = 0.55, colormap: Colormap = .viridis,
                               range: ClosedRange<Float>? = nil) throws -> Image {
        try check(values, mapWidth, mapHeight)
        guard photo.width > 0, photo.height > 0 else { throw ImageError.invalidImage("empty photo") }
        let (lo, span) = normalisation(values, range)
        let up = resampleInterleaved(values, width: mapWidth, height: mapHeight, channels: 1,
                                     toWidth: photo.width, toHeight: photo.height)
        var out = photo.toRGB()
        let a = min(max(alpha, 0), 1)
        for i in 0..<up.count where !up[i].isNaN {
            let c = colormap.color(at: (up[i] - lo) / span)
            let rgb = [c.r, c.g, c.b]
            for k in 0..<3 {
                let blended = Float(rgb[k]) * a + Float(out.pixels[3 * i + k]) * (1 - a)
                out.pixels[3 * i + k] = UInt8(blended.rounded())
            }
        }
        return out
    }

    /// A vertical legend: a `width`-pixel bar running from `range.upperBound` (top) to
    /// `range.lowerBound` (bottom), with both values printed beside it in the bitmap font.
    public static func colorBar(height: Int, width: Int = 16, colormap: Colormap = .viridis,
                                range: ClosedRange<Float>, scale: Int = 1) -> Image {
        let top = label(range.upperBound), bottom = label(range.lowerBound)
        let textWidth = max(Image.textWidth(top, scale: scale), Image.textWidth(bottom, scale: scale))
        let margin = 4 * scale, glyphHeight = BitmapFont.glyphHeight * scale
        let barHeight = max(height, 2 * glyphHeight)
        var image = Image(width: width + margin + textWidth, height: barHeight)
        for y in 0..<barHeight {
            let t = barHeight == 1 ? 1 : 1 - Float(y) / Float(barHeight - 1)
            let c = colormap.color(at: t)
            for x in 0..<width { image.setColor(c, x: x, y: y) }
        }
        image.drawRect(x: 0, y: 0, width: width, height: barHeight, color: .black)
        image.drawText(top, x: width + margin, y: 0, color: .black, scale: scale)
        image.drawText(bottom, x: width + margin, y: barHeight - glyphHeight, color: .black, scale: scale)
        return image
    }

    /// Compact number text for legends: 3 significant digits ("0.125", "1.2e-05").
    static func label(_ v: Float) -> String { String(format: "%.3g", Double(v)) }

    /// (low end, span) of the normalisation; span is never 0.
    static func normalisation(_ values: [Float], _ range: ClosedRange<Float>?) -> (Float, Float) {
        if let range { return (range.lowerBound, max(range.upperBound - range.lowerBound, .leastNormalMagnitude)) }
        var lo = Float.infinity, hi = -Float.infinity
        for v in values where v.isFinite { lo = min(lo, v); hi = max(hi, v) }
        if lo > hi { return (0, 1) }  // all NaN/inf
        return (lo, hi > lo ? hi - lo : 1)
    }

    static func check(_ values: [Float], _ width: Int, _ height: Int) throws {
        guard width > 0, height > 0, values.count == width * height else {
            throw ImageError.invalidImage("heat map of \(values.count) values is not \(width)×\(height)")
        }
    }
}
