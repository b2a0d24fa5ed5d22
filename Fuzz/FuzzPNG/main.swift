// fuzz-png: PNG bytes through ImageDecoder (sniffing, CCodecs' libpng shim, EXIF-free path).
// Invariants: a decode succeeds with a consistent image within the pixel limit, or throws one
// ImageError line naming the file; never a crash, leak (ASan's LeakSanitizer) or hang.

import FuzzSupport
import ImageIO
import Foundation

/// Small enough to keep executions fast (OSS-Fuzz's image harnesses use similar caps), big
/// enough for every interesting header: the limit logic is the same at any value.
let maxPixels = 1 << 22

Fuzz.main("fuzz-png") { data in
    let name = "fuzz.png"
    do {
        let d = try ImageDecoder.decodeDetailed(data: data, name: name, maxPixels: maxPixels)
        let img = d.image
        Fuzz.check(d.format == .png || data.starts(with: [0xFF, 0xD8, 0xFF]), "format \(d.format) for PNG magic")
        Fuzz.check(img.width > 0 && img.height > 0, "empty \(img.width)×\(img.height) image decoded")
        Fuzz.check(img.width * img.height <= maxPixels, "\(img.width)×\(img.height) passed the limit")
        Fuzz.check(img.channels == 3 || img.channels == 4, "\(img.channels) channels")
        Fuzz.check(img.pixels.count == img.width * img.height * img.channels, "pixel buffer size")
        Fuzz.check((img.channels == 4) == d.sourceHasAlpha || d.format == .jpeg, "alpha flag and channels disagree")
        _ = img.toRGB()
    } catch let e as ImageError {
        ErrorText.check(e.description, name: name)
    } catch {
        fatalError("unexpected error type \(type(of: error)): \(error)")
    }
}
