// Tests NPY.swift: numpy-written fixtures (dtypes, byte orders, C and Fortran order, versions
// 1.0/2.0/3.0), round trips, malformed headers and data, and seeded random mutations.

import Foundation
import TensorCore
import TestSupport
import XCTest

/// Builds an .npy file from a header dict text (padding and length computed) and data bytes.
func npyBytes(_ dict: String, _ data: [UInt8] = [], major: UInt8 = 1) -> Data {
    var h = Array(dict.utf8)
    let pre = major == 1 ? 10 : 12
    while (pre + h.count + 1) % 64 != 0 { h.append(0x20) }
    h.append(0x0A)
    var out = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, major, 0])
    if major == 1 {
        withUnsafeBytes(of: UInt16(h.count).littleEndian) { out.append(contentsOf: $0) }
    } else {
        withUnsafeBytes(of: UInt32(h.count).littleEndian) { out.append(contentsOf: $0) }
    }
    out.append(contentsOf: h)
    out.append(contentsOf: data)
    return out
}

final class NPYTests: XCTestCase {
    func fixture(_ name: String) throws -> Tensor {
        try NPY.read(contentsOf: fixturesDirectory().appendingPathComponent(name))
    }

    let a23: [Float] = [-0.5, -0.25, 0, 0.25, 0.5, 0.75]

    func testReadsNumpyFixtures() throws {
        for name in ["f4-c.npy", "f8-c.npy", "f4-big-endian.npy", "f8-big-endian.npy", "f8-fortran.npy",
                     "f4-v2.npy", "f4-v3.npy"] {
            let t = try fixture(name)
            XCTAssertEqual(t.shape, [2, 3], name)
            XCTAssertEqual(t.scalars, a23, name)
        }
        XCTAssertEqual(try fixture("f2-c.npy").scalars, [1, -2.5, 65504, 0x1p-24])
        let zeroD = try fixture("f4-0d.npy")
        XCTAssertEqual(zeroD.shape, [])
        XCTAssertEqual(zeroD.scalars, [3.5])
        let fourD = try fixture("f4-4d.npy")
        XCTAssertEqual(fourD.shape, [2, 1, 3, 2])
        XCTAssertEqual(fourD.scalars, (0..<12).map { Float($0 - 5) })
        XCTAssertEqual(try fixture("i8.npy").scalars, [-3, 0, 0x1p40])
        XCTAssertEqual(try fixture("i4.npy").scalars, [-1, 2, 3, -4])
        XCTAssertEqual(try fixture("u1.npy").scalars, [0, 7, 255])
    }

    func testFortranOrderIsTransposedToRowMajor() throws {
        let t = try fixture("f4-fortran.npy")  // np.asfortranarray(np.arange(24).reshape(2, 3, 4))
        XCTAssertEqual(t.shape, [2, 3, 4])
        XCTAssertEqual(t.scalars, (0..<24).map(Float.init))
        // Hand-made: column-major 2×3 holding [[1, 2, 3], [4, 5, 6]] is stored 1 4 2 5 3 6.
        let stored: [Float] = [1, 4, 2, 5, 3, 6]
        let bytes = stored.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
        let h = try NPY.read(data: npyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", bytes), name: "f")
        XCTAssertEqual(h.scalars, [1, 2, 3, 4, 5, 6])
    }

    func testRoundTrip() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("npy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for shape in [[], [5], [2, 3], [1, 2, 3, 4], [3, 0, 2]] {
            let t = randomTensor(shape, seed: UInt64(shape.count))
            let url = dir.appendingPathComponent("t.npy")
            try NPY.write(t, to: url)
            let back = try NPY.read(contentsOf: url)
            XCTAssertEqual(back.shape, shape)
            XCTAssertEqual(back.scalars, t.scalars)
            let bytes = try Data(contentsOf: url)
            XCTAssertEqual(bytes[6], 1, "version 1.0")
            XCTAssertEqual((bytes.count - t.count * 4) % 64, 0, "header aligned to 64 bytes")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["t.npy"])
        // A rank too long for a 2-byte header length switches to version 2.0.
        let wide = Tensor(zeros: [Int](repeating: 1, count: 64))
        let enc = NPY.encode(wide)
        XCTAssertEqual(enc[6], 1)  // 64 dims still fit v1.0
        XCTAssertEqual(try NPY.read(data: enc, name: "w").shape, wide.shape)
        let huge = NPY.encode(Tensor(zeros: [Int](repeating: 1, count: 25_000)))  // header > 65535 bytes
        XCTAssertEqual(huge[6], 2, "version 2.0")
        XCTAssertEqual((huge.count - 4) % 64, 0)
        assertMalformed("more than 64 dimensions") { try NPY.read(data: huge, name: "h") }
    }

