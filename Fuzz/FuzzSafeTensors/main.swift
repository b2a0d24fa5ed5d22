// fuzz-safetensors: bytes through SafeTensors.read(data:name:) (the header JSON reader, offset
// and shape validation, dtype decoding). Invariants: a parse yields tensors whose element
// counts match their shapes and which survive encode → read bit for bit (the writer's JSON
// escaping is checked too); a refusal is one WeightsError line naming the file.

import FuzzSupport
import TensorCore
import Foundation

Fuzz.main("fuzz-safetensors") { data in
    let name = "fuzz.safetensors"
    do {
        let sd = try SafeTensors.read(data: data, name: name)
        var bytes = 0
        for (key, t) in sd.tensors {
            Fuzz.check(key != "__metadata__", "a tensor named __metadata__")
            Fuzz.check(t.count == t.shape.reduce(1, *), "'\(key)': \(t.count) elements for \(t.shape)")
            Fuzz.check(sd.dtypes[key] != nil, "'\(key)' has no dtype")
            bytes += t.count
        }
        Fuzz.check(bytes <= data.count, "\(bytes) elements from \(data.count) bytes")
        let again = try SafeTensors.read(data: SafeTensors.encode(sd), name: "round trip")
        Fuzz.check(again.keys == sd.keys, "round trip changed the keys")
        Fuzz.check(again.metadata == sd.metadata, "round trip changed the metadata")
        for (key, t) in sd.tensors {
            let u = again.tensors[key]!
            Fuzz.check(u.shape == t.shape, "'\(key)': round trip changed the shape")
            Fuzz.check(u.scalars.map(\.bitPattern) == t.scalars.map(\.bitPattern), "'\(key)': round trip changed values")
        }
    } catch let e as WeightsError {
        ErrorText.check(e.description, name: name)
    } catch {
        fatalError("unexpected error type \(type(of: error)): \(error)")
    }
}
