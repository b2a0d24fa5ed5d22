@testable import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// gmat against Tools/reference/gmat.py (written from the paper on HF BertLayers) through the
/// committed fixtures: windowed (L = 13, r = 2, 3 heads), full (radius ≥ L − 1) and a window
/// wider than half the sequence over 3 layers; every weight random.
final class GMATTests: XCTestCase {
    static let cases = ["gmat", "gmat-full", "gmat-wide"]

    func testParityWithReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let y = try m(f.input)
            print("\(name): max relative error \(maxRelativeError(y, f.output))")
            assertClose(y, f.output, rtol: 1e-4, name)
        }
    }

    func testMapMatchesReference() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            guard let expected = f.map, let q = f.mapQuery else { return XCTFail("\(name) has no map") }
            let map = try m.attentionMap(f.input, query: q)
            XCTAssertEqual(map.kind, .perQuery)
            assertClose(map.values, expected, rtol: 1e-4, name)
        }
    }

    /// The paper's pattern: with one layer a token sees only its window (the memory keys are
    /// still the learned slots); from two layers on, a far token reaches it through the memory.
    func testWindowAndMemoryReach() throws {
        let x = randomTensor([1, 20, 8], seed: 11)
        var far = x.scalars
        for c in 0..<8 { far[19 * 8 + c] += 1 }                 // token 19, far from token 2 (r = 3)
        let xf = Tensor(shape: x.shape, scalars: far)
        let one = try Registry.make(id: "gmat", settings: ["num_attention_heads": "2", "num_memory": "3", "local_radius": "3",
                                                           "num_hidden_layers": "1"], inputShape: x.shape, seed: 3)
        let (a, b) = (try one(x).scalars, try one(xf).scalars)
        for c in 0..<8 { XCTAssertEqual(a[2 * 8 + c], b[2 * 8 + c]) }
        let two = try Registry.make(id: "gmat", settings: ["num_attention_heads": "2", "num_memory": "3", "local_radius": "3",
                                                           "num_hidden_layers": "2"], inputShape: x.shape, seed: 3)
        let (a2, b2) = (try two(x).scalars, try two(xf).scalars)
        let moved: [Float] = (0..<8).map { (c: Int) -> Float in abs(a2[2 * 8 + c] - b2[2 * 8 + c]) }
        XCTAssertGreaterThan(moved.max()!, 1e-6)
        // The map says the same: one layer, no reach; two layers, every token reached.
        let m1 = try one.attentionMap(x, query: MapQuery(row: 0, column: 2)).values.scalars
        XCTAssertEqual(Array(m1[0..<20]), Array(m1[20..<40]))
        XCTAssertEqual(m1[10], 0)
        let m2 = try two.attentionMap(x, query: MapQuery(row: 0, column: 2)).values.scalars
        XCTAssertEqual(m2[10], 0)
        XCTAssertGreaterThan(m2[20 + 10], 0)
        // The composed row adds the memory's share, minus what the memory kept on its learned
        // slots (reach⁰ = 0): more than the direct row, at most 1.
        let (direct, composed) = (m2[0..<20].reduce(0, +), m2[20..<40].reduce(0, +))
        XCTAssertGreaterThan(composed, direct)
        XCTAssertLessThanOrEqual(composed, 1 + 1e-5)
    }

    /// The blocked band kernel against a naive row-by-row softmax, across block edges (L = 70,
    /// blocks of 32), with side keys, relative biases and a restricted side range (ETC's use).
    func testBandKernelMatchesNaive() throws {
        let (batch, heads, l, g, r, d) = (2, 2, 70, 3, 5, 4)
        let c = heads * d, w = 2 * r + 1
        let q = randomTensor([batch, l, c], seed: 21), k = randomTensor([batch, l, c], seed: 22)
        let v = randomTensor([batch, l, c], seed: 23), sk = randomTensor([batch, g, c], seed: 24)
        let sv = randomTensor([batch, g, c], seed: 25)
        let localBias = randomTensor([batch, l, heads, w], seed: 26), sideBias = randomTensor([batch, l, heads, g], seed: 27)
        for withBias in [false, true] {
            var out = Tensor(zeros: [batch, l, c])
            let scale: Float = 0.7
            let sideRange: ((Int) -> Range<Int>)? = withBias ? { i in (i / 30)..<(i / 30 + 1) } : nil
            q.withUnsafeBufferPointer { qb in k.withUnsafeBufferPointer { kb in v.withUnsafeBufferPointer { vb in
            sk.withUnsafeBufferPointer { skb in sv.withUnsafeBufferPointer { svb in
            localBias.withUnsafeBufferPointer { lbb in sideBias.withUnsafeBufferPointer { sbb in
            out.withUnsafeMutableBufferPointer { ob in
                func op(_ p: UnsafeBufferPointer<Float>, _ rows: Int) -> AttentionOperand {
                    AttentionOperand(base: p.baseAddress!, ld: c, batchStride: rows * c, headStride: d)
                }
                let sbp = sbb.baseAddress!
                let side: (Int, Int, Int, UnsafeMutablePointer<Float>) -> Void = { b, i, h, row in
                    for s in 0..<g { row[s] += sbp[((b * l + i) * heads + h) * g + s] }
                }
                let bias = withBias ? BandAttention.Bias(local: lbb.baseAddress!, side: side, sideRange: sideRange)
                                    : BandAttention.Bias()
                BandAttention.forward(batch: batch, heads: heads, l: l, g: g, r: r, d: d, dv: d,
                                      q: op(qb, l), k: op(kb, l), v: op(vb, l), sk: op(skb, g), sv: op(svb, g),
                                      out: ob.baseAddress!, outLd: c, outBatchStride: l * c, outHeadStride: d,
                                      scale: scale, bias: bias)
            }}}}}}}}
            // Naive: every key scored, invisible ones dropped, softmax in Double.
            let (qs, ks, vs, sks, svs) = (q.scalars, k.scalars, v.scalars, sk.scalars, sv.scalars)
            let (lbs, sbs) = (localBias.scalars, sideBias.scalars)
            var expected = [Float](repeating: 0, count: batch * l * c)
            for b in 0..<batch {
                for h in 0..<heads {
                    for i in 0..<l {
                        var logits: [(Double, [Float])] = []
                        func dot(_ a: [Float], _ ao: Int, _ bo: Int, _ bs: [Float]) -> Double {
                            (0..<d).reduce(0.0) { $0 + Double(a[ao + $1]) * Double(bs[bo + $1]) }
                        }
                        let qo = (b * l + i) * c + h * d
                        for s in 0..<g where sideRange?(i).contains(s) ?? true {
                            var z = dot(qs, qo, (b * g + s) * c + h * d, sks)
                            if withBias { z += Double(sbs[((b * l + i) * heads + h) * g + s]) }
                            logits.append((z * Double(scale), Array(svs[((b * g + s) * c + h * d)..<((b * g + s) * c + h * d + d)])))
                        }
                        for j in max(0, i - r)..<min(l, i + r + 1) {
                            var z = dot(qs, qo, (b * l + j) * c + h * d, ks)
                            if withBias { z += Double(lbs[((b * l + i) * heads + h) * w + j - i + r]) }
                            logits.append((z * Double(scale), Array(vs[((b * l + j) * c + h * d)..<((b * l + j) * c + h * d + d)])))
                        }
                        let mx = logits.map(\.0).max()!
                        let e = logits.map { Foundation.exp($0.0 - mx) }, zsum = e.reduce(0, +)
                        for (n, (_, val)) in logits.enumerated() {
                            for x in 0..<d { expected[qo + x] += Float(e[n] / zsum) * val[x] }
                        }
                    }
                }
            }
            assertClose(out, Tensor(shape: out.shape, scalars: expected), rtol: 1e-5, "bias \(withBias)")
        }
    }

    func testStrictLoadingNamesBadKeys() throws {
        let f = try Fixture.load("gmat")
        var sd = f.stateDict
        sd.tensors["layer.1.attention.self.key.bias"] = nil
        sd.tensors["layer.2.output.dense.bias"] = Tensor(zeros: [12])
        sd.tensors["memory"] = Tensor(zeros: [4, 12])
        XCTAssertThrowsError(try Registry.make(id: f.module, settings: f.settings, inputShape: f.input.shape, weights: sd)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("missing keys: layer.1.attention.self.key.bias"), text)
            XCTAssertTrue(text.contains("unexpected keys: layer.2.output.dense.bias"), text)
            XCTAssertTrue(text.contains("size mismatch for memory: checkpoint has 4×12, module expects 3×12"), text)
        }
    }

    func testBadInputsAndConfigsAreClearErrors() throws {
        let m = try Registry.make(id: "gmat", inputShape: [1, 5, 8])
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 5, 6]))) { e in
            XCTAssertEqual(String(describing: e), "gmat: expected input N×L×8, found 1×5×6")
        }
        XCTAssertThrowsError(try m(Tensor(zeros: [5, 8])))
        XCTAssertThrowsError(try Registry.make(id: "gmat", settings: ["num_attention_heads": "3"], inputShape: [1, 5, 8])) { e in
            XCTAssertTrue(String(describing: e).contains("not a multiple of num_attention_heads=3"), "\(e)")
        }
        XCTAssertThrowsError(try Registry.make(id: "gmat", settings: ["local_radius": "-1"], inputShape: [1, 5, 8]))
        XCTAssertThrowsError(try Registry.make(id: "gmat", settings: ["hidden_act": "swish"], inputShape: [1, 5, 8]))
        XCTAssertThrowsError(try Registry.make(id: "gmat", settings: ["num_memories": "2"], inputShape: [1, 5, 8]))
        XCTAssertThrowsError(try m.attentionMap(randomTensor([1, 5, 8]), query: MapQuery(row: 0, column: 5)))
        let onMap = try Registry.make(id: "gmat", inputShape: [1, 12, 8])
        XCTAssertEqual(try onMap.apply(randomTensor([1, 8, 3, 4])).shape, [1, 8, 3, 4])
    }
}
