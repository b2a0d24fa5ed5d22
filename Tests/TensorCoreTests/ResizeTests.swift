// Tests of Resize.swift: table-driven resize against per-element indices, and values torch gives.

import TensorCore
import TestSupport
import XCTest

final class ResizeTests: XCTestCase {
    let x = randomTensor([2, 3, 7, 5], seed: 21)

    func testFastMatchesNaiveForEveryModeAndSize() throws {
        for size in [(14, 10), (3, 2), (7, 5), (11, 13), (1, 1), (5, 9)] {
            for mode in InterpolationMode.allCases {
                for align in mode == .bilinear ? [false, true] : [false] {
                    let y = try interpolate(x, size: size, mode: mode, alignCorners: align)
                    let ref = interpolateNaive(x, size: size, mode: mode, alignCorners: align)
                    assertClose(y, ref, rtol: 1e-6, "\(mode) \(size) align=\(align)")
                }
            }
        }
    }

    func testScaleFactorUsesReciprocalScale() throws {
        for mode in InterpolationMode.allCases {
            let y = try interpolate(x, scaleFactor: (1.5, 0.7), mode: mode)
            XCTAssertEqual(y.shape, [2, 3, 10, 3])
            assertClose(y, interpolateNaive(x, size: (10, 3), scaleFactor: (1.5, 0.7), mode: mode), rtol: 1e-6, "\(mode)")
        }
    }

    /// Values from torch 2.x: F.interpolate(tensor([[[[1.,2.],[3.,4.]]]]), ...).
    func testKnownTorchValues() throws {
        let t = Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 3, 4])
        let b = try interpolate(t, size: (4, 4), mode: .bilinear)
        XCTAssertEqual(b.scalars, [1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4])
        let a = try interpolate(t, size: (3, 3), mode: .bilinear, alignCorners: true)
        XCTAssertEqual(a.scalars, [1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4])
        let n = try interpolate(Tensor(shape: [1, 1, 1, 2], scalars: [1, 2]), size: (1, 5), mode: .nearest)
        XCTAssertEqual(n.scalars, [1, 1, 1, 2, 2])
        let e = try interpolate(Tensor(shape: [1, 1, 1, 2], scalars: [1, 2]), size: (1, 5), mode: .nearestExact)
        XCTAssertEqual(e.scalars, [1, 1, 2, 2, 2])
        let d = try interpolate(t, scaleFactor: 2, mode: .nearest)
        XCTAssertEqual(d.scalars, [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
    }

    func testIdentitySizeIsACopy() throws {
        assertClose(try interpolate(x, size: (7, 5), mode: .bilinear), x, rtol: 0)
        assertClose(try interpolate(x, size: (7, 5), mode: .nearest), x, rtol: 0)
    }

    func testInvalidResizeThrows() {
        XCTAssertThrowsError(try interpolate(x, size: (0, 3), mode: .bilinear))
        XCTAssertThrowsError(try interpolate(x, size: (3, 3), mode: .nearest, alignCorners: true))
        XCTAssertThrowsError(try interpolate(x.reshaped([6, 7, 5]), size: (3, 3)))
        XCTAssertThrowsError(try interpolate(x, scaleFactor: -1))
    }
}
