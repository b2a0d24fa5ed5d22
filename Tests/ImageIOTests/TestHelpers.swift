// Helpers for ImageIO tests: fixture access and builders for hostile PNG/JPEG headers.

import Foundation
import ImageIO
import TestSupport
import XCTest

/// URL of a committed fixture.
func fixture(_ name: String) -> URL { fixturesDirectory().appendingPathComponent(name) }

/// Bytes of a committed fixture.
func fixtureData(_ name: String) throws -> Data { try Data(contentsOf: fixture(name)) }

/// Decodes and asserts that it throws an ImageError whose text contains every fragment;
/// returns the error for further checks.
@discardableResult
func assertRefused(_ data: Data, name: String = "test.bin", maxPixels: Int = ImageDecoder.defaultMaxPixels,
                   contains fragments: [String] = [], file: StaticString = #filePath, line: UInt = #line) -> ImageError? {
    do {
        let image = try ImageDecoder.decode(data: data, name: name, maxPixels: maxPixels)
        XCTFail("\(name) decoded to \(image.width)×\(image.height) but should be refused", file: file, line: line)
        return nil
    } catch let error as ImageError {
        let text = error.description
        XCTAssertTrue(text.hasPrefix("\(name): "), "'\(text)' should start with the file name", file: file, line: line)
        XCTAssertFalse(text.contains("\n"), "'\(text)' should be one line", file: file, line: line)
        for f in fragments {
            XCTAssertTrue(text.contains(f), "'\(text)' should mention '\(f)'", file: file, line: line)
        }
        return error
    } catch {
        XCTFail("unexpected error type \(error)", file: file, line: line)
        return nil
    }
}

/// CRC-32 as PNG chunks use it (ISO 3309, polynomial 0xEDB88320).
func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

/// One PNG chunk with a correct length and CRC.
func pngChunk(_ type: String, _ payload: [UInt8]) -> [UInt8] {
    let body = Array(type.utf8) + payload
    return bigEndian(UInt32(payload.count)) + body + bigEndian(crc32(body))
}

/// A well-formed PNG header claiming `width`×`height` RGB8, followed by a tiny IDAT and
/// IEND: everything a decoder sees before it would allocate the image.
func craftedPNG(width: UInt32, height: UInt32) -> Data {
    let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    let ihdr = bigEndian(width) + bigEndian(height) + [8, 2, 0, 0, 0]
    let zlibEmpty: [UInt8] = [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]
    return Data(signature + pngChunk("IHDR", ihdr) + pngChunk("IDAT", zlibEmpty) + pngChunk("IEND", []))
}

/// `jpeg` with the dimensions in its first SOF0/SOF2 segment replaced.
func withSOFDimensions(_ jpeg: Data, width: UInt16, height: UInt16) -> Data {
    var bytes = [UInt8](jpeg)
    var i = 2
    while i + 9 < bytes.count {
        precondition(bytes[i] == 0xFF, "marker expected at \(i)")
        let marker = bytes[i + 1]
        let length = Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
        if marker == 0xC0 || marker == 0xC1 || marker == 0xC2 {
            bytes[i + 5] = UInt8(height >> 8); bytes[i + 6] = UInt8(height & 0xFF)
            bytes[i + 7] = UInt8(width >> 8); bytes[i + 8] = UInt8(width & 0xFF)
            return Data(bytes)
        }
        i += 2 + length
    }
    preconditionFailure("no SOF marker")
}

/// Mean absolute difference of two same-sized images' bytes.
func meanAbsoluteDifference(_ a: Image, _ b: Image) -> Double {
    precondition(a.pixels.count == b.pixels.count)
    var sum = 0
    for i in 0..<a.pixels.count { sum += abs(Int(a.pixels[i]) - Int(b.pixels[i])) }
    return Double(sum) / Double(max(a.pixels.count, 1))
}

/// A fresh empty folder under the system temporary directory.
func makeTemporaryFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("imageio-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
