@testable import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// BucketedAttention (the chunked kernel behind reformer, smyrf, routing) against a dense masked
/// reference of exactly the same sparsity: for each query, every slot holding it becomes a full
/// row over all positions, masked outside the keys its chunk sees (a key seen twice counts
/// twice), and the rows are combined by logsumexp or mean. Small shapes only (the reference is L×L).
final class BucketedAttentionTests: XCTestCase {
    /// Dense reference: per problem, out[i] and the map row of i, in Double.
    func denseReference(_ plan: BucketedAttention.Plan, masking m: BucketedAttention.Masking,
                        combine: BucketedAttention.Combine, length l: Int, d: Int, dv: Int,
                        q: [Float], k: [Float], v: [Float]) -> (out: [Float], rows: [[Double]]) {
        var out = [Float](repeating: 0, count: l * dv)
        var rows: [[Double]] = []
        let chunks = plan.chunkCount
        for i in 0..<l {
            var slotRows: [[Double]] = [], slotMem: [[Double]] = [], lses: [Double] = []
            for s in plan.queryIndex.indices where Int(plan.queryIndex[s]) == i {
                let c = s / plan.queryChunk
                var mult = [Double](repeating: 0, count: l)
                for o in -plan.before...plan.after {
                    let kc = ((c + o) % chunks + chunks) % chunks
                    for t in 0..<plan.keyChunk { mult[Int(plan.keyIndex[kc * plan.keyChunk + t])] += 1 }
                }
                var logits = [Double](repeating: -.infinity, count: l)
                for j in 0..<l where mult[j] > 0 {
                    var dot = 0.0
                    for e in 0..<d { dot += Double(q[i * d + e]) * Double(k[j * d + e]) }
                    var x = Double(m.scale) * dot
                    if j >= m.validLength { x = Double(m.paddingValue) } else if m.causal && j > i { x = Double(m.causalValue) }
                    if let sv = m.selfValue, j == i { x = Double(sv) }
                    logits[j] = x + log(mult[j])
                }
                var mem = [Double](repeating: 0, count: plan.memoryCount)
                for t in 0..<plan.memoryCount {
                    var dot = 0.0
                    for e in 0..<d { dot += Double(q[i * d + e]) * Double(plan.memoryKeys[(c * plan.memoryCount + t) * d + e]) }
                    mem[t] = Double(m.scale) * dot
                }
                let mx = max(logits.max()!, mem.max() ?? -.infinity)
                let z = logits.map { exp($0 - mx) }.reduce(0, +) + mem.map { exp($0 - mx) }.reduce(0, +)
                slotRows.append(logits.map { exp($0 - mx) / z })
                slotMem.append(mem.map { exp($0 - mx) / z })
                lses.append(mx + log(z))
            }
            var w: [Double]
            switch combine {
            case .logsumexp:
                let mx = lses.max() ?? 0, z = lses.map { exp($0 - mx) }.reduce(0, +)
                w = lses.map { exp($0 - mx) / z }
            case .mean(let eps):
                w = lses.map { _ in 1 / (Double(lses.count) + Double(eps)) }
            }
            var row = [Double](repeating: 0, count: l)
            for (n, r) in slotRows.enumerated() {
                for j in 0..<l { row[j] += w[n] * r[j] }
                for c in 0..<dv {
                    var acc = 0.0
                    for j in 0..<l { acc += r[j] * Double(v[j * dv + c]) }
                    let chunk = plan.queryIndex.indices.filter { Int(plan.queryIndex[$0]) == i }[n] / plan.queryChunk
                    for t in 0..<plan.memoryCount {
                        acc += slotMem[n][t] * Double(plan.memoryValues[(chunk * plan.memoryCount + t) * dv + c])
                    }
                    out[i * dv + c] += Float(w[n] * acc)
                }
            }
            rows.append(row)
        }
        return (out, rows)
    }

