// ImageEncoder: Image -> PNG/JPEG bytes, and Image.write(to:) that never leaves a partial file.

import CCodecs
import Foundation
import TensorCore

/// Encodes images to PNG (lossless; gray, RGB, RGBA) or JPEG (lossy; gray, RGB).
public enum ImageEncoder {
    /// PNG bytes of the image as is (1, 3 or 4 channels, 8 bits each).
    public static func png(_ image: Image) throws -> Data {
        try encode(image) { pixels, out, msg, cap in
            fa_png_encode(pixels, UInt32(image.width), UInt32(image.height), UInt32(image.channels), out, msg, cap)
        }
    }

    /// JPEG bytes at `quality` (1–100). JPEG has no alpha: RGBA is composited over white
    /// first, so transparent regions (e.g. NaN cells of a heat map) come out white, not black.
    public static func jpeg(_ image: Image, quality: Int = 90) throws -> Data {
        let source = image.channels == 4 ? image.composited(over: .white) : image
        return try encode(source) { pixels, out, msg, cap in
            fa_jpeg_encode(pixels, UInt32(source.width), UInt32(source.height), UInt32(source.channels),
                           Int32(quality), out, msg, cap)
        }
    }

    private static func encode(
        _ image: Image,
        _ body: (UnsafePointer<UInt8>, UnsafeMutablePointer<fa_buffer>, UnsafeMutablePointer<CChar>, Int) -> Int32
    ) throws -> Data {
        guard image.width > 0, image.height > 0 else {
            throw ImageError.invalidImage("cannot encode an empty \(image.width)×\(image.height) image")
        }
        var out = fa_buffer()
        var message = [CChar](repeating: 0, count: 512)
        let status = image.pixels.withUnsafeBufferPointer { px in
            message.withUnsafeMutableBufferPointer { msg in
                body(px.baseAddress!, &out, msg.baseAddress!, msg.count)
            }
        }
        defer { fa_free(out.data) }
        guard status == FA_OK, let data = out.data else {
            throw ImageError.invalidImage(String(cString: message))
        }
        return Data(bytes: data, count: out.size)
    }
}

extension Image {
    /// Writes PNG (`.png`) or JPEG (`.jpg`, `.jpeg`), chosen by the extension.
    ///
    /// The bytes go to a hidden temporary file in the same folder, synced, which is renamed
    /// over `url` only once fully written (TensorCore's `AtomicFile`), so a crash, a full disk
    /// or an encoding error never leaves a truncated image behind; the temporary file is
    /// removed on every failure path.
    public func write(to url: URL, jpegQuality: Int = 90) throws {
        let name = url.lastPathComponent
        let data: Data
        switch url.pathExtension.lowercased() {
        case "png": data = try ImageEncoder.png(self)
        case "jpg", "jpeg": data = try ImageEncoder.jpeg(self, quality: jpegQuality)
        default:
            throw ImageError.io(file: name, reason: "unknown image extension '.\(url.pathExtension)' (use .png, .jpg or .jpeg)")
        }
        do {
            try AtomicFile.write(data, to: url)
        } catch let e as AtomicFile.Failure {
            throw ImageError.io(file: name, reason: "write failed: \(e.reason)")
        }
    }
}
