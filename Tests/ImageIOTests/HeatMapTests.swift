// Colour maps, heat-map rendering and overlays, the colour bar, the bitmap font and the
// contact sheet.

import ImageIO
import XCTest

final class HeatMapTests: XCTestCase {
    func testColormapEndpointsMatchMatplotlib() throws {
        XCTAssertEqual(Colormap.viridis[0], Color(hex: 0x440154))
        XCTAssertEqual(Colormap.viridis[255], Color(hex: 0xFDE725))
        XCTAssertEqual(Colormap.magma[0], Color(hex: 0x000004))
        XCTAssertEqual(Colormap.magma[255], Color(hex: 0xFCFDBF))
        XCTAssertEqual(Colormap.inferno[0], Color(hex: 0x000004))
        XCTAssertEqual(Colormap.inferno[255], Color(hex: 0xFCFFA4))
        XCTAssertEqual(Colormap.jet[0], Color(0, 0, 128))
        XCTAssertEqual(Colormap.jet[255], Color(128, 0, 0))
        XCTAssertEqual(Colormap.gray[200], Color(200, 200, 200))
        XCTAssertEqual(Colormap.viridis.color(at: 0), Colormap.viridis[0])
        XCTAssertEqual(Colormap.viridis.color(at: 1), Colormap.viridis[255])
        XCTAssertEqual(Colormap.viridis.color(at: 7), Colormap.viridis[255], "clamped")
        XCTAssertEqual(Colormap.viridis.color(at: .nan), .clear)
    }

    func testColormapLookupByName() throws {
        for name in Colormap.names { XCTAssertEqual(try Colormap(name: name).name, name) }
        XCTAssertEqual(try Colormap(name: "Viridis"), .viridis)
        XCTAssertThrowsError(try Colormap(name: "rainbow")) {
            XCTAssertEqual("\($0)", "unknown colormap 'rainbow' (valid: viridis, magma, inferno, jet, gray)")
        }
    }

    func testRenderNormalisesAndMakesNaNTransparent() throws {
        let image = try HeatMap.render(values: [0, 0.5, 1, .nan], width: 2, height: 2)
        XCTAssertEqual([image.width, image.height, image.channels], [2, 2, 4])
        XCTAssertEqual(image.color(x: 0, y: 0), Colormap.viridis[0])
        XCTAssertEqual(image.color(x: 0, y: 1), Colormap.viridis[255])
        XCTAssertEqual(image.color(x: 1, y: 1).a, 0)
        let fixed = try HeatMap.render(values: [0, 0.5, 1, 2], width: 4, height: 1, range: 0...2)
        XCTAssertEqual(fixed.color(x: 2, y: 0), Colormap.viridis.color(at: 0.5))
        let constant = try HeatMap.render(values: [3, 3], width: 2, height: 1)
        XCTAssertEqual(constant.color(x: 1, y: 0), Colormap.viridis[0])
        XCTAssertThrowsError(try HeatMap.render(values: [1, 2, 3], width: 2, height: 2))
    }

    func testOverlayHasThePhotoSizeAndBlends() throws {
        let photo = Image(width: 37, height: 23, channels: 3, fill: .black)
        let values: [Float] = [0, 1, 0, 1, 0, 1]
        let out = try HeatMap.overlay(photo: photo, values: values, mapWidth: 3, mapHeight: 2)
        XCTAssertEqual([out.width, out.height, out.channels], [37, 23, 3])
        // Over black, alpha 0.55 of viridis' low end at the top-left corner.
        let low = Colormap.viridis[0]
        XCTAssertEqual(Int(out.color(x: 0, y: 0).b), Int((Float(low.b) * 0.55).rounded()))
        // alpha 0 leaves the photo; NaN cells leave it too.
        XCTAssertEqual(try HeatMap.overlay(photo: photo, values: values, mapWidth: 3, mapHeight: 2, alpha: 0), photo)
        let unknown = try HeatMap.overlay(photo: photo, values: [.nan, .nan], mapWidth: 2, mapHeight: 1)
        XCTAssertEqual(unknown, photo)
    }

