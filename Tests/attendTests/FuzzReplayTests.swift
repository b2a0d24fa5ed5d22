// The fuzz targets in a normal build are replay tools (Fuzz/README.md): every seed and every
// input a fuzzer once crashed on (Tests/Fuzz/regressions/<target>/) runs through the same
// callback and invariants here, so the targets keep building and the fixes stay fixed without
// libFuzzer or a sanitizer.

import Foundation
import TestSupport
import XCTest

final class FuzzReplayTests: XCTestCase {
    func testSeedsAndRegressionsReplayCleanly() throws {
        let root = repositoryRoot().appendingPathComponent("Tests/Fuzz")
        for target in ["png", "jpeg", "safetensors", "npy"] {
            var folders = [root.appendingPathComponent("corpus/\(target)").path]
            let regressions = root.appendingPathComponent("regressions/\(target)").path
            if FileManager.default.fileExists(atPath: regressions) { folders.append(regressions) }
            let r = try runBounded(folders, product: "fuzz-\(target)", seconds: 120)
            XCTAssertFalse(r.timedOut, "fuzz-\(target) hung")
            XCTAssertEqual(r.status, 0, "fuzz-\(target): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("no invariant broken"), r.stdout)
        }
    }

    /// With no arguments a replay build says what it is instead of waiting for libFuzzer input.
    func testReplayBuildExplainsItself() throws {
        let r = try runBounded([], product: "fuzz-npy")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("make fuzz-build"), r.stderr)
    }
}
