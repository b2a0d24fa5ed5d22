// Shared test helpers: closeness with a stated tolerance, and paths to committed fixtures.

import Foundation
import TensorCore
import XCTest

/// max |a-b| / max(|b|_∞, tiny): one relative figure for a whole tensor, as the parity
/// criterion "within 1e-4 relative" is meant (robust to individual near-zero elements).
public func maxRelativeError(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.shape == b.shape)
    return a.withUnsafeBufferPointer { x in
        b.withUnsafeBufferPointer { y in
            var diff: Float = 0, scale: Float = 0
            for i in 0..<x.count {
                if x[i].isNaN != y[i].isNaN { return .infinity }
                if x[i].isNaN { continue }
                diff = max(diff, abs(x[i] - y[i]))
                scale = max(scale, abs(y[i]))
            }
            return diff / max(scale, 1e-30)
        }
    }
}

/// Asserts same shape and max relative error (see `maxRelativeError`) within `rtol`.
public func assertClose(_ a: Tensor, _ b: Tensor, rtol: Float = 1e-5, _ message: String = "",
                        file: StaticString = #filePath, line: UInt = #line) {
    guard a.shape == b.shape else {
        XCTFail("shape \(a.shape) ≠ \(b.shape) \(message)", file: file, line: line)
        return
    }
    let e = maxRelativeError(a, b)
    XCTAssertLessThanOrEqual(e, rtol, "max relative error \(e) > \(rtol) \(message)", file: file, line: line)
}

/// A tensor of N(0,1) values from a fixed seed, for tests.
public func randomTensor(_ shape: [Int], seed: UInt64 = 1) -> Tensor {
    var g = SeededGenerator(seed: seed)
    return .randomNormal(shape, generator: &g)
}

/// The folder of committed golden files beside a test source file:
/// `fixturesDirectory()` from `Tests/X/Foo.swift` is `Tests/X/Fixtures`.
public func fixturesDirectory(file: StaticString = #filePath) -> URL {
    URL(fileURLWithPath: "\(file)").deletingLastPathComponent().appendingPathComponent("Fixtures")
}

/// The repository root (for tests that need SampleImages/ or the built `attend`).
public func repositoryRoot(file: StaticString = #filePath) -> URL {
    var u = URL(fileURLWithPath: "\(file)")
    while u.path != "/" {
        u.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: u.appendingPathComponent("Package.swift").path) { return u }
    }
    return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
}

/// Runs `body` once on every CKernels instruction-set path this CPU has (portable C first), so a
/// test of a vectorised kernel also covers the paths the dispatch would not pick here.
public func forEachKernelISA(_ body: () throws -> Void) rethrows {
    for isa in KernelISA.available {
        try KernelISA.limited(to: isa) { try body() }
    }
}
