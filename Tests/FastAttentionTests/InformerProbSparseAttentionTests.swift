import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// informer against Informer2020's AttentionLayer(ProbAttention) through the committed fixtures
/// (Tools/reference/informer.py): the encoder form (mask_flag false), the decoder form
/// (mask_flag + mix) and separate d_keys/d_values; the reference's key samples injected as
/// `index_sample`.
final class InformerProbSparseAttentionTests: XCTestCase {
    static let cases = ["informer", "informer-masked", "informer-dkeys"]

    func testParityWithReference() throws {
        try assertParity(Self.cases)
    }

    func testMapMatchesReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            guard let expected = f.map, let q = f.mapQuery else { return XCTFail("\(name) has no map") }
            let map = try m.attentionMap(f.input, query: q)
            XCTAssertEqual(map.kind, .perQuery)
            XCTAssertEqual(map.values.shape, [2, 1, f.input.shape[1]])
            assertClose(map.values, expected, rtol: 1e-4, name)
        }
    }

    /// Per head, the map's active-query row is exactly the reference's selected queries.
    func testActiveQueriesAreTheReferenceSelection() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let index = try XCTUnwrap(f.file.tensors["active_index"])      // N, H, u
            let (heads, u, l) = (index.shape[1], index.shape[2], f.input.shape[1])
            for h in 0..<heads {
                let map = try m.attentionMap(f.input, query: MapQuery(row: 0, column: 0, head: h))
                let row = Array(map.values.scalars[l..<2 * l])
                let picked = (0..<l).filter { row[$0] == 1 }
                XCTAssertEqual(picked, (0..<u).map { Int(index[0, h, $0]) }, "\(name) head \(h)")
                XCTAssertEqual(row.filter { $0 != 0 && $0 != 1 }, [])
            }
        }
    }

    /// With u = L every query is active: ProbSparse is then full multi-head attention.
    func testAllActiveIsFullAttention() throws {
        let x = randomTensor([2, 9, 8], seed: 4)
        var sd = StateDict()
        for (i, name) in ["query_projection", "key_projection", "value_projection", "out_projection"].enumerated() {
            sd.tensors[name + ".weight"] = randomTensor([8, 8], seed: UInt64(10 + i))
            sd.tensors[name + ".bias"] = randomTensor([8], seed: UInt64(20 + i))
        }
        let m = try Registry.make(id: "informer", settings: ["n_heads": "2", "factor": "5", "mask_flag": "false"],
                                  inputShape: x.shape, weights: sd)         // 5·⌈ln 9⌉ = 15 ≥ 9
        let lin = { (name: String, t: Tensor) -> Tensor in
            t.matmul(sd.tensors[name + ".weight"]!, transposeOther: true) + sd.tensors[name + ".bias"]!
        }
        let ctx = DenseAttention.multiHead(q: lin("query_projection", x), k: lin("key_projection", x),
                                           v: lin("value_projection", x), heads: 2, scale: 0.5)
        assertClose(try m(x), lin("out_projection", ctx), rtol: 1e-5)
    }

    /// The masked path with every query active is strictly causal; with u < L the rows still
    /// see only j ≤ i (the selection itself reads the future, as in the reference).
    func testMaskedRowsIgnoreTheFuture() throws {
        let l = 9, x = randomTensor([2, l, 8], seed: 7)
        let m = try Registry.make(id: "informer", settings: ["n_heads": "2", "factor": "5"], inputShape: x.shape, seed: 3)
        let y = try m(x)
        for i in [0, 4, 7] {
            var z = x
            z.withUnsafeMutableBufferPointer { p in
                for b in 0..<2 { for t in (i + 1)..<l { for c in 0..<8 { p[(b * l + t) * 8 + c] += 5 } } }
            }
            let yz = try m(z)
            XCTAssertLessThanOrEqual(maxRelativeError(yz.sliced(axis: 1, range: 0..<(i + 1)),
                                                      y.sliced(axis: 1, range: 0..<(i + 1))), 1e-6, "i=\(i)")
            XCTAssertGreaterThan(maxRelativeError(yz, y), 1e-3)
        }
        let long = randomTensor([1, 40, 8], seed: 8)
        let sparse = try Registry.make(id: "informer", settings: ["n_heads": "2", "factor": "2"], inputShape: long.shape, seed: 3)
        for i in [3, 20, 39] {
            for h in 0..<2 {
                let w = try sparse.attentionMap(long, query: MapQuery(row: 0, column: i, head: h)).values.scalars
                XCTAssertEqual(w[(i + 1)..<40].filter { $0 != 0 }, [], "query \(i) head \(h)")
                XCTAssertEqual(Array(w[40..<80]).reduce(0, +), 8, accuracy: 1e-6)   // u = 2·⌈ln 40⌉
            }
        }
    }

    func testSeededSamplesAreDeterministic() throws {
        let x = randomTensor([1, 30, 8], seed: 5)
        let a = try Registry.make(id: "informer", settings: ["n_heads": "2", "mask_flag": "false"], inputShape: x.shape, seed: 9)
        let b = try Registry.make(id: "informer", settings: ["n_heads": "2", "mask_flag": "false"], inputShape: x.shape, seed: 9)
        XCTAssertEqual(try a(x).scalars, try b(x).scalars)
        XCTAssertEqual(try a(x).scalars, try a(x).scalars)
        XCTAssertEqual(try a(randomTensor([2, 17, 8])).shape, [2, 17, 8])     // any L ≥ 2 when seeded
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("informer")
        var sd = f.stateDict
        sd.tensors["out_projection.bias"] = nil
        sd.tensors["inner_attention.scale"] = Tensor(zeros: [1])
        XCTAssertThrowsError(try Registry.make(id: "informer", settings: f.settings, inputShape: f.input.shape, weights: sd)) { e in
            let text = String(describing: e)
            XCTAssertTrue(text.contains("missing keys: out_projection.bias"), text)
            XCTAssertTrue(text.contains("unexpected keys: inner_attention.scale"), text)
        }
        // index_sample is optional, but when present its shape must fit the input length.
        var without = f.stateDict
        without.tensors["index_sample"] = nil
        XCTAssertNoThrow(try Registry.make(id: "informer", settings: f.settings, inputShape: f.input.shape, weights: without))
        var bad = f.stateDict
        bad.tensors["index_sample"] = Tensor(zeros: [37, 19])
        XCTAssertThrowsError(try Registry.make(id: "informer", settings: f.settings, inputShape: f.input.shape, weights: bad)) { e in
            XCTAssertTrue("\(e)".contains("size mismatch for index_sample"), "\(e)")
        }
        let m = try f.makeModule()
        XCTAssertThrowsError(try m(randomTensor([1, 20, 12]))) { e in
            XCTAssertTrue("\(e)".contains("index_sample is for L=37"), "\(e)")
        }
    }

    func testShapeAndConfigErrors() throws {
        XCTAssertThrowsError(try Registry.make(id: "informer", settings: ["factor": "0"], inputShape: [1, 8, 16]))
        XCTAssertThrowsError(try Registry.make(id: "informer", settings: ["colour": "1"], inputShape: [1, 8, 16]))
        XCTAssertThrowsError(try Registry.make(id: "informer", settings: ["n_heads": "32"], inputShape: [1, 8, 16]))
        let m = try Registry.make(id: "informer", inputShape: [1, 10, 16])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 10, 8]))) { e in
            XCTAssertEqual("\(e)", "informer: expected input N×L×16 (L ≥ 2), found 1×10×8")
        }
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 1, 16])))              // u = 0: the reference fails too
        XCTAssertThrowsError(try m.attentionMap(randomTensor([1, 7, 16]), query: MapQuery(row: 0, column: 7)))
        XCTAssertEqual(try m.map(onGrid: randomTensor([1, 16, 3, 5]), query: MapQuery(row: 1, column: 4)).values.shape, [2, 3, 5])
    }
}
