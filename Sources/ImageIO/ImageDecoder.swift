// ImageDecoder: PNG/JPEG bytes or files -> Image, sniffing the format by magic bytes.

import CCodecs
import Foundation

/// What a decoder learned about the source besides its pixels.
public struct DecodedImage: Sendable {
    public enum Format: String, Sendable { case png = "PNG", jpeg = "JPEG" }
    /// Upright pixels: 3 (RGB) or 4 (RGBA) channels, EXIF orientation already applied.
    public var image: Image
    public var format: Format
    /// PNG IHDR bit depth (1–16) or JPEG sample precision.
    public var sourceBitDepth: Int
    /// PNG IHDR colour type (0, 2, 3, 4, 6) or libjpeg's J_COLOR_SPACE of the file.
    public var sourceColorType: Int
    /// The file had an alpha channel or a tRNS chunk.
    public var sourceHasAlpha: Bool
    /// EXIF orientation 1–8 as stored (1 when absent); `image` is already rotated by it.
    public var orientation: Int
    /// Damage the library repaired (e.g. extraneous bytes between JPEG markers).
    public var warnings: Int
}

/// Decodes PNG and JPEG, whatever the file is called.
///
/// Hostile input is expected (users point the tool at any folder): the format comes from
/// the magic bytes, not the extension; width × height is checked against `maxPixels` after
/// the header is parsed and before pixel memory is allocated; files are read with a size
/// cap derived from the same limit, so `/dev/zero` or a 20 GB "photo" fails fast too.
public enum ImageDecoder {
    public static let defaultMaxPixels = 100_000_000

    /// Decodes a file; errors name its last path component.
    public static func decode(contentsOf url: URL, maxPixels: Int = defaultMaxPixels) throws -> Image {
        try decodeDetailed(contentsOf: url, maxPixels: maxPixels).image
    }

    /// Decodes bytes; `name` is used in error messages (a file name or URL).
    public static func decode(data: Data, name: String, maxPixels: Int = defaultMaxPixels) throws -> Image {
        try decodeDetailed(data: data, name: name, maxPixels: maxPixels).image
    }

    public static func decodeDetailed(contentsOf url: URL, maxPixels: Int = defaultMaxPixels) throws -> DecodedImage {
        let name = url.lastPathComponent
        let data = try readCapped(url, name: name, cap: maxFileBytes(maxPixels: maxPixels))
        return try decodeDetailed(data: data, name: name, maxPixels: maxPixels)
    }

    public static func decodeDetailed(data: Data, name: String,
                                      maxPixels: Int = defaultMaxPixels) throws -> DecodedImage {
        guard !data.isEmpty else { throw ImageError.empty(file: name) }
        let bytes = [UInt8](data.prefix(8))
        let format: DecodedImage.Format
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
            format = .png  // the rest of the signature is libpng's to judge (CR/LF damage)
        } else if bytes.starts(with: [0xFF, 0xD8, 0xFF]) {
            format = .jpeg
        } else {
            throw ImageError.unknownFormat(file: name, prefix: bytes)
        }

        var out = fa_decoded()
        var message = [CChar](repeating: 0, count: 512)
        let limit = UInt64(max(0, maxPixels))
        let status = data.withUnsafeBytes { raw -> Int32 in
            let base = raw.bindMemory(to: UInt8.self).baseAddress!
            return format == .png
                ? fa_png_decode(base, raw.count, limit, &out, &message, message.count)
                : fa_jpeg_decode(base, raw.count, limit, &out, &message, message.count)
        }
        defer { fa_free(out.pixels) }
        let reason = String(cString: message)
        switch Int(status) {
        case Int(FA_OK): break
        case Int(FA_ERR_TOO_BIG):
            throw ImageError.tooLarge(file: name, width: Int(out.width), height: Int(out.height), limit: maxPixels)
        case Int(FA_ERR_TRUNCATED): throw ImageError.truncated(file: name, format: format.rawValue)
        case Int(FA_ERR_UNSUPPORTED): throw ImageError.unsupported(file: name, reason: reason)
        case Int(FA_ERR_NOMEM): throw ImageError.io(file: name, reason: "out of memory while decoding")
        default: throw ImageError.corrupt(file: name, format: format.rawValue, reason: reason)
        }

        let (w, h, c) = (Int(out.width), Int(out.height), Int(out.channels))
        let pixels = [UInt8](UnsafeBufferPointer(start: out.pixels, count: w * h * c))
        let stored = Image(unchecked: w, h, c, pixels)
        return DecodedImage(
            image: stored.oriented(exif: Int(out.orientation)), format: format,
            sourceBitDepth: Int(out.source_bit_depth), sourceColorType: Int(out.source_color_type),
            sourceHasAlpha: out.source_has_alpha != 0, orientation: Int(out.orientation),
            warnings: Int(out.warnings))
    }

    /// The largest file worth reading for a pixel limit: an uncompressed 16-bit RGBA PNG
    /// (8 bytes a pixel, plus deflate's stored-block overhead) and 16 MB for metadata.
    static func maxFileBytes(maxPixels: Int) -> Int {
        let (product, overflow) = max(0, maxPixels).multipliedReportingOverflow(by: 9)
        return overflow ? Int.max : product + (16 << 20)
    }

    /// Reads at most `cap` bytes, refusing larger files; works for pipes and devices too.
    static func readCapped(_ url: URL, name: String, cap: Int) throws -> Data {
        let handle: FileHandle
        do {
            handle = try FileHandle(forReadingFrom: url)
        } catch {
            let exists = FileManager.default.fileExists(atPath: url.path)
            throw ImageError.io(file: name, reason: exists ? "cannot be read" : "no such file")
        }
        defer { try? handle.close() }
        var data = Data()
        while true {
            let chunk: Data?
            do {
                chunk = try handle.read(upToCount: 1 << 20)
            } catch {
                throw ImageError.io(file: name, reason: "read failed (is it a folder?)")
            }
            guard let chunk, !chunk.isEmpty else { break }
            data.append(chunk)
            if data.count > cap {
                throw ImageError.io(file: name, reason: "file is larger than \(cap) bytes, too big "
                                    + "for the pixel limit (raise it with --max-pixels)")
            }
        }
        return data
    }
}
