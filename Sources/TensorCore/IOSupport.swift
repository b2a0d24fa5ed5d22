// Shared by the safetensors and npy readers and writers; internal, no stable API:
// raw element decoding (floats, integers, bool; little- or big-endian) to float32,
// overflow-checked shape arithmetic, bounded file reading and atomic (temp + rename) writing.
//
// Decoding: callers have already checked that `raw` holds `count × kind.size` bytes; loads are unaligned
// (file sections carry no alignment promise).

import Foundation
#if canImport(Glibc)
import Glibc
private let posixWrite = Glibc.write
#elseif canImport(Darwin)
import Darwin
private let posixWrite = Darwin.write
#endif

enum ScalarKind: Sendable {
    case f16, bf16, f32, f64
    case i8, i16, i32, i64
    case u8, u16, u32, u64
    case bool

    /// Bytes per element.
    var size: Int {
        switch self {
        case .i8, .u8, .bool: return 1
        case .f16, .bf16, .i16, .u16: return 2
        case .f32, .i32, .u32: return 4
        case .f64, .i64, .u64: return 8
        }
    }

    /// Decodes `count` elements from the start of `raw` into `dst`. `bigEndian` is the byte
    /// order in storage. Precondition (checked by the caller): `raw.count >= count * size`.
    func decode(_ raw: UnsafeRawBufferPointer, count: Int, bigEndian: Bool, into dst: UnsafeMutablePointer<Float>) {
        precondition(count >= 0 && raw.count >= count * size, "decode: \(raw.count) bytes for \(count) × \(size)")
        if count == 0 { return }
        @inline(__always) func u16(_ i: Int) -> UInt16 {
            let v = raw.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)
            return bigEndian ? UInt16(bigEndian: v) : UInt16(littleEndian: v)
        }
        @inline(__always) func u32(_ i: Int) -> UInt32 {
            let v = raw.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)
            return bigEndian ? UInt32(bigEndian: v) : UInt32(littleEndian: v)
        }
        @inline(__always) func u64(_ i: Int) -> UInt64 {
            let v = raw.loadUnaligned(fromByteOffset: i &* 8, as: UInt64.self)
            return bigEndian ? UInt64(bigEndian: v) : UInt64(littleEndian: v)
        }
        switch self {
        case .f32:
            #if _endian(little)
            if !bigEndian {
                UnsafeMutableRawPointer(dst).copyMemory(from: raw.baseAddress!, byteCount: count * 4)
                return
            }
            #endif
            for i in 0..<count { dst[i] = Float(bitPattern: u32(i)) }
        case .f64: for i in 0..<count { dst[i] = Float(Double(bitPattern: u64(i))) }
        case .f16: for i in 0..<count { dst[i] = HalfFloat.float(fromF16: u16(i)) }
        case .bf16: for i in 0..<count { dst[i] = HalfFloat.float(fromBF16: u16(i)) }
        case .i8: for i in 0..<count { dst[i] = Float(Int8(bitPattern: raw[i])) }
        case .u8: for i in 0..<count { dst[i] = Float(raw[i]) }
        case .bool: for i in 0..<count { dst[i] = raw[i] == 0 ? 0 : 1 }
        case .i16: for i in 0..<count { dst[i] = Float(Int16(bitPattern: u16(i))) }
        case .u16: for i in 0..<count { dst[i] = Float(u16(i)) }
        case .i32: for i in 0..<count { dst[i] = Float(Int32(bitPattern: u32(i))) }
        case .u32: for i in 0..<count { dst[i] = Float(u32(i)) }
        case .i64: for i in 0..<count { dst[i] = Float(Int64(bitPattern: u64(i))) }
        case .u64: for i in 0..<count { dst[i] = Float(u64(i)) }
        }
    }
}

/// Overflow-checked shape arithmetic for readers of untrusted headers.
enum ShapeMath {
    /// Largest rank a file may declare (PyTorch's own limit is 64 dimensions).
    static let maxRank = 64
    /// Product of the nonzero dims must stay below this, so every stride and offset computed
    /// later (even for a zero-size tensor such as 0×2^40×2^40) fits an Int with room to spare.
    static let maxElements = 1 << 48

