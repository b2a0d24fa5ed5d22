import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// fractal-tanimoto against the PyTorch transliteration of ceecnet's FTAttention2D
/// (Tools/reference/fractal_tanimoto.py: every weight and BN statistic random, H ≠ W, grouped
/// convs, a shrinking kernel, depth 0), plus the properties the paper states for the metric.
final class FracTALTests: XCTestCase {
    static let cases = ["fractal-tanimoto", "fractal-tanimoto-heads", "fractal-tanimoto-depth0"]

    func testParityWithTransliteration() throws {
        try assertParity(Self.cases)
    }

    func testMapIsTheReferenceSpatialSimilarityAndChannelSimilarityMatches() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try XCTUnwrap(try f.makeModule() as? FracTAL)
            let map = try m.attentionMap(f.input, query: f.mapQuery!)
            XCTAssertEqual(map.kind, .global)
            assertClose(map.values, try XCTUnwrap(f.map), rtol: 1e-4, name)
            let channel = try m.similarities(f.input).channel
            let expected = try XCTUnwrap(f.file.tensors["map_channel"])
            assertClose(Tensor(shape: expected.shape, scalars: Array(channel.scalars.prefix(expected.count))), expected, rtol: 1e-4, name)
        }
    }

    func testFractalTanimotoOfIdenticalInputsIsOne() {
        var g = SeededGenerator(seed: 4)
        for depth in [0, 1, 3, 5, 9] {
            let p = (0..<37).map { _ in Float(g.nextUniform()) }
            XCTAssertEqual(FracTAL.fractalTanimoto(p, p, depth: depth), 1, accuracy: 1e-12)
        }
        XCTAssertEqual(FracTAL.fractalTanimoto([0, 0, 0], [0, 0, 0]), 1, accuracy: 1e-12)
    }

    func testFractalTanimotoIsSymmetricAndInUnitIntervalForNonNegativeInputs() {
        var g = SeededGenerator(seed: 9)
        for trial in 0..<200 {
            let n = 1 + trial % 17, depth = trial % 7
            // Sigmoid outputs, as the module feeds it; some trials near-binary.
            let p = (0..<n).map { _ in Float(1 / (1 + exp(-6 * g.nextNormal()))) }
            let l = (0..<n).map { _ in Float(1 / (1 + exp(-6 * g.nextNormal()))) }
            let a = FracTAL.fractalTanimoto(p, l, depth: depth), b = FracTAL.fractalTanimoto(l, p, depth: depth)
            XCTAssertEqual(a, b, accuracy: 1e-12)
            XCTAssertGreaterThanOrEqual(a, 0)
            XCTAssertLessThanOrEqual(a, 1 + 1e-12)
        }
        // Opposite binary sets are the least similar: near 0.
        XCTAssertLessThan(FracTAL.fractalTanimoto([1, 0, 1, 0], [0, 1, 0, 1]), 1e-5)
    }

    /// The vectorised map sums (fa_tanimoto_sums: 8-lane Double pass, complements derived from
    /// the plain sums) against the per-vector definition, on sizes that leave a scalar tail.
    func testSimilaritiesMatchThePerVectorMetric() {
        var g = SeededGenerator(seed: 21)
        let (n, c, h, w) = (2, 5, 5, 7)
        let qs = (0..<(n * c * h * w)).map { _ in Float(1 / (1 + exp(-3 * g.nextNormal()))) }
        let ks = (0..<(n * c * h * w)).map { _ in Float(1 / (1 + exp(-3 * g.nextNormal()))) }
        let q = Tensor(shape: [n, c, h, w], scalars: qs), k = Tensor(shape: [n, c, h, w], scalars: ks)
        for depth in [0, 5] {
            let (spatial, channel) = FracTAL.similarities(q, k, depth: depth)
            let l = h * w
            for b in 0..<n {
                for i in 0..<l {
                    let idx = (0..<c).map { (b * c + $0) * l + i }
                    let ref = FracTAL.fractalTanimoto(idx.map { qs[$0] }, idx.map { ks[$0] }, depth: depth)
                    XCTAssertEqual(Double(spatial.scalars[b * l + i]), ref, accuracy: 1e-6)
                }
                for ch in 0..<c {
                    let r = (b * c + ch) * l
                    let ref = FracTAL.fractalTanimoto(Array(qs[r..<r + l]), Array(ks[r..<r + l]), depth: depth)
                    XCTAssertEqual(Double(channel.scalars[b * c + ch]), ref, accuracy: 1e-6)
                }
            }
        }
    }

    func testModuleSimilarityMapsAreInUnitInterval() throws {
        let x = randomTensor([2, 6, 5, 8], seed: 3)
        let m = try XCTUnwrap(try Registry.make(id: "fractal-tanimoto", settings: ["nkeys": "4"], inputShape: x.shape) as? FracTAL)
        let (s, c) = try m.similarities(x)
        XCTAssertEqual(s.shape, [2, 1, 5, 8])
        XCTAssertEqual(c.shape, [2, 4, 1, 1])
        for v in s.scalars + c.scalars { XCTAssertTrue((0...1).contains(v), "\(v)") }
        XCTAssertEqual(try m(x).shape, [2, 4, 5, 8])
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("fractal-tanimoto")
        var sd = f.stateDict
        sd.tensors["att.key.conv2d.weight"] = nil
        sd.tensors["att.gamma"] = Tensor(zeros: [1])
        sd.tensors["att.norm.running_var"] = Tensor(zeros: [3])
        XCTAssertThrowsError(try Registry.make(id: "fractal-tanimoto", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: att.key.conv2d.weight"), text)
            XCTAssertTrue(text.contains("unexpected keys: att.gamma"), text)
            XCTAssertTrue(text.contains("size mismatch for att.norm.running_var"), text)
        }
    }

    func testBadInputsAndConfigsAreClearErrors() throws {
        let m = try Registry.make(id: "fractal-tanimoto", inputShape: [1, 8, 4, 4])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 6, 4, 4]))) { e in
            XCTAssertEqual(String(describing: e), "fractal-tanimoto: expected input N×8×H×W, found 1×6×4×4")
        }
        XCTAssertThrowsError(try m(Tensor(zeros: [8, 4, 4])))
        let big = try Registry.make(id: "fractal-tanimoto", settings: ["kernel_size": "5", "padding": "0"], inputShape: [1, 8, 4, 4])
        XCTAssertThrowsError(try big(Tensor(zeros: [1, 8, 4, 4]))) { e in
            XCTAssertTrue(String(describing: e).contains("H, W ≥ 5"), String(describing: e))
        }
        XCTAssertThrowsError(try Registry.make(id: "fractal-tanimoto", settings: ["nheads": "3"], inputShape: [1, 8, 4, 4])) { e in
            XCTAssertTrue(String(describing: e).contains("nheads=3 must divide"), String(describing: e))
        }
        XCTAssertThrowsError(try Registry.make(id: "fractal-tanimoto", settings: ["norm": "GroupNorm"], inputShape: [1, 8, 4, 4]))
        XCTAssertThrowsError(try Registry.make(id: "fractal-tanimoto", settings: ["norm_groups": "2"], inputShape: [1, 8, 4, 4]))
        XCTAssertThrowsError(try Registry.make(id: "fractal-tanimoto", settings: ["ftdepht": "2"], inputShape: [1, 8, 4, 4])) { e in
            XCTAssertTrue(String(describing: e).contains("unknown config key 'ftdepht'"))
        }
        XCTAssertNoThrow(try Registry.make(id: "fractal-tanimoto", settings: ["norm": "BatchNorm", "norm_groups": "None"],
                                           inputShape: [1, 8, 4, 4]))
    }

    func testSeededModuleIsDeterministic() throws {
        let x = randomTensor([1, 4, 6, 5], seed: 1)
        let a = try Registry.make(id: "fractal-tanimoto", inputShape: x.shape, seed: 7)
        let b = try Registry.make(id: "fractal-tanimoto", inputShape: x.shape, seed: 7)
        XCTAssertEqual(try a(x).scalars, try b(x).scalars)
    }
}
