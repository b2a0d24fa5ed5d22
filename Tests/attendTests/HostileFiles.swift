// Builders and checks shared by the end-to-end robustness tests (bad inputs, safe outputs,
// determinism): hostile safetensors/npy/PNG bytes, a run with a deadline, and the contract
// every refusal keeps (status 1, one line naming the file and the cause, no output).

import Foundation
import TensorCore
import TestSupport
import XCTest

enum Hostile {
    /// Safetensors bytes with a given header text (length-prefixed, or a claimed length).
    static func safetensors(_ header: String, _ data: [UInt8] = [], claimedLength: UInt64? = nil) -> Data {
        let h = Array(header.utf8)
        var out = Data()
        withUnsafeBytes(of: (claimedLength ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: h)
        out.append(contentsOf: data)
        return out
    }

    /// .npy bytes (version 1.0) with a given header dict text, padded as numpy pads it.
    static func npy(_ dict: String, _ data: [UInt8] = []) -> Data {
        var h = Array(dict.utf8)
        while (10 + h.count + 1) % 64 != 0 { h.append(0x20) }
        h.append(0x0A)
        var out = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
        withUnsafeBytes(of: UInt16(h.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: h)
        out.append(contentsOf: data)
        return out
    }

    /// Little-endian float32 bytes.
    static func f32(_ values: [Float]) -> [UInt8] {
        values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c >> 1) ^ (0xEDB8_8320 & (0 &- (c & 1))) }
        }
        return ~c
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    static func chunk(_ type: String, _ body: [UInt8]) -> [UInt8] {
        let t = Array(type.utf8)
        return be32(UInt32(body.count)) + t + body + be32(crc32(t + body))
    }

    /// A zlib stream of `count` zero bytes in stored (uncompressed) blocks: a valid IDAT
    /// payload of exactly known size, no compressor needed.
    static func storedZeros(_ count: Int) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var left = count
        repeat {
            let n = min(left, 65_535)
            left -= n
            out += [left == 0 ? 1 : 0, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8(~n >> 8 & 0xFF)]
            out += [UInt8](repeating: 0, count: n)
        } while left > 0
        let adler: UInt32 = (UInt32(count % 65_521) << 16) | 1  // a = 1 (zeros add nothing), b = count·1
        return out + be32(adler)
    }

    /// An RGB8 PNG of `width`×`height` whose IDAT payload is `idat`.
    static func png(width: UInt32, height: UInt32, idat: [UInt8], interlaced: Bool = false) -> Data {
        let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        let ihdr = be32(width) + be32(height) + [8, 2, 0, 0, interlaced ? 1 : 0]
        return Data(signature + chunk("IHDR", ihdr) + chunk("IDAT", idat) + chunk("IEND", []))
    }
}

/// Runs a built product like `runProduct`, but kills it after `seconds`, so a hang fails one
/// test instead of stalling the suite.
struct Outcome {
    let status: Int32
    let stdout: String
    let stderr: String
    let timedOut: Bool
}

func runBounded(_ arguments: [String], product name: String = "attend", seconds: Double = 120,
                environment: [String: String]? = nil) throws -> Outcome {
    let p = Process()
    p.executableURL = productsDirectory().appendingPathComponent(name)
    p.arguments = arguments
    if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    final class Box: @unchecked Sendable { var data = Data() }
    let outBox = Box(), errBox = Box()
    let group = DispatchGroup()
    try p.run()
    for (pipe, box) in [(out, outBox), (err, errBox)] {
        group.enter()
        DispatchQueue.global().async { box.data = pipe.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    }
    let timedOut = group.wait(timeout: .now() + seconds) == .timedOut
    if timedOut {
        kill(p.processIdentifier, SIGKILL)
        group.wait()
    }
    p.waitUntilExit()
    return Outcome(status: p.terminationStatus, stdout: String(decoding: outBox.data, as: UTF8.self),
                   stderr: String(decoding: errBox.data, as: UTF8.self), timedOut: timedOut)
}

/// The refusal contract: exit status 1, exactly one line on stderr that names `file` and
/// contains `cause`, nothing on stdout, and no output file at `output` (when given).
func assertRefusal(_ r: Outcome, file: String, cause: String, output: URL? = nil, status: Int32 = 1,
                   _ label: String = "", sourceFile: StaticString = #filePath, line: UInt = #line) {
    let tag = label.isEmpty ? file : label
    XCTAssertFalse(r.timedOut, "\(tag): timed out", file: sourceFile, line: line)
    XCTAssertEqual(r.status, status, "\(tag): \(r.stderr)", file: sourceFile, line: line)
    let lines = r.stderr.split(separator: "\n")
    XCTAssertEqual(lines.count, 1, "\(tag): expected one line, got: \(r.stderr)", file: sourceFile, line: line)
    XCTAssertTrue(r.stderr.contains(file), "\(tag): '\(r.stderr)' does not name \(file)", file: sourceFile, line: line)
    XCTAssertTrue(r.stderr.contains(cause), "\(tag): '\(r.stderr)' does not say '\(cause)'", file: sourceFile, line: line)
    if let output {
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.path), "\(tag): output written", file: sourceFile, line: line)
    }
}
