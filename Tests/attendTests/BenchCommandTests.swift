import Foundation
import TestSupport
import XCTest

/// `attend bench --all` and the fields the benchmark scripts (Tools/bench) read.
final class BenchCommandTests: XCTestCase {
    func json(_ args: [String]) throws -> Any {
        let r = try runProduct("attend", args)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
    }

    func testListJSONCarriesThePaperExponent() throws {
        let rows = try XCTUnwrap(try json(["list", "--json"]) as? [[String: Any]])
        XCTAssertFalse(rows.isEmpty)
        for row in rows {
            let e = try XCTUnwrap(row["complexity_exponent"] as? Double, "\(row["id"] ?? "?")")
            XCTAssertTrue((0.5...3).contains(e), "\(row["id"] ?? "?"): \(e)")
        }
        XCTAssertEqual(rows.first { $0["id"] as? String == "non-local" }?["complexity_exponent"] as? Double, 2)
    }

    func testBenchAllTimesEveryModuleOnce() throws {
        let ids = try XCTUnwrap(try json(["list", "--json"]) as? [[String: Any]]).compactMap { $0["id"] as? String }
        let report = try XCTUnwrap(try json(["bench", "--all", "--sizes", "4,6", "--channels", "16", "--repeats", "1",
                                             "--min-time", "0", "--threads", "1", "--json"]) as? [String: Any])
        let modules = try XCTUnwrap(report["modules"] as? [[String: Any]])
        var seen = Set<String>()
        let unique = ids.filter { seen.insert($0).inserted }             // an id registered twice runs once
        XCTAssertEqual(modules.compactMap { $0["module"] as? String }, unique)
        for m in modules {
            XCTAssertNil(m["error"], "\(m["module"] ?? "?"): \(m["error"] ?? "")")
            let sizes = try XCTUnwrap(m["sizes"] as? [[String: Any]])
            XCTAssertEqual(sizes.compactMap { $0["size"] as? Int }, [4, 6])
            for s in sizes {
                let median = try XCTUnwrap(s["median_ms"] as? Double), fastest = try XCTUnwrap(s["min_ms"] as? Double)
                XCTAssertLessThanOrEqual(fastest, median)
            }
        }
    }

    func testBenchAllTableAndRefusals() throws {
        let r = try runProduct("attend", ["bench", "--all", "--sizes", "4", "--channels", "8", "--repeats", "1",
                                          "--min-time", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("fitted exp"), r.stdout)
        XCTAssertTrue(r.stdout.contains("criss-cross"), r.stdout)
        for bad in [["--all", "--module", "cbam"], ["--all", "--op", "gemm"], ["--all", "--set", "k=2"], []] {
            let e = try runProduct("attend", ["bench"] + bad)
            XCTAssertNotEqual(e.status, 0, "bench \(bad) should be refused")
        }
    }
}
