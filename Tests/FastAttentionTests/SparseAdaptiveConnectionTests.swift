@testable import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// sac against the PyTorch reference written from the paper (Tools/reference/sac.py): predicted
/// edges, injected (sampled) edges, the maps, and the causal variant; plus the sparsity
/// properties the paper's graph view promises.
final class SparseAdaptiveConnectionTests: XCTestCase {
    static let cases = ["sac", "sac-causal"]

    func testParityWithReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try XCTUnwrap(try f.makeModule() as? SparseAdaptiveConnection)
            let y = try m(f.input)
            print("\(name): max relative error \(maxRelativeError(y, f.output))")
            assertClose(y, f.output, rtol: 1e-4, name)
            XCTAssertEqual(try m.predictEdges(f.input).scalars, f.file.tensors["edges"]!.scalars, name)
            // The injected-edges path: the reference's sampled edges.
            let sampled = try m.forward(f.input, edges: f.file.tensors["sampled_edges"]!)
            assertClose(sampled, f.file.tensors["sampled_output"]!, rtol: 1e-4, "\(name) sampled")
        }
    }

    func testMapMatchesReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let map = try m.attentionMap(f.input, query: try XCTUnwrap(f.mapQuery))
            assertClose(map.values, try XCTUnwrap(f.map), rtol: 1e-4, name)
        }
    }

    /// Every node attends to at most k positions, all among its candidates; rows sum to 1.
    func testSparseRows() throws {
        let (l, k) = (40, 3)
        let x = randomTensor([1, l, 8], seed: 6)
        let m = try Registry.make(id: "sac", settings: ["num_edges": "\(k)", "window": "1", "num_random": "4"],
                                  inputShape: x.shape, seed: 2)
        for i in [0, 17, 39] {
            let v = try m.attentionMap(x, query: MapQuery(row: 0, column: i)).values.scalars
            let w = Array(v[0..<l]), pool = Array(v[l..<2 * l])
            XCTAssertLessThanOrEqual(w.filter { $0 > 0 }.count, k)
            XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-5)
            XCTAssertEqual(pool.reduce(0, +), 1, accuracy: 1e-5)
            XCTAssertTrue((0..<l).allSatisfy { w[$0] == 0 || pool[$0] > 0 }, "edges outside the candidates")
            XCTAssertLessThanOrEqual(pool.filter { $0 > 0 }.count, 3 + 4)
        }
    }

    func testCausal() throws {
        let l = 14, x = randomTensor([2, l, 8], seed: 3)
        let m = try Registry.make(id: "sac", settings: ["causal": "true", "num_edges": "3", "num_random": "5"],
                                  inputShape: x.shape, seed: 4)
        let y = try m(x)
        for i in [0, 6, 12] {
            var z = x
            z.withUnsafeMutableBufferPointer { p in
                for b in 0..<2 { for t in (i + 1)..<l { for c in 0..<8 { p[(b * l + t) * 8 + c] += 3 } } }
            }
            let yz = try m(z)
            XCTAssertLessThanOrEqual(maxRelativeError(yz.sliced(axis: 1, range: 0..<(i + 1)), y.sliced(axis: 1, range: 0..<(i + 1))), 1e-6)
            XCTAssertGreaterThan(maxRelativeError(yz, y), 1e-3)
        }
    }

    func testStrictLoadingAndErrors() throws {
        let f = try Fixture.load("sac")
        var sd = f.stateDict
        sd.tensors["edge_predictor.lstm.bias_hh_l0"] = nil
        sd.tensors["to_q.bias"] = Tensor(zeros: [12])
        XCTAssertThrowsError(try Registry.make(id: "sac", settings: f.settings, inputShape: f.input.shape, weights: sd)) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("missing keys: edge_predictor.lstm.bias_hh_l0"), text)
            XCTAssertTrue(text.contains("unexpected keys: to_q.bias"), text)
        }
        var bad = f.stateDict
        bad.tensors["random_candidates"] = Tensor(shape: [29, 6], repeating: 40)
        XCTAssertThrowsError(try Registry.make(id: "sac", settings: f.settings, inputShape: f.input.shape, weights: bad))
        var none = f.stateDict
        none.tensors["random_candidates"] = nil                   // optional: drawn from the seed
        XCTAssertNoThrow(try Registry.make(id: "sac", settings: f.settings, inputShape: f.input.shape, weights: none))
        let m = try XCTUnwrap(try f.makeModule() as? SparseAdaptiveConnection)
        XCTAssertThrowsError(try m(randomTensor([1, 20, 12])))                 // random_candidates are for L = 29
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 29, 8]))) { e in
            XCTAssertEqual("\(e)", "sac: expected input N×L×12, found 1×29×8")
        }
        XCTAssertThrowsError(try m.forward(f.input, edges: Tensor(shape: [2, 29, 3], repeating: 29)))
        XCTAssertThrowsError(try Registry.make(id: "sac", settings: ["heads": "5"], inputShape: [1, 4, 12]))
        let seeded = try Registry.make(id: "sac", inputShape: [1, 15, 16])
        XCTAssertEqual(try seeded.map(onGrid: randomTensor([1, 16, 3, 5]), query: MapQuery(row: 1, column: 4)).values.shape, [2, 3, 5])
    }

    /// The vectorised LSTM recurrence (CKernels `fa_lstm_forward`) against torch.nn.LSTM's
    /// definition in double, on hidden sizes that leave vector tails (13: 4h = 52; 20: 4h = 80),
    /// bitwise the same at 1 and 2 threads.
    func testLSTMMatchesTheDefinition() throws {
        try forEachKernelISA {
            let saved = Threads.count
            defer { Threads.count = saved }
            for hidden in [13, 20, 1] {
                let (n, l, d) = (2, 9, 6)
                let x = randomTensor([n, l, d], seed: UInt64(hidden))
                let m = try XCTUnwrap(try Registry.make(id: "sac", settings: ["hidden_dim": "\(hidden)"], inputShape: x.shape, seed: 5)
                                      as? SparseAdaptiveConnection)
                Threads.count = 1
                let y = m.lstm(x)
                Threads.count = 2
                XCTAssertEqual(m.lstm(x).scalars, y.scalars)
                let (wi, wh, bi, bh) = (m.lstm.weightIH, m.lstm.weightHH, m.lstm.biasIH, m.lstm.biasHH)
                func sigmoid(_ v: Double) -> Double { 1 / (1 + Foundation.exp(-v)) }
                for b in 0..<n {
                    var h = [Double](repeating: 0, count: hidden), c = h
                    for t in 0..<l {
                        var g = [Double](repeating: 0, count: 4 * hidden)
                        for r in 0..<4 * hidden {
                            var s = Double(bi[r]) + Double(bh[r])
                            for j in 0..<d { s += Double(wi[r, j]) * Double(x[b, t, j]) }
                            for j in 0..<hidden { s += Double(wh[r, j]) * h[j] }
                            g[r] = s
                        }
                        for j in 0..<hidden {
                            c[j] = sigmoid(g[hidden + j]) * c[j] + sigmoid(g[j]) * Foundation.tanh(g[2 * hidden + j])
                            h[j] = sigmoid(g[3 * hidden + j]) * Foundation.tanh(c[j])
                            XCTAssertEqual(Double(y[b, t, j]), h[j], accuracy: 2e-6, "hidden \(hidden) b \(b) t \(t) j \(j)")
                        }
                    }
                }
            }
        }
    }

    /// The vectorised pointer scores and the top-k selection against the definition: scores in
    /// double over each node's candidates, sorted (ties to the earlier candidate), k best kept.
    func testPredictedEdgesMatchTheDefinition() throws {
        try forEachKernelISA {
            for (causal, e) in [(false, 13), (true, 8), (false, 1)] {
                let (n, l, d, k) = (2, 31, 6, 4)
                let x = randomTensor([n, l, d], seed: 11)
                let m = try XCTUnwrap(try Registry.make(id: "sac", settings: ["edge_dim": "\(e)", "num_edges": "\(k)", "window": "3",
                                                                              "num_random": "9", "causal": "\(causal)"],
                                                        inputShape: x.shape, seed: 9) as? SparseAdaptiveConnection)
                let edges = try m.predictEdges(x)
                let src = try m.source(m.lstm(x)), tgt = try m.target(x), random = try m.randomPool(length: l)
                for b in 0..<n {
                    for i in 0..<l {
                        let cand = m.candidates(of: i, length: l, random: random)
                        let s = cand.map { j -> Double in
                            (0..<e).reduce(0.0) { $0 + Double(src[b, i, $1]) * Double(tgt[b, j, $1] + m.distance[SparseAdaptiveConnection.bucket(j - i), $1]) }
                        }
                        let order = cand.indices.sorted { s[$0] > s[$1] || (s[$0] == s[$1] && $0 < $1) }
                        let expected = (0..<k).map { $0 < order.count ? Float(cand[order[$0]]) : -1 }
                        XCTAssertEqual((0..<k).map { edges[b, i, $0] }, expected, "causal \(causal) b \(b) node \(i)")
                    }
                }
            }
        }
    }
}
