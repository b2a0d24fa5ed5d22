// Tests HalfFloat.swift: exhaustive F16/BF16 → F32, F32 → F16/BF16 rounding against the
// standard library's Float16 and a naive nearest-even reference, and against PyTorch's
// `.half()` / `.bfloat16()` of tricky values (the fixture made by Tools/reference/io_fixtures.py).

import Foundation
import TensorCore
import TestSupport
import XCTest

final class HalfFloatTests: XCTestCase {
    #if !(os(macOS) && arch(x86_64))
    func testEveryF16PatternMatchesStandardLibrary() {
        for b in 0...UInt16.max {
            let ours = HalfFloat.float(fromF16: b)
            let ref = Float(Float16(bitPattern: b))
            if ref.isNaN {
                XCTAssertTrue(ours.isNaN, "pattern \(b)")
                XCTAssertTrue(HalfFloat.f16Bits(from: ours) & 0x7E00 == 0x7E00, "NaN stays a quiet NaN")
            } else {
                XCTAssertEqual(ours.bitPattern, ref.bitPattern, "pattern \(b)")
                XCTAssertEqual(HalfFloat.f16Bits(from: ours), b, "round trip of pattern \(b)")
            }
        }
    }

    func testF32ToF16RoundsLikeStandardLibrary() {
        var g = SeededGenerator(seed: 3)
        // Random patterns, plus a dense walk of the subnormal / overflow boundaries.
        var values = (0..<300_000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: g.next())) }
        for e: UInt32 in [0x3300_0000, 0x3380_0000, 0x3800_0000, 0x3880_0000, 0x477F_E000, 0x4780_0000] {
            for d: UInt32 in 0..<5000 { values.append(Float(bitPattern: e &+ d &* 0x101)); values.append(Float(bitPattern: e &- d)) }
        }
        for v in values + values.map(-) {
            let ours = HalfFloat.f16Bits(from: v)
            let ref = Float16(v).bitPattern
            if v.isNaN { XCTAssertTrue(Float(Float16(bitPattern: ours)).isNaN); continue }
            if ours != ref { XCTFail("f16 of \(v) (0x\(String(v.bitPattern, radix: 16))): \(ours) vs \(ref)"); return }
        }
    }
    #endif

    func testBF16ExhaustiveRoundTripAndNearestEven() {
        for b in 0...UInt16.max {
            let f = HalfFloat.float(fromBF16: b)
            XCTAssertEqual(f.bitPattern, UInt32(b) << 16)
            if !f.isNaN { XCTAssertEqual(HalfFloat.bf16Bits(from: f), b) } else { XCTAssertTrue(HalfFloat.float(fromBF16: HalfFloat.bf16Bits(from: f)).isNaN) }
        }
        // Naive reference: the nearer of the two truncation neighbours, ties to the even one.
        var g = SeededGenerator(seed: 5)
        for _ in 0..<200_000 {
            let v = Float(bitPattern: UInt32(truncatingIfNeeded: g.next()))
            if v.isNaN || v.isInfinite { continue }
            let lo = UInt16(v.bitPattern >> 16), hi = lo &+ 1
            let dl = abs(Double(v) - Double(HalfFloat.float(fromBF16: lo)))
            // IEEE overflow: inf counts as 2^128 (the next step of an unbounded exponent).
            let hiValue = hi & 0x7FFF == 0x7F80 ? (v < 0 ? -0x1p128 : 0x1p128) : Double(HalfFloat.float(fromBF16: hi))
            let dh = abs(Double(v) - hiValue)
            let expected = dl < dh ? lo : dh < dl ? hi : (lo & 1 == 0 ? lo : hi)
            let ours = HalfFloat.bf16Bits(from: v)
            if ours != expected { XCTFail("bf16 of \(v): \(ours) vs \(expected)"); return }
        }
    }

    func testSpecialValues() {
        XCTAssertEqual(HalfFloat.f16Bits(from: 65504), 0x7BFF)
        XCTAssertEqual(HalfFloat.f16Bits(from: 65520), 0x7C00, "halfway past max rounds to inf")
        XCTAssertEqual(HalfFloat.f16Bits(from: 0x1p-24), 0x0001)
        XCTAssertEqual(HalfFloat.f16Bits(from: 0x1p-25), 0x0000, "tie to even: zero")
        XCTAssertEqual(HalfFloat.f16Bits(from: 0x1.8p-24), 0x0002, "tie to even: 2")
        XCTAssertEqual(HalfFloat.f16Bits(from: -0.0), 0x8000)
        XCTAssertEqual(HalfFloat.f16Bits(from: -.infinity), 0xFC00)
        XCTAssertEqual(HalfFloat.float(fromF16: 0x0001), 0x1p-24)
        XCTAssertEqual(HalfFloat.float(fromF16: 0x03FF), 0x1.ff8p-15)
        XCTAssertTrue(HalfFloat.float(fromF16: 0x7E00).isNaN)
        XCTAssertEqual(HalfFloat.bf16Bits(from: .infinity), 0x7F80)
        XCTAssertEqual(HalfFloat.bf16Bits(from: .greatestFiniteMagnitude), 0x7F80, "rounds to inf as torch does")
        XCTAssertEqual(HalfFloat.float(fromBF16: 0x0001), Float(bitPattern: 0x0001_0000), "bf16 subnormal")
    }

    /// PyTorch's own `.half()` and `.bfloat16()` of the same float32 values.
    func testMatchesTorchRounding() throws {
        let sd = try SafeTensors.read(contentsOf: fixturesDirectory().appendingPathComponent("io-state.safetensors"))
        let f32 = try XCTUnwrap(sd["rounding.f32"]).scalars
        let f16 = try XCTUnwrap(sd["rounding.f16"]).scalars
        let bf16 = try XCTUnwrap(sd["rounding.bf16"]).scalars
        XCTAssertEqual(f32.count, 35)
        for i in f32.indices {
            if f32[i].isNaN {
                XCTAssertTrue(f16[i].isNaN && bf16[i].isNaN)
                continue
            }
            XCTAssertEqual(HalfFloat.float(fromF16: HalfFloat.f16Bits(from: f32[i])).bitPattern, f16[i].bitPattern, "f16 of \(f32[i])")
            XCTAssertEqual(HalfFloat.float(fromBF16: HalfFloat.bf16Bits(from: f32[i])).bitPattern, bf16[i].bitPattern, "bf16 of \(f32[i])")
        }
    }
}
