// Image: 8-bit interleaved pixels (gray, RGB or RGBA) and the Color used to draw on them.

/// An 8-bit image with interleaved channels, rows packed top to bottom.
///
/// `channels` is 1 (gray), 3 (RGB) or 4 (RGBA, straight — not premultiplied — alpha).
/// Decoders always produce 3 or 4 channels; gray images come from heat maps and masks.
/// A plain value type: copies are cheap until mutated (the pixel array is copy-on-write).
public struct Image: Equatable, Sendable {
    public private(set) var width: Int
    public private(set) var height: Int
    public private(set) var channels: Int
    public var pixels: [UInt8]

    /// Wraps existing pixels; throws if the count is not `width * height * channels`.
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        guard width >= 0, height >= 0, [1, 3, 4].contains(channels) else {
            throw ImageError.invalidImage("\(width)×\(height) with \(channels) channels (need 1, 3 or 4)")
        }
        guard pixels.count == width * height * channels else {
            throw ImageError.invalidImage(
                "\(width)×\(height)×\(channels) needs \(width * height * channels) bytes, got \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// A blank canvas filled with one colour (white by default, as contact sheets want).
    public init(width: Int, height: Int, channels: Int = 3, fill: Color = .white) {
        precondition(width >= 0 && height >= 0 && [1, 3, 4].contains(channels),
                     "Image(width:height:channels:) needs non-negative sizes and 1, 3 or 4 channels")
        self.width = width
        self.height = height
        self.channels = channels
        let one = fill.components(channels: channels)
        var bytes = [UInt8]()
        bytes.reserveCapacity(width * height * channels)
        for _ in 0..<(width * height) { bytes.append(contentsOf: one) }
        self.pixels = bytes
    }

    /// Internal init for code that has already sized `pixels` correctly.
    init(unchecked width: Int, _ height: Int, _ channels: Int, _ pixels: [UInt8]) {
        precondition(pixels.count == width * height * channels)
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// Bytes per row.
    public var stride: Int { width * channels }

    /// The pixel at (x, y) as a colour (gray expands to r = g = b; no alpha means opaque).
    public func color(x: Int, y: Int) -> Color {
        precondition(x >= 0 && x < width && y >= 0 && y < height, "pixel (\(x), \(y)) outside \(width)×\(height)")
        let i = (y * width + x) * channels
        switch channels {
        case 1: return Color(pixels[i], pixels[i], pixels[i])
        case 3: return Color(pixels[i], pixels[i + 1], pixels[i + 2])
        default: return Color(pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3])
        }
    }

    /// Sets the pixel at (x, y), converting the colour to this image's channels;
    /// points outside the image are ignored so markers may overhang the border.
    public mutating func setColor(_ color: Color, x: Int, y: Int) {
        guard x >= 0, x < width, y >= 0, y < height else { return }
        let i = (y * width + x) * channels
        let c = color.components(channels: channels)
        for k in 0..<channels { pixels[i + k] = c[k] }
    }
}

/// An sRGB colour with straight alpha.
public struct Color: Equatable, Hashable, Sendable {
    public var r: UInt8, g: UInt8, b: UInt8, a: UInt8

    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8, _ a: UInt8 = 255) {
        self.r = r; self.g = g; self.b = b; self.a = a
    }

    /// From 0xRRGGBB, the way colours are written in CSS and matplotlib.
    public init(hex: UInt32) {
        self.init(UInt8(hex >> 16 & 0xFF), UInt8(hex >> 8 & 0xFF), UInt8(hex & 0xFF))
    }

    public static let white = Color(255, 255, 255)
    public static let black = Color(0, 0, 0)
    public static let red = Color(230, 25, 45)
    public static let green = Color(40, 180, 75)
    public static let blue = Color(0, 110, 220)
    public static let yellow = Color(255, 220, 0)
    public static let gray = Color(128, 128, 128)
    public static let clear = Color(0, 0, 0, 0)

    /// Rec. 601 luma, the weights PIL's "L" conversion uses.
    public var luma: UInt8 {
        let sum: Int = 299 * Int(r) + 587 * Int(g) + 114 * Int(b)
        return UInt8((sum + 500) / 1000)
    }

    /// The bytes for an image with `channels` channels.
    public func components(channels: Int) -> [UInt8] {
        switch channels {
        case 1: return [luma]
        case 3: return [r, g, b]
        default: return [r, g, b, a]
        }
    }
}
