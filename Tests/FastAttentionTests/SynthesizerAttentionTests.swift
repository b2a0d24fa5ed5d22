import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// synthesizer against leaderj1001's synthesizer.py (3ee5829) through the committed fixtures
/// (Tools/reference/synthesizer.py): SynthesizerDense, SynthesizerRandom (no softmax on R, as the
/// reference), FactorizedSynthesizerDense (L = 24: gcd(4, 6) > 1) and FactorizedSynthesizerRandom;
/// every weight random, L not a power of two where the class allows. The variant comes from the
/// weight names alone (the fixtures set only in_dims and sentence_length).
final class SynthesizerAttentionTests: XCTestCase {
    /// `synthesizer-paper-hidden`: the reference's dense forward with the paper's d-wide W₁
    /// (config hidden_dims = in_dims = 12 ≠ L = 21), so a row/column swap of dense.0 or dense.2 fails.
    static let cases = ["synthesizer", "synthesizer-random", "synthesizer-factorized-dense", "synthesizer-factorized-random",
                        "synthesizer-paper-hidden"]
    static let variants = ["dense", "random", "factorized_dense", "factorized_random", "dense"]

    func testParityWithReference() throws {
        for (name, variant) in zip(Self.cases, Self.variants) {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            XCTAssertEqual((m as? SynthesizerAttention)?.variant.rawValue, variant, name)
            let y = try m(f.input)
            print("\(name): max relative error \(maxRelativeError(y, f.output))")
            assertClose(y, f.output, rtol: 1e-4, name)
        }
    }

    func testMapMatchesReferenceRow() throws {
        try assertMapsMatch(Self.cases, kind: .perQuery)
        // The reference's R is used as is: its row does not sum to 1 and has negative weights.
        let f = try Fixture.load("synthesizer-random")
        let row = try f.makeModule().attentionMap(f.input, query: f.mapQuery!).values.scalars
        XCTAssertTrue(row.contains { $0 < 0 })
    }

    func testRandomSoftmaxFollowsThePaper() throws {
        let f = try Fixture.load("synthesizer-random")
        var settings = f.settings
        settings["random_softmax"] = "true"
        let m = try Registry.make(id: "synthesizer", settings: settings, inputShape: f.input.shape, weights: f.stateDict)
        let r = f.stateDict.tensors["attention"]!.reshaped([21, 21]).softmax(axis: 1)
        let v = f.input.matmul(f.stateDict.tensors["value_fc.weight"]!, transposeOther: true) + f.stateDict.tensors["value_fc.bias"]!
        assertClose(try m(f.input), r.matmul(v), rtol: 1e-5)
        XCTAssertEqual(try m.attentionMap(f.input, query: MapQuery(row: 0, column: 3)).values.scalars.reduce(0, +), 1, accuracy: 1e-5)
    }

    /// Untrained R is drawn as the reference's `nn.init.xavier_uniform_` on its 1×L×L parameter:
    /// torch takes fan_in = L·L (size(1) × the trailing L) and fan_out = L (size(0) × L), so the
    /// bound is √(6/(L² + L)), not √(3/L) — R is used without a softmax, so its scale is the
    /// output's scale.
    func testUntrainedRandomMatrixHasTheReferencesXavierBound() throws {
        let l = 21
        let x = randomTensor([1, l, 6], seed: 5)
        let m = try Registry.make(id: "synthesizer", settings: ["variant": "random"], inputShape: x.shape, seed: 3)
        let r = try (0..<l).flatMap { try m.attentionMap(x, query: MapQuery(row: 0, column: $0)).values.scalars }
        let bound = (6 / Float(l * l + l)).squareRoot()
        let largest = r.map(abs).max()!
        XCTAssertLessThanOrEqual(largest, bound)
        XCTAssertGreaterThan(largest, 0.9 * bound)
    }

