// Tests of Layers/: PyTorch key names and shapes, seeded initial values, forward passes against
// the functional ops or naive loops, strict loading, and the errors a wrong input gets.

import TensorCore
import TestSupport
import XCTest

final class LayerTests: XCTestCase {
    func keys(_ p: Parameters) -> [String] { p.records.map(\.key) }

    func testLinearOverLeadingDimsMatchesNaive() throws {
        let p = Parameters.seeded(1)
        let fc = Linear(p.scoped("fc"), inFeatures: 7, outFeatures: 5)
        XCTAssertEqual(keys(p), ["fc.weight", "fc.bias"])
        XCTAssertEqual(fc.weight.shape, [5, 7])
        let x = randomTensor([2, 3, 7], seed: 2)
        let y = try fc(x)
        XCTAssertEqual(y.shape, [2, 3, 5])
        var ref = Tensor(zeros: [6, 5])
        let xs = x.scalars, ws = fc.weight.scalars, bs = fc.bias!.scalars
        for r in 0..<6 { for o in 0..<5 {
            var s = Double(bs[o])
            for i in 0..<7 { s += Double(xs[r * 7 + i]) * Double(ws[o * 7 + i]) }
            ref[r, o] = Float(s)
        } }
        assertClose(y, ref.reshaped([2, 3, 5]), rtol: 1e-5)
        let noBias = Linear(.seeded(1), inFeatures: 7, outFeatures: 5, bias: false)
        XCTAssertNil(noBias.bias)
        XCTAssertEqual(try noBias(Tensor(zeros: [7])).scalars, [0, 0, 0, 0, 0])
    }

    func testLinearInitialisationIsTorchUniform() {
        let fc = Linear(.seeded(3), inFeatures: 16, outFeatures: 64)
        let bound: Float = 1 / 4
        XCTAssertTrue(fc.weight.scalars.allSatisfy { abs($0) <= bound })
        XCTAssertGreaterThan(fc.weight.scalars.map(abs).max()!, bound * 0.9)
        XCTAssertTrue(fc.bias!.scalars.allSatisfy { abs($0) <= bound })
    }

    func testConv2dLayerMatchesFunctionalAndNamesItself() throws {
        let conv = try Conv2d(.seeded(4), inChannels: 3, outChannels: 6, kernelSize: 3, stride: 2, padding: 1, groups: 3)
        XCTAssertEqual(conv.weight.shape, [6, 1, 3, 3])
        XCTAssertTrue(conv.weight.scalars.allSatisfy { abs($0) <= 1 / 3 })
        let x = randomTensor([2, 3, 7, 5], seed: 5)
        assertClose(try conv(x), try conv2dNaive(x, weight: conv.weight, bias: conv.bias, stride: (2, 2),
                                                 padding: (1, 1), groups: 3), rtol: 1e-5)
        XCTAssertThrowsError(try conv(randomTensor([2, 4, 7, 5]))) { error in
            XCTAssertEqual("\(error)", "Conv2d(3→6, 3×3): expected N×3×H×W, found 2×4×7×5")
        }
        XCTAssertThrowsError(try Conv2d(.seeded(0), inChannels: 4, outChannels: 6, kernelSize: 1, groups: 4))
        let rect = try Conv2d(.seeded(6), inChannels: 2, outChannels: 2, kernelSize: (3, 1), padding: (1, 0), bias: false)
        XCTAssertEqual(try rect(randomTensor([1, 2, 4, 4])).shape, [1, 2, 4, 4])
        XCTAssertNil(rect.bias)
    }

    func testConv1dLayer() throws {
        let conv = try Conv1d(.seeded(7), inChannels: 3, outChannels: 4, kernelSize: 5, padding: 2, dilation: 2)
        let x = randomTensor([2, 3, 11], seed: 8)
        assertClose(try conv(x), try conv1dNaive(x, weight: conv.weight, bias: conv.bias, padding: 2, dilation: 2), rtol: 1e-5)
        XCTAssertThrowsError(try conv(randomTensor([2, 3, 4, 4])))
    }

