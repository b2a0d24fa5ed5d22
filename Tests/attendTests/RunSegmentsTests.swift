import Foundation
import TensorCore
import TestSupport
import XCTest

/// `attend run --segments/--memories` for modules with memories: the compressive fixture's three
/// segments in one run, and the same split over two runs through the saved memories file.
final class RunSegmentsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testSegmentsAndSavedMemoriesMatchReference() throws {
        let url = repositoryRoot().appendingPathComponent("Tests/FastAttentionTests/Fixtures/compressive.safetensors")
        let f = try SafeTensors.read(contentsOf: url)
        var weights = StateDict()
        for (k, v) in f.tensors where k.hasPrefix("state.") { weights.tensors[String(k.dropFirst(6))] = v }
        let w = dir.appendingPathComponent("w.safetensors")
        try SafeTensors.write(weights, to: w)
        let config = try JSONSerialization.jsonObject(with: Data(f.metadata["config"]!.utf8)) as! [String: String]
        let settings = config.filter { $0.key != "seq_len" }.sorted { $0.key < $1.key }.flatMap { ["--set", "\($0.key)=\($0.value)"] }
        let input = f.tensors["input"]!, expected = f.tensors["output"]!           // 2×30×12, 3 segments of 10

        let x = dir.appendingPathComponent("x.npy"), out = dir.appendingPathComponent("y.npy")
        try NPY.write(input, to: x)
        var r = try runProduct("attend", ["run", "--module", "compressive", "--weights", w.path, "--input", x.path,
                                          "--segments", "3", "--output", out.path] + settings)
        XCTAssertEqual(r.status, 0, r.stderr)
        assertClose(try NPY.read(contentsOf: out), expected, rtol: 1e-4)
        let saved = try SafeTensors.read(contentsOf: dir.appendingPathComponent("y.memories.safetensors"))
        assertClose(saved.tensors["mem"]!, f.tensors["mem_3"]!, rtol: 1e-4)
        assertClose(saved.tensors["cmem"]!, f.tensors["cmem_3"]!, rtol: 1e-4)

        // Two segments, then the third from the saved memories.
        let first = dir.appendingPathComponent("a.npy"), second = dir.appendingPathComponent("b.npy")
        try NPY.write(input.sliced(axis: 1, range: 0..<20), to: first)
        try NPY.write(input.sliced(axis: 1, range: 20..<30), to: second)
        r = try runProduct("attend", ["run", "--module", "compressive", "--weights", w.path, "--input", first.path,
                                      "--segments", "2", "--output", dir.appendingPathComponent("ya.npy").path] + settings)
        XCTAssertEqual(r.status, 0, r.stderr)
        let yb = dir.appendingPathComponent("yb.npy")
        r = try runProduct("attend", ["run", "--module", "compressive", "--weights", w.path, "--input", second.path,
                                      "--memories", dir.appendingPathComponent("ya.memories.safetensors").path,
                                      "--output", yb.path] + settings)
        XCTAssertEqual(r.status, 0, r.stderr)
        assertClose(try NPY.read(contentsOf: yb), expected.sliced(axis: 1, range: 20..<30), rtol: 1e-4)

        // Errors: segments that do not divide L; --segments on a module without memories.
        r = try runProduct("attend", ["run", "--module", "compressive", "--input", x.path, "--segments", "4",
                                      "--output", out.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("does not divide L = 30"), r.stderr)
        r = try runProduct("attend", ["run", "--module", "informer", "--input", x.path, "--segments", "2",
                                      "--output", out.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("modules with memories"), r.stderr)
    }
}