    /// Half-pixel-centre upsampling: a 2×1 map [0, 1] on an 8-pixel-wide photo puts the
    /// low end on the leftmost two pixels (clamped) and rises monotonically.
    func testOverlayUpsamplesWithHalfPixelCentres() throws {
        let photo = Image(width: 8, height: 1, channels: 3, fill: .black)
        let out = try HeatMap.overlay(photo: photo, values: [0, 1], mapWidth: 2, mapHeight: 1,
                                      alpha: 1, colormap: .gray)
        XCTAssertEqual(out.color(x: 0, y: 0), out.color(x: 1, y: 0))
        XCTAssertEqual(out.color(x: 0, y: 0).r, 0)
        XCTAssertEqual(out.color(x: 7, y: 0).r, 255)
        let reds = (0..<8).map { out.color(x: $0, y: 0).r }
        XCTAssertEqual(reds, reds.sorted())
    }

    func testColorBarShowsGradientAndLabels() {
        let bar = HeatMap.colorBar(height: 100, colormap: .viridis, range: 0...0.25)
        XCTAssertEqual(bar.height, 100)
        XCTAssertGreaterThan(bar.width, 16 + Image.textWidth("0.25"))
        // Row y shows t = 1 − y/99 (top = max); rows 0 and 99 carry the black frame.
        XCTAssertEqual(bar.color(x: 8, y: 1), Colormap.viridis.color(at: 1 - 1 / 99))
        XCTAssertEqual(bar.color(x: 8, y: 98), Colormap.viridis.color(at: 1 - 98 / 99))
        XCTAssertEqual(bar.color(x: 8, y: 0), .black)
        let labelArea = try! bar.cropped(x: 20, y: 0, width: bar.width - 20, height: 7)
        XCTAssertTrue(labelArea.pixels.contains(0), "the max label is drawn in black")
    }

    func testFontRendersEveryGlyph() {
        for v in 33...126 {
            let text = String(UnicodeScalar(UInt8(v)))
            var image = Image(width: 6, height: 8, fill: .white)
            image.drawText(text, x: 0, y: 0, color: .black)
            XCTAssertTrue(image.pixels.contains(0), "glyph '\(text)' is empty")
        }
        var blank = Image(width: 6, height: 8, fill: .white)
        blank.drawText(" ", x: 0, y: 0)
        XCTAssertFalse(blank.pixels.contains(0))
        XCTAssertEqual(Image.textWidth("abc"), 17)
        XCTAssertEqual(Image.textWidth("abc", scale: 2), 34)
        XCTAssertEqual(Image.textWidth("ab\nabcd"), 23)
        var scaled = Image(width: 20, height: 20, fill: .white)
        scaled.drawText("I", x: 0, y: 0, scale: 2)  // top bar of I: columns 1–3 → pixels 2–7
        XCTAssertEqual(scaled.color(x: 2, y: 0), .black)
        XCTAssertEqual(scaled.color(x: 0, y: 0), .white)
    }

    func testContactSheetLayout() throws {
        let red = Image(width: 10, height: 6, fill: .red)
        let blue = Image(width: 4, height: 8, fill: .blue)
        let sheet = try ContactSheet(rowLabels: ["photo"], columnLabels: ["a", "b"], padding: 2)
            .render([[red, blue], [nil, red]])
        let labelColumn = Image.textWidth("photo") + 2
        XCTAssertEqual(sheet.width, 2 + labelColumn + 2 * (10 + 2))
        XCTAssertEqual(sheet.height, 2 + (7 + 2) + 2 * (8 + 2))
        XCTAssertEqual(sheet.color(x: 0, y: 0), .white)
        // The first image sits centred in cell (0, 0): 1 pixel down (8 − 6) / 2.
        XCTAssertEqual(sheet.color(x: 2 + labelColumn, y: 2 + 9 + 1), .red)
        let fitted = try ContactSheet(cellWidth: 5, cellHeight: 5).render([[red]])
        XCTAssertEqual([fitted.width, fitted.height], [8 + 5 + 8, 8 + 5 + 8])
        XCTAssertThrowsError(try ContactSheet().render([]))
    }
}