    func testBatchNormKeysLoadingAndForward() throws {
        let p = Parameters.seeded(0)
        let bn = BatchNorm2d(p.scoped("bn"), numFeatures: 3)
        XCTAssertEqual(keys(p), ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"])
        XCTAssertEqual(p.records.map(\.kind), [.parameter, .parameter, .buffer, .buffer])
        let x = randomTensor([2, 3, 7, 5], seed: 9)
        assertClose(try bn(x), x, rtol: 1e-5)  // seeded BN is the identity up to 1/√(1+eps)
        var sd = StateDict()
        for (k, v) in [("weight", [2, 3, 4]), ("bias", [1, 0, -1]), ("running_mean", [0.5, 0, 1]), ("running_var", [4, 1, 0.25])] as [(String, [Float])] {
            sd["bn.\(k)"] = Tensor(shape: [3], scalars: v)
        }
        sd["bn.num_batches_tracked"] = Tensor(scalar: 7)
        let loading = Parameters.loading(sd)
        let loaded = BatchNorm2d(loading.scoped("bn"), numFeatures: 3)
        try loading.finish()
        let y = try loaded(Tensor(shape: [1, 3, 1, 1], scalars: [1.5, 2, 1.5]))
        XCTAssertEqual(y.scalars[0], 2 * 1 / (4 + 1e-5).squareRoot() + 1, accuracy: 1e-5)
        XCTAssertEqual(y.scalars[2], 4 * 0.5 / (0.25 + 1e-5).squareRoot() - 1, accuracy: 1e-4)
        XCTAssertThrowsError(try loaded(randomTensor([2, 3, 5])))
    }

    func testBatchNorm1dRanksAndOptions() throws {
        let p = Parameters.seeded(0)
        let bn = BatchNorm1d(p, numFeatures: 4, affine: false, trackRunningStats: false)
        XCTAssertEqual(keys(p), [])
        let x = randomTensor([5, 4], seed: 10)
        assertClose(try bn(x), batchNormNaive(x, runningMean: nil, runningVar: nil), rtol: 1e-5)
        let tracked = BatchNorm1d(.seeded(0), numFeatures: 4)
        XCTAssertEqual(try tracked(randomTensor([2, 4, 6])).shape, [2, 4, 6])
        XCTAssertThrowsError(try tracked(randomTensor([2, 4, 2, 2])))
    }

    func testLayerNormAndGroupNormLayers() throws {
        let p = Parameters.seeded(0)
        let ln = LayerNorm(p.scoped("norm"), normalizedShape: 5)
        let gn = try GroupNorm(p.scoped("gn"), numGroups: 2, numChannels: 6)
        let plain = LayerNorm(p.scoped("plain"), normalizedShape: [7, 5], elementwiseAffine: false)
        XCTAssertEqual(keys(p), ["norm.weight", "norm.bias", "gn.weight", "gn.bias"])
        let x = randomTensor([2, 6, 7, 5], seed: 11)
        assertClose(try ln(x), layerNormNaive(x, normalizedShape: [5]), rtol: 1e-5)
        assertClose(try plain(x), layerNormNaive(x, normalizedShape: [7, 5]), rtol: 1e-5)
        assertClose(try gn(x), groupNormNaive(x, groups: 2), rtol: 1e-5)
        XCTAssertThrowsError(try ln(randomTensor([2, 4]))) { XCTAssertTrue("\($0)".contains("LayerNorm(5)")) }
        XCTAssertThrowsError(try gn(randomTensor([2, 4, 3]))) { XCTAssertTrue("\($0)".contains("GroupNorm(2, 6)")) }
        XCTAssertThrowsError(try GroupNorm(.seeded(0), numGroups: 4, numChannels: 6))
    }

    func testEmbeddingLookup() throws {
        let p = Parameters.seeded(12)
        let emb = Embedding(p.scoped("tok"), numEmbeddings: 10, embeddingDim: 4, paddingIdx: 0)
        XCTAssertEqual(keys(p), ["tok.weight"])
        XCTAssertEqual(Array(emb.weight.scalars[0..<4]), [0, 0, 0, 0])
        let y = try emb(indices: [3, 9, 3, 0, 1, 2], shape: [2, 3])
        XCTAssertEqual(y.shape, [2, 3, 4])
        XCTAssertEqual(Array(y.scalars[0..<4]), Array(emb.weight.scalars[12..<16]))
        XCTAssertEqual(Array(y.scalars[8..<12]), Array(emb.weight.scalars[12..<16]))
        XCTAssertEqual(try emb(Tensor(shape: [2], scalars: [9, 3])).scalars, Array(emb.weight.scalars[36..<40] + emb.weight.scalars[12..<16]))
        XCTAssertThrowsError(try emb(indices: [10], shape: [1]))
        XCTAssertThrowsError(try emb(indices: [1, 2], shape: [3]))
        XCTAssertThrowsError(try emb(Tensor(shape: [1], scalars: [1.5])))
        let big = Embedding(.seeded(13), numEmbeddings: 100, embeddingDim: 100).weight.scalars
        let std = (big.map { Double($0 * $0) }.reduce(0, +) / Double(big.count)).squareRoot()
        XCTAssertEqual(std, 1, accuracy: 0.05)
    }
}
