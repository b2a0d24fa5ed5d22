import FastAttention
import Foundation
import TensorCore
import TestSupport

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