    func run(_ plan: BucketedAttention.Plan, _ masking: BucketedAttention.Masking, _ combine: BucketedAttention.Combine,
             l: Int, d: Int, dv: Int, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let q = randomTensor([l, d], seed: seed), k = randomTensor([l, d], seed: seed + 1), v = randomTensor([l, dv], seed: seed + 2)
        let ref = denseReference(plan, masking: masking, combine: combine, length: l, d: d, dv: dv,
                                 q: q.scalars, k: k.scalars, v: v.scalars)
        var out = Tensor(uninitialized: [l, dv])
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            out.withUnsafeMutableBufferPointer { op in
                BucketedAttention.forward(plans: [plan], heads: 1, length: l, d: d, dv: dv,
                                          q: .init(base: qp.baseAddress!, ld: d, batchStride: 0, headStride: 0),
                                          k: .init(base: kp.baseAddress!, ld: d, batchStride: 0, headStride: 0),
                                          v: .init(base: vp.baseAddress!, ld: dv, batchStride: 0, headStride: 0),
                                          out: op.baseAddress!, outLd: dv, outBatchStride: 0, outHeadStride: 0,
                                          masking: masking, combine: combine)
            }
        } } }
        assertClose(out, Tensor(shape: [l, dv], scalars: ref.out), rtol: 1e-5, "forward", file: file, line: line)
        for i in [0, l / 2, l - 1] {
            let row = q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in
                BucketedAttention.mapRow(plan: plan, position: i, length: l, d: d, q: qp.baseAddress!, qld: d,
                                         k: kp.baseAddress!, kld: d, masking: masking, combine: combine)
            } }
            assertClose(Tensor(shape: [l], scalars: row), Tensor(shape: [l], scalars: ref.rows[i].map(Float.init)),
                        rtol: 1e-5, "map row \(i)", file: file, line: line)
        }
    }

    func testSortedChunksWithNeighboursAndRoundsMatchDenseMaskedReference() {
        // Two rounds of a permutation of 12 positions, chunks of 4 looking one back and one ahead
        // (cyclic across rounds), shared-QK masks as Reformer's, causal.
        var g = SeededGenerator(seed: 5)
        let l = 12
        var order: [Int32] = []
        for _ in 0..<2 { order += (0..<Int32(l)).shuffled(using: &g) }
        var plan = BucketedAttention.Plan(queryIndex: order, keyIndex: order, queryChunk: 4, keyChunk: 4, before: 1, after: 1)
        // (Self −10, not −1e5: a row seeing only itself has lse ≈ the self value, and at −1e5 float32
        // rounds lse to 0.008, which the Double reference does not.)
        run(plan, .init(scale: 0.7, causal: true, causalValue: -1e9, selfValue: -10), .logsumexp, l: l, d: 5, dv: 3, seed: 1)
        run(plan, .init(scale: 1, selfValue: -1e5, validLength: 10), .logsumexp, l: l, d: 5, dv: 3, seed: 4)
        plan.before = 0; plan.after = 0
        run(plan, .init(scale: 0.5), .logsumexp, l: l, d: 4, dv: 6, seed: 7)
    }

    func testWideChunksAndConsecutiveQueriesMatchDenseMaskedReference() {
        // Rows of 3·19 + 5 = 62 keys (vector bodies and ragged tails), identity chunks (queries
        // read in place) and a shuffled round (gathered), memory keys, causal/self/padding masks.
        var g = SeededGenerator(seed: 17)
        let l = 57
        let order = (0..<Int32(l)).map { $0 } + (0..<Int32(l)).shuffled(using: &g)
        var plan = BucketedAttention.Plan(queryIndex: order, keyIndex: order, queryChunk: 19, keyChunk: 19,
                                          before: 1, after: 1)
        plan.memoryCount = 5
        plan.memoryKeys = randomTensor([6, 5, 6], seed: 21).scalars
        plan.memoryValues = randomTensor([6, 5, 7], seed: 22).scalars
        for isa in KernelISA.available {          // the masked-softmax kernel on every path this CPU has
            KernelISA.limited(to: isa) {
                run(plan, .init(scale: 0.6, causal: true, causalValue: -1e9, selfValue: -10, validLength: 50), .logsumexp,
                    l: l, d: 6, dv: 7, seed: 23)
                run(plan, .init(scale: 0.4), .mean(eps: 1e-5), l: l, d: 6, dv: 7, seed: 29)
            }
        }
    }

    func testAsymmetricChunksRoutesAndMemoryMatchDenseMaskedReference() {
        // Routing-like: 3 clusters of 4 query slots and 5 key slots (positions repeated or absent),
        // one memory key per cluster, combined by the mean with eps.
        var g = SeededGenerator(seed: 9)
        let l = 10
        let qi = (0..<12).map { _ in Int32(g.nextInt(below: l - 1)) }     // position 9 never routed
        let ki = (0..<15).map { _ in Int32(g.nextInt(below: l)) }
        var plan = BucketedAttention.Plan(queryIndex: qi, keyIndex: ki, queryChunk: 4, keyChunk: 5)
        plan.memoryCount = 1
        plan.memoryKeys = randomTensor([3, 1, 4], seed: 3).scalars
        plan.memoryValues = randomTensor([3, 1, 2], seed: 8).scalars
        run(plan, .init(scale: 0.5, causal: true, causalValue: -.greatestFiniteMagnitude), .mean(eps: 1e-5),
            l: l, d: 4, dv: 2, seed: 11)
    }

    func testRotationBucketsAndStableSort() {
        let (l, d, rounds, half) = (9, 3, 2, 2)
        let x = randomTensor([l, d], seed: 2), r = randomTensor([d, rounds, half], seed: 3)
        let b = x.withUnsafeBufferPointer { xp in r.withUnsafeBufferPointer { rp in
            BucketedAttention.rotationBuckets(vectors: xp.baseAddress!, ld: d, length: l, d: d,
                                              rotations: rp.baseAddress!, rounds: rounds, factors: [2 * half])
        } }
        for i in 0..<l {
            for rr in 0..<rounds {
                var vals: [Float] = []
                for j in 0..<half { vals.append((0..<d).map { x.scalars[i * d + $0] * r.scalars[$0 * rounds * half + rr * half + j] }.reduce(0, +)) }
                let all = vals + vals.map { -$0 }
                XCTAssertEqual(Int(b[rr * l + i]), all.firstIndex(of: all.max()!)!)
            }
        }
        let order = BucketedAttention.stableOrder(buckets: [2, 0, 2, 1, 0] as [Int32], bucketCount: 3)
        XCTAssertEqual(order, [1, 4, 3, 0, 2])
        XCTAssertEqual(BucketedAttention.inverse(order), [3, 0, 4, 2, 1])
        let vals: [Float] = [0.5, -1, 0.5, 2, -0.0, .infinity, -3, 0]
        XCTAssertEqual(vals.withUnsafeBufferPointer { BucketedAttention.stableOrder(values: $0) }, [6, 1, 4, 7, 0, 2, 3, 5])
    }
}
