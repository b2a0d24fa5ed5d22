import Foundation
import TensorCore
import TestSupport
import XCTest

/// `attend run` end to end: an mmcv state_dict and input in, the reference's output out.
final class RunCommandTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = try temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// Splits a parity fixture into what a user has: weights.safetensors (state_dict keys),
    /// input.npy, and the expected output.
    func userFiles(_ fixture: String) throws -> (weights: URL, input: URL, expected: Tensor, settings: [String]) {
        let url = repositoryRoot().appendingPathComponent("Tests/FastAttentionTests/Fixtures/\(fixture).safetensors")
        let sd = try SafeTensors.read(contentsOf: url)
        var weights = StateDict()
        for (k, v) in sd.tensors where k.hasPrefix("state.") { weights.tensors[String(k.dropFirst(6))] = v }
        let w = dir.appendingPathComponent("weights.safetensors"), x = dir.appendingPathComponent("input.npy")
        try SafeTensors.write(weights, to: w)
        try NPY.write(sd.tensors["input"]!, to: x)
        let config = try JSONSerialization.jsonObject(with: Data(sd.metadata["config"]!.utf8)) as! [String: String]
        return (w, x, sd.tensors["output"]!, config.sorted { $0.key < $1.key }.flatMap { ["--set", "\($0.key)=\($0.value)"] })
    }

    func testRunWithMMCVWeightsMatchesReference() throws {
        for fixture in ["non-local", "non-local-bn-subsample"] {
            let (w, x, expected, settings) = try userFiles(fixture)
            let out = dir.appendingPathComponent("out.npy")
            let r = try runProduct("attend", ["run", "--module", "non-local", "--weights", w.path, "--input", x.path,
                                              "--output", out.path] + settings)
            XCTAssertEqual(r.status, 0, r.stderr)
            assertClose(try NPY.read(contentsOf: out), expected, rtol: 1e-4, fixture)
        }
    }

    func testMismatchedWeightsFailCleanlyWithoutOutput() throws {
        let (w, x, _, _) = try userFiles("non-local")
        let out = dir.appendingPathComponent("out.npy")
        // Wrong reduction: every projection has the wrong shape.
        let r = try runProduct("attend", ["run", "--module", "non-local", "--set", "reduction=4", "--weights", w.path,
                                          "--input", x.path, "--output", out.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("size mismatch for g.conv.weight"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }

    func testBadInputsGiveOneLineErrors() throws {
        let out = dir.appendingPathComponent("o.npy")
        let bad = dir.appendingPathComponent("bad.safetensors")
        try Data([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x7b]).write(to: bad)   // header length past the end
        let x = dir.appendingPathComponent("x.npy")
        try NPY.write(Tensor(zeros: [1, 8, 4, 4]), to: x)
        let cases: [([String], String)] = [
            (["run", "--module", "no-such", "--input", x.path, "--output", out.path], "unknown module 'no-such'"),
            (["run", "--module", "non-local", "--input", bad.path, "--output", out.path], "bad.safetensors"),
            (["run", "--module", "non-local", "--input", x.path, "--weights", bad.path, "--output", out.path], "bad.safetensors"),
            (["run", "--module", "non-local", "--input", x.path, "--output", out.path, "--set", "mode=fast"], "mode=fast is not valid"),
            (["run", "--module", "non-local", "--input", x.path, "--output", out.path, "--set", "bogus=1"], "unknown config key 'bogus'"),
            (["run", "--module", "non-local", "--input", dir.appendingPathComponent("missing.npy").path, "--output", out.path], "no such file"),
        ]
        for (args, needle) in cases {
            let r = try runProduct("attend", args)
            XCTAssertEqual(r.status, 1, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(needle), "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        }
    }

    func testListAndInfo() throws {
        let ids = try runProduct("attend", ["list", "--ids"])
        XCTAssertEqual(ids.status, 0)
        XCTAssertTrue(ids.stdout.split(separator: "\n").contains("non-local"))
        let info = try runProduct("attend", ["info", "non-local", "--json", "--channels", "32"])
        XCTAssertEqual(info.status, 0, info.stderr)
        let obj = try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as! [String: Any]
        let keys = (obj["config"] as! [[String: Any]]).map { $0["name"] as! String }
        XCTAssertEqual(keys, ["in_channels", "reduction", "use_scale", "mode", "sub_sample", "norm_cfg", "zeros_init"])
        let params = obj["parameters"] as! [[String: Any]]
        let g = params.first { $0["key"] as? String == "g.conv.weight" }
        XCTAssertEqual(g?["shape"] as? [Int], [16, 32, 1, 1])
    }
}
