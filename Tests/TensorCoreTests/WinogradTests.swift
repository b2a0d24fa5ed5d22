// Tests of Winograd.swift: conv2d's F(4×4, 3×3) path against the direct definition on odd
// shapes (partial tiles, padding 0..2, odd channel counts, batch 2, several chunks, threads),
// for every instantiation of the C transforms this CPU can run.

import TensorCore
import TestSupport
import XCTest

final class WinogradTests: XCTestCase {
    /// conv2d (taking the Winograd path: 3×3, stride 1, C, O ≥ 8) against conv2dNaive, and the
    /// prepared-weights entry point against both.
    func check(n: Int = 2, c: Int, o: Int, h: Int, w: Int, padding: Int, bias: Bool = true, scale: Float = 1,
               rtol: Float = 1e-5, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = randomTensor([n, c, h, w], seed: 11)
        let wt = randomTensor([o, c, 3, 3], seed: 12) * scale
        let b = bias ? randomTensor([o], seed: 13) : nil
        let label = "n=\(n) c=\(c) o=\(o) \(h)×\(w) p=\(padding) bias=\(bias)"
        let ref = try conv2dNaive(x, weight: wt, bias: b, padding: (padding, padding))
        let y = try conv2d(x, weight: wt, bias: b, padding: (padding, padding))
        assertClose(y, ref, rtol: rtol, label, file: file, line: line)
        let prepared = try conv2d(x, winograd: try WinogradConv3x3(weight: wt), bias: b, padding: (padding, padding))
        assertClose(prepared, ref, rtol: rtol, label + " (prepared)", file: file, line: line)
    }

    func forEveryISA(_ body: () throws -> Void) rethrows {
        for isa in KernelISA.available {
            try KernelISA.limited(to: isa) {
                XCTAssertEqual(KernelISA.current, isa)
                try body()
            }
        }
    }

    func testOddShapesMatchNaive() throws {
        try forEveryISA {
            for (h, w) in [(7, 5), (13, 10), (4, 4), (3, 3), (9, 17), (6, 70), (5, 32)] {   // 70: a run of 16 whole tiles
                for p in [0, 1, 2] {
                    try check(c: 9, o: 11, h: h, w: w, padding: p, bias: (h + p) % 2 == 0)
                }
            }
            try check(n: 1, c: 8, o: 8, h: 1, w: 1, padding: 1)       // one partial tile
            try check(n: 1, c: 33, o: 17, h: 6, w: 23, padding: 1, bias: false)
        }
    }

    /// Many chunks of tiles, the last one partial and not a multiple of the 16 lanes.
    func testChunkedImageMatchesNaive() throws {
        let saved = Winograd.chunkBytes
        defer { Winograd.chunkBytes = saved }
        Winograd.chunkBytes = 36 * (9 + 11) * 4 * 32    // 32 tiles per chunk
        try check(c: 9, o: 11, h: 37, w: 38, padding: 1)
        Winograd.chunkBytes = 1                          // at least 16 tiles
        try check(n: 1, c: 9, o: 11, h: 21, w: 19, padding: 0)
    }

    /// Realistic magnitudes (PyTorch-default weights, ~1/√(9C)) with a wide reduction.
    func testWideChannelsStayWithinTolerance() throws {
        let c = 256
        try check(n: 1, c: c, o: 9, h: 12, w: 11, padding: 1, scale: 1 / Float(3 * c).squareRoot())
    }

    func testTwoThreadsMatchOne() throws {
        let saved = Threads.count
        defer { Threads.count = saved }
        Threads.count = 2
        try check(c: 16, o: 24, h: 19, w: 18, padding: 1)
    }

    func testDisabledFallsBackToIm2col() throws {
        Winograd.enabled = false
        defer { Winograd.enabled = true }
        try check(c: 9, o: 11, h: 7, w: 5, padding: 1)
    }

    func testPreparedWeightsCheckShapes() throws {
        XCTAssertThrowsError(try WinogradConv3x3(weight: Tensor(zeros: [4, 2, 5, 5])))
        let w = try WinogradConv3x3(weight: Tensor(zeros: [4, 2, 3, 3]))
        XCTAssertThrowsError(try conv2d(Tensor(zeros: [1, 3, 5, 5]), winograd: w))
        XCTAssertThrowsError(try conv2d(Tensor(zeros: [1, 2, 5, 5]), winograd: w, bias: Tensor(zeros: [3])))
        XCTAssertEqual(try conv2d(Tensor(zeros: [1, 2, 5, 5]), winograd: w, padding: (1, 1)).shape, [1, 4, 5, 5])
    }
}
