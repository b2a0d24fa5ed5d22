import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// linformer against lucidrains' LinformerSelfAttention (pip linformer 0.2.3) through the committed
/// fixtures (Tools/reference/linformer.py: every weight random, L not a power of two, 3 heads;
/// and share_kv + one_kv_head with dim_head ≠ dim / heads).
final class LinformerAttentionTests: XCTestCase {
    static let cases = ["linformer", "linformer-shared"]

    func testParityWithReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let y = try m(f.input)
            print("\(name): max relative error \(maxRelativeError(y, f.output))")
            assertClose(y, f.output, rtol: 1e-4, name)
        }
    }

    func testMapMatchesReferenceRow() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            guard let expected = f.map, let q = f.mapQuery else { return XCTFail("\(name) has no map") }
            let map = try m.attentionMap(f.input, query: q)
            XCTAssertEqual(map.kind, .perQuery)
            assertClose(map.values, expected, rtol: 1e-4, name)
        }
    }

    /// With k = L and E = F = I the projections are the identity: the map is the plain softmax
    /// row (sums to 1), and the output is full multi-head attention.
    func testIdentityProjectionsGiveFullAttention() throws {
        let (l, c, heads) = (7, 6, 2)
        let x = randomTensor([1, l, c], seed: 4)
        var sd = StateDict()
        for r in try Registry.parameterRecords(id: "linformer", settings: ["k": "\(l)", "heads": "\(heads)"],
                                               inputShape: x.shape) {
            sd.tensors[r.key] = randomTensor(r.shape, seed: UInt64(r.key.count))
        }
        let eye = Tensor(shape: [l, l], scalars: (0..<l * l).map { $0 % (l + 1) == 0 ? 1 : 0 })
        sd.tensors["proj_k"] = eye
        sd.tensors["proj_v"] = eye
        let m = try Registry.make(id: "linformer", settings: ["k": "\(l)", "heads": "\(heads)"], inputShape: x.shape,
                                  weights: sd)
        let map = try m.attentionMap(x, query: MapQuery(row: 0, column: 3, head: 1))
        XCTAssertEqual(map.values.scalars.reduce(0, +), 1, accuracy: 1e-5)
        XCTAssertTrue(map.values.scalars.allSatisfy { $0 > 0 })
        // Full attention by hand: softmax(q kᵀ/√dh) v per head, then to_out.
        let q = x.reshaped([l, c]).matmul(sd.tensors["to_q.weight"]!, transposeOther: true)
        let k = x.reshaped([l, c]).matmul(sd.tensors["to_k.weight"]!, transposeOther: true)
        let v = x.reshaped([l, c]).matmul(sd.tensors["to_v.weight"]!, transposeOther: true)
        let dh = c / heads
        var perHead: [Tensor] = []
        for h in 0..<heads {
            let qs = q.sliced(axis: 1, range: h * dh..<(h + 1) * dh), ks = k.sliced(axis: 1, range: h * dh..<(h + 1) * dh)
            let vs = v.sliced(axis: 1, range: h * dh..<(h + 1) * dh)
            let o = DenseAttention.forwardNaive(lq: l, lk: l, d: dh, dv: dh, q: qs.scalars, k: ks.scalars, v: vs.scalars,
                                                scale: 1 / Float(dh).squareRoot())
            perHead.append(Tensor(shape: [l, dh], scalars: o))
        }
        let att = Tensor.concatenated(perHead, axis: 1)
        let expected = att.matmul(sd.tensors["to_out.weight"]!, transposeOther: true) + sd.tensors["to_out.bias"]!
        assertClose(try m(x), expected.reshaped([1, l, c]), rtol: 1e-5)
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("linformer-shared")
        var sd = f.stateDict
        sd.tensors["proj_k"] = nil
        sd.tensors["proj_v"] = Tensor(zeros: [30, 7])       // share_kv: the reference has no proj_v
        sd.tensors["to_k.weight"] = Tensor(zeros: [10, 16])
        XCTAssertThrowsError(try Registry.make(id: "linformer", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: proj_k"), text)
            XCTAssertTrue(text.contains("unexpected keys: proj_v"), text)
            XCTAssertTrue(text.contains("size mismatch for to_k.weight"), text)
        }
    }

    func testSeqLenAndShapesAreClearErrors() throws {
        XCTAssertThrowsError(try Registry.make(id: "linformer", settings: ["seq_len": "64"], inputShape: [1, 45, 16])) { e in
            XCTAssertTrue(String(describing: e).contains("seq_len=64 but the input has L=45 tokens"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "linformer", settings: ["heads": "3"], inputShape: [1, 8, 16])) { e in
            XCTAssertTrue(String(describing: e).contains("dim=16 must be divisible by heads=3"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "linformer", settings: ["kk": "3"], inputShape: [1, 8, 16]))
        let m = try Registry.make(id: "linformer", settings: ["k": "4", "heads": "2"], inputShape: [1, 10, 8])
        XCTAssertEqual(m.config.int("seq_len"), 10)
        XCTAssertEqual(m.config.int("dim_head"), 4)
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 11, 8]))) { e in
            XCTAssertEqual(String(describing: e), "linformer: expected input N×10×8, found 1×11×8")
        }
        XCTAssertThrowsError(try m.attentionMap(randomTensor([1, 10, 8]), query: MapQuery(row: 0, column: 10)))
        // On a feature map: tokens in raster order, map folded back to the grid.
        let grid = try Registry.make(id: "linformer", settings: ["k": "5", "heads": "2"], inputShape: [1, 8, 3, 4])
        XCTAssertEqual(try grid.apply(randomTensor([1, 8, 3, 4])).shape, [1, 8, 3, 4])
        XCTAssertEqual(try grid.map(onGrid: randomTensor([1, 8, 3, 4]), query: MapQuery(row: 2, column: 1)).values.shape,
                       [1, 3, 4])
    }
}
