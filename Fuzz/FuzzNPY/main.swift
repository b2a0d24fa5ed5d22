// fuzz-npy: bytes through NPY.read(data:name:) (preamble, the Python-literal header lexer,
// dtype table, Fortran-order transpose). Invariants: a parse yields a tensor whose element
// count matches its shape, no more elements than bytes, and which survives encode → read bit
// for bit; a refusal is one WeightsError line naming the file.

import FuzzSupport
import TensorCore
import Foundation

Fuzz.main("fuzz-npy") { data in
    let name = "fuzz.npy"
    do {
        let t = try NPY.read(data: data, name: name)
        Fuzz.check(t.count == t.shape.reduce(1, *), "\(t.count) elements for \(t.shape)")
        Fuzz.check(t.count <= data.count, "\(t.count) elements from \(data.count) bytes")
        let again = try NPY.read(data: NPY.encode(t), name: "round trip")
        Fuzz.check(again.shape == t.shape, "round trip changed the shape \(t.shape) → \(again.shape)")
        Fuzz.check(again.scalars.map(\.bitPattern) == t.scalars.map(\.bitPattern), "round trip changed values")
    } catch let e as WeightsError {
        ErrorText.check(e.description, name: name)
    } catch {
        fatalError("unexpected error type \(type(of: error)): \(error)")
    }
}
