import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// The kernelised-attention core: non-causal and chunked causal against the naive full
/// matrix, recurrent steps against the causal form, and the implicit weights against a row of
/// the naive matrix.
final class KernelizedAttentionTests: XCTestCase {
    override func tearDown() { KernelizedAttention.chunk = 64 }

    /// Positive features N×H×L×m (as every feature map here gives), values N×L×(H·dv).
    func operands(b: Int, heads: Int, lq: Int, lk: Int, m: Int, dv: Int, seed: UInt64)
        -> (q: Tensor, k: Tensor, v: Tensor) {
        (exp(randomTensor([b, heads, lq, m], seed: seed) * 0.5),
         exp(randomTensor([b, heads, lk, m], seed: seed + 1) * 0.5),
         randomTensor([b, lk, heads * dv], seed: seed + 2))
    }

    func slice(_ t: Tensor, b: Int, h: Int) -> [Float] {
        // N×H×L×m → one problem's L×m
        let per = t.shape[2] * t.shape[3], s = t.scalars
        return Array(s[((b * t.shape[1] + h) * per)..<((b * t.shape[1] + h + 1) * per)])
    }

    func valueSlice(_ v: Tensor, b: Int, h: Int, heads: Int) -> [Float] {
        let (l, c) = (v.shape[1], v.shape[2]), dv = c / heads, s = v.scalars
        return (0..<l).flatMap { r in (0..<dv).map { s[(b * l + r) * c + h * dv + $0] } }
    }

    func check(b: Int, heads: Int, lq: Int, lk: Int, m: Int, dv: Int, causal: Bool, normaliser: KernelNormaliser,
               decay: Bool = false, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let (q, k, v) = operands(b: b, heads: heads, lq: lq, lk: lk, m: m, dv: dv, seed: seed)
        let lg = decay ? randomTensor([b, heads, lq], seed: seed + 7).map { -0.3 * Swift.abs($0) } : nil
        let out = KernelizedAttention.multiHead(phiQ: q, phiK: k, v: v, normaliser: normaliser, causal: causal, logDecay: lg)
        XCTAssertEqual(out.shape, [b, lq, heads * dv])
        for bi in 0..<b {
            for h in 0..<heads {
                let ref = KernelizedAttention.forwardNaive(
                    lq: lq, lk: lk, m: m, dv: dv, phiQ: slice(q, b: bi, h: h), phiK: slice(k, b: bi, h: h),
                    v: valueSlice(v, b: bi, h: h, heads: heads), normaliser: normaliser, causal: causal,
                    logDecay: lg.map { slice($0.reshaped([b, heads, lq, 1]), b: bi, h: h) })
                let got = valueSlice(out, b: bi, h: h, heads: heads)
                assertClose(Tensor(shape: [lq, dv], scalars: got), Tensor(shape: [lq, dv], scalars: ref), rtol: 1e-5,
                            "b\(bi) h\(h) causal \(causal) \(normaliser)", file: file, line: line)
            }
        }
    }

    func testNonCausalMatchesNaive() {
        check(b: 2, heads: 3, lq: 13, lk: 17, m: 6, dv: 5, causal: false, normaliser: .denominator(eps: 1e-6), seed: 1)
        check(b: 1, heads: 2, lq: 9, lk: 9, m: 4, dv: 3, causal: false, normaliser: .none, seed: 2)
        check(b: 1, heads: 2, lq: 9, lk: 9, m: 4, dv: 3, causal: false, normaliser: .guarded(eps: 1e-6), seed: 8)
    }

    func testCausalMatchesMaskedNaiveAcrossChunks() {
        KernelizedAttention.chunk = 4          // ragged last chunk, state carried across 5 chunks
        check(b: 2, heads: 2, lq: 19, lk: 19, m: 5, dv: 3, causal: true, normaliser: .denominator(eps: 1e-6), seed: 3)
        check(b: 1, heads: 3, lq: 19, lk: 19, m: 5, dv: 3, causal: true, normaliser: .keySum(eps: 1e-3), seed: 4)
        KernelizedAttention.chunk = 64         // one chunk: intra part only
        check(b: 1, heads: 1, lq: 11, lk: 11, m: 7, dv: 4, causal: true, normaliser: .denominator(eps: 1e-16), seed: 5)
    }

