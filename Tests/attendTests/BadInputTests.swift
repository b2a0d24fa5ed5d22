// The bad-input matrix end to end, through the built `attend`: every refusal is exit status 1,
// one line on stderr naming the file and the cause, and no output file. What MapCommandTests
// and RunCommandTests already cover (empty/garbage/truncated/bad-CRC/huge images through
// `map`, an unknown module and --set key in `run`) is not repeated here; the parsers' own
// rule-by-rule tests are in Tests/TensorCoreTests and Tests/ImageIOTests.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class BadInputTests: XCTestCase {
    var dir: URL!
    var out: URL { dir.appendingPathComponent("out.npy") }

    override func setUpWithError() throws { dir = try temporaryDirectory("attend-bad") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func file(_ name: String, _ data: Data) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try data.write(to: url)
        return url
    }

    /// A valid 1×8×4×4 feature map.
    func features(channels: Int = 8) throws -> URL {
        let url = dir.appendingPathComponent("x\(channels).npy")
        try NPY.write(randomTensor([1, channels, 4, 4], seed: 3), to: url)
        return url
    }

    // MARK: safetensors, as --weights and as --input

    /// Each malformed-file rule, through both doors a safetensors file comes in by.
    func testMalformedSafetensorsAsWeightsAndInput() throws {
        let f32x6 = [UInt8](repeating: 0, count: 24)
        let entry = #"{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}"#
        let cases: [(String, Data, String)] = [
            ("empty.safetensors", Data(), "file is empty"),
            ("past-end.safetensors", Hostile.safetensors("{}", [1, 2, 3], claimedLength: 4096), "exceeds the file size"),
            ("gigabyte.safetensors", Hostile.safetensors("{}", claimedLength: 1 << 30), "header claims 1073741824 bytes, over the 100 MB limit"),
            ("overlap.safetensors", Hostile.safetensors(#"{"a":{"dtype":"F32","shape":[6],"data_offsets":[16,40]},"b":\#(entry)}"#,
                                                        [UInt8](repeating: 0, count: 40)), "overlap tensor 'b'"),
            ("out-of-range.safetensors", Hostile.safetensors(#"{"w":{"dtype":"U8","shape":[9999],"data_offsets":[0,9999]}}"#,
                                                             [UInt8](repeating: 0, count: 64)), "past the end of the data section"),
            ("dtype.safetensors", Hostile.safetensors(#"{"w":{"dtype":"Q4","shape":[2,3],"data_offsets":[0,24]}}"#, f32x6),
             "unknown dtype 'Q4'"),
            ("bytes.safetensors", Hostile.safetensors(#"{"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,24]}}"#, f32x6),
             "shape 2×3 × F16 needs 12 bytes"),
            ("duplicate.safetensors", Hostile.safetensors(#"{"w":\#(entry),"w":\#(entry)}"#, f32x6), "duplicate key 'w'"),
            ("json.safetensors", Hostile.safetensors(#"{"w": "#), "header is not valid JSON"),
        ]
        let x = try features()
        for (name, bytes, cause) in cases {
            let f = try file(name, bytes)
            let asWeights = try runBounded(["run", "--module", "non-local", "--input", x.path, "--weights", f.path,
                                            "--output", out.path])
            assertRefusal(asWeights, file: name, cause: cause, output: out, "\(name) as --weights")
            let asInput = try runBounded(["run", "--module", "non-local", "--input", f.path, "--output", out.path])
            assertRefusal(asInput, file: name, cause: cause, output: out, "\(name) as --input")
        }
        // And as backbone features for `map`.
        let f = try file("overlap.safetensors", cases[3].1)
        let photo = repositoryRoot().appendingPathComponent("SampleImages/cat_chelsea.jpg")
        let maps = dir.appendingPathComponent("maps")
        assertRefusal(try runBounded(["map", photo.path, "--module", "non-local", "--features", f.path, "--out", maps.path]),
                      file: "overlap.safetensors", cause: "overlap", output: maps)
    }

    // MARK: npy

    func testMalformedNPYAsInput() throws {
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 2, 2), }"
        let cases: [(String, Data, String)] = [
            ("empty.npy", Data(), "not an .npy file (bad magic)"),
            ("zip.npy", Data("PK\u{3}\u{4} a zip file".utf8), "not an .npy file (bad magic)"),
            ("header.npy", Hostile.npy("{'descr' '<f4', 'shape': (2,)}", Hostile.f32([1, 2])), "header is not a valid dict literal"),
            ("keys.npy", Hostile.npy("{'descr': '<f4', 'shape': (2,)}", Hostile.f32([1, 2])), "header lacks 'fortran_order'"),
            ("complex.npy", Hostile.npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1, 2, 2, 2), }",
                                        [UInt8](repeating: 0, count: 64)), "unsupported dtype '<c8'"),
            ("object.npy", Hostile.npy("{'descr': '|O', 'fortran_order': False, 'shape': (1, 2, 2, 2), }",
                                       [UInt8](repeating: 0, count: 64)), "unsupported dtype '|O'"),
            ("truncated.npy", Hostile.npy(dict, Hostile.f32([1, 2, 3])), "data is truncated: shape 1×2×2×2 float32 needs 32 bytes, file has 12"),
            ("huge.npy", Hostile.npy("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 100000), }"),
             "is too large"),
        ]
        for (name, bytes, cause) in cases {
            let f = try file(name, bytes)
            assertRefusal(try runBounded(["run", "--module", "cbam", "--input", f.path, "--output", out.path]),
                          file: name, cause: cause, output: out)
        }
    }

    /// numpy's `np.asfortranarray(x)` saves with fortran_order True and column-major data: the
    /// same tensor, so the same output, bit for bit.
    func testFortranOrderNPYIsAcceptedAndTransposed() throws {
        let (c, h, w) = (16, 4, 5)
        let x = randomTensor([1, c, h, w], seed: 11)
        let v = x.scalars
        var columnMajor = [Float](repeating: 0, count: v.count)
        for ci in 0..<c { for hi in 0..<h { for wi in 0..<w {
            columnMajor[ci + c * (hi + h * wi)] = v[(ci * h + hi) * w + wi]    // n = 0; strides 1, 1, C, C·H
        } } }
        let fortran = try file("fortran.npy", Hostile.npy("{'descr': '<f4', 'fortran_order': True, 'shape': (1, \(c), \(h), \(w)), }",
                                                          Hostile.f32(columnMajor)))
        let plain = dir.appendingPathComponent("plain.npy")
        try NPY.write(x, to: plain)
        for module in ["non-local", "cbam"] {
            let a = dir.appendingPathComponent("a.npy"), b = dir.appendingPathComponent("b.npy")
            let ra = try runBounded(["run", "--module", module, "--input", fortran.path, "--output", a.path])
            let rb = try runBounded(["run", "--module", module, "--input", plain.path, "--output", b.path])
            XCTAssertEqual(ra.status, 0, ra.stderr)
            XCTAssertEqual(rb.status, 0, rb.stderr)
            XCTAssertEqual(try NPY.read(contentsOf: a).scalars.map(\.bitPattern), try NPY.read(contentsOf: b).scalars.map(\.bitPattern), module)
        }
    }

    // MARK: shapes that do not fit a module

    func testWrongRankOrChannelsNameTheFile() throws {
        func npy(_ name: String, _ shape: [Int]) throws -> URL {
            let url = dir.appendingPathComponent(name)
            try NPY.write(Tensor(zeros: shape), to: url)
            return url
        }
        let cases: [(URL, [String], String)] = [
            (try npy("rank2.npy", [16, 8]), ["--module", "cbam"], "shape 16×8 does not fit cbam"),
            (try npy("rank5.npy", [1, 1, 8, 4, 4]), ["--module", "non-local"], "does not fit non-local"),
            (try npy("tokens.npy", [1, 16, 8]), ["--module", "cbam"], "1×16×8 does not fit cbam, which takes N×C×H×W"),
            (try npy("flat.npy", [1, 8, 0, 4]), ["--module", "non-local"], "found 1×8×0×4"),
            (try npy("c16.npy", [1, 16, 4, 4]), ["--module", "non-local", "--set", "in_channels=32"],
             "in_channels=32 but the input has 16 channels"),
            (try npy("c3.npy", [1, 3, 4, 4]), ["--module", "cbam"], "0 hidden units"),
            (try npy("c6.npy", [1, 6, 4, 4]), ["--module", "performer", "--set", "heads=4"], "not divisible by heads=4"),
        ]
        for (input, args, cause) in cases {
            assertRefusal(try runBounded(["run", "--input", input.path, "--output", out.path] + args),
                          file: input.lastPathComponent, cause: cause, output: out)
        }
        // Trained weights for 32 channels on a 16-channel input: the weights file is named.
        let fixture = try SafeTensors.read(contentsOf: repositoryRoot()
            .appendingPathComponent("Tests/FastAttentionTests/Fixtures/non-local.safetensors"))
        var state = StateDict()
        for (k, v) in fixture.tensors where k.hasPrefix("state.") { state.tensors[String(k.dropFirst(6))] = v }
        let weights = dir.appendingPathComponent("nl32.safetensors")
        try SafeTensors.write(state, to: weights)
        assertRefusal(try runBounded(["run", "--module", "non-local", "--weights", weights.path, "--input",
                                      try npy("c16w.npy", [1, 16, 4, 4]).path, "--output", out.path]),
                      file: "nl32.safetensors", cause: "size mismatch for conv_out.conv.weight", output: out)
        // Backbone features for `map` must be 1×C×H×W.
        let photo = repositoryRoot().appendingPathComponent("SampleImages/cat_chelsea.jpg")
        let maps = dir.appendingPathComponent("maps")
        assertRefusal(try runBounded(["map", photo.path, "--module", "non-local", "--features",
                                      try npy("batch2.npy", [2, 8, 4, 4]).path, "--out", maps.path]),
                      file: "batch2.npy", cause: "does not fit non-local, which takes 1×C×H×W", output: maps)
    }

    // MARK: module ids, --set keys and values

    func testUnknownIdsKeysAndOutOfRangeValues() throws {
        let x = try features()
        let run = ["run", "--input", x.path, "--output", out.path]
        let cases: [([String], String)] = [
            (run + ["--module", "non-locl"], "unknown module 'non-locl' — did you mean non-local?"),
            (run + ["--module", "non-local", "--set", "reduction=0"], "reduction=0 is not valid: expected int in 1...65536"),
            (run + ["--module", "non-local", "--set", "reduction=-3"], "reduction=-3 is not valid"),
            (run + ["--module", "non-local", "--set", "reduction=2.5"], "reduction=2.5 is not valid"),
            (run + ["--module", "non-local", "--set", "reduction=99999999999999999999"], "is not valid: expected int"),
            (run + ["--module", "non-local", "--set", "use_scale=maybe"], "use_scale=maybe is not valid: expected true|false"),
            (run + ["--module", "non-local", "--set", "reduction"], "--set reduction: expected key=value"),
            (run + ["--module", "efficient-attention", "--set", "head_count=0"], "head_count=0 is not valid"),
            (run + ["--module", "cbam", "--set", "Reduction_Ratio=4"], "unknown config key 'Reduction_Ratio'"),
        ]
        for (args, cause) in cases {
            let r = try runBounded(args)
            XCTAssertFalse(r.timedOut)
            XCTAssertEqual(r.status, 1, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(cause), "\(args): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        }
        let photo = repositoryRoot().appendingPathComponent("SampleImages/cat_chelsea.jpg").path
        let maps = dir.appendingPathComponent("maps").path
        for args in [["map", photo, "--module", "no-such", "--out", maps], ["info", "no-such"],
                     ["batch", dir.path, "--module", "no-such", "--out", maps],
                     ["map", photo, "--module", "cbam", "--set", "bogus=1", "--out", maps]] {
            let r = try runBounded(args)
            XCTAssertEqual(r.status, 1, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("no-such") || r.stderr.contains("unknown config key 'bogus'"), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: maps))
        }
        // Usage errors are ArgumentParser's (exit 64, with usage lines), before any work.
        for args in [run + ["--module", "cbam", "--threads", "0"], run + ["--module", "cbam", "--grid", "2"],
                     ["run", "--module", "cbam", "--input", x.path, "--output", dir.appendingPathComponent("o.txt").path]] {
            let r = try runBounded(args)
            XCTAssertEqual(r.status, 64, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("Error: "), r.stderr)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { !$0.hasSuffix(".npy") }, [])
        }
    }

    // MARK: decompression bombs and truncation, through `map`

    /// A 70-byte PNG claiming 9000×9000 (81 Mpx, under the default limit) is refused before
    /// its 243 MB pixel buffer is allocated: deflate cannot inflate its few IDAT bytes that far.
    /// A 16×16 PNG dragging 400 KB of IDAT (≈400 MB inflated after the last row) is refused
    /// too, before libpng would spend seconds inflating it.
    func testDecompressionBombsAreRefusedBeforeAllocating() throws {
        let maps = dir.appendingPathComponent("maps")
        let tiny = try file("tiny-bomb.png", Hostile.png(width: 9000, height: 9000, idat: Hostile.storedZeros(16)))
        let start = Date()
        assertRefusal(try runBounded(["map", tiny.path, "--module", "cbam", "--out", maps.path]),
                      file: "tiny-bomb.png", cause: "can inflate to at most", output: maps)
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
        let surplus = try file("surplus.png", Hostile.png(width: 16, height: 16, idat: Hostile.storedZeros(400_000)))
        assertRefusal(try runBounded(["run", "--module", "cbam", "--input", surplus.path, "--output", out.path]),
                      file: "surplus.png", cause: "far more than the 16×16 image's 784 bytes", output: out)
        // A genuine image of zeros, compressed 1000:1 (zlib level 9): under the limit it
        // decodes; over --max-pixels it is refused by its header.
        let zeros = repositoryRoot().appendingPathComponent("Tests/ImageIOTests/Fixtures/zeros-2000x2000.png")
        assertRefusal(try runBounded(["map", zeros.path, "--module", "cbam", "--max-pixels", "1000000", "--out", maps.path]),
                      file: "zeros-2000x2000.png", cause: "2000×2000 pixels exceeds the limit of 1000000", output: maps)
        let ok = try runBounded(["run", "--module", "cbam", "--input", zeros.path, "--grid", "8", "--output", out.path])
        XCTAssertEqual(ok.status, 0, ok.stderr)
    }

    /// Cuts at several points of a progressive JPEG and an interlaced 16-bit PNG (the files
    /// whose decoders buffer the whole image before the first row comes out).
    func testTruncatedProgressiveAndInterlacedFiles() throws {
        let fixtures = repositoryRoot().appendingPathComponent("Tests/ImageIOTests/Fixtures")
        let maps = dir.appendingPathComponent("maps")
        for (name, format) in [("testimgp.jpg", "JPEG"), ("basi6a16.png", "PNG")] {
            let data = try Data(contentsOf: fixtures.appendingPathComponent(name))
            for fraction in [0.05, 0.3, 0.6, 0.95] {
                let cut = "cut\(Int(fraction * 100))-\(name)"
                let f = try file(cut, data.prefix(Int(Double(data.count) * fraction)))
                assertRefusal(try runBounded(["map", f.path, "--module", "cbam", "--out", maps.path]),
                              file: cut, cause: "corrupt \(format)", output: maps)
            }
        }
    }

    // MARK: NaN and infinity

    /// Non-finite inputs propagate (README, "Errors"): every module finishes, exits 0 and writes
    /// its output; a NaN shows up as NaN wherever attention carried it (IEEE arithmetic never
    /// drops a NaN), while ±inf may also saturate to finite values through bounded functions
    /// (sigmoid gates, FracTAL's Tanimoto ratio), as the same float math in PyTorch does.
    /// Nothing hangs or crashes, and nothing is silently cleaned up.
    func testNonFiniteInputsPropagateWithoutHangingOrCrashing() throws {
        var v = randomTensor([1, 16, 6, 6], seed: 5).scalars
        v[7] = .nan
        let nan = dir.appendingPathComponent("nan.npy")
        try NPY.write(Tensor(shape: [1, 16, 6, 6], scalars: v), to: nan)
        v[7] = .infinity
        v[100] = -.infinity
        let inf = dir.appendingPathComponent("inf.npy")
        try NPY.write(Tensor(shape: [1, 16, 6, 6], scalars: v), to: inf)
        let ids = try runBounded(["list", "--ids"]).stdout.split(separator: "\n").map(String.init)
        XCTAssertFalse(ids.isEmpty)
        for id in ids {
            for input in [nan, inf] {
                let r = try runBounded(["run", "--module", id, "--input", input.path, "--output", out.path], seconds: 60)
                XCTAssertFalse(r.timedOut, "\(id) on \(input.lastPathComponent) hung")
                XCTAssertEqual(r.status, 0, "\(id) on \(input.lastPathComponent): \(r.stderr)")
                guard r.status == 0 else { continue }
                let y = try NPY.read(contentsOf: out)
                XCTAssertEqual(y.shape.count, 4, id)
                if input == nan { XCTAssertTrue(y.scalars.contains { $0.isNaN }, "\(id): the NaN vanished from the output") }
                try FileManager.default.removeItem(at: out)
            }
        }
        // Drawn maps: non-finite cells are transparent, the colour range comes from the finite ones.
        let photo = repositoryRoot().appendingPathComponent("SampleImages/cat_chelsea.jpg")
        let maps = dir.appendingPathComponent("maps")
        for id in ["non-local", "cbam", "criss-cross"] where ids.contains(id) {
            let r = try runBounded(["map", photo.path, "--module", id, "--features", nan.path, "--out", maps.path], seconds: 60)
            XCTAssertEqual(r.status, 0, "\(id): \(r.stderr)")
        }
        // A batch over a NaN input logs NaN statistics and carries on.
        let batchIn = dir.appendingPathComponent("batch-in")
        try FileManager.default.createDirectory(at: batchIn, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: nan, to: batchIn.appendingPathComponent("nan.npy"))
        let b = try runBounded(["batch", batchIn.path, "--module", "non-local", "--out", dir.appendingPathComponent("b").path, "--quiet"])
        XCTAssertEqual(b.status, 0, b.stderr)
        let csv = try String(contentsOf: dir.appendingPathComponent("b/summary.csv"), encoding: .utf8)
        XCTAssertTrue(csv.contains("nan.npy,ok"), csv)
    }
}
