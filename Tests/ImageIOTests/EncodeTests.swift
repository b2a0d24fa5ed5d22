// Encoding: PNG round trips exactly, JPEG within tolerance, and Image.write(to:) is atomic.

import Foundation
import ImageIO
import XCTest

final class EncodeTests: XCTestCase {
    /// A deterministic test card: gradients plus a hard edge, so both smooth and sharp
    /// content go through the codecs.
    func testCard(width: Int = 48, height: Int = 32, channels: Int) -> Image {
        var pixels = [UInt8]()
        for y in 0..<height {
            for x in 0..<width {
                let edge: UInt8 = x < width / 2 ? 40 : 220
                let all: [UInt8] = [UInt8(x * 255 / (width - 1)), UInt8(y * 255 / (height - 1)), edge, UInt8((x + y) % 256)]
                pixels.append(contentsOf: channels == 1 ? [edge] : Array(all.prefix(channels)))
            }
        }
        return try! Image(width: width, height: height, channels: channels, pixels: pixels)
    }

    func testPNGRoundTripIsExact() throws {
        for channels in [1, 3, 4] {
            let image = testCard(channels: channels)
            let data = try ImageEncoder.png(image)
            XCTAssertEqual(Array(data.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
            let back = try ImageDecoder.decode(data: data, name: "rt.png")
            // Decoders return RGB/RGBA: gray comes back replicated.
            XCTAssertEqual(back, channels == 1 ? image.toRGB() : image, "channels \(channels)")
        }
    }

    func testJPEGRoundTripWithinTolerance() throws {
        let image = testCard(channels: 3)
        let data = try ImageEncoder.jpeg(image, quality: 95)
        XCTAssertEqual(Array(data.prefix(3)), [0xFF, 0xD8, 0xFF])
        let back = try ImageDecoder.decode(data: data, name: "rt.jpg")
        XCTAssertEqual([back.width, back.height, back.channels], [48, 32, 3])
        XCTAssertLessThan(meanAbsoluteDifference(back, image), 3)
        let small = try ImageEncoder.jpeg(image, quality: 10)
        XCTAssertLessThan(small.count, data.count, "lower quality should compress more")
        let gray = try ImageDecoder.decode(data: try ImageEncoder.jpeg(testCard(channels: 1)), name: "g.jpg")
        XCTAssertLessThan(meanAbsoluteDifference(gray, testCard(channels: 1).toRGB()), 3)
    }

    func testJPEGCompositesAlphaOverWhite() throws {
        let clear = Image(width: 16, height: 16, channels: 4, fill: .clear)
        let back = try ImageDecoder.decode(data: try ImageEncoder.jpeg(clear), name: "a.jpg")
        XCTAssertGreaterThan(back.color(x: 8, y: 8).r, 250)
    }

    func testEmptyImagesCannotBeEncoded() {
        XCTAssertThrowsError(try ImageEncoder.png(Image(width: 0, height: 5)))
        XCTAssertThrowsError(try ImageEncoder.jpeg(Image(width: 5, height: 0)))
    }

    func testWriteChoosesFormatByExtensionAndLeavesNoTemporaryFile() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let image = testCard(channels: 3)
        for name in ["a.png", "b.jpg", "c.JPEG"] {
            try image.write(to: folder.appendingPathComponent(name))
        }
        XCTAssertEqual(try ImageDecoder.decode(contentsOf: folder.appendingPathComponent("a.png")), image)
        XCTAssertEqual(try ImageDecoder.decodeDetailed(contentsOf: folder.appendingPathComponent("c.JPEG")).format, .jpeg)
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        XCTAssertEqual(names, ["a.png", "b.jpg", "c.JPEG"])
    }

    func testFailedWritesLeaveNothingBehind() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let image = testCard(channels: 3)
        // Unknown extension: refused before anything is created.
        XCTAssertThrowsError(try image.write(to: folder.appendingPathComponent("x.gif"))) {
            XCTAssertTrue("\($0)".hasPrefix("x.gif: unknown image extension"))
        }
        // Encoding failure (empty image): nothing created.
        XCTAssertThrowsError(try Image(width: 0, height: 0).write(to: folder.appendingPathComponent("e.png")))
        // Rename onto an existing folder fails after the temporary file was written.
        let blocker = folder.appendingPathComponent("taken.png")
        try FileManager.default.createDirectory(at: blocker, withIntermediateDirectories: false)
        XCTAssertThrowsError(try image.write(to: blocker)) {
            XCTAssertTrue("\($0)".hasPrefix("taken.png: "), "\($0)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["taken.png"])
        // A folder that does not exist.
        XCTAssertThrowsError(try image.write(to: folder.appendingPathComponent("no/such/dir.png")))
    }

    /// Replacing an existing file swaps it whole: readers see the old or the new image.
    func testWriteReplacesExistingFile() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("out.png")
        try Image(width: 4, height: 4, fill: .black).write(to: url)
        try Image(width: 6, height: 2, fill: .red).write(to: url)
        let back = try ImageDecoder.decode(contentsOf: url)
        XCTAssertEqual([back.width, back.height], [6, 2])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["out.png"])
    }
}
