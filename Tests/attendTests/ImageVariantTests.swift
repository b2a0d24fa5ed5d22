// Every PNG/JPEG variant a user's folder holds goes through `attend map` and `attend run`:
// 16-bit, palette, gray, gray+alpha, interlaced, tRNS, CMYK, progressive, arithmetic-coded,
// EXIF-rotated. Decoded, not rejected; pixel-level correctness is in Tests/ImageIOTests.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class ImageVariantTests: XCTestCase {
    var dir: URL!
    let fixtures = repositoryRoot().appendingPathComponent("Tests/ImageIOTests/Fixtures")

    override func setUpWithError() throws { dir = try temporaryDirectory("attend-variants") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func pngSize(_ url: URL) throws -> [Int] {
        let d = try Data(contentsOf: url)
        func be32(_ o: Int) -> Int { d[o..<(o + 4)].reduce(0) { $0 << 8 | Int($1) } }
        return [be32(16), be32(20)]
    }

    func testEveryVariantDrawsAMapOfItsSize() throws {
        let variants: [(String, [Int])] = [
            ("basn0g16.png", [32, 32]), ("basn2c16.png", [32, 32]), ("basn6a16.png", [32, 32]),   // 16-bit
            ("basn3p08.png", [32, 32]), ("basn3p01.png", [32, 32]), ("tbbn3p08.png", [32, 32]),   // palette, tRNS
            ("basn0g01.png", [32, 32]), ("basn4a08.png", [32, 32]), ("basn4a16.png", [32, 32]),   // gray, gray+alpha
            ("basi0g16.png", [32, 32]), ("basi3p08.png", [32, 32]), ("basi6a16.png", [32, 32]),   // interlaced
            ("testorig_cmyk.jpg", [227, 149]), ("testimgp.jpg", [227, 149]), ("testimgari.jpg", [227, 149]),
            ("testimggray.jpg", [227, 149]), ("testorig_exif_orientation6.jpg", [149, 227]),
        ]
        for (name, size) in variants {
            let out = dir.appendingPathComponent(name)
            let r = try runBounded(["map", fixtures.appendingPathComponent(name).path, "--module", "non-local",
                                    "--grid", "8", "--out", out.path])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            let stem = (name as NSString).deletingPathExtension
            XCTAssertEqual(try pngSize(out.appendingPathComponent("\(stem)-non-local.png")), size, name)
        }
    }

    /// Same picture, different encodings, same result: interlaced and plain 8-bit palette files
    /// decode identically, so their maps are the same bytes; CMYK, progressive and arithmetic
    /// JPEGs of the IJG photo give stem features close to the baseline file's.
    func testEncodingsOfOnePictureAgree() throws {
        let maps = dir.appendingPathComponent("maps")
        for name in ["basi3p08.png", "basn3p08.png"] {
            let r = try runBounded(["map", fixtures.appendingPathComponent(name).path, "--module", "non-local",
                                    "--grid", "8", "--out", maps.path])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        XCTAssertEqual(try Data(contentsOf: maps.appendingPathComponent("basi3p08-non-local.png")),
                       try Data(contentsOf: maps.appendingPathComponent("basn3p08-non-local.png")))
        func features(_ name: String) throws -> Tensor {
            let out = dir.appendingPathComponent("\(name).npy")
            let r = try runBounded(["run", "--module", "cbam", "--input", fixtures.appendingPathComponent(name).path,
                                    "--grid", "8", "--output", out.path])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            return try NPY.read(contentsOf: out)
        }
        let baseline = try features("testorig.jpg")
        for name in ["testorig_cmyk.jpg", "testimgp.jpg", "testimgari.jpg"] {
            let t = try features(name)
            XCTAssertEqual(t.shape, baseline.shape, name)
            XCTAssertLessThan(maxRelativeError(t, baseline), 0.05, name)   // measured 0.003 (CMYK), 0.014
        }
    }
}
