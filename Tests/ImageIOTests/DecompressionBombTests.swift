// PNG decompression bombs: a file whose IDAT cannot possibly inflate to the image its IHDR
// declares is refused before the pixel buffer is allocated, and IDAT data far beyond what the
// image needs is refused before libpng would spend seconds inflating it (png_codec.c).
// The bounds are deflate's own: at most 1032:1 expansion, and no encoder writes more than
// ~9/8 of the raw size; a genuine image at zlib's best ratio passes.

import Foundation
import ImageIO
import XCTest

final class DecompressionBombTests: XCTestCase {
    /// zlib stream of `count` zeros in stored blocks (exact size, no compressor needed).
    func storedZeros(_ count: Int) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var left = count
        repeat {
            let n = min(left, 65_535)
            left -= n
            out += [left == 0 ? 1 : 0, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8(~n >> 8 & 0xFF)]
            out += [UInt8](repeating: 0, count: n)
        } while left > 0
        return out + bigEndian(UInt32(count % 65_521) << 16 | 1)
    }

    func png(width: UInt32, height: UInt32, colorType: UInt8 = 2, depth: UInt8 = 8, interlaced: Bool = false,
             idat: [UInt8]) -> Data {
        let ihdr = bigEndian(width) + bigEndian(height) + [depth, colorType, 0, 0, interlaced ? 1 : 0]
        return Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + pngChunk("IHDR", ihdr) + pngChunk("IDAT", idat)
                    + pngChunk("IEND", []))
    }

    func testTinyFileClaimingABigImageIsRefusedBeforeAllocating() {
        // 9000×9000 RGB is 243 MB of scanlines; 16 stored bytes inflate to at most ~18 KB.
        let start = Date()
        for interlaced in [false, true] {
            let bomb = png(width: 9000, height: 9000, interlaced: interlaced, idat: storedZeros(16))
            let error = assertRefused(bomb, name: "bomb.png", contains: ["corrupt PNG: 9000×9000 image needs",
                                                                         "truncated or crafted"])
            // Adam7's seven passes each add a filter byte per row: 243016875 against 243009000.
            XCTAssertTrue(error?.description.contains(interlaced ? "243016875 bytes" : "243009000 bytes") ?? false,
                          error?.description ?? "")
        }
        // 16-bit gray+alpha: 4 bytes a pixel.
        assertRefused(png(width: 5000, height: 5000, colorType: 4, depth: 16, idat: storedZeros(100)), name: "b16.png",
                      contains: ["100005000 bytes"])
        XCTAssertLessThan(Date().timeIntervalSince(start), 1, "refused from the header, nothing inflated")
    }

    func testSurplusIDATIsRefused() throws {
        // 16×16 RGB needs 16 × (1 + 48) = 784 bytes; 2 × 784 + 64 KB is the most accepted.
        assertRefused(png(width: 16, height: 16, idat: storedZeros(70_000)), name: "s.png",
                      contains: ["far more than the 16×16 image's 784 bytes", "decompression bomb"])
        // Up to the bound the file is fine (libpng only warns about the extra data).
        XCTAssertNoThrow(try ImageDecoder.decode(data: png(width: 16, height: 16, idat: storedZeros(784)), name: "ok.png"))
        XCTAssertNoThrow(try ImageDecoder.decode(data: png(width: 16, height: 16, idat: storedZeros(60_000)), name: "ok.png"))
    }

    /// An all-black 2000×2000 image compressed ~1028:1 by zlib -9 is genuine: it decodes, and
    /// with a lower limit it is refused by its header before anything is inflated.
    func testGenuineHighlyCompressedImageStillDecodes() throws {
        let data = try fixtureData("zeros-2000x2000.png")
        XCTAssertLessThan(data.count, 12_000)
        let image = try ImageDecoder.decode(data: data, name: "zeros.png")
        XCTAssertEqual([image.width, image.height, image.channels], [2000, 2000, 3])
        XCTAssertTrue(image.pixels.allSatisfy { $0 == 0 })
        let start = Date()
        assertRefused(data, name: "zeros.png", maxPixels: 1_000_000, contains: ["2000×2000 pixels exceeds the limit"])
        XCTAssertLessThan(Date().timeIntervalSince(start), 0.5)
        // Cut to a tenth, its IDAT chunk runs past the end of the file: refused before libpng
        // allocates anything.
        assertRefused(data.prefix(data.count / 10), name: "cut.png", contains: ["corrupt PNG: premature end of data"])
    }

    /// Every valid PngSuite fixture (all colour types, depths, interlacing, odd sizes) passes
    /// the bounds: they reject nothing a real encoder writes.
    func testBoundsAcceptEveryValidFixture() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: fixturesDirectoryPath())
            .filter { $0.hasSuffix(".png") && !$0.hasPrefix("x") }
        XCTAssertGreaterThan(names.count, 20)
        for name in names { XCTAssertNoThrow(try ImageDecoder.decode(data: try fixtureData(name), name: name), name) }
    }

    func fixturesDirectoryPath() -> String { fixture("basn2c08.png").deletingLastPathComponent().path }

    /// Found by fuzz-png: 61 bytes whose tEXt chunk claims 1,609,760,768 bytes. libpng 1.6.39
    /// allocates and zeroes a chunk's declared length before reading it (the simplified API
    /// only warns "chunk data is too large"), so decoding took 1.6 GB and 2 s. Chunks are now
    /// checked against the file's end first (png_codec.c, png_scan_chunks).
    func testChunkLongerThanTheFileIsRefusedWithoutAllocating() throws {
        let bytes: [UInt8] = [
            0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
            0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x05, 0x02, 0x03, 0x00, 0x00, 0x01, 0x87, 0x06, 0xFE,
            0xE0, 0x00, 0x00, 0x00, 0x04, 0x73, 0x50, 0x4C, 0x54, 0x45, 0x00, 0x01, 0x86, 0xA0, 0x31, 0xE8,
            0x96, 0x5F, 0xF3, 0x00, 0x00, 0x74, 0x45, 0x58, 0x74, 0x00, 0x00, 0xA0, 0x77,
        ]
        XCTAssertEqual(Data(bytes), try Data(contentsOf: fixture("../../Fuzz/regressions/png/oom-text-chunk-1.6GB.png")))
        let start = Date()
        assertRefused(Data(bytes), name: "text.png", contains: ["corrupt PNG: premature end of data"])
        XCTAssertLessThan(Date().timeIntervalSince(start), 0.5, "the 1.6 GB chunk must not be allocated")
        // Every regression input the fuzzer produced is refused the same quick way.
        let folder = fixture("../../Fuzz/regressions/png").standardizedFileURL
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) {
            let t0 = Date()
            _ = try? ImageDecoder.decode(data: try Data(contentsOf: folder.appendingPathComponent(name)), name: name)
            XCTAssertLessThan(Date().timeIntervalSince(t0), 0.5, name)
        }
    }
}
