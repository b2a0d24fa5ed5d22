// Outputs are written to a temporary name and renamed on success (Inputs.swift, Progress.swift,
// TensorCore's FileAccess, ImageIO's Image.write): a failing or killed run never leaves a
// half-written file, and an existing output is replaced whole or not at all.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class SafeOutputTests: XCTestCase {
    var dir: URL!
    let photo = repositoryRoot().appendingPathComponent("SampleImages/cat_chelsea.jpg")

    override func setUpWithError() throws { dir = try temporaryDirectory("attend-out") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func input() throws -> URL {
        let url = dir.appendingPathComponent("x.npy")
        if !FileManager.default.fileExists(atPath: url.path) { try NPY.write(randomTensor([1, 16, 8, 8], seed: 9), to: url) }
        return url
    }

    /// The folder's entries other than the ones named (temporary files would show up here).
    func extraFiles(_ folder: URL, besides names: Set<String>) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !names.contains($0) }.sorted()
    }

    /// `attend` under a file-size limit (ulimit -f, in 512-byte blocks) with SIGXFSZ ignored:
    /// a write past the limit fails with EFBIG, a mid-write failure we can provoke at will.
    /// With the signal at its default the process is killed mid-write instead.
    func runLimited(_ args: [String], blocks: Int, ignoreSignal: Bool) throws -> Outcome {
        let attend = productsDirectory().appendingPathComponent("attend").path
        let quoted = ([attend] + args).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let script = "ulimit -f \(blocks); \(ignoreSignal ? "trap '' XFSZ; " : "")exec \(quoted)"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let status = p.terminationReason == .uncaughtSignal ? -p.terminationStatus : p.terminationStatus
        return Outcome(status: status, stdout: "", stderr: String(decoding: data, as: UTF8.self), timedOut: false)
    }

    /// An existing output survives every way a later run can fail: bad arguments, bad
    /// weights, a write that fails part-way (EFBIG) and a process killed part-way (SIGXFSZ).
    func testFailingRunsLeaveAnExistingOutputIntact() throws {
        let x = try input()
        for ext in ["npy", "safetensors"] {
            let out = dir.appendingPathComponent("out.\(ext)")
            let first = try runBounded(["run", "--module", "non-local", "--input", x.path, "--output", out.path])
            XCTAssertEqual(first.status, 0, first.stderr)
            let before = try Data(contentsOf: out)
            XCTAssertGreaterThan(before.count, 4096)
            let badWeights = dir.appendingPathComponent("w.safetensors")
            try Data("not safetensors".utf8).write(to: badWeights)
            let failures: [Outcome] = [
                try runBounded(["run", "--module", "non-local", "--input", x.path, "--output", out.path, "--set", "bogus=1"]),
                try runBounded(["run", "--module", "non-local", "--input", x.path, "--output", out.path, "--weights", badWeights.path]),
                try runLimited(["run", "--module", "non-local", "--input", x.path, "--output", out.path, "--seed", "5"],
                               blocks: 4, ignoreSignal: true),
            ]
            for (i, r) in failures.enumerated() {
                XCTAssertEqual(r.status, 1, "\(ext) failure \(i): \(r.stderr)")
                XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
                XCTAssertEqual(try Data(contentsOf: out), before, "\(ext) failure \(i) touched the existing output")
            }
            XCTAssertTrue(failures[2].stderr.contains("out.\(ext)") && failures[2].stderr.contains("cannot write the file: File too large"), failures[2].stderr)
            // Killed mid-write: the old output is still whole (a crash cannot clean up its
            // hidden temporary file, but it never takes the output's name).
            let killed = try runLimited(["run", "--module", "non-local", "--input", x.path, "--output", out.path, "--seed", "5"],
                                        blocks: 4, ignoreSignal: false)
            XCTAssertEqual(killed.status, -SIGXFSZ, killed.stderr)
            XCTAssertEqual(try Data(contentsOf: out), before)
            for f in try extraFiles(dir, besides: ["x.npy", "out.npy", "out.safetensors", "w.safetensors"]) {
                XCTAssertTrue(f.hasPrefix(".out.\(ext)"), "unexpected \(f)")
                try FileManager.default.removeItem(at: dir.appendingPathComponent(f))
            }
        }
    }

    /// `map` writes PNGs the same way: a failing write leaves the previous map whole and no
    /// temporary file behind.
    func testFailingMapLeavesTheExistingPNGIntact() throws {
        let maps = dir.appendingPathComponent("maps")
        let first = try runBounded(["map", photo.path, "--module", "cbam", "--grid", "8", "--out", maps.path])
        XCTAssertEqual(first.status, 0, first.stderr)
        let png = maps.appendingPathComponent("cat_chelsea-cbam.png")
        let before = try Data(contentsOf: png)
        let r = try runLimited(["map", photo.path, "--module", "cbam", "--grid", "8", "--alpha", "0.9", "--out", maps.path],
                               blocks: 8, ignoreSignal: true)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("cat_chelsea-cbam.png: write failed: File too large"), r.stderr)
        XCTAssertEqual(try Data(contentsOf: png), before)
        XCTAssertEqual(try extraFiles(maps, besides: ["cat_chelsea-cbam.png"]), [])
    }

    /// A successful run replaces the output by rename, never by rewriting it in place: a hard
    /// link to the old file keeps the old bytes. Checked for every kind of file attend writes.
    func testOutputsAreReplacedByRenameNotRewrittenInPlace() throws {
        let x = try input()
        func check(_ path: URL, _ args: [String], file: StaticString = #filePath, line: UInt = #line) throws {
            XCTAssertEqual(try runBounded(args).status, 0, file: file, line: line)
            let old = try Data(contentsOf: path)
            let link = dir.appendingPathComponent("link-\(path.lastPathComponent)")
            try? FileManager.default.removeItem(at: link)
            try FileManager.default.linkItem(at: path, to: link)
            let again = try runBounded(args + ["--seed", "3"])
            XCTAssertEqual(again.status, 0, again.stderr, file: file, line: line)
            XCTAssertEqual(try Data(contentsOf: link), old, "\(path.lastPathComponent) was rewritten in place", file: file, line: line)
            XCTAssertNotEqual(try Data(contentsOf: path), old, "the second run should change \(path.lastPathComponent)", file: file, line: line)
        }
        try check(dir.appendingPathComponent("o.npy"), ["run", "--module", "non-local", "--input", x.path, "--output", dir.appendingPathComponent("o.npy").path])
        try check(dir.appendingPathComponent("o.safetensors"),
                  ["run", "--module", "non-local", "--input", x.path, "--output", dir.appendingPathComponent("o.safetensors").path])
        let maps = dir.appendingPathComponent("maps")
        try check(maps.appendingPathComponent("cat_chelsea-non-local.png"),
                  ["map", photo.path, "--module", "non-local", "--grid", "8", "--out", maps.path])
        // batch: summary.json is rewritten whole at the end of each run.
        let photos = dir.appendingPathComponent("photos")
        try FileManager.default.createDirectory(at: photos, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: photo, to: photos.appendingPathComponent("a.jpg"))
        let b = dir.appendingPathComponent("b")
        let args = ["batch", photos.path, "--module", "cbam", "--grid", "8", "--out", b.path, "--quiet"]
        XCTAssertEqual(try runBounded(args).status, 0)
        let json = b.appendingPathComponent("summary.json")
        let link = dir.appendingPathComponent("summary-link.json")
        try FileManager.default.linkItem(at: json, to: link)
        let before = try Data(contentsOf: json)
        try FileManager.default.removeItem(at: b.appendingPathComponent("a_jpg.npy"))   // so the rerun has work to do
        XCTAssertEqual(try runBounded(args).status, 0)
        XCTAssertEqual(try Data(contentsOf: link), before)
        XCTAssertNotEqual(try Data(contentsOf: json), before)
        XCTAssertEqual(try extraFiles(b, besides: ["a_jpg.npy", "summary.csv", "summary.json"]), [])
    }

    /// When the rename itself fails (the output name is a folder), the error is one line and
    /// neither the folder nor a temporary file is left changed or behind.
    func testOutputNameTakenByAFolderFailsCleanly() throws {
        let x = try input()
        let out = dir.appendingPathComponent("taken.npy")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: out.appendingPathComponent("inside"))
        let r = try runBounded(["run", "--module", "cbam", "--input", x.path, "--output", out.path])
        assertRefusal(r, file: "taken.npy", cause: "cannot write the file: Is a directory")
        XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("inside"), encoding: .utf8), "keep")
        XCTAssertEqual(try extraFiles(dir, besides: ["x.npy", "taken.npy"]), [])
    }

    /// summary.csv is the one file appended in place (a row per finished input). A row torn by
    /// a crash must not swallow the next run's first row.
    func testBatchLogStartsAFreshLineAfterATornRow() throws {
        let photos = dir.appendingPathComponent("photos")
        try FileManager.default.createDirectory(at: photos, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: photo, to: photos.appendingPathComponent("a.jpg"))
        let b = dir.appendingPathComponent("b")
        try FileManager.default.createDirectory(at: b, withIntermediateDirectories: true)
        let header = "file,status,ms,peak_mib,output_shape,mean,std,min,max,error\n"
        try Data((header + "/old/z.jpg,ok,12.0").utf8).write(to: b.appendingPathComponent("summary.csv"))
        let r = try runBounded(["batch", photos.path, "--module", "cbam", "--grid", "8", "--out", b.path, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try String(contentsOf: b.appendingPathComponent("summary.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 3, "\(lines)")
        XCTAssertEqual(lines[1], "/old/z.jpg,ok,12.0")
        XCTAssertTrue(lines[2].hasPrefix(photos.appendingPathComponent("a.jpg").path + ",ok,"), String(lines[2]))
    }
}