    /// The element count of `shape`, or nil when a partial product passes `maxElements`.
    static func elementCount(_ shape: [Int]) -> Int? {
        var nonzero = 1
        var hasZero = false
        for d in shape {
            if d < 0 { return nil }
            if d == 0 { hasZero = true; continue }
            let (p, o) = nonzero.multipliedReportingOverflow(by: d)
            if o || p > maxElements { return nil }
            nonzero = p
        }
        return hasZero ? 0 : nonzero
    }
}

/// Human-readable byte counts for error messages: "812 bytes", "1.07 GB".
func formatBytes(_ n: Int) -> String {
    if n < 10_000 { return "\(n) bytes" }
    let units: [(Double, String)] = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")]
    for (scale, name) in units where Double(n) >= scale {
        let v = Double(n) / scale
        let r = (v * 100).rounded() / 100
        return "\(n) bytes (\(r) \(name))"
    }
    return "\(n) bytes"
}

enum FileAccess {
    /// The bytes of `url`, memory-mapped, after refusing directories and files over `maxBytes`.
    /// Errors are `WeightsError.malformed` naming the path, so a CLI prints one clear line.
    static func read(_ url: URL, maxBytes: Int) throws -> Data {
        let path = url.path
        var st = stat()
        guard stat(path, &st) == 0 else {
            let reason = String(cString: strerror(errno))
            throw WeightsError.malformed(path: path, reason: "cannot read the file: \(reason)")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw WeightsError.malformed(path: path, reason: "is a directory, not a file")
        }
        if (st.st_mode & S_IFMT) != S_IFREG {
            // Devices and pipes have no size to check against maxBytes (/dev/zero never ends).
            throw WeightsError.malformed(path: path, reason: "is not a regular file")
        }
        let size = Int(st.st_size)
        if size > maxBytes {
            throw WeightsError.malformed(
                path: path, reason: "file is \(formatBytes(size)), over the limit of \(formatBytes(maxBytes)); raise maxBytes if it is expected")
        }
        // Foundation leaks a page-sized buffer when it maps an empty file (LeakSanitizer), and
        // there is nothing to read anyway.
        if size == 0 { return Data() }
        do {
            return try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw WeightsError.malformed(path: path, reason: "cannot read the file: \(error.localizedDescription)")
        }
    }

    /// `AtomicFile.write`, with failures as `WeightsError.malformed` naming the path.
    static func writeAtomically(_ data: Data, to url: URL) throws {
        do {
            try AtomicFile.write(data, to: url)
        } catch let e as AtomicFile.Failure {
            throw WeightsError.malformed(path: url.path, reason: "cannot write the file: \(e.reason)")
        }
    }
}

/// Writing a file so that readers see either its old bytes or all of the new ones, never a mix.
///
/// The bytes go to a hidden temporary file in the target's folder, are synced to disk, and the
/// file is renamed over the target (atomic within one file system). A failure at any step (a
/// full disk, a file-size limit, a folder in the way) removes the temporary file and leaves an
/// existing target untouched; a crash part-way can leave only the hidden temporary file. Used
/// by every writer of the package (npy, safetensors, images, the CLI's text files), through
/// POSIX calls so that the reason is the system's own ("File too large", "Is a directory").
public enum AtomicFile {
    public struct Failure: Error, CustomStringConvertible {
        /// What went wrong, e.g. "No space left on device".
        public let reason: String
        public var description: String { reason }
    }

    public static func write(_ data: Data, to url: URL) throws {
        let tmp = url.deletingLastPathComponent().appendingPathComponent(
            ".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        func fail(_ step: String) -> Failure {
            Failure(reason: step.isEmpty ? String(cString: strerror(errno)) : "\(step): \(String(cString: strerror(errno)))")
        }
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw fail("cannot create a file in \(url.deletingLastPathComponent().path)") }
        var failure: Failure?
        data.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = posixWrite(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = fail("")
                    return
                }
                done += n
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = fail("") }
        if close(fd) != 0, failure == nil { failure = fail("") }
        if failure == nil, rename(tmp.path, url.path) != 0 { failure = fail("") }
        if let failure {
            unlink(tmp.path)
            throw failure
        }
    }
}
