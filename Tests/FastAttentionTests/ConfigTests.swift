@testable import FastAttention
import XCTest

/// Config's list-of-names type and derived values (Config.swift).
final class ConfigTests: XCTestCase {
    let schema = [
        ConfigKey("pool_types", .strings(allowed: ["avg", "max", "lp"], count: 1...3), default: .strings(["avg", "max"]), "pools"),
        ConfigKey("seq_len", .int(1...4096), default: .none, "length"),
    ]

    func testStringsParseInAnyOrderAndRefuseRepeatsAndUnknownNames() throws {
        func parsed(_ text: String) throws -> ConfigValue? {
            try Config(module: "m", schema: schema, settings: ["pool_types": text]).values["pool_types"]
        }
        XCTAssertEqual(try parsed("avg,max"), .strings(["avg", "max"]))
        XCTAssertEqual(try parsed("max, avg"), .strings(["max", "avg"]))
        XCTAssertEqual(try parsed("['lp', 'avg']"), .strings(["lp", "avg"]))
        XCTAssertEqual(try parsed("[max]"), .strings(["max"]))
        for bad in ["avg,avg", "mean", "", "avg,max,lp,avg"] {
            XCTAssertThrowsError(try parsed(bad), bad) { e in
                XCTAssertTrue(String(describing: e).contains("distinct of avg|max|lp"), "\(e)")
            }
        }
        let c = try Config(module: "m", schema: schema)
        XCTAssertEqual(c.strings("pool_types"), ["avg", "max"])
        XCTAssertEqual(c.values["pool_types"]?.description, "avg,max")
        XCTAssertEqual(c.values["pool_types"]?.json as? [String], ["avg", "max"])
    }

    func testSetDerivedRecordsAValueWithoutMakingItExplicit() throws {
        var c = try Config(module: "m", schema: schema)
        XCTAssertFalse(c.isSet("seq_len"))
        c.setDerived("seq_len", .int(12))
        XCTAssertEqual(c.int("seq_len"), 12)
        XCTAssertFalse(c.explicit.contains("seq_len"))
        var set = try Config(module: "m", schema: schema, settings: ["seq_len": "12"])
        set.setDerived("seq_len", .int(12))                 // agrees with what the user set
        XCTAssertTrue(set.explicit.contains("seq_len"))
        // Modules record what they derive: Linformer's seq_len from the input, dim_head from dim // heads.
        let m = try Registry.make(id: "linformer", settings: ["k": "4"], inputShape: [1, 10, 8])
        XCTAssertEqual(m.config.values["seq_len"], .int(10))
        XCTAssertEqual(m.config.values["dim_head"], .int(8 / m.config.int("heads")))
        XCTAssertEqual(m.config.explicit, ["k"])
    }
}
