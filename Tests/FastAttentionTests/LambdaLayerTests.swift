@testable import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// lambda against lucidrains' lambda-networks 0.4.0 through the committed fixtures
/// (Tools/reference/lambda.py: every weight and BN statistic random; local r=5 with u=2 on
/// H ≠ W, global n=5 with 3 heads).
final class LambdaLayerTests: XCTestCase {
    static let cases = ["lambda", "lambda-global"]

    func testParityWithReference() throws {
        try assertParity(Self.cases)
    }

    func testMapMatchesImplicitWeightsOfReference() throws {
        // The fixture's weights were checked in Python to reproduce the reference's output.
        try assertMapsMatch(Self.cases, kind: .perQuery) { f, map in XCTAssertEqual(map.labels.count, f.map!.shape[0]) }
    }

    func testKeyMapsSumToOneAndLocalWindow() throws {
        let x = randomTensor([1, 8, 9, 11], seed: 6)
        let m = try Registry.make(id: "lambda", settings: ["dim_k": "4", "r": "3", "heads": "2"], inputShape: x.shape, seed: 1)
        let v = try m.attentionMap(x, query: MapQuery(row: 4, column: 7)).values
        XCTAssertEqual(v.shape, [7, 9, 11])
        let s = v.scalars, plane = 99
        for key in 3..<7 { XCTAssertEqual(s[(key * plane)..<((key + 1) * plane)].reduce(0, +), 1, accuracy: 1e-5) }
        for i in 0..<9 { for j in 0..<11 where abs(i - 4) > 1 || abs(j - 7) > 1 {
            XCTAssertEqual(s[plane + i * 11 + j], 0, "position weights outside the 3×3 window")
        } }
        for i in 0..<plane { XCTAssertEqual(s[2 * plane + i], s[i] + s[plane + i], accuracy: 1e-6) }
    }

    func testDefaultsAndVariants() throws {
        let m = try Registry.make(id: "lambda", inputShape: [1, 8, 6, 7])
        XCTAssertEqual(m.config.int("dim_k"), 16)
        XCTAssertEqual(try m(randomTensor([1, 8, 6, 7])).shape, [1, 8, 6, 7])     // r = 23 on a 6×7 map
        let g = try Registry.make(id: "lambda", settings: ["n": "6", "dim_out": "12", "heads": "3"], inputShape: [1, 8, 6, 6])
        XCTAssertEqual(try g(randomTensor([1, 8, 6, 6])).shape, [1, 12, 6, 6])
        XCTAssertThrowsError(try g(Tensor(zeros: [1, 8, 6, 7]))) { e in
            XCTAssertTrue(String(describing: e).contains("H = W = n"), "\(e)")
        }
        let params = try Registry.parameterRecords(id: "lambda", settings: ["n": "6"], inputShape: [1, 8, 6, 6])
        XCTAssertTrue(params.contains { $0.key == "rel_pos_emb" && $0.shape == [11, 11, 16, 1] })
        XCTAssertFalse(params.contains { $0.key.hasPrefix("pos_conv") })
    }

    func testGlobalEqualsLocalConvWithTheEmbeddingAsKernel() throws {
        // λp_n = Σ_m E[m − n] v_m is a zero-padded (2n−1)² convolution: the global variant
        // (Toeplitz GEMMs) must equal the local one (conv2d) with pos_conv.weight = E permuted
        // and a zero bias — here with u = 2 and several heads, which the fixtures do not combine.
        let settings = ["dim_k": "3", "heads": "2", "dim_out": "4", "dim_u": "2"]
        let shape = [2, 5, 4, 4]
        var sd = StateDict()
        var seed: UInt64 = 40
        for rec in try Registry.parameterRecords(id: "lambda", settings: settings.merging(["n": "4"]) { a, _ in a },
                                                 inputShape: shape) {
            seed += 1
            var t = randomTensor(rec.shape, seed: seed) * 0.5
            if rec.key.hasSuffix("running_var") { t = t.map { abs($0) + 0.5 } }
            sd.tensors[rec.key] = t
        }
        let global = try Registry.make(id: "lambda", settings: settings.merging(["n": "4"]) { a, _ in a },
                                       inputShape: shape, weights: sd)
        var local = sd
        local.tensors["rel_pos_emb"] = nil
        local.tensors["pos_conv.weight"] = sd.tensors["rel_pos_emb"]!.permuted(2, 3, 0, 1).unsqueezed(axis: 2)
        local.tensors["pos_conv.bias"] = Tensor(zeros: [3])
        let conv = try Registry.make(id: "lambda", settings: settings.merging(["r": "7"]) { a, _ in a },
                                     inputShape: shape, weights: local)
        let x = randomTensor(shape, seed: 77)
        assertClose(try global(x), try conv(x), rtol: 1e-5)
    }