    func testDecayedCausalMatchesNaive() {
        KernelizedAttention.chunk = 5
        check(b: 2, heads: 2, lq: 23, lk: 23, m: 4, dv: 3, causal: true, normaliser: .denominator(eps: 1e-6),
              decay: true, seed: 6)
    }

    func testRecurrentStepsEqualCausal() {
        let (b, heads, l, m, dv) = (1, 2, 21, 6, 4)
        KernelizedAttention.chunk = 8
        for decay in [false, true] {
            let (q, k, v) = operands(b: b, heads: heads, lq: l, lk: l, m: m, dv: dv, seed: 11)
            let lg = decay ? randomTensor([b, heads, l], seed: 12).map { -0.2 * Swift.abs($0) } : nil
            let causal = KernelizedAttention.multiHead(phiQ: q, phiK: k, v: v, normaliser: .keySum(eps: 1e-6),
                                                       causal: true, logDecay: lg)
            var state = KernelizedState(heads: heads, m: m, dv: dv)
            let qs = q.scalars, ks = k.scalars, vs = v.scalars, gs = lg?.scalars
            var steps = [Float](repeating: 0, count: l * heads * dv)
            for i in 0..<l {
                // Token i of every head: heads×m features, heads×dv values.
                var fq: [Float] = [], fk: [Float] = []
                for h in 0..<heads {
                    let lo: Int = (h * l + i) * m
                    fq += qs[lo..<(lo + m)]
                    fk += ks[lo..<(lo + m)]
                }
                let vi = Array(vs[(i * heads * dv)..<((i + 1) * heads * dv)])
                let gate = gs.map { g in (0..<heads).map { Foundation.exp(g[$0 * l + i]) } }
                steps.withUnsafeMutableBufferPointer { op in
                    state.step(phiQ: fq, phiK: fk, v: vi, out: op.baseAddress! + i * heads * dv,
                               normaliser: .keySum(eps: 1e-6), gate: gate)
                }
            }
            assertClose(Tensor(shape: [b, l, heads * dv], scalars: steps), causal, rtol: 1e-5, "decay \(decay)")
        }
    }

    func testWeightsAreTheNaiveRowAndReproduceTheOutput() {
        let (heads, l, m, dv) = (2, 15, 5, 3)
        for (causal, decay) in [(false, false), (true, false), (true, true)] {
            let (q, k, v) = operands(b: 1, heads: heads, lq: l, lk: l, m: m, dv: dv, seed: 21)
            let lg = decay ? randomTensor([1, heads, l], seed: 22).map { -0.3 * Swift.abs($0) } : nil
            let out = KernelizedAttention.multiHead(phiQ: q, phiK: k, v: v, normaliser: .denominator(eps: 1e-6),
                                                    causal: causal, logDecay: lg)
            let (h, i) = (1, 9)
            let w = KernelizedAttention.weights(phiQ: q, phiK: k, batch: 0, head: h, query: i,
                                                normaliser: .denominator(eps: 1e-6), causal: causal, logDecay: lg)
            if causal { XCTAssertEqual(w[(i + 1)...].max(), 0) }
            XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-5)
            // Σ_j w_j v_j is the output row.
            let vh = valueSlice(v, b: 0, h: h, heads: heads), oh = valueSlice(out, b: 0, h: h, heads: heads)
            for c in 0..<dv {
                let mixed = (0..<l).map { w[$0] * vh[$0 * dv + c] }.reduce(0, +)
                XCTAssertEqual(mixed, oh[i * dv + c], accuracy: 1e-5, "causal \(causal) decay \(decay)")
            }
        }
    }

    func testCausalIgnoresTheFuture() {
        let (heads, l, m, dv) = (2, 16, 4, 3)
        KernelizedAttention.chunk = 5
        var (q, k, v) = operands(b: 1, heads: heads, lq: l, lk: l, m: m, dv: dv, seed: 31)
        let a = KernelizedAttention.multiHead(phiQ: q, phiK: k, v: v, normaliser: .denominator(eps: 1e-6), causal: true)
        // Perturb every position ≥ 9 of q, k and v.
        q = q * Naive.tensor(shape: q.shape) { $0[2] >= 9 ? 3 : 1 }
        k = k * Naive.tensor(shape: k.shape) { $0[2] >= 9 ? 0.5 : 1 }
        v = v + Naive.tensor(shape: v.shape) { $0[1] >= 9 ? 2 : 0 }
        let b = KernelizedAttention.multiHead(phiQ: q, phiK: k, v: v, normaliser: .denominator(eps: 1e-6), causal: true)
        XCTAssertEqual(Array(a.scalars[..<(9 * heads * dv)]), Array(b.scalars[..<(9 * heads * dv)]))
    }
}

