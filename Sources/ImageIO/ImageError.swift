// ImageError: every way reading, writing or building an image can fail, as one line a user reads.

/// Errors from decoding, encoding and image construction.
///
/// Each case carries the file's name (its last path component, or the name given to
/// `decode(data:name:)`), so the CLI can print `description` as is: one line naming the
/// file and the cause, and where there is one, what to do about it.
public enum ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file has no bytes.
    case empty(file: String)
    /// Neither PNG nor JPEG magic; `prefix` is the first bytes seen.
    case unknownFormat(file: String, prefix: [UInt8])
    /// Width × height over the limit; refused before any pixel memory was allocated.
    case tooLarge(file: String, width: Int, height: Int, limit: Int)
    /// libpng/libjpeg found damaged data; `reason` is the library's message.
    case corrupt(file: String, format: String, reason: String)
    /// The data ends before the image does.
    case truncated(file: String, format: String)
    /// A well-formed variant this decoder does not handle (12-bit JPEG).
    case unsupported(file: String, reason: String)
    /// The file could not be read or written.
    case io(file: String, reason: String)
    /// Encoding failed, or an image/argument was inconsistent.
    case invalidImage(String)
    /// An unknown colour-map name.
    case unknownColormap(String, valid: [String])

    public var description: String {
        switch self {
        case .empty(let file):
            return "\(file): empty file"
        case .unknownFormat(let file, let prefix):
            let hex = prefix.prefix(4).map { String(format2: $0) }.joined(separator: " ")
            return "\(file): not a PNG or JPEG file (starts with \(hex))"
        case .tooLarge(let file, let w, let h, let limit):
            return "\(file): \(w)×\(h) pixels exceeds the limit of \(limit) pixels (raise it with --max-pixels)"
        case .corrupt(let file, let format, let reason):
            return "\(file): corrupt \(format): \(reason)"
        case .truncated(let file, let format):
            return "\(file): corrupt \(format): premature end of data"
        case .unsupported(let file, let reason):
            return "\(file): \(reason)"
        case .io(let file, let reason):
            return "\(file): \(reason)"
        case .invalidImage(let reason):
            return "invalid image: \(reason)"
        case .unknownColormap(let name, let valid):
            return "unknown colormap '\(name)' (valid: \(valid.joined(separator: ", ")))"
        }
    }
}

extension String {
    /// Two upper-case hex digits, as `xxd` and file(1) show magic bytes.
    init(format2 byte: UInt8) {
        let digits = Array("0123456789ABCDEF")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }
}
