// fuzz-jpeg: JPEG bytes through ImageDecoder (sniffing, CCodecs' setjmp-guarded libjpeg shim,
// CMYK conversion, the EXIF orientation reader and the rotation applied in Swift).
// Invariants as for fuzz-png: a consistent image within the pixel limit, or one ImageError line.

import FuzzSupport
import ImageIO
import Foundation

let maxPixels = 1 << 22

Fuzz.main("fuzz-jpeg") { data in
    let name = "fuzz.jpg"
    do {
        let d = try ImageDecoder.decodeDetailed(data: data, name: name, maxPixels: maxPixels)
        let img = d.image
        Fuzz.check(img.width > 0 && img.height > 0, "empty \(img.width)×\(img.height) image decoded")
        Fuzz.check(img.width * img.height <= maxPixels, "\(img.width)×\(img.height) passed the limit")
        Fuzz.check(img.channels == 3 || img.channels == 4, "\(img.channels) channels")
        Fuzz.check(img.pixels.count == img.width * img.height * img.channels, "pixel buffer size")
        Fuzz.check((1...8).contains(d.orientation), "orientation \(d.orientation)")
        if d.format == .jpeg { Fuzz.check(img.channels == 3 && !d.sourceHasAlpha, "JPEG with alpha") }
        _ = img.toRGB()
    } catch let e as ImageError {
        ErrorText.check(e.description, name: name)
    } catch {
        fatalError("unexpected error type \(type(of: error)): \(error)")
    }
}
