import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// A parity fixture written by Tools/reference (format in Tools/reference/common.py).
struct Fixture {
    let name: String
    let module: String
    let settings: [String: String]
    let input: Tensor
    let output: Tensor
    let map: Tensor?
    let mapQuery: MapQuery?
    let stateDict: StateDict
    let file: StateDict

    static func load(_ name: String) throws -> Fixture {
        let url = fixturesDirectory().appendingPathComponent(name + ".safetensors")
        let sd = try SafeTensors.read(contentsOf: url)
        var state = StateDict()
        for (k, v) in sd.tensors where k.hasPrefix("state.") {
            state.tensors[String(k.dropFirst(6))] = v
            state.dtypes[String(k.dropFirst(6))] = sd.dtypes[k]
        }
        var settings: [String: String] = [:]
        if let json = sd.metadata["config"],
           let obj = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String] {
            settings = obj
        }
        var query: MapQuery?
        if let q = sd.metadata["map_query"] {
            let p = q.split(separator: ",").compactMap { Int($0) }
            if p.count == 2 { query = MapQuery(row: p[0], column: p[1]) }
        }
        return Fixture(name: name, module: sd.metadata["module"] ?? name, settings: settings,
                       input: sd.tensors["input"]!, output: sd.tensors["output"]!, map: sd.tensors["map"],
                       mapQuery: query, stateDict: state, file: sd)
    }

    func makeModule() throws -> any AttentionModule {
        try Registry.make(id: module, settings: settings, inputShape: input.shape, weights: stateDict)
    }
}

/// Parity with the reference for every fixture in `cases`: the module built from the fixture's
/// config and weights maps its input to its output within `rtol` (max relative error, printed).
func assertParity(_ cases: [String], rtol: Float = 1e-4, file: StaticString = #filePath, line: UInt = #line) throws {
    for name in cases {
        let f = try Fixture.load(name)
        let m = try f.makeModule()
        let y = try m(f.input)
        print("\(name): max relative error \(maxRelativeError(y, f.output))")
        assertClose(y, f.output, rtol: rtol, name, file: file, line: line)
    }
}

/// The reference's map for every fixture in `cases`: the module's map at the fixture's query
/// (or `query`) is of `kind` and within `rtol` of the stored map; `more` adds a module's own
/// checks on it. Fails (and stops) at a fixture without a map or query.
func assertMapsMatch(_ cases: [String], rtol: Float = 1e-4, kind: MapKind, query: MapQuery? = nil,
                     file: StaticString = #filePath, line: UInt = #line,
                     _ more: (_ f: Fixture, _ map: AttentionMap) throws -> Void = { _, _ in }) throws {
    for name in cases {
        let f = try Fixture.load(name)
        guard let expected = f.map, let q = query ?? f.mapQuery else {
            return XCTFail("\(name) has no map", file: file, line: line)
        }
        let m = try f.makeModule()
        let map = try m.attentionMap(f.input, query: q)
        XCTAssertEqual(map.kind, kind, name, file: file, line: line)
        print("\(name) map: max relative error \(maxRelativeError(map.values, expected))")
        assertClose(map.values, expected, rtol: rtol, name + " map", file: file, line: line)
        try more(f, map)
    }
}
