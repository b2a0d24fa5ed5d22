// PNG decoding: every PngSuite colour type, bit depth, interlacing, tRNS and odd size decodes
// to the right shape and pixels; the 14 corrupt x*.png files are refused with a clear error.

import Foundation
import ImageIO
import XCTest

final class PNGDecodeTests: XCTestCase {
    /// (file, width, height, channels): alpha and tRNS sources decode to RGBA, others to RGB.
    let valid: [(String, Int, Int, Int)] = [
        ("basn0g01", 32, 32, 3), ("basn0g04", 32, 32, 3), ("basn0g08", 32, 32, 3), ("basn0g16", 32, 32, 3),
        ("basn2c08", 32, 32, 3), ("basn2c16", 32, 32, 3),
        ("basn3p01", 32, 32, 3), ("basn3p04", 32, 32, 3), ("basn3p08", 32, 32, 3),
        ("basn4a08", 32, 32, 4), ("basn4a16", 32, 32, 4), ("basn6a08", 32, 32, 4), ("basn6a16", 32, 32, 4),
        ("basi0g16", 32, 32, 3), ("basi3p08", 32, 32, 3), ("basi6a16", 32, 32, 4),
        ("tbbn3p08", 32, 32, 4), ("tbrn2c08", 32, 32, 4),
        ("s01n3p01", 1, 1, 3), ("s03n3p01", 3, 3, 3), ("s05i3p02", 5, 5, 3), ("s09n3p02", 9, 9, 3),
    ]

    func testEveryValidFileDecodesWithTheRightShape() throws {
        for (name, w, h, c) in valid {
            let image = try ImageDecoder.decode(contentsOf: fixture("\(name).png"))
            XCTAssertEqual([image.width, image.height, image.channels], [w, h, c], name)
            XCTAssertEqual(image.pixels.count, w * h * c, name)
        }
    }

    func testSourceInfoReportsBitDepthColourTypeAndAlpha() throws {
        let deep = try ImageDecoder.decodeDetailed(contentsOf: fixture("basn6a16.png"))
        XCTAssertEqual(deep.format, .png)
        XCTAssertEqual(deep.sourceBitDepth, 16)
        XCTAssertEqual(deep.sourceColorType, 6)
        XCTAssertTrue(deep.sourceHasAlpha)
        let palette = try ImageDecoder.decodeDetailed(contentsOf: fixture("basn3p04.png"))
        XCTAssertEqual([palette.sourceBitDepth, palette.sourceColorType], [4, 3])
        XCTAssertFalse(palette.sourceHasAlpha)
        XCTAssertTrue(try ImageDecoder.decodeDetailed(contentsOf: fixture("tbrn2c08.png")).sourceHasAlpha)
    }

    /// basn2c08 is a gradient whose top-left pixel is white and whose first row fades
    /// blue (255, 255, 255 → ...); values checked against PIL, which agrees here because
    /// the gAMA 1.0 → sRGB mapping fixes 0 and 255.
    func testKnownPixelValues() throws {
        let rgb = try ImageDecoder.decode(contentsOf: fixture("basn2c08.png"))
        XCTAssertEqual(rgb.color(x: 0, y: 0), Color(255, 255, 255))
        let deep = try ImageDecoder.decode(contentsOf: fixture("basn2c16.png"))
        XCTAssertEqual(deep.color(x: 0, y: 0), Color(255, 255, 0))
        let gray = try ImageDecoder.decode(contentsOf: fixture("basn0g01.png"))
        XCTAssertEqual(gray.color(x: 0, y: 0), Color(255, 255, 255))
        XCTAssertEqual(gray.color(x: 31, y: 31), Color(0, 0, 0))
        let tiny = try ImageDecoder.decode(contentsOf: fixture("s01n3p01.png"))
        XCTAssertEqual(tiny.pixels, [0, 0, 255])
    }

    /// Interlaced and non-interlaced encodings of the same picture decode alike. 8-bit
    /// files match exactly; 16-bit ones go through the libpng#853 work-around (see
    /// png_codec.c) and match within 1 on every visible pixel (the colour under alpha 0 is
    /// arbitrary and not compared).
    func testInterlacedMatchesNonInterlaced() throws {
        XCTAssertEqual(try ImageDecoder.decode(contentsOf: fixture("basi3p08.png")),
                       try ImageDecoder.decode(contentsOf: fixture("basn3p08.png")))
        for (interlaced, plain) in [("basi0g16", "basn0g16"), ("basi6a16", "basn6a16")] {
            let a = try ImageDecoder.decode(contentsOf: fixture("\(interlaced).png"))
            let b = try ImageDecoder.decode(contentsOf: fixture("\(plain).png"))
            XCTAssertEqual([a.width, a.height, a.channels], [b.width, b.height, b.channels])
            var worst = 0
            for p in 0..<(a.width * a.height) where a.channels < 4 || b.pixels[4 * p + 3] > 0 {
                for k in 0..<a.channels {
                    worst = max(worst, abs(Int(a.pixels[p * a.channels + k]) - Int(b.pixels[p * b.channels + k])))
                }
            }
            XCTAssertLessThanOrEqual(worst, 1, interlaced)
        }
    }

    func testTransparencyChunkBecomesAlpha() throws {
        let image = try ImageDecoder.decode(contentsOf: fixture("tbbn3p08.png"))
        let alphas = Set(stride(from: 3, to: image.pixels.count, by: 4).map { image.pixels[$0] })
        XCTAssertTrue(alphas.contains(0), "the tRNS colour must decode transparent")
        XCTAssertTrue(alphas.contains(255))
    }

    func testEveryCorruptFileIsRefusedWithACause() throws {
        let expected: [String: String] = [
            "xc1n0g08": "IHDR", "xc9n2c08": "IHDR", "xd0n2c08": "IHDR", "xd3n2c08": "IHDR", "xd9n2c08": "IHDR",
            "xcrn0g04": "corrupt PNG", "xlfn0g04": "corrupt PNG", "xs7n0g01": "corrupt PNG",
            "xcsn0g01": "IDAT: CRC error", "xhdn0g08": "IHDR: CRC error", "xdtn0g01": "corrupt PNG",
            "xs1n0g01": "not a PNG or JPEG file", "xs2n0g01": "not a PNG or JPEG file",
            "xs4n0g01": "not a PNG or JPEG file",
        ]
        XCTAssertEqual(expected.count, 14)
        for (name, fragment) in expected.sorted(by: { $0.key < $1.key }) {
            assertRefused(try fixtureData("\(name).png"), name: "\(name).png", contains: [fragment])
        }
    }

    func testSniffsByContentNotExtension() throws {
        let image = try ImageDecoder.decode(data: try fixtureData("basn2c08.png"), name: "photo.jpg")
        XCTAssertEqual(image.width, 32)
        let jpeg = try ImageDecoder.decode(data: try fixtureData("testorig.jpg"), name: "photo.png")
        XCTAssertEqual(jpeg.width, 227)
    }
}
