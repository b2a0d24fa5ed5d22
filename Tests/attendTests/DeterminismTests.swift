// Determinism (README, "Determinism"): `attend run` on every registered module gives the same
// bits for the same input and seed, run after run, and the same bits for the thread count
// given by FASTATTENTION_NUM_THREADS or --threads. Between 1 and 2 threads the bits may differ
// where OpenBLAS is used above its threading threshold: it picks other kernels (other
// summation orders) for a threaded GEMM, so results agree to float rounding, checked here at
// 1e-6 relative (max |a − b| / max |b|, the parity measure of TestSupport). Our own parallel
// loops split only independent outputs, so they never change bits.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class DeterminismTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory("attend-det") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Modules that are bitwise equal across thread counts on this input: their GEMMs stay
    /// below OpenBLAS's threading threshold (or they have none), and their own loops split
    /// independent outputs. Any other module may differ in the last bits, never beyond 1e-6.
    static let bitwiseAcrossThreads: Set<String> = ["cbam", "global-context", "smyrf", "talk-conv"]

    func run(_ id: String, _ input: URL, _ name: String, env: [String: String] = [:], extra: [String] = []) throws -> Tensor {
        let out = dir.appendingPathComponent("\(id)-\(name).npy")
        let r = try runBounded(["run", "--module", id, "--input", input.path, "--output", out.path, "--seed", "7"] + extra,
                               seconds: 300, environment: env)
        XCTAssertFalse(r.timedOut, "\(id) \(name) hung")
        XCTAssertEqual(r.status, 0, "\(id) \(name): \(r.stderr)")
        return try NPY.read(contentsOf: out)
    }

    func bits(_ t: Tensor) -> [UInt32] { t.scalars.map(\.bitPattern) }

    func testEveryModuleIsReproducibleAndThreadCountStable() throws {
        // 1×32×24×24: 576 positions, so dense attention's GEMMs are big enough to be threaded.
        let input = dir.appendingPathComponent("x.npy")
        try NPY.write(randomTensor([1, 32, 24, 24], seed: 21), to: input)
        let ids = try runBounded(["list", "--ids"]).stdout.split(separator: "\n").map(String.init)
        XCTAssertGreaterThanOrEqual(ids.count, 14)
        var report: [String] = []
        for id in ids {
            let one = try run(id, input, "t1", env: ["FASTATTENTION_NUM_THREADS": "1"])
            let oneAgain = try run(id, input, "t1b", env: ["FASTATTENTION_NUM_THREADS": "1"])
            let two = try run(id, input, "t2", env: ["FASTATTENTION_NUM_THREADS": "2"])
            let twoFlag = try run(id, input, "t2f", env: ["FASTATTENTION_NUM_THREADS": "1"], extra: ["--threads", "2"])
            XCTAssertEqual(bits(one), bits(oneAgain), "\(id): two single-threaded runs differ")
            XCTAssertEqual(bits(two), bits(twoFlag), "\(id): FASTATTENTION_NUM_THREADS=2 and --threads 2 differ")
            XCTAssertEqual(one.shape, two.shape)
            let bitwise = bits(one) == bits(two)
            let error = maxRelativeError(two, one)
            if Self.bitwiseAcrossThreads.contains(id) {
                XCTAssertTrue(bitwise, "\(id): expected bitwise equality across 1 and 2 threads (max rel. error \(error))")
            }
            XCTAssertLessThanOrEqual(error, 1e-6, "\(id): 1 vs 2 threads differ by \(error) relative")
            report.append("\(id): \(bitwise ? "bitwise" : "max rel. error \(error)")")
        }
        print("determinism, 1 vs 2 threads:\n  " + report.joined(separator: "\n  "))
    }

    /// The image path too: decode, stem and a seeded module give the same bits every run.
    func testImageInputIsReproducible() throws {
        let photo = repositoryRoot().appendingPathComponent("SampleImages/cat_chelsea.jpg")
        for id in ["non-local", "performer"] {
            let a = try run(id, photo, "img-a", extra: ["--grid", "16"])
            let b = try run(id, photo, "img-b", extra: ["--grid", "16"])
            XCTAssertEqual(bits(a), bits(b), id)
        }
    }
}
