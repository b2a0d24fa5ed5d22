@testable import FastAttention
import Foundation
import TensorCore
import TestSupport
import XCTest

/// talk-conv against the pure-PyTorch transcription of the TaLKConv CUDA kernels
/// (Tools/reference/talk_conv.py): encoder with Lmax ≠ Rmax and 3 heads, the causal decoder, and
/// windows wider than the sequence; plus the properties the paper's box filter promises.
final class TaLKConvTests: XCTestCase {
    static let cases = ["talk-conv", "talk-conv-decode", "talk-conv-wide"]

    func testParityWithReference() throws {
        try assertParity(Self.cases)
    }

    func testMapMatchesReferenceBox() throws {
        for name in Self.cases {
            let f = try Fixture.load(name)
            let m = try f.makeModule()
            let map = try m.attentionMap(f.input, query: try XCTUnwrap(f.mapQuery))
            assertClose(map.values, try XCTUnwrap(f.map), rtol: 1e-4, name)
        }
    }

    /// Every head's output row is its box row times the inputs, and the box weights sum to
    /// (z − a + 1)/K ≤ 1 (the 1/K normalisation by the largest window).
    func testOutputIsTheBoxTimesInputs() throws {
        let (l, c, heads) = (13, 6, 3)
        let x = randomTensor([1, l, c], seed: 4)
        let m = try Registry.make(id: "talk-conv", settings: ["num_heads": "\(heads)", "min_len_left": "3", "min_len_right": "5"],
                                  inputShape: x.shape, seed: 7)
        let y = try m(x)
        for t in [0, 6, 12] {
            for h in 0..<heads {
                let w = try m.attentionMap(x, query: MapQuery(row: 0, column: t, head: h)).values.scalars
                XCTAssertLessThanOrEqual(w.reduce(0, +), 1 + 1e-6)
                XCTAssertTrue(w.allSatisfy { $0 >= -1e-7 && $0 <= 1 / 9 + 1e-6 })
                for ch in (h * 2)..<(h * 2 + 2) {
                    let expected = (0..<l).reduce(Float(0)) { $0 + w[$1] * x[0, $1, ch] }
                    XCTAssertEqual(y[0, t, ch], expected, accuracy: 1e-5, "t \(t) channel \(ch)")
                }
            }
        }
        // A constant input c gives c·(window length)/K: ones in, box sums out.
        let ones = Tensor(shape: [1, l, c], repeating: 1)
        let yo = try m(ones)
        let w = try m.attentionMap(ones, query: MapQuery(row: 0, column: 5, head: 1)).values.scalars
        XCTAssertEqual(yo[0, 5, 2], w.reduce(0, +), accuracy: 1e-5)
    }

    func testDecodeIsCausal() throws {
        let l = 12, x = randomTensor([2, l, 4], seed: 2)
        let m = try Registry.make(id: "talk-conv", settings: ["decode": "true", "num_heads": "2", "min_len_left": "5"],
                                  inputShape: x.shape, seed: 1)
        let y = try m(x)
        for i in [0, 5, 10] {
            var z = x
            z.withUnsafeMutableBufferPointer { p in
                for b in 0..<2 { for t in (i + 1)..<l { for ch in 0..<4 { p[(b * l + t) * 4 + ch] += 3 } } }
            }
            let yz = try m(z)
            XCTAssertEqual(yz.sliced(axis: 1, range: 0..<(i + 1)).scalars, y.sliced(axis: 1, range: 0..<(i + 1)).scalars)
            XCTAssertGreaterThan(maxRelativeError(yz, y), 1e-3)
            let w = try m.attentionMap(x, query: MapQuery(row: 0, column: i)).values.scalars
            XCTAssertEqual(w[(i + 1)...].filter { $0 != 0 }, [])
        }
    }

    func testStrictLoadingAndErrors() throws {
        let f = try Fixture.load("talk-conv")
        var sd = f.stateDict
        sd.tensors["offsets.bias"] = nil
        sd.tensors["offsets.weight"] = Tensor(zeros: [3, 12])
        XCTAssertThrowsError(try Registry.make(id: "talk-conv", settings: f.settings, inputShape: f.input.shape, weights: sd)) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("missing keys: offsets.bias"), text)
            XCTAssertTrue(text.contains("size mismatch for offsets.weight"), text)
        }
        XCTAssertThrowsError(try Registry.make(id: "talk-conv", settings: ["num_heads": "5"], inputShape: [1, 4, 12]))
        XCTAssertThrowsError(try Registry.make(id: "talk-conv", settings: ["kernel_size": "3"], inputShape: [1, 4, 12]))
        let m = try f.makeModule()
        XCTAssertThrowsError(try m(Tensor(zeros: [1, 5, 8]))) { e in
            XCTAssertEqual("\(e)", "talk-conv: expected input N×L×12, found 1×5×8")
        }
        XCTAssertEqual(try m(randomTensor([1, 1, 12])).shape, [1, 1, 12])        // L = 1: the window is the token
        XCTAssertEqual(try m.map(onGrid: randomTensor([1, 12, 3, 5]), query: MapQuery(row: 1, column: 4)).values.shape, [1, 3, 5])
    }

    /// The vectorised prefix sums and read-out (channels split between threads when there are
    /// fewer (batch, head) problems than threads) against the definition computed here: a
    /// double-accumulated running sum (torch.cumsum on float32) and the box read-out, on widths
    /// that are not multiples of the vector length; bitwise the same at 1, 2 and 3 threads (the
    /// long sequence is long enough for the channels to be split between threads).
    func testVectorisedPrefixSumsMatchTheDefinition() throws {
        try forEachKernelISA {
            let saved = Threads.count
            defer { Threads.count = saved }
            for (n, l, c, heads, decode) in [(1, 37, 42, 2, false), (2, 19, 5, 1, false), (1, 50, 27, 3, true), (1, 9, 64, 1, false),
                                             (1, 8200, 72, 1, false)] {
                let x = randomTensor([n, l, c], seed: UInt64(c))
                let m = try Registry.make(id: "talk-conv", settings: ["num_heads": "\(heads)", "min_len_left": "4", "min_len_right": "3",
                                                                      "decode": "\(decode)"], inputShape: x.shape, seed: 3)
                let tk = try XCTUnwrap(m as? TaLKConv)
                Threads.count = 1
                let y1 = try m(x)
                for threads in [2, 3] {
                    Threads.count = threads
                    XCTAssertEqual(try m(x).scalars, y1.scalars, "\(c) channels, \(threads) threads")
                }
                let r = c / heads, k = Float(4 + 3 + 1), inv = 1 / k
                for b in 0..<n {
                    let xb = x.batchItem(b)
                    let o = try tk.predictedOffsets(xb)
                    for h in 0..<heads {
                        for ch in (h * r)..<((h + 1) * r) where l < 1000 || [0, 35, 36, 71].contains(ch) {
                            var acc = 0.0, s: [Float] = [0]                // S[-1] = 0, then S[0…L−1]
                            for t in 0..<l { acc += Double(x[b, t, ch] * inv); s.append(Float(acc)) }
                            for t in 0..<l {
                                let w = o.withUnsafeBufferPointer { tk.window($0.baseAddress!, token: t, head: h, length: l) }
                                let right = (1 - w.alphaRight) * s[w.fr + 1] + w.alphaRight * s[w.cr + 1]
                                let left = w.alphaLeft * s[w.fl] + (1 - w.alphaLeft) * s[w.cl]
                                XCTAssertEqual(y1[b, t, ch], right - left, "b \(b) t \(t) channel \(ch)")
                            }
                        }
                    }
                }
            }
        }
    }
}
