import Foundation
import TestSupport
import XCTest

/// The library example builds and runs end to end (README, "As a library").
final class LibraryTourTests: XCTestCase {
    func testTourRuns() throws {
        let r = try runProduct("library-tour", [])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("non-local: 1×32×12×16 → 1×32×12×16"), r.stdout)
        XCTAssertTrue(r.stdout.contains("non-local map: per-query 1×12×16"), r.stdout)
        XCTAssertTrue(r.stdout.contains("theta.conv.weight 16×32×1×1"), r.stdout)
    }
}