    func testMalformedMatrix() {
        func read(_ d: Data) throws -> Tensor { try NPY.read(data: d, name: "bad.npy") }
        let f32x6 = [UInt8](repeating: 0, count: 24)
        assertMalformed("npy: not an .npy file (bad magic)") { try read(Data()) }
        assertMalformed("npy: not an .npy file (bad magic)") { try read(Data("PK\u{3}\u{4} zip file".utf8)) }
        assertMalformed("npy: file is truncated inside the preamble") { try read(Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1])) }
        assertMalformed("npy: unsupported format version 4.0") {
            var d = npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", f32x6)
            d[6] = 4
            return try read(d)
        }
        assertMalformed("npy: header length 65535 exceeds the file size") {
            var d = npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", f32x6)
            d[8] = 0xFF; d[9] = 0xFF
            return try read(d)
        }
        assertMalformed("npy: header is not a valid dict literal: expected ':'") {
            try read(npyBytes("{'descr' '<f4', 'fortran_order': False, 'shape': (6,), }", f32x6))
        }
        assertMalformed("npy: header is not a valid dict literal") { try read(npyBytes("not a dict", f32x6)) }
        assertMalformed("npy: header is not a valid dict literal: control character in a string") {
            try read(npyBytes("{'descr': '<f4", f32x6))
        }
        assertMalformed("npy: header lacks 'shape'") { try read(npyBytes("{'descr': '<f4', 'fortran_order': False}", f32x6)) }
        assertMalformed("npy: header has unexpected key 'x'") {
            try read(npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': True}", f32x6))
        }
        assertMalformed("npy: header has the key 'shape' twice") {
            try read(npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'shape': (6,)}", f32x6))
        }
        assertMalformed("npy: 'fortran_order' must be True or False") {
            try read(npyBytes("{'descr': '<f4', 'fortran_order': 'no', 'shape': (6,)}", f32x6))
        }
        assertMalformed("npy: unsupported dtype '<c8'") {
            try read(npyBytes("{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", f32x6))
        }
        assertMalformed("npy: unsupported dtype '|O'") { try read(npyBytes("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", f32x6)) }
        assertMalformed("structured dtypes") {
            try read(npyBytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", f32x6))
        }
        assertMalformed("npy: data is truncated: shape 2×3 float32 needs 24 bytes, file has 10") {
            try read(npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", [UInt8](repeating: 0, count: 10)))
        }
        assertMalformed("npy: shape 4294967296×4294967296×16 is too large") {
            try read(npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }"))
        }
        assertMalformed("dimension too large") {
            try read(npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }"))
        }
        assertMalformed("negative dimension") {
            try read(npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", f32x6))
        }
        assertMalformed("more than 64 dimensions") {
            let dims = [String](repeating: "1", count: 100).joined(separator: ", ")
            return try read(npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }", f32x6))
        }
    }

    func testAcceptsNumpyVariants() throws {
        let two: [UInt8] = [0x00, 0x3C, 0x00, 0xC0]  // F16 1, -2
        XCTAssertEqual(try NPY.read(data: npyBytes(#"{"descr": "<f2", "fortran_order": False, "shape": (2L,)}"#, two), name: "p").scalars, [1, -2])
        XCTAssertEqual(try NPY.read(data: npyBytes("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", two + [9, 9], major: 3), name: "t").scalars, [1, -2])
        XCTAssertEqual(try NPY.read(data: npyBytes("{'descr': '|b1', 'fortran_order': False, 'shape': (3, 0), }"), name: "z").shape, [3, 0])
    }

    func testRandomMutationsNeverCrash() throws {
        let seeds = [NPY.encode(randomTensor([2, 3, 2])),
                     try Data(contentsOf: fixturesDirectory().appendingPathComponent("f4-fortran.npy")),
                     try Data(contentsOf: fixturesDirectory().appendingPathComponent("f8-big-endian.npy"))]
        var g = SeededGenerator(seed: 7)
        var accepted = 0
        for iteration in 0..<3000 {
            var d = [UInt8](seeds[iteration % seeds.count])
            for _ in 0...g.nextInt(below: 4) {
                if d.count < 12 { break }
                let headerEnd = min(d.count, 10 + Int(d[8]) + Int(d[9]) << 8)
                switch g.nextInt(below: 5) {
                case 0, 1: d[6 + g.nextInt(below: max(1, headerEnd - 6))] = UInt8(truncatingIfNeeded: g.next())
                case 2: d[10 + g.nextInt(below: max(1, headerEnd - 10))] = Array("0123456789-(),'TF<>|fiu".utf8)[g.nextInt(below: 23)]
                case 3: d.removeLast(g.nextInt(below: min(d.count, 40) + 1))
                default: d[g.nextInt(below: d.count)] = UInt8(truncatingIfNeeded: g.next())
                }
            }
            do {
                _ = try NPY.read(data: Data(d), name: "fuzz")
                accepted += 1
            } catch is WeightsError {
            } catch {
                XCTFail("unexpected error type \(error)")
            }
        }
        XCTAssertGreaterThan(accepted, 0)
    }
}
