import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// nystromformer against Hugging Face's NystromformerSelfAttention (transformers 5.23.0, random
/// weights) through the committed fixtures (Tools/reference/nystromformer.py): landmarks with the
/// conv residual (batch 2, so the batch-global pinv coefficient matters), landmarks without conv,
/// and num_landmarks = L (exact softmax).
final class NystromformerAttentionTests: XCTestCase {
    static let cases = ["nystromformer", "nystromformer-noconv", "nystromformer-exact"]

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

    /// The reference's pinv start divides by one maximum over the whole batch: batch item 0 of the
    /// fixture alone gives a different output than inside its batch (the fixture was chosen so).
    /// With inv_coeff_init_option=true the coefficient is per item and head, and items are independent.
    func testPinvCoefficientIsBatchGlobal() throws {
        let f = try Fixture.load("nystromformer")
        let m = try f.makeModule()
        let first = f.input.sliced(axis: 0, range: 0..<1)
        let inBatch = try m(f.input).sliced(axis: 0, range: 0..<1)
        XCTAssertGreaterThan(maxRelativeError(try m(first), inBatch), 1e-3)
        var settings = f.settings
        settings["inv_coeff_init_option"] = "true"
        let own = try Registry.make(id: "nystromformer", settings: settings, inputShape: f.input.shape, weights: f.stateDict)
        assertClose(try own(first), try own(f.input).sliced(axis: 0, range: 0..<1), rtol: 1e-6)
    }

    /// The Nyström rows sum to 1 up to the pinv's convergence: K1 and K3 rows are stochastic and
    /// K2·Z ≈ I. Exact (m = L) rows sum to 1.
    func testMapRowsSumToAboutOne() throws {
        let x = randomTensor([1, 24, 8], seed: 6)
        for (landmarks, tol) in [("24", Float(1e-5)), ("6", Float(0.05))] {
            let m = try Registry.make(id: "nystromformer", settings: ["num_landmarks": landmarks, "num_attention_heads": "2"],
                                      inputShape: x.shape, seed: 1)
            let row = try m.attentionMap(x, query: MapQuery(row: 0, column: 5)).values.scalars
            XCTAssertEqual(row.reduce(0, +), 1, accuracy: tol, landmarks)
        }
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("nystromformer")
        var sd = f.stateDict
        sd.tensors["conv.weight"] = nil
        sd.tensors["dense.weight"] = Tensor(zeros: [24, 24])
        sd.tensors["key.bias"] = Tensor(zeros: [12])
        XCTAssertThrowsError(try Registry.make(id: "nystromformer", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: conv.weight"), text)
            XCTAssertTrue(text.contains("unexpected keys: dense.weight"), text)
            XCTAssertTrue(text.contains("size mismatch for key.bias"), text)
        }
    }

    func testConfigAndShapeErrors() throws {
        let id = "nystromformer"
        XCTAssertThrowsError(try Registry.make(id: id, settings: ["segment_means_seq_len": "64"], inputShape: [1, 40, 8])) { e in
            XCTAssertTrue("\(e)".contains("segment_means_seq_len=64 but the input has L=40 tokens"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: id, settings: ["num_landmarks": "7"], inputShape: [1, 40, 8])) { e in
            XCTAssertTrue("\(e)".contains("num_landmarks=7 must divide L=40"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: id, settings: ["num_attention_heads": "3"], inputShape: [1, 40, 8])) { e in
            XCTAssertTrue("\(e)".contains("not a multiple of num_attention_heads=3"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: id, settings: ["conv_kernel_size": "4"], inputShape: [1, 40, 8])) { e in
            XCTAssertTrue("\(e)".contains("must be odd"), "\(e)")
        }
        // Defaults resolved from the input: 16 channels → 8 heads, L = 1824 → 57 landmarks.
        let m = try Registry.make(id: id, inputShape: [1, 1824, 16])
        XCTAssertEqual(m.config.int("num_attention_heads"), 8)
        XCTAssertEqual(m.config.int("num_landmarks"), 57)
        XCTAssertEqual(try Registry.make(id: id, inputShape: [1, 128, 24]).config.int("num_landmarks"), 64)
        let small = try Registry.make(id: id, settings: ["num_landmarks": "4"], inputShape: [2, 12, 8])
        XCTAssertThrowsError(try small(Tensor(zeros: [2, 13, 8]))) { e in
            XCTAssertEqual("\(e)", "nystromformer: expected input N×12×8, found 2×13×8")
        }
        XCTAssertEqual(try small.apply(randomTensor([1, 8, 3, 4])).shape, [1, 8, 3, 4])
    }
}