    func testDirectLocalKernelMatchesConvPath() throws {
        // The direct local path (tap weights q·E, then fa_lambda_local_apply) against λp through
        // conv2d + contraction, on odd shapes: value depths 8 (AVX2), 16 and 32 (AVX-512 where
        // present), 5 (portable); head counts off the 4-head tile; u = 2; r = 1, r larger than the
        // map; rows shorter than a tile; chunks that split rows; and each case on every kernel path this CPU has (KernelISA).
        let cases: [([String: String], [Int])] = [
            (["dim_k": "3", "heads": "2", "dim_out": "16", "r": "5"], [2, 8, 7, 9]),
            (["dim_k": "4", "heads": "3", "dim_out": "48", "dim_u": "2", "r": "3"], [1, 8, 5, 11]),
            (["dim_k": "5", "heads": "5", "dim_out": "160", "r": "7"], [1, 6, 9, 6]),
            (["dim_k": "2", "heads": "3", "dim_out": "15", "r": "9"], [1, 8, 4, 6]),
            (["dim_k": "3", "heads": "1", "dim_out": "16", "r": "1"], [1, 8, 3, 5]),
            (["dim_k": "16", "heads": "4", "dim_out": "64"], [1, 8, 13, 3]),
        ]
        let saved = LambdaLayer.chunkFloats
        defer { LambdaLayer.chunkFloats = saved }
        for (ci, (settings, shape)) in cases.enumerated() {
            let m = try XCTUnwrap(Registry.make(id: "lambda", settings: settings, inputShape: shape, seed: UInt64(ci + 3)) as? LambdaLayer)
            let x = randomTensor(shape, seed: UInt64(50 + ci))
            let reference = try m.forward(x, directLocal: false)
            for chunkFloats in [1 << 17, 7 * m.heads * (m.dimU * m.r! * m.r! + 1)] {
                LambdaLayer.chunkFloats = chunkFloats
                for isa in KernelISA.available {
                    try KernelISA.limited(to: isa) {
                        assertClose(try m(x), reference, rtol: 1e-5,
                                    "case \(ci) chunk \(chunkFloats) \(isa): path \(LambdaLayer.kernelPath(dv: m.dimV))")
                    }
                }
            }
        }
    }

    func testBadConfigAndInputs() throws {
        let shape = [1, 8, 5, 6]
        for bad in [["r": "4"], ["heads": "3"], ["dim_k": "0"], ["dimk": "4"]] {
            XCTAssertThrowsError(try Registry.make(id: "lambda", settings: bad, inputShape: shape), "\(bad)")
        }
        let m = try Registry.make(id: "lambda", settings: ["r": "3"], inputShape: shape)
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 7, 5, 6]))) { e in
            XCTAssertEqual(String(describing: e), "lambda: expected input N×8×H×W, found 1×7×5×6")
        }
        XCTAssertThrowsError(try m.attentionMap(Tensor(zeros: shape), query: MapQuery(row: 0, column: 6)))
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("lambda")
        var sd = f.stateDict
        sd.tensors["pos_conv.bias"] = nil
        sd.tensors["rel_pos_emb"] = Tensor(zeros: [9, 9, 4, 2])
        sd.tensors["to_k.weight"] = Tensor(zeros: [4, 12, 1, 1])
        XCTAssertThrowsError(try Registry.make(id: "lambda", settings: f.settings, inputShape: f.input.shape,
                                               weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: pos_conv.bias"), text)
            XCTAssertTrue(text.contains("unexpected keys: rel_pos_emb"), text)
            XCTAssertTrue(text.contains("to_k.weight"), text)
        }
    }
}
