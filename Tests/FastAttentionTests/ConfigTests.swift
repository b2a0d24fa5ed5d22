@testable import FastAttention
import XCTest

/// Config's derived values (Config.swift).
final class ConfigTests: XCTestCase {
    let schema = [ConfigKey("seq_len", .int(1...4096), default: .none, "length")]

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
