import Foundation
import TestSupport
import XCTest

/// `attend map` end to end on a real photo, and its refusals of bad images.
final class MapCommandTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    var photo: URL { repositoryRoot().appendingPathComponent("SampleImages/cat_chelsea.jpg") }

    /// Width and height from a PNG's IHDR.
    func pngSize(_ url: URL) throws -> (Int, Int) {
        let d = try Data(contentsOf: url)
        XCTAssertEqual(Array(d.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        func be32(_ o: Int) -> Int { d[o..<(o + 4)].reduce(0) { $0 << 8 | Int($1) } }
        return (be32(16), be32(20))
    }

    func testMapWritesOverlayOfThePhotosSize() throws {
        let r = try runProduct("attend", ["map", photo.path, "--module", "non-local", "--query", "200,120",
                                          "--grid", "16", "--out", dir.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = dir.appendingPathComponent("cat_chelsea-non-local.png")
        let (w, h) = try pngSize(out)
        XCTAssertEqual([w, h], [451, 300])
        // Nothing else left behind (no temporary files).
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["cat_chelsea-non-local.png"])
    }

    func testSeveralQueriesGiveOnePanelEachAndASheet() throws {
        let r = try runProduct("attend", ["map", photo.path, "--module", "non-local", "--query", "10,10",
                                          "--query", "400,250", "--grid", "12", "--out", dir.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertEqual(files, ["cat_chelsea-non-local-1.png", "cat_chelsea-non-local-2.png", "cat_chelsea-non-local-sheet.png"])
        // The two queries see different maps.
        let a = try Data(contentsOf: dir.appendingPathComponent(files[0]))
        let b = try Data(contentsOf: dir.appendingPathComponent(files[1]))
        XCTAssertNotEqual(a, b)
    }

    func testQueryOutsideThePhotoIsRefused() throws {
        let r = try runProduct("attend", ["map", photo.path, "--module", "non-local", "--query", "451,0", "--out", dir.path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("outside the 451×300 photo"), r.stderr)
        XCTAssertTrue(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    // MARK: bad images

    func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c >> 1) ^ (0xEDB8_8320 & (0 &- (c & 1))) }
        }
        return ~c
    }

    func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }

    /// A PNG signature and a valid IHDR claiming width×height RGB, then a tiny IDAT and IEND.
    func hugePNG(width: UInt32, height: UInt32) -> Data {
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        func chunk(_ type: String, _ body: [UInt8]) {
            let t = Array(type.utf8)
            out += be(UInt32(body.count)) + t + body + be(crc32(t + body))
        }
        chunk("IHDR", be(width) + be(height) + [8, 2, 0, 0, 0])
        chunk("IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])
        chunk("IEND", [])
        return Data(out)
    }

    /// A real JPEG whose frame header (SOF0/SOF2) is patched to claim width×height: every
    /// table and the scan are intact, so only the size check can stop it.
    func hugeJPEG(from jpeg: Data, width: UInt16, height: UInt16) -> Data {
        var d = [UInt8](jpeg)
        var i = 2
        while i + 9 < d.count {
            guard d[i] == 0xFF else { break }
            let marker = d[i + 1], len = Int(d[i + 2]) << 8 | Int(d[i + 3])
            if marker == 0xC0 || marker == 0xC2 {
                d[i + 5] = UInt8(height >> 8); d[i + 6] = UInt8(height & 0xff)
                d[i + 7] = UInt8(width >> 8); d[i + 8] = UInt8(width & 0xff)
                break
            }
            i += 2 + len
        }
        return Data(d)
    }

    func testBadImagesGiveOneLineErrorsAndNoOutput() throws {
        let jpeg = try Data(contentsOf: photo)
        let png = try Data(contentsOf: repositoryRoot().appendingPathComponent("SampleImages/cat_chelsea.png"))
        var badCRC = png
        badCRC[30] ^= 0xFF                                    // inside IHDR: its CRC no longer matches
        let cases: [(String, Data, String)] = [
            ("empty.png", Data(), "empty"),
            ("text.jpg", Data("hello, not an image".utf8), "not a PNG or JPEG"),
            ("cut.jpg", jpeg.prefix(jpeg.count / 2), "JPEG"),
            ("cut-header.jpg", jpeg.prefix(300), "JPEG"),
            ("cut.png", png.prefix(png.count / 3), "PNG"),
            ("cut-header.png", png.prefix(40), "PNG"),
            ("crc.png", badCRC, "PNG"),
            ("huge.png", hugePNG(width: 100_000, height: 100_000), "exceeds the limit"),
            ("huge2.png", hugePNG(width: 65_500, height: 65_500), "exceeds the limit"),
            ("huge.jpg", hugeJPEG(from: jpeg, width: 65_500, height: 65_500), "exceeds the limit"),
        ]
        for (name, data, needle) in cases {
            let f = dir.appendingPathComponent(name)
            try data.write(to: f)
            let outDir = dir.appendingPathComponent("out-\(name)")
            let r = try runProduct("attend", ["map", f.path, "--module", "non-local", "--out", outDir.path])
            XCTAssertEqual(r.status, 1, "\(name): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(name), "\(name): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(needle), "\(name): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(name): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: outDir.path), name)
        }
    }
}

extension MapCommandTests {
    func testCompareAgainstNonLocal() throws {
        let r = try runProduct("attend", ["compare", photo.path, "--modules", "non-local", "--query", "200,120",
                                          "--grid", "10", "--out", dir.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [[String: Any]]
        // The reference against itself (same seed): zero error, zero divergence.
        XCTAssertEqual(rows.count, 2)
        XCTAssertEqual(rows[1]["output_relative_error"] as? Double, 0)
        XCTAssertEqual(rows[1]["map_kl"] as? Double ?? 1, 0, accuracy: 1e-9)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("cat_chelsea-compare.png").path))
    }
}
