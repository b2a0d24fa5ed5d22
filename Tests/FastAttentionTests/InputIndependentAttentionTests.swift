import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// input-independent against Tools/reference/input_independent.py (a PyTorch module written from
/// arXiv 2006.05174, which has no official code) through the committed fixtures: 3 heads, L = 22;
/// causal with dim_head ≠ dim / heads. Plus the properties the paper's construction promises.
final class InputIndependentAttentionTests: XCTestCase {
    static let cases = ["input-independent", "input-independent-causal"]

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
            assertClose(map.values, expected, rtol: 1e-5, name)
        }
    }

    /// The weights do not depend on the input: any two inputs give the same map, rows sum to 1,
    /// and the output is affine in x (y(a) + y(b) − y(0) = y(a + b)).
    func testWeightsAreInputIndependent() throws {
        let f = try Fixture.load("input-independent")
        let m = try f.makeModule()
        let a = randomTensor([1, 22, 12], seed: 1), b = randomTensor([1, 22, 12], seed: 2)
        for i in [0, 11, 21] {
            let ma = try m.attentionMap(a, query: MapQuery(row: 0, column: i)).values
            let mb = try m.attentionMap(b, query: MapQuery(row: 0, column: i)).values
            XCTAssertEqual(ma.scalars, mb.scalars)
            XCTAssertEqual(ma.scalars.reduce(0, +), 1, accuracy: 1e-5)
        }
        let zero = Tensor(zeros: [1, 22, 12])
        assertClose(try m(a) + m(b) - m(zero), try m(a + b), rtol: 1e-5)
    }

    func testCausalIgnoresTheFuture() throws {
        let x = randomTensor([2, 10, 8], seed: 5)
        for initial in ["local", "random"] {
            let m = try Registry.make(id: "input-independent", settings: ["causal": "true", "heads": "2", "init": initial],
                                      inputShape: x.shape, seed: 7)
            let y = try m(x)
            for i in [0, 4, 8] {
                var z = x
                z.withUnsafeMutableBufferPointer { p in
                    for b in 0..<2 { for t in (i + 1)..<10 { for c in 0..<8 { p[(b * 10 + t) * 8 + c] -= 2 } } }
                }
                let yz = try m(z)
                XCTAssertLessThanOrEqual(maxRelativeError(yz.sliced(axis: 1, range: 0..<(i + 1)), y.sliced(axis: 1, range: 0..<(i + 1))), 1e-6)
                XCTAssertGreaterThan(maxRelativeError(yz, y), 1e-3)
            }
            let row = try m.attentionMap(x, query: MapQuery(row: 0, column: 3)).values.scalars
            XCTAssertTrue(row[4...].allSatisfy { $0 == 0 })
            XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-5)
        }
    }

    /// Untrained "local" start: head 0 is a narrow band (σ = 1) peaked at the query, wider heads
    /// flatter; the map is symmetric about the query away from the ends.
    func testLocalInitialisationIsABandAroundTheQuery() throws {
        let x = randomTensor([1, 31, 8], seed: 9)
        let m = try Registry.make(id: "input-independent", settings: ["heads": "4"], inputShape: x.shape)
        let head0 = try m.attentionMap(x, query: MapQuery(row: 0, column: 15, head: 0)).values.scalars
        XCTAssertEqual(head0.firstIndex(of: head0.max()!), 15)
        XCTAssertEqual(head0[15], 0.3989, accuracy: 1e-3)          // 1/√(2π) for σ = 1
        XCTAssertEqual(head0[12], head0[18], accuracy: 1e-7)
        let head3 = try m.attentionMap(x, query: MapQuery(row: 0, column: 15, head: 3)).values.scalars
        XCTAssertLessThan(head3.max()!, 0.1)
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("input-independent-causal")
        var sd = f.stateDict
        sd.tensors["to_v.bias"] = nil
        sd.tensors["to_q.weight"] = Tensor(zeros: [8, 10])
        sd.tensors["attention_logits"] = Tensor(zeros: [2, 16, 16])
        XCTAssertThrowsError(try Registry.make(id: "input-independent", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: to_v.bias"), text)
            XCTAssertTrue(text.contains("unexpected keys: to_q.weight"), text)
            XCTAssertTrue(text.contains("size mismatch for attention_logits"), text)
        }
    }

    func testShapeAndConfigErrors() throws {
        let id = "input-independent"
        XCTAssertThrowsError(try Registry.make(id: id, settings: ["seq_len": "20"], inputShape: [1, 22, 8])) { e in
            XCTAssertTrue("\(e)".contains("seq_len=20 but the input has L=22 tokens"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: id, settings: ["heads": "3"], inputShape: [1, 22, 8])) { e in
            XCTAssertTrue("\(e)".contains("dim=8 must be divisible by heads=3"), "\(e)")
        }
        XCTAssertNoThrow(try Registry.make(id: id, settings: ["heads": "3", "dim_head": "5"], inputShape: [1, 22, 8]))
        XCTAssertThrowsError(try Registry.make(id: id, settings: ["init": "diagonal"], inputShape: [1, 22, 8]))
        let m = try Registry.make(id: id, inputShape: [1, 12, 8])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 12, 9]))) { e in
            XCTAssertEqual("\(e)", "input-independent: expected input N×12×8, found 1×12×9")
        }
        XCTAssertThrowsError(try m.attentionMap(randomTensor([1, 12, 8]), query: MapQuery(row: 0, column: 3, head: 8)))
        XCTAssertEqual(try m.map(onGrid: randomTensor([1, 8, 3, 4]), query: MapQuery(row: 1, column: 1)).values.shape, [1, 3, 4])
    }
}
