import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// scram against the reference written from the paper (Tools/reference/scram.py: random weights,
/// the random draws as buffers, H ≠ W), and the properties of its PatchMatch search.
final class SCRAMTests: XCTestCase {
    static let cases = ["scram", "scram-k1"]

    func testParityWithReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let y = try m(f.input)
            print("\(name): max relative error \(maxRelativeError(y, f.output))")
            assertClose(y, f.output, rtol: 1e-4, name)
        }
    }

    func testMapIsTheFoundKeysWithTheirWeights() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let map = try m.attentionMap(f.input, query: try XCTUnwrap(f.mapQuery))
            XCTAssertEqual(map.kind, .perQuery)
            assertClose(map.values, try XCTUnwrap(f.map), rtol: 1e-4, name)
            let nonzero = map.values.scalars.filter { $0 != 0 }
            XCTAssertEqual(nonzero.count, Int(f.settings["topk"]!)!)
            XCTAssertEqual(nonzero.reduce(0, +), 1, accuracy: 1e-5)
        }
    }

    /// The keys PatchMatch finds score far above random keys: on a photo-like smooth map and on
    /// white noise, every query's found keys average above its mean score over all keys, and
    /// the found keys are in the top 25 % of keys for most queries.
    func testFoundNeighboursBeatRandomOnes() {
        for (name, smooth) in [("smooth", true), ("noise", false)] {
            let (h, w, d, k) = (12, 13, 6, 6)
            let (q, keys) = fields(h: h, w: w, d: d, smooth: smooth, seed: 5)
            let found = search(q, keys, h: h, w: w, d: d, k: k, iterations: 5, seed: 1)
            var above = 0, inTopQuarter = 0
            for i in 0..<(h * w) {
                let all = (0..<(h * w)).map { dot(q, keys, i, $0, d) }.sorted()
                let mean = all.reduce(0, +) / Double(all.count)
                let foundMean = (0..<k).map { found.score[i * k + $0] }.reduce(0, +) / Double(k)
                if foundMean > mean { above += 1 }
                if found.score[i * k + k - 1] >= all[all.count * 3 / 4] { inTopQuarter += 1 }
            }
            XCTAssertEqual(above, h * w, name)
            XCTAssertGreaterThanOrEqual(Double(inTopQuarter) / Double(h * w), smooth ? 0.99 : 0.9, name)
        }
    }

    /// On small maps the search converges to the exact top-k of every query: on spatially
    /// coherent fields (the paper's premise) almost every query is exact after a few iterations
    /// and all are after 60; on white noise (no coherence to exploit) it gets there more slowly.
    func testConvergesToExactTopKOnSmallMaps() {
        let (h, w, d, k) = (6, 7, 4, 4)
        for (smooth, schedule) in [(true, [(5, 0.9), (12, 0.95), (60, 1.0)]), (false, [(12, 0.6), (60, 0.97)])] {
            let (q, keys) = fields(h: h, w: w, d: d, smooth: smooth, seed: 9)
            let exactSets = (0..<(h * w)).map { i in
                Set((0..<(h * w)).sorted { dot(q, keys, i, $0, d) > dot(q, keys, i, $1, d) }.prefix(k))
            }
            for (iterations, required) in schedule {
                let found = search(q, keys, h: h, w: w, d: d, k: k, iterations: iterations, seed: 3)
                let exact = (0..<(h * w)).filter { exactSets[$0] == Set(found.index[($0 * k)..<(($0 + 1) * k)]) }.count
                let rate = Double(exact) / Double(h * w)
                print(String(format: "PatchMatch on %@, %d iterations: exact top-%d for %.0f%% of queries", smooth ? "a smooth field" : "noise", iterations, k, 100 * rate))
                XCTAssertGreaterThanOrEqual(rate, required, "smooth \(smooth), \(iterations) iterations")
            }
        }
    }

    func testTopKOfAllKeysIsDenseSoftmaxAttention() throws {
        // topk ≥ H·W: every key is found, so the layer is exact softmax attention.
        let x = randomTensor([1, 4, 3, 4], seed: 6)
        let m = try XCTUnwrap(try Registry.make(id: "scram", settings: ["topk": "64", "key_channels": "3", "value_channels": "2"],
                                                inputShape: x.shape, seed: 2) as? SCRAM)
        let found = try m.neighbours(x)[0]
        XCTAssertEqual(found.k, 12)
        for i in 0..<12 { XCTAssertEqual(Set(found.index[(i * 12)..<((i + 1) * 12)]), Set(0..<12)) }
        let map = try m.attentionMap(x, query: MapQuery(row: 1, column: 2)).values.scalars
        XCTAssertEqual(map.reduce(0, +), 1, accuracy: 1e-5)
        XCTAssertTrue(map.allSatisfy { $0 > 0 })
    }

    func testSeededDrawsAreDeterministicAndPerImage() throws {
        let x = randomTensor([2, 4, 5, 6], seed: 4)
        let a = try Registry.make(id: "scram", settings: ["seed": "7"], inputShape: x.shape)
        let b = try Registry.make(id: "scram", settings: ["seed": "7"], inputShape: x.shape)
        XCTAssertEqual(try a(x).scalars, try b(x).scalars)
        // Image 0's draws do not depend on the batch: its output alone equals its row in the batch.
        let first = Tensor(shape: [1, 4, 5, 6], scalars: Array(x.scalars.prefix(120)))
        XCTAssertEqual(Array(try a(x).scalars.prefix(4 * 30)), try a(first).scalars)
    }

    func testDrawsInTheWeightsFixTheInputSize() throws {
        let f = try Fixture.load("scram")
        let m = try f.makeModule()
        XCTAssertThrowsError(try m(randomTensor([1, 8, 7, 6]))) { e in
            XCTAssertTrue(String(describing: e).contains("random draws in the weights file are for 2×6×7"), String(describing: e))
        }
        // Without the draws the same weights load and the seed draws instead.
        var sd = f.stateDict
        sd.tensors["init_draws"] = nil
        sd.tensors["search_draws"] = nil
        let seeded = try Registry.make(id: "scram", settings: f.settings, inputShape: [1, 8, 7, 6], weights: sd)
        XCTAssertEqual(try seeded(randomTensor([1, 8, 7, 6])).shape, [1, 6, 7, 6])
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("scram")
        var sd = f.stateDict
        sd.tensors["key.weight"] = nil
        sd.tensors["gamma"] = Tensor(zeros: [1])
        sd.tensors["search_draws"] = Tensor(zeros: [2, 3])
        XCTAssertThrowsError(try Registry.make(id: "scram", settings: f.settings, inputShape: f.input.shape, weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: key.weight"), text)
            XCTAssertTrue(text.contains("unexpected keys: gamma"), text)
            XCTAssertTrue(text.contains("size mismatch for search_draws"), text)
        }
    }

    func testBadInputsAndConfigsAreClearErrors() throws {
        let m = try Registry.make(id: "scram", inputShape: [1, 8, 4, 4])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 6, 4, 4]))) { e in
            XCTAssertEqual(String(describing: e), "scram: expected input N×8×H×W, found 1×6×4×4")
        }
        XCTAssertThrowsError(try m.attentionMap(randomTensor([1, 8, 4, 4]), query: MapQuery(row: 0, column: 4)))
        XCTAssertThrowsError(try Registry.make(id: "scram", settings: ["topk": "0"], inputShape: [1, 8, 4, 4]))
        XCTAssertThrowsError(try Registry.make(id: "scram", settings: ["top_k": "3"], inputShape: [1, 8, 4, 4])) { e in
            XCTAssertTrue(String(describing: e).contains("unknown config key 'top_k'"))
        }
    }

    // MARK: helpers

    /// Query and key fields h·w × d: smooth (bilinear from a 3×3 grid of random vectors, like
    /// the coherent features of a photo) or white noise.
    func fields(h: Int, w: Int, d: Int, smooth: Bool, seed: UInt64) -> ([Float], [Float]) {
        var g = SeededGenerator(seed: seed)
        func field() -> [Float] {
            if !smooth { return (0..<(h * w * d)).map { _ in Float(g.nextNormal()) } }
            let coarse = (0..<(9 * d)).map { _ in Float(g.nextNormal()) }
            var out = [Float](repeating: 0, count: h * w * d)
            for y in 0..<h {
                for x in 0..<w {
                    let fy = Float(y) / Float(h - 1) * 2, fx = Float(x) / Float(w - 1) * 2
                    let y0 = min(Int(fy), 1), x0 = min(Int(fx), 1), ty = fy - Float(y0), tx = fx - Float(x0)
                    for c in 0..<d {
                        func at(_ yy: Int, _ xx: Int) -> Float { coarse[(yy * 3 + xx) * d + c] }
                        out[(y * w + x) * d + c] = (1 - ty) * ((1 - tx) * at(y0, x0) + tx * at(y0, x0 + 1))
                            + ty * ((1 - tx) * at(y0 + 1, x0) + tx * at(y0 + 1, x0 + 1))
                    }
                }
            }
            return out
        }
        return (field(), field())
    }

    func search(_ q: [Float], _ keys: [Float], h: Int, w: Int, d: Int, k: Int, iterations: Int, seed: UInt64)
        -> (index: [Int], score: [Double], k: Int) {
        var g = SeededGenerator(seed: seed)
        let counts = PatchMatch.drawCounts(height: h, width: w, k: k, iterations: iterations)
        let initial = (0..<counts.initial).map { _ in Float(g.nextUniform()) }
        let draws = (0..<counts.search).map { _ in Float(g.nextUniform()) }
        return PatchMatch.search(q: q, ldq: d, keys: keys, ldk: d, d: d, height: h, width: w, k: k,
                                 iterations: iterations, initialDraws: initial, searchDraws: draws)
    }

    func dot(_ q: [Float], _ k: [Float], _ i: Int, _ j: Int, _ d: Int) -> Double {
        (0..<d).reduce(0.0) { $0 + Double(q[i * d + $1]) * Double(k[j * d + $1]) }
    }
}
