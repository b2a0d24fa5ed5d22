// Image operations: channel conversion, EXIF orientation, resizing (against a naive
// reference), crop, blit and markers.

import ImageIO
import XCTest

final class ImageOpsTests: XCTestCase {
    func numbered(_ w: Int, _ h: Int) -> Image {
        try! Image(width: w, height: h, channels: 1, pixels: (0..<(w * h)).map { UInt8($0 % 256) })
    }

    func testInitValidatesPixelCount() {
        XCTAssertThrowsError(try Image(width: 2, height: 2, channels: 3, pixels: [0, 0, 0]))
        XCTAssertThrowsError(try Image(width: 1, height: 1, channels: 2, pixels: [0, 0]))
    }

    func testChannelConversions() throws {
        let rgba = try Image(width: 2, height: 1, channels: 4, pixels: [10, 20, 30, 255, 200, 0, 0, 0])
        XCTAssertEqual(rgba.toRGB().pixels, [10, 20, 30, 255, 255, 255])  // transparent -> white
        XCTAssertEqual(rgba.toRGB(background: .black).pixels, [10, 20, 30, 0, 0, 0])
        let gray = try Image(width: 1, height: 1, channels: 1, pixels: [77])
        XCTAssertEqual(gray.toRGB().pixels, [77, 77, 77])
        XCTAssertEqual(gray.toRGBA().pixels, [77, 77, 77, 255])
        XCTAssertEqual(Image(width: 1, height: 1, fill: Color(255, 0, 0)).toGray().pixels, [76])
    }

    /// Each orientation mapped back by its inverse gives the original; 6 and 8 swap sizes.
    func testOrientationsAreInvertible() {
        let image = numbered(3, 2)
        let inverse = [1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6]
        for (o, back) in inverse {
            let turned = image.oriented(exif: o)
            XCTAssertEqual([turned.width, turned.height], o >= 5 ? [2, 3] : [3, 2], "\(o)")
            XCTAssertEqual(turned.oriented(exif: back), image, "orientation \(o)")
        }
        // Rotate clockwise: the bottom-left pixel (value 3) becomes the top-left.
        XCTAssertEqual(image.oriented(exif: 6).pixels, [3, 0, 4, 1, 5, 2])
    }

    /// Half-pixel-centre bilinear, written out naively for a 1-D upscale (PIL/torch agree):
    /// 2 → 4 samples at x_in = -0.25, 0.25, 0.75, 1.25 → clamp → [a, .75a+.25b, .25a+.75b, b].
    func testBilinearUsesHalfPixelCentres() throws {
        let image = try Image(width: 2, height: 1, channels: 1, pixels: [0, 200])
        XCTAssertEqual(try image.resized(width: 4, height: 1).pixels, [0, 50, 150, 200])
        // Identity and exact halving (2× shrink is still bilinear: mean of each pair).
        let ramp = try Image(width: 4, height: 1, channels: 1, pixels: [0, 100, 200, 40])
        XCTAssertEqual(try ramp.resized(width: 4, height: 1), ramp)
        XCTAssertEqual(try ramp.resized(width: 2, height: 1).pixels, [50, 120])
    }

    /// Shrinking 8× must average all 64 inputs of a block (area), not sample 4 of them:
    /// a 1-pixel checkerboard becomes flat grey instead of aliasing to black or white.
    func testLargeShrinkAverages() throws {
        var board = Image(width: 64, height: 64, channels: 1, fill: .black)
        for y in 0..<64 { for x in 0..<64 where (x + y) % 2 == 0 { board.setColor(.white, x: x, y: y) } }
        let small = try board.resized(width: 8, height: 8)
        XCTAssertTrue(small.pixels.allSatisfy { abs(Int($0) - 128) <= 1 }, "\(small.pixels)")
        // Non-integer factor (3.5×) keeps a constant image constant (weights sum to 1).
        let flat = try Image(width: 35, height: 7, fill: Color(90, 90, 90)).resized(width: 10, height: 2)
        XCTAssertTrue(flat.pixels.allSatisfy { $0 == 90 })
        XCTAssertThrowsError(try board.resized(width: 0, height: 3))
    }

    func testCropAndBlit() throws {
        let image = numbered(4, 3)
        XCTAssertEqual(try image.cropped(x: 1, y: 1, width: 2, height: 2).pixels, [5, 6, 9, 10])
        XCTAssertThrowsError(try image.cropped(x: 3, y: 0, width: 2, height: 1))
        var canvas = Image(width: 4, height: 4, channels: 3, fill: .black)
        canvas.blit(Image(width: 2, height: 2, fill: .white), x: 3, y: 3)  // clipped to one pixel
        XCTAssertEqual(canvas.color(x: 3, y: 3), .white)
        XCTAssertEqual(canvas.color(x: 2, y: 3), .black)
        canvas.blit(Image(width: 1, height: 1, channels: 4, fill: Color(255, 255, 255, 0)), x: 0, y: 0)
        XCTAssertEqual(canvas.color(x: 0, y: 0), .black, "a transparent source leaves the canvas")
    }

    func testMarkers() {
        var image = Image(width: 21, height: 21, fill: .black)
        image.drawDisc(centerX: 10.5, centerY: 10.5, radius: 4, color: .white)
        XCTAssertEqual(image.color(x: 10, y: 10), .white)
        XCTAssertEqual(image.color(x: 0, y: 0), .black)
        XCTAssertEqual(image.color(x: 10, y: 4), .black)  // outside the radius
        image.drawCross(x: 2, y: 18, size: 2, color: .red)
        XCTAssertEqual(image.color(x: 0, y: 18), .red)
        XCTAssertEqual(image.color(x: 2, y: 16), .red)
        XCTAssertEqual(image.color(x: 0, y: 16), .black)
        image.drawRect(x: 15, y: 0, width: 6, height: 5, color: .green)
        XCTAssertEqual(image.color(x: 15, y: 2), .green)
        XCTAssertEqual(image.color(x: 17, y: 2), .black, "outline only")
        for c in [-50.0, 500.0] {  // fully outside on either side: nothing drawn, no trap
            let before = image
            image.drawDisc(centerX: c, centerY: c, radius: 3, color: .white)
            image.drawCross(x: Int(c), y: Int(c), size: 3, color: .white)
            image.drawRect(x: Int(c), y: Int(c), width: 4, height: 4, color: .white, filled: true)
            XCTAssertEqual(image, before)
        }
    }
}
