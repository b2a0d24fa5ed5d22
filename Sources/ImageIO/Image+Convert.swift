// Image conversions: channel changes, alpha compositing, EXIF orientation and resizing.

extension Image {
    /// RGB copy: gray is replicated; RGBA is composited over `background` (white by default),
    /// because the colour under a fully transparent pixel is arbitrary and often black.
    public func toRGB(background: Color = .white) -> Image {
        switch channels {
        case 3: return self
        case 4: return composited(over: background)
        default:
            var out = [UInt8](repeating: 0, count: width * height * 3)
            for i in 0..<(width * height) {
                out[3 * i] = pixels[i]; out[3 * i + 1] = pixels[i]; out[3 * i + 2] = pixels[i]
            }
            return Image(unchecked: width, height, 3, out)
        }
    }

    /// RGBA copy (opaque alpha added where there was none).
    public func toRGBA() -> Image {
        if channels == 4 { return self }
        let rgb = toRGB()
        var out = [UInt8](repeating: 255, count: width * height * 4)
        for i in 0..<(width * height) {
            out[4 * i] = rgb.pixels[3 * i]; out[4 * i + 1] = rgb.pixels[3 * i + 1]; out[4 * i + 2] = rgb.pixels[3 * i + 2]
        }
        return Image(unchecked: width, height, 4, out)
    }

    /// Gray copy by Rec. 601 luma (alpha composited over white first).
    public func toGray() -> Image {
        if channels == 1 { return self }
        let rgb = toRGB()
        var out = [UInt8](repeating: 0, count: width * height)
        for i in 0..<(width * height) {
            out[i] = Color(rgb.pixels[3 * i], rgb.pixels[3 * i + 1], rgb.pixels[3 * i + 2]).luma
        }
        return Image(unchecked: width, height, 1, out)
    }

    /// RGB image of this RGBA image drawn over an opaque background colour.
    func composited(over background: Color) -> Image {
        precondition(channels == 4)
        var out = [UInt8](repeating: 0, count: width * height * 3)
        let bg = [Int(background.r), Int(background.g), Int(background.b)]
        for i in 0..<(width * height) {
            let a = Int(pixels[4 * i + 3])
            for k in 0..<3 {
                out[3 * i + k] = UInt8((Int(pixels[4 * i + k]) * a + bg[k] * (255 - a) + 127) / 255)
            }
        }
        return Image(unchecked: width, height, 3, out)
    }

    /// The image turned upright for an EXIF orientation (1–8), as browsers display it:
    /// 6 means "rotate 90° clockwise to view", 8 counter-clockwise, 3 half a turn, and
    /// 2/4/5/7 the mirrored variants. Other values return the image unchanged.
    public func oriented(exif orientation: Int) -> Image {
        guard (2...8).contains(orientation) else { return self }
        let swap = orientation >= 5
        let (ow, oh) = swap ? (height, width) : (width, height)
        var out = [UInt8](repeating: 0, count: pixels.count)
        let c = channels
        for y in 0..<oh {
            for x in 0..<ow {
                let (sx, sy): (Int, Int)
                switch orientation {
                case 2: (sx, sy) = (width - 1 - x, y)
                case 3: (sx, sy) = (width - 1 - x, height - 1 - y)
                case 4: (sx, sy) = (x, height - 1 - y)
                case 5: (sx, sy) = (y, x)
                case 6: (sx, sy) = (y, height - 1 - x)
                case 7: (sx, sy) = (width - 1 - y, height - 1 - x)
                default: (sx, sy) = (width - 1 - y, x)
                }
                let s = (sy * width + sx) * c, d = (y * ow + x) * c
                for k in 0..<c { out[d + k] = pixels[s + k] }
            }
        }
        return Image(unchecked: ow, oh, c, out)
    }

    /// Resized copy: bilinear with half-pixel centres, area-averaged on any axis shrunk by
    /// more than 2× (see `AxisTaps`). RGBA is resampled premultiplied, so transparent pixels'
    /// hidden colour does not bleed into the visible edge.
    public func resized(width newWidth: Int, height newHeight: Int) throws -> Image {
        guard newWidth > 0, newHeight > 0 else {
            throw ImageError.invalidImage("cannot resize to \(newWidth)×\(newHeight)")
        }
        if width == 0 || height == 0 { throw ImageError.invalidImage("cannot resize an empty image") }
        if newWidth == width && newHeight == height { return self }
        let c = channels, n = width * height
        var src = pixels.map(Float.init)
        if c == 4 {
            for i in 0..<n { let a = src[4 * i + 3] / 255; for k in 0..<3 { src[4 * i + k] *= a } }
        }
        var dst = resampleInterleaved(src, width: width, height: height, channels: c,
                                      toWidth: newWidth, toHeight: newHeight)
        if c == 4 {
            for i in 0..<(newWidth * newHeight) {
                let a = dst[4 * i + 3] / 255
                for k in 0..<3 { dst[4 * i + k] = a > 0 ? dst[4 * i + k] / a : 0 }
            }
        }
        let bytes = dst.map { UInt8(min(max($0.rounded(), 0), 255)) }
        return Image(unchecked: newWidth, newHeight, c, bytes)
    }
}
