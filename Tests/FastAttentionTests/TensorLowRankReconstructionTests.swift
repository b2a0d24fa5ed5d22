import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// tensor-low-rank against the reference written from the paper
/// (Tools/reference/tensor_low_rank.py: every weight and λ random, H ≠ W), plus the CP-rank
/// property the paper builds on.
final class TensorLowRankReconstructionTests: XCTestCase {
    static let cases = ["tensor-low-rank", "tensor-low-rank-r5"]

    func testParityWithReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try XCTUnwrap(try f.makeModule() as? TensorLowRankReconstruction)
            let y = try m(f.input)
            print("\(name): max relative error \(maxRelativeError(y, f.output))")
            assertClose(y, f.output, rtol: 1e-4, name)
            assertClose(try m.attentionTensor(f.input), try XCTUnwrap(f.file.tensors["attention"]), rtol: 1e-4, name)
        }
    }

    func testMapIsTheSpatialFactorOfEachRank() throws {
        try assertMapsMatch(Self.cases, kind: .bases, query: MapQuery(row: 0, column: 0)) { _, map in
            XCTAssertEqual(map.labels.count, map.values.shape[0])
        }
    }

    /// A = Σᵢ λᵢ v_C⊗v_H⊗v_W has CP rank ≤ r, so each of its three unfoldings has matrix rank ≤ r
    /// (and, for generic inputs, exactly r). A random tensor of the same shape is full rank,
    /// which shows the rank test can tell the difference.
    func testAttentionTensorHasCPRankAtMostR() throws {
        let (c, h, w, r) = (9, 6, 7, 3)
        let x = randomTensor([2, c, h, w], seed: 11)
        let m = try XCTUnwrap(try Registry.make(id: "tensor-low-rank", settings: ["rank": "\(r)"], inputShape: x.shape,
                                                seed: 4) as? TensorLowRankReconstruction)
        let a = try m.attentionTensor(x)
        for b in 0..<2 {
            let t = Array(a.scalars[(b * c * h * w)..<((b + 1) * c * h * w)])
            for mode in 0..<3 {
                XCTAssertEqual(numericRank(unfolding(t, dims: [c, h, w], mode: mode)), r, "image \(b) mode \(mode)")
            }
        }
        let noise = randomTensor([c, h, w], seed: 2).scalars
        XCTAssertEqual(numericRank(unfolding(noise, dims: [c, h, w], mode: 0)), min(c, h * w))
        XCTAssertEqual(numericRank(unfolding(noise, dims: [c, h, w], mode: 1)), min(h, c * w))
    }

    func testAttentionInUnitIntervalForUntrainedWeights() throws {
        // σ factors in (0, 1) and λ = 1/r: A is a mean of values in (0, 1).
        let x = randomTensor([1, 5, 4, 6], seed: 3)
        let m = try XCTUnwrap(try Registry.make(id: "tensor-low-rank", inputShape: x.shape) as? TensorLowRankReconstruction)
        for v in try m.attentionTensor(x).scalars { XCTAssertTrue(v > 0 && v < 1) }
        XCTAssertEqual(m.config.int("rank"), 16)
        XCTAssertEqual(m.config.int("height"), 4)
        XCTAssertEqual(m.config.int("width"), 6)
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("tensor-low-rank")
        var sd = f.stateDict
        sd.tensors["lam"] = nil
        sd.tensors["conv1_1.0.0.weight"] = Tensor(zeros: [8, 8, 1, 1])
        sd.tensors["height_generator.weight"] = Tensor(zeros: [15, 6, 1, 1])
        XCTAssertThrowsError(try Registry.make(id: "tensor-low-rank", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: lam"), text)
            XCTAssertTrue(text.contains("unexpected keys: conv1_1.0.0.weight"), text)
            XCTAssertTrue(text.contains("size mismatch for height_generator.weight"), text)
        }
    }

    func testBadInputsAndConfigsAreClearErrors() throws {
        let m = try Registry.make(id: "tensor-low-rank", inputShape: [1, 8, 4, 5])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 8, 5, 4]))) { e in
            XCTAssertEqual(String(describing: e), "tensor-low-rank: expected input N×8×4×5, found 1×8×5×4")
        }
        XCTAssertThrowsError(try m(Tensor(zeros: [8, 4, 5])))
        XCTAssertThrowsError(try Registry.make(id: "tensor-low-rank", settings: ["height": "6"], inputShape: [1, 8, 4, 5])) { e in
            XCTAssertTrue(String(describing: e).contains("height=6 but the input map is 4×5"), String(describing: e))
        }
        XCTAssertThrowsError(try Registry.make(id: "tensor-low-rank", settings: ["rank": "0"], inputShape: [1, 8, 4, 5]))
        XCTAssertThrowsError(try Registry.make(id: "tensor-low-rank", settings: ["r": "2"], inputShape: [1, 8, 4, 5])) { e in
            XCTAssertTrue(String(describing: e).contains("unknown config key 'r'"))
        }
    }
}

/// Mode-`mode` unfolding of a row-major tensor of `dims`: rows indexed by that axis.
func unfolding(_ t: [Float], dims: [Int], mode: Int) -> [[Double]] {
    let strides = [dims[1] * dims[2], dims[2], 1]
    let others = (0..<3).filter { $0 != mode }
    var rows = [[Double]](repeating: [], count: dims[mode])
    for i in 0..<dims[mode] {
        for a in 0..<dims[others[0]] {
            for b in 0..<dims[others[1]] {
                rows[i].append(Double(t[i * strides[mode] + a * strides[others[0]] + b * strides[others[1]]]))
            }
        }
    }
    return rows
}

/// Numerical rank by Gram–Schmidt with pivoting on the rows (Double), relative tolerance 1e-4:
/// float32 round-off leaves residual rows near 1e-7 of the largest, true components far above.
func numericRank(_ rows: [[Double]], rtol: Double = 1e-4) -> Int {
    var rest = rows
    let norm = { (v: [Double]) in v.reduce(0) { $0 + $1 * $1 }.squareRoot() }
    let scale = rows.map(norm).max() ?? 0
    var rank = 0
    while !rest.isEmpty {
        let norms = rest.map(norm)
        let best = norms.indices.max { norms[$0] < norms[$1] }!
        if norms[best] <= rtol * scale { break }
        let q = rest[best].map { $0 / norms[best] }
        rest.remove(at: best)
        rest = rest.map { v in
            let d = zip(v, q).reduce(0) { $0 + $1.0 * $1.1 }
            return zip(v, q).map { $0 - d * $1 }
        }
        rank += 1
    }
    return rank
}