// MARK: - Checks shared by the kernelised sequence modules' tests

/// Parity with a fixture: output and (when present) the map, both within `rtol`.
func checkFixture(_ name: String, rtol: Float = 1e-4, file: StaticString = #filePath, line: UInt = #line) throws {
    let f = try Fixture.load(name)
    let m = try f.makeModule()
    let y = try m(f.input)
    assertClose(y, f.output, rtol: rtol, name, file: file, line: line)
    print("\(name): output max relative error \(maxRelativeError(y, f.output))")
    if let expected = f.map, let q = f.mapQuery {
        let map = try m.attentionMap(f.input, query: q)
        XCTAssertEqual(map.kind, .perQuery, file: file, line: line)
        assertClose(map.values, expected, rtol: rtol, "\(name) map", file: file, line: line)
        print("\(name): map max relative error \(maxRelativeError(map.values, expected))")
    }
}

/// Outputs at positions < `at` are unchanged (≤ 1e-6 relative) when every input from `at` on
/// changes.
func checkCausal(_ m: any AttentionModule, _ x: Tensor, at: Int, file: StaticString = #filePath, line: UInt = #line) throws {
    let (n, l, c) = (x.shape[0], x.shape[1], x.shape[2])
    let y = try m(x)
    let x2 = x + Naive.tensor(shape: x.shape) { $0[1] >= at ? Float($0[2] % 3) - 0.7 : 0 }
    let y2 = try m(x2)
    let c2 = y.shape[2]
    let before = { (t: Tensor) in Tensor(shape: [n, at, c2], scalars: (0..<n).flatMap { b in t.scalars[(b * l * c2)..<((b * l + at) * c2)] }) }
    assertClose(before(y2), before(y), rtol: 1e-6, "the past changed", file: file, line: line)
    XCTAssertGreaterThan(maxRelativeError(y2, y), 1e-3, "the future did not change", file: file, line: line)
    _ = c
}

/// Strict loading names a missing, an unexpected and a mis-shaped key.
func checkStrictLoading(_ name: String, drop: String, reshape: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let f = try Fixture.load(name)
    var sd = f.stateDict
    sd.tensors[drop] = nil
    sd.tensors["extra.weight"] = Tensor(zeros: [1])
    sd.tensors[reshape] = Tensor(zeros: [3])
    XCTAssertThrowsError(try Registry.make(id: f.module, settings: f.settings, inputShape: f.input.shape, weights: sd),
                         file: file, line: line) { error in
        let text = String(describing: error)
        XCTAssertTrue(text.contains("missing keys: \(drop)"), text, file: file, line: line)
        XCTAssertTrue(text.contains("unexpected keys: extra.weight"), text, file: file, line: line)
        XCTAssertTrue(text.contains("size mismatch for \(reshape)"), text, file: file, line: line)
    }
}

/// Wrong channels and rank are clear errors naming the module; so is an out-of-range query.
func checkBadInputs(_ id: String, channels: Int, file: StaticString = #filePath, line: UInt = #line) throws {
    let m = try Registry.make(id: id, inputShape: [1, 5, channels])
    XCTAssertThrowsError(try m(Tensor(zeros: [1, 5, channels + 1])), file: file, line: line) { e in
        XCTAssertEqual(String(describing: e), "\(id): expected input N×L×\(channels), found 1×5×\(channels + 1)", file: file, line: line)
    }
    XCTAssertThrowsError(try m(Tensor(zeros: [5, channels])), file: file, line: line)
    XCTAssertThrowsError(try m.attentionMap(Tensor(zeros: [1, 5, channels]), query: MapQuery(row: 0, column: 5)), file: file, line: line)
    XCTAssertThrowsError(try Registry.make(id: id, settings: ["no_such_key": "1"], inputShape: [1, 5, channels]), file: file, line: line)
}
