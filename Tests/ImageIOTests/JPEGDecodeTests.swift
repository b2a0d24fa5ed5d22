// JPEG decoding: baseline, progressive, arithmetic, gray, CMYK, restart markers, 4:2:2 and
// EXIF orientation decode to upright RGB; 12-bit files are refused as unsupported.

import Foundation
import ImageIO
import XCTest

final class JPEGDecodeTests: XCTestCase {
    func testEveryValidFileDecodesToRGBWithTheRightShape() throws {
        let files = ["testorig", "testimgp", "testimggray", "testimgari", "testorig_cmyk",
                     "testorig_restart_markers", "testorig_422"]
        for name in files {
            let decoded = try ImageDecoder.decodeDetailed(contentsOf: fixture("\(name).jpg"))
            let image = decoded.image
            XCTAssertEqual([image.width, image.height, image.channels], [227, 149, 3], name)
            XCTAssertEqual(decoded.format, .jpeg, name)
            XCTAssertEqual(decoded.sourceBitDepth, 8, name)
            XCTAssertEqual(decoded.warnings, 0, name)
        }
    }

    /// All these encode the same IJG photo, so they must agree with the baseline decode
    /// up to compression error (the derived files were re-encoded at a different quality).
    func testVariantsAgreeWithBaseline() throws {
        let reference = try ImageDecoder.decode(contentsOf: fixture("testorig.jpg"))
        for name in ["testimgp", "testimgari", "testorig_restart_markers", "testorig_422", "testorig_cmyk"] {
            let image = try ImageDecoder.decode(contentsOf: fixture("\(name).jpg"))
            XCTAssertLessThan(meanAbsoluteDifference(image, reference), 4, name)
        }
    }

    /// Adobe CMYK stores inverted ink values; decoding without undoing the inversion gives
    /// a photographic negative (mean difference ~100), with it the colours match.
    func testAdobeCMYKIsUninvertedToRGB() throws {
        let decoded = try ImageDecoder.decodeDetailed(contentsOf: fixture("testorig_cmyk.jpg"))
        XCTAssertEqual(decoded.sourceColorType, 4, "JCS_CMYK")
        let reference = try ImageDecoder.decode(contentsOf: fixture("testorig.jpg"))
        XCTAssertLessThan(meanAbsoluteDifference(decoded.image, reference), 3)
        let p = decoded.image.color(x: 0, y: 0), q = reference.color(x: 0, y: 0)
        XCTAssertLessThanOrEqual(abs(Int(p.r) - Int(q.r)), 3)
    }

    func testGrayscaleBecomesThreeEqualChannels() throws {
        let decoded = try ImageDecoder.decodeDetailed(contentsOf: fixture("testimggray.jpg"))
        XCTAssertEqual(decoded.sourceColorType, 1, "JCS_GRAYSCALE")
        let image = decoded.image
        for i in stride(from: 0, to: image.pixels.count, by: 3) {
            XCTAssertEqual(image.pixels[i], image.pixels[i + 1])
            XCTAssertEqual(image.pixels[i], image.pixels[i + 2])
        }
    }

    /// Orientation 6 ("rotate 90° clockwise to view"): the stored 227×149 pixels come back
    /// as an upright 149×227 image, as browsers show it.
    func testExifOrientationIsApplied() throws {
        let decoded = try ImageDecoder.decodeDetailed(contentsOf: fixture("testorig_exif_orientation6.jpg"))
        XCTAssertEqual(decoded.orientation, 6)
        XCTAssertEqual([decoded.image.width, decoded.image.height], [149, 227])
        let stored = try ImageDecoder.decode(contentsOf: fixture("testorig.jpg"))
        let expected = stored.oriented(exif: 6)
        XCTAssertLessThan(meanAbsoluteDifference(decoded.image, expected), 3)
        // Stored top-left ends up top-right after a clockwise quarter turn.
        XCTAssertEqual(expected.color(x: 148, y: 0), stored.color(x: 0, y: 0))
    }

    func testTwelveBitIsRefusedAsUnsupported() throws {
        let error = assertRefused(try fixtureData("testorig12.jpg"), name: "testorig12.jpg",
                                  contains: ["unsupported 12-bit JPEG"])
        if case .unsupported = error {} else { XCTFail("expected .unsupported, got \(String(describing: error))") }
    }

    /// A baseline file whose only damage is a missing EOI marker has every pixel, so it is
    /// accepted (as browsers do). A progressive file cannot tell a missing EOI from missing
    /// later scans, so any premature end there is refused (policy in jpeg_guard.c).
    func testMissingEOIOnlyIsAccepted() throws {
        let data = try fixtureData("testorig.jpg")
        XCTAssertEqual(Array(data.suffix(2)), [0xFF, 0xD9])
        let image = try ImageDecoder.decode(data: data.dropLast(2), name: "noeoi.jpg")
        XCTAssertEqual(image, try ImageDecoder.decode(data: data, name: "full.jpg"))
        let progressive = try fixtureData("testimgp.jpg")
        assertRefused(progressive.dropLast(2), name: "p.jpg", contains: ["corrupt JPEG: premature end of data"])
    }
}
