import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// kronecker against lucidrains' kronecker-attention-pytorch 0.0.6 through the committed
/// fixtures (Tools/reference/kronecker.py: every weight random, H ≠ W, several heads).
final class KroneckerSelfAttentionTests: XCTestCase {
    static let cases = ["kronecker", "kronecker-default-dim-heads"]

    func testParityWithReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let y = try m(f.input)
            print("\(name): max relative error \(maxRelativeError(y, f.output))")
            assertClose(y, f.output, rtol: 1e-4, name)
        }
    }

    func testSummaryAttentionAndMapMatchReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try XCTUnwrap(try f.makeModule() as? KroneckerSelfAttention)
            guard let expected = f.map, let q = f.mapQuery, let attention = f.file.tensors["attention"] else {
                return XCTFail("\(name) has no map")
            }
            assertClose(try m.summaryAttention(f.input), attention, rtol: 1e-4, name + " summary attention")
            let map = try m.attentionMap(f.input, query: q)
            XCTAssertEqual(map.kind, .perQuery)
            assertClose(map.values, expected, rtol: 1e-4, name + " drawn-back map")
        }
    }

    func testDrawnBackMapIsRowPlusColumnAndHasMassTwo() throws {
        let x = randomTensor([1, 6, 5, 8], seed: 12)
        let m = try Registry.make(id: "kronecker", settings: ["heads": "2", "dim_heads": "4"], inputShape: x.shape, seed: 3)
        let v = try m.attentionMap(x, query: MapQuery(row: 4, column: 6, head: 1)).values.scalars
        let plane = 40
        XCTAssertEqual(v[0..<plane].reduce(0, +), 1, accuracy: 1e-5)
        XCTAssertEqual(v[plane..<(2 * plane)].reduce(0, +), 1, accuracy: 1e-5)
        XCTAssertEqual(v[(2 * plane)..<(3 * plane)].reduce(0, +), 2, accuracy: 1e-5)
        // Each panel is f(row) + g(column): its second differences vanish.
        for p in 0..<3 { for i in 1..<5 { for j in 1..<8 {
            let a = v[p * plane + i * 8 + j] - v[p * plane + i * 8 + j - 1]
            let b = v[p * plane + (i - 1) * 8 + j] - v[p * plane + (i - 1) * 8 + j - 1]
            XCTAssertEqual(a, b, accuracy: 1e-6)
        } } }
    }

    func testOutputIsOuterSum() throws {
        // y[c, i, j] − y[c, i, 0] does not depend on i (the Kronecker-sum structure).
        let x = randomTensor([2, 4, 3, 5], seed: 2)
        let m = try Registry.make(id: "kronecker", settings: ["heads": "2", "dim_heads": "3"], inputShape: x.shape, seed: 9)
        let y = try m(x).scalars
        for plane in 0..<8 { for j in 1..<5 {
            let d0 = y[plane * 15 + j] - y[plane * 15]
            for i in 1..<3 { XCTAssertEqual(y[plane * 15 + i * 5 + j] - y[plane * 15 + i * 5], d0, accuracy: 1e-5) }
        } }
    }

    func testStrictLoadingAndBadInputs() throws {
        let f = try Fixture.load("kronecker")
        var sd = f.stateDict
        sd.tensors["to_out.bias"] = nil
        sd.tensors["to_qkv.bias"] = Tensor(zeros: [36])
        XCTAssertThrowsError(try Registry.make(id: "kronecker", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: to_out.bias"), text)
            XCTAssertTrue(text.contains("unexpected keys: to_qkv.bias"), text)
        }
        let m = try Registry.make(id: "kronecker", inputShape: [1, 8, 4, 4])
        XCTAssertEqual(m.config.int("heads"), 8)
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 8, 4]))) { e in
            XCTAssertEqual(String(describing: e), "kronecker: expected input N×8×H×W, found 1×8×4")
        }
        XCTAssertThrowsError(try m.attentionMap(Tensor(zeros: [1, 8, 4, 4]), query: MapQuery(row: 0, column: 0, head: 8)))
        XCTAssertThrowsError(try Registry.make(id: "kronecker", settings: ["chan": "8"], inputShape: [1, 8, 4, 4]))
    }
}
