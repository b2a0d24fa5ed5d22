// Image drawing: crop, blit, and the markers `attend map` puts on photos (disc, cross, rect).

extension Image {
    /// The sub-image at (x, y) of the given size; throws if it is not inside the image.
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) throws -> Image {
        guard x >= 0, y >= 0, w >= 0, h >= 0, x + w <= width, y + h <= height else {
            throw ImageError.invalidImage("crop \(w)×\(h) at (\(x), \(y)) is outside the \(width)×\(height) image")
        }
        var out = [UInt8]()
        out.reserveCapacity(w * h * channels)
        for row in y..<(y + h) {
            let start = (row * width + x) * channels
            out.append(contentsOf: pixels[start..<(start + w * channels)])
        }
        return Image(unchecked: w, h, channels, out)
    }

    /// Blends one colour onto pixel (x, y) with coverage `weight` (0–1) times the colour's
    /// own alpha; pixels outside the image are skipped so shapes may overhang the border.
    mutating func blend(_ color: Color, x: Int, y: Int, weight: Float = 1) {
        guard x >= 0, x < width, y >= 0, y < height else { return }
        let a = weight * Float(color.a) / 255
        if a <= 0 { return }
        let i = (y * width + x) * channels
        let src = color.components(channels: channels)
        let colourChannels = channels == 4 ? 3 : channels
        for k in 0..<colourChannels {
            pixels[i + k] = UInt8((Float(src[k]) * a + Float(pixels[i + k]) * (1 - a)).rounded())
        }
        if channels == 4 {  // "over": alpha_out = a + alpha_dst (1 - a)
            let dstA = Float(pixels[i + 3]) / 255
            pixels[i + 3] = UInt8(((a + dstA * (1 - a)) * 255).rounded())
        }
    }

    /// Draws `image` with its top-left corner at (x, y), clipped to this image; RGBA sources
    /// are alpha-blended, others copied (converted to this image's channel count).
    public mutating func blit(_ image: Image, x: Int, y: Int) {
        let source = image.channels == 4 || image.channels == channels ? image : image.toRGB()
        for sy in 0..<source.height {
            let ty = y + sy
            if ty < 0 || ty >= height { continue }
            for sx in 0..<source.width {
                let tx = x + sx
                if tx < 0 || tx >= width { continue }
                let c = source.color(x: sx, y: sy)
                if source.channels == 4 { blend(c, x: tx, y: ty) } else { setColor(c, x: tx, y: ty) }
            }
        }
    }

    /// A filled disc, anti-aliased over one pixel of its rim (coverage by distance), so a
    /// query marker looks round even at radius 3.
    public mutating func drawDisc(centerX cx: Double, centerY cy: Double, radius: Double, color: Color) {
        guard radius > 0 else { return }
        let x0 = max(Int((cx - radius - 1).rounded(.down)), 0)
        let x1 = min(Int((cx + radius + 1).rounded(.up)), width - 1)
        let y0 = max(Int((cy - radius - 1).rounded(.down)), 0)
        let y1 = min(Int((cy + radius + 1).rounded(.up)), height - 1)
        guard x0 <= x1, y0 <= y1 else { return }  // entirely outside the image
        for y in y0...y1 {
            for x in x0...x1 {
                let dx = Double(x) + 0.5 - cx, dy = Double(y) + 0.5 - cy
                let coverage = min(max(radius + 0.5 - (dx * dx + dy * dy).squareRoot(), 0), 1)
                if coverage > 0 { blend(color, x: x, y: y, weight: Float(coverage)) }
            }
        }
    }

    /// A "+" centred on pixel (x, y): arms of `size` pixels each way, `thickness` wide.
    public mutating func drawCross(x: Int, y: Int, size: Int, thickness: Int = 1, color: Color) {
        let lo = -(thickness - 1) / 2, hi = thickness / 2
        for d in -size...size {
            for t in lo...hi {
                blend(color, x: x + d, y: y + t)
                if d < lo || d > hi { blend(color, x: x + t, y: y + d) }  // skip the shared centre
            }
        }
    }

    /// A rectangle outline `lineWidth` pixels wide drawn inside (x, y, width, height),
    /// or filled when `filled` is true.
    public mutating func drawRect(x: Int, y: Int, width w: Int, height h: Int,
                                  color: Color, lineWidth: Int = 1, filled: Bool = false) {
        guard w > 0, h > 0 else { return }
        for yy in y..<(y + h) {
            for xx in x..<(x + w) {
                let edge = xx - x < lineWidth || x + w - 1 - xx < lineWidth
                    || yy - y < lineWidth || y + h - 1 - yy < lineWidth
                if filled || edge { blend(color, x: xx, y: yy) }
            }
        }
    }
}
