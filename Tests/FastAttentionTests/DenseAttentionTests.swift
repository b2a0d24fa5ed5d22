import FastAttention
import TensorCore
import TestSupport
import XCTest

/// The tiled online-softmax kernel against the full-matrix naive reference.
final class DenseAttentionTests: XCTestCase {
    override func tearDown() {
        DenseAttention.queryTile = 64
        DenseAttention.keyTile = 2048
        DenseAttention.wideHead = 512
        DenseAttention.wideKeyTile = 4096
        DenseAttention.wideLogits = 1 << 21
    }

    func check(b: Int, heads: Int, lq: Int, lk: Int, d: Int, dv: Int, causal: Bool, seed: UInt64) {
        let q = randomTensor([b, lq, heads * d], seed: seed)
        let k = randomTensor([b, lk, heads * d], seed: seed + 1)
        let v = randomTensor([b, lk, heads * dv], seed: seed + 2)
        let scale = 1 / Float(d).squareRoot()
        let out = DenseAttention.multiHead(q: q, k: k, v: v, heads: heads, scale: scale, causal: causal)
        XCTAssertEqual(out.shape, [b, lq, heads * dv])
        // Naive per (batch, head), slicing heads out of the channel axis.
        let qs = q.scalars, ks = k.scalars, vs = v.scalars, os = out.scalars
        for bi in 0..<b {
            for h in 0..<heads {
                func slice(_ s: [Float], rows: Int, width: Int, total: Int) -> [Float] {
                    (0..<rows).flatMap { r in (0..<width).map { s[(bi * rows + r) * total + h * width + $0] } }
                }
                let ref = DenseAttention.forwardNaive(
                    lq: lq, lk: lk, d: d, dv: dv, q: slice(qs, rows: lq, width: d, total: heads * d),
                    k: slice(ks, rows: lk, width: d, total: heads * d), v: slice(vs, rows: lk, width: dv, total: heads * dv),
                    scale: scale, causal: causal)
                let got = slice(os, rows: lq, width: dv, total: heads * dv)
                assertClose(Tensor(shape: [lq, dv], scalars: got), Tensor(shape: [lq, dv], scalars: ref), rtol: 1e-5,
                            "b\(bi) h\(h) lq\(lq) lk\(lk) causal \(causal)")
            }
        }
    }

    func testSingleTileMatchesNaive() {
        check(b: 2, heads: 3, lq: 13, lk: 17, d: 5, dv: 7, causal: false, seed: 1)
    }

    func testManyRaggedTilesMatchNaive() {
        // Tiles smaller than the problem, with ragged last tiles on both axes, so the online
        // softmax rescaling across key tiles is exercised.
        DenseAttention.queryTile = 4
        DenseAttention.keyTile = 6
        check(b: 1, heads: 2, lq: 23, lk: 29, d: 8, dv: 3, causal: false, seed: 4)
    }

    func testWideHeadTilesMatchNaive() {
        // The wide-head shape (taller query tiles, longer key tiles), scaled down so the odd
        // shape has ragged tiles on both axes, causal and not.
        DenseAttention.queryTile = 2
        DenseAttention.keyTile = 3
        DenseAttention.wideHead = 9
        DenseAttention.wideKeyTile = 10
        DenseAttention.wideLogits = 50                     // 5 query rows × 10 keys
        check(b: 1, heads: 2, lq: 23, lk: 27, d: 9, dv: 5, causal: false, seed: 11)
        check(b: 2, heads: 1, lq: 21, lk: 21, d: 11, dv: 3, causal: true, seed: 12)
        check(b: 1, heads: 1, lq: 13, lk: 17, d: 8, dv: 4, causal: false, seed: 13)   // narrow: d < wideHead
    }

    func testCausalMatchesNaiveAcrossTiles() {
        DenseAttention.queryTile = 5
        DenseAttention.keyTile = 7
        check(b: 2, heads: 1, lq: 19, lk: 19, d: 4, dv: 4, causal: true, seed: 9)
    }

    func testCausalIgnoresTheFuture() {
        let (l, c) = (16, 8)
        let q = randomTensor([1, l, c], seed: 3), k = randomTensor([1, l, c], seed: 4)
        var v = randomTensor([1, l, c], seed: 5)
        let a = DenseAttention.multiHead(q: q, k: k, v: v, heads: 2, scale: 0.5, causal: true)
        v[0, 12, 3] = 100          // perturb a value after position 11
        var k2 = k
        k2[0, 13, 0] = -50         // and a key
        let b = DenseAttention.multiHead(q: q, k: k2, v: v, heads: 2, scale: 0.5, causal: true)
        let pa = a.scalars, pb = b.scalars
        XCTAssertEqual(Array(pa[0..<(12 * c)]), Array(pb[0..<(12 * c)]))
        XCTAssertNotEqual(Array(pa[(12 * c)...]), Array(pb[(12 * c)...]))
    }

    func testRowWeightsSumToOneAndMatchKernel() {
        let (l, d) = (30, 6)
        let q = randomTensor([1, l, d], seed: 11), k = randomTensor([1, l, d], seed: 12)
        let w = q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                DenseAttention.weights(query: qp.baseAddress! + 7 * d, keys: kp.baseAddress!, ldk: d, lk: l, d: d, scale: 0.4)
            }
        }
        XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-5)
        // Attending with V = identity returns exactly the weights row.
        var eye = Tensor(zeros: [1, l, l])
        for i in 0..<l { eye[0, i, i] = 1 }
        let out = DenseAttention.multiHead(q: q, k: k, v: eye, heads: 1, scale: 0.4)
        for j in 0..<l { XCTAssertEqual(out[0, 7, j], w[j], accuracy: 1e-6) }
    }

    func testLargeLogitsStayFinite() {
        // Logits around ±1e4 overflow a naive exp; the running max keeps them finite.
        let q = randomTensor([1, 9, 4], seed: 2), k = randomTensor([1, 9, 4], seed: 3), v = randomTensor([1, 9, 4], seed: 4)
        let out = DenseAttention.multiHead(q: q, k: k, v: v, heads: 1, scale: 5000)
        XCTAssertTrue(out.scalars.allSatisfy(\.isFinite))
    }
}

/// The registry holds each modules.tsv id once, and every module's info agrees with its type.
final class RegistryTests: XCTestCase {
    func testIdsAreUniqueAndResolve() throws {
        let ids = Registry.ids
        XCTAssertEqual(ids.count, Set(ids).count, "duplicate ids: \(ids)")
        XCTAssertEqual(ids.count, 49)
        for id in ids { XCTAssertEqual(try Registry.type(id: id).info.id, id) }
        XCTAssertThrowsError(try Registry.type(id: "no-such-module"))
    }
}