    /// causal: perturbing positions > i leaves outputs ≤ i unchanged, for every variant.
    func testCausalIgnoresTheFuture() throws {
        for variant in Self.variants {
            for softmax in variant == "random" ? ["false", "true"] : ["false"] {
                let x = randomTensor([2, 12, 6], seed: 3)
                let m = try Registry.make(id: "synthesizer", settings: ["variant": variant, "causal": "true", "random_softmax": softmax],
                                          inputShape: x.shape, seed: 4)
                let y = try m(x)
                for i in [0, 5, 10] {
                    var z = x
                    z.withUnsafeMutableBufferPointer { p in
                        for b in 0..<2 { for t in (i + 1)..<12 { for c in 0..<6 { p[(b * 12 + t) * 6 + c] += 3 } } }
                    }
                    let yz = try m(z)
                    XCTAssertLessThanOrEqual(maxRelativeError(yz.sliced(axis: 1, range: 0..<(i + 1)), y.sliced(axis: 1, range: 0..<(i + 1))),
                                             1e-6, "\(variant) i=\(i)")
                    XCTAssertGreaterThan(maxRelativeError(yz, y), 1e-3, variant)
                }
                let row = try m.attentionMap(x, query: MapQuery(row: 0, column: 4)).values.scalars
                XCTAssertTrue(row[5...].allSatisfy { $0 == 0 }, variant)
            }
        }
    }

    func testVariantFromWeightsAndStrictLoading() throws {
        let f = try Fixture.load("synthesizer")
        // An explicit variant that disagrees with the weights is an error.
        var settings = f.settings
        settings["variant"] = "random"
        XCTAssertThrowsError(try Registry.make(id: "synthesizer", settings: settings, inputShape: f.input.shape, weights: f.stateDict)) { e in
            XCTAssertTrue("\(e)".contains("variant=random but the weights are dense's"), "\(e)")
        }
        // Keys of a second class stay unexpected; missing and mis-shaped keys are named.
        var sd = f.stateDict
        sd.tensors["attention"] = Tensor(zeros: [1, 21, 21])
        sd.tensors["dense.2.bias"] = nil
        sd.tensors["value_fc.weight"] = Tensor(zeros: [12, 3])
        XCTAssertThrowsError(try Registry.make(id: "synthesizer", settings: f.settings, inputShape: f.input.shape, weights: sd)) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("missing keys: dense.2.bias"), text)
            XCTAssertTrue(text.contains("unexpected keys: attention"), text)
            XCTAssertTrue(text.contains("size mismatch for value_fc.weight"), text)
        }
        // MixtureSynthesizers' weights are refused by name.
        var mix = try Fixture.load("synthesizer-random").stateDict
        mix.tensors["query_fc.weight"] = Tensor(zeros: [12, 12])
        XCTAssertThrowsError(try Registry.make(id: "synthesizer", settings: f.settings, inputShape: f.input.shape, weights: mix)) { e in
            XCTAssertTrue("\(e)".contains("MixtureSynthesizers"), "\(e)")
        }
    }

    func testShapeAndConfigErrors() throws {
        XCTAssertThrowsError(try Registry.make(id: "synthesizer", settings: ["sentence_length": "32"], inputShape: [1, 21, 8])) { e in
            XCTAssertTrue("\(e)".contains("sentence_length=32 but the input has L=21 tokens"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "synthesizer", settings: ["variant": "factorized_dense"], inputShape: [1, 21, 8])) { e in
            XCTAssertTrue("\(e)".contains("divisible by 4"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "synthesizer", settings: ["variant": "mixture"], inputShape: [1, 21, 8]))
        let m = try Registry.make(id: "synthesizer", inputShape: [1, 12, 8])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 13, 8]))) { e in
            XCTAssertEqual("\(e)", "synthesizer: expected input N×12×8, found 1×13×8")
        }
        XCTAssertEqual(try m.map(onGrid: randomTensor([1, 8, 3, 4]), query: MapQuery(row: 2, column: 3)).values.shape, [1, 3, 4])
        let records = try Registry.parameterRecords(id: "synthesizer", settings: ["variant": "factorized_dense"], inputShape: [1, 12, 8])
        XCTAssertEqual(records.map(\.key), ["a_proj.weight", "a_proj.bias", "b_proj.weight", "b_proj.bias", "value_fc.weight", "value_fc.bias"])
    }
}
