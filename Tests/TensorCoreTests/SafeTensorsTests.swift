// Tests SafeTensors.swift: the Python-made fixture (safetensors.torch.save_file), round trips,
// one malformed file per validation rule (each with its reason), and seeded random mutations.

import Foundation
import TensorCore
import TestSupport
import XCTest

/// Builds a safetensors file from a header text and data bytes (length prefix computed).
func safetensorsBytes(_ header: String, _ data: [UInt8] = [], claimedLength: UInt64? = nil) -> Data {
    let h = Array(header.utf8)
    var out = Data()
    withUnsafeBytes(of: (claimedLength ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
    out.append(contentsOf: h)
    out.append(contentsOf: data)
    return out
}

/// Asserts that `body` throws `WeightsError.malformed` whose reason contains `expected`.
func assertMalformed<T>(_ expected: String, file: StaticString = #filePath, line: UInt = #line,
                        _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("expected an error containing “\(expected)”, got success", file: file, line: line)
    } catch let WeightsError.malformed(_, reason) {
        XCTAssertTrue(reason.contains(expected), "reason “\(reason)” lacks “\(expected)”", file: file, line: line)
    } catch {
        XCTFail("expected WeightsError.malformed, got \(error)", file: file, line: line)
    }
}

final class SafeTensorsTests: XCTestCase {
    func testReadsPythonFixture() throws {
        let url = fixturesDirectory().appendingPathComponent("io-state.safetensors")
        let sd = try SafeTensors.read(contentsOf: url)
        XCTAssertEqual(sd.keys.count, 13)
        XCTAssertEqual(sd.metadata, ["format": "pt", "note": "fixture ünïcode \"quoted\""])

        let w = try XCTUnwrap(sd["conv.weight"])
        XCTAssertEqual(w.shape, [2, 3])
        XCTAssertEqual(w.scalars, [-0.5, -0.25, 0, 0.25, 0.5, 0.75])
        XCTAssertEqual(sd.dtypes["conv.weight"], "F32")

        let half = try XCTUnwrap(sd["half"])
        XCTAssertEqual(sd.dtypes["half"], "F16")
        XCTAssertEqual(half.shape, [2, 3])
        XCTAssertEqual(Array(half.scalars.prefix(5)), [1, -2.5, 65504, 0x1p-24, .infinity])
        XCTAssertEqual(half.scalars[5].bitPattern, (-0.0 as Float).bitPattern)

        XCTAssertEqual(sd["bf"]?.scalars, [1, -3.140625, HalfFloat.float(fromBF16: HalfFloat.bf16Bits(from: 1e30)), 0x1p-130])
        XCTAssertEqual(sd.dtypes["bf"], "BF16")
        XCTAssertEqual(sd["double"]?.scalars, [0.1, -.infinity, 0, 7])
        XCTAssertEqual(sd.dtypes["double"], "F64")

        let n = try XCTUnwrap(sd["bn.num_batches_tracked"])
        XCTAssertEqual(n.shape, [])
        XCTAssertEqual(n.scalars, [1_234_567])
        XCTAssertEqual(sd.dtypes["bn.num_batches_tracked"], "I64")
        XCTAssertEqual(sd["gamma.scale"]?.shape, [])
        XCTAssertEqual(sd["gamma.scale"]?.scalars, [0.5])
        XCTAssertEqual(sd["mem_key"]?.shape, [2, 0, 3])
        XCTAssertEqual(sd["mem_key"]?.count, 0)
        XCTAssertEqual(sd["kmeans.initted"]?.scalars, [1, 0, 1])
        XCTAssertEqual(sd.dtypes["kmeans.initted"], "BOOL")
        XCTAssertEqual(sd["ints"]?.scalars, [-7, 0, 7])
        XCTAssertEqual(sd.dtypes["ints"], "I32")
        XCTAssertEqual(sd["bytes"]?.scalars, [0, 128, 255])
        XCTAssertEqual(sd.dtypes["bytes"], "U8")
    }

    func testRoundTrip() throws {
        var sd = StateDict(metadata: ["format": "pt", "quote\"back\\slash": "new\nline\u{1}ü"])
        sd["a.weight"] = randomTensor([3, 4, 5], seed: 7)
        sd["b"] = Tensor(scalar: -0.0)
        sd["empty"] = Tensor(zeros: [4, 0])
        sd["key with \"quotes\" and ünï"] = Tensor(shape: [2], scalars: [.infinity, .nan])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("w.safetensors")
        try SafeTensors.write(sd, to: url)
        try SafeTensors.write(sd, to: url)  // overwriting is fine
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["w.safetensors"])

        let back = try SafeTensors.read(contentsOf: url)
        XCTAssertEqual(back.keys, sd.keys)
        XCTAssertEqual(back.metadata, sd.metadata)
        for k in sd.keys {
            XCTAssertEqual(back[k]?.shape, sd[k]?.shape, k)
            XCTAssertEqual(back[k]?.scalars.map(\.bitPattern), sd[k]?.scalars.map(\.bitPattern), k)
            XCTAssertEqual(back.dtypes[k], "F32")
        }
        let bytes = try Data(contentsOf: url)
        let n = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(n % 8, 0, "header length is a multiple of 8")
        XCTAssertEqual(SafeTensors.encode(sd), bytes, "encoding is deterministic")
    }

    func testWriteRefusesReservedNameAndLeavesNoFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("w.safetensors")
        assertMalformed("reserved") { try SafeTensors.write(StateDict(tensors: ["__metadata__": Tensor(scalar: 1)]), to: url) }
        assertMalformed("cannot write") {
            try SafeTensors.write(StateDict(), to: dir.appendingPathComponent("missing/dir/w.safetensors"))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    func testFileLevelErrors() throws {
        assertMalformed("cannot read the file") {
            try SafeTensors.read(contentsOf: URL(fileURLWithPath: "/nonexistent/x.safetensors"))
        }
        let url = fixturesDirectory().appendingPathComponent("io-state.safetensors")
        assertMalformed("over the limit of") { try SafeTensors.read(contentsOf: url, maxBytes: 100) }
        assertMalformed("is a directory") { try SafeTensors.read(contentsOf: fixturesDirectory()) }
    }

    func testEmptyStateDict() throws {
        let sd = try SafeTensors.read(data: SafeTensors.encode(StateDict()), name: "e")
        XCTAssertTrue(sd.tensors.isEmpty)
        XCTAssertEqual(try SafeTensors.read(data: safetensorsBytes("{}  "), name: "e").keys, [])
    }

    /// One file per validation rule, each refused with the reason a user needs.
    func testMalformedMatrix() {
        func read(_ d: Data) throws -> StateDict { try SafeTensors.read(data: d, name: "bad.safetensors") }
        let f32x6 = [UInt8](repeating: 0, count: 24)
        let entry = #"{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}"#

        assertMalformed("file is empty (0 bytes)") { try read(Data()) }
        assertMalformed("file is only 5 bytes") { try read(Data([1, 2, 3, 4, 5])) }
        assertMalformed("safetensors header length 1000 exceeds the file size (20 bytes)") {
            try read(safetensorsBytes("{}", [UInt8](repeating: 32, count: 10), claimedLength: 1000))
        }
        assertMalformed("header claims 1073741824 bytes, over the 100 MB limit") {
            try read(safetensorsBytes("{}", claimedLength: 1 << 30))
        }
        assertMalformed("header claims 18446744073709551615 bytes") { try read(safetensorsBytes("{}", claimedLength: .max)) }
        assertMalformed("header is not valid JSON") { try read(safetensorsBytes(#"{"w": "#)) }
        assertMalformed("header is not valid JSON: string is not valid UTF-8") {
            var d = safetensorsBytes(#"{"ab":{}}"#)
            d[10] = 0xFF
            return try read(d)
        }
        assertMalformed("header is not valid JSON: nested deeper than 64 levels") {
            try read(safetensorsBytes(String(repeating: "[", count: 100_000)))
        }
        assertMalformed("header is not valid JSON: unexpected content") { try read(safetensorsBytes("{}{}")) }
        assertMalformed("header is not valid JSON") { try read(safetensorsBytes("{}\0\0\0")) }
        assertMalformed("header is not a JSON object (found an array)") { try read(safetensorsBytes("[1, 2]")) }
        assertMalformed("tensor 'w': missing 'dtype'") {
            try read(safetensorsBytes(#"{"w":{"shape":[2,3],"data_offsets":[0,24]}}"#, f32x6))
        }
        assertMalformed("tensor 'w': missing 'shape'") {
            try read(safetensorsBytes(#"{"w":{"dtype":"F32","data_offsets":[0,24]}}"#, f32x6))
        }
        assertMalformed("tensor 'w': missing 'data_offsets'") {
            try read(safetensorsBytes(#"{"w":{"dtype":"F32","shape":[2,3]}}"#, f32x6))
        }
        assertMalformed("tensor 'w': entry is an array") { try read(safetensorsBytes(#"{"w":[]}"#)) }
        assertMalformed("tensor 'w': duplicate field 'dtype'") {
            try read(safetensorsBytes(#"{"w":{"dtype":"F32","dtype":"F16","shape":[2,3],"data_offsets":[0,24]}}"#, f32x6))
        }
        assertMalformed("tensor 'x': unknown dtype 'Q4'") {
            try read(safetensorsBytes(#"{"x":{"dtype":"Q4","shape":[2,3],"data_offsets":[0,24]}}"#, f32x6))
        }
        assertMalformed("tensor 'x': dtype 'F8_E4M3' (sub-byte or 8-bit float) is not supported") {
            try read(safetensorsBytes(#"{"x":{"dtype":"F8_E4M3","shape":[2,3],"data_offsets":[0,6]}}"#, [UInt8](repeating: 0, count: 6)))
        }
        assertMalformed("tensor 'w': shape dimension -3 is negative") {
            try read(safetensorsBytes(#"{"w":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,24]}}"#, f32x6))
        }
        assertMalformed("tensor 'w': shape dimension 3.0 is not an integer") {
            try read(safetensorsBytes(#"{"w":{"dtype":"F32","shape":[2,3.0],"data_offsets":[0,24]}}"#, f32x6))
        }
        assertMalformed("tensor 'w': shape dimension 99999999999999999999999 is too large") {
            try read(safetensorsBytes(#"{"w":{"dtype":"F32","shape":[99999999999999999999999],"data_offsets":[0,24]}}"#, f32x6))
        }
        assertMalformed("tensor 'w': shape 4294967296×4294967296×16 is too large") {
            try read(safetensorsBytes(#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,24]}}"#, f32x6))
        }
        assertMalformed("tensor 'w': shape 0×4294967296×4294967296 is too large") {
            try read(safetensorsBytes(#"{"w":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}"#))
        }
        assertMalformed("tensor 'conv.weight': data offsets [0, 100) but shape 2×3 × F32 needs 24 bytes") {
            try read(safetensorsBytes(#"{"conv.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,100]}}"#,
                                      [UInt8](repeating: 0, count: 100)))
        }
        assertMalformed("tensor 'w': data offsets [24, 0) end before they begin") {
            try read(safetensorsBytes(#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[24,0]}}"#, f32x6))
        }
        assertMalformed("tensor 'w': 'data_offsets' must be an array of two integers") {
            try read(safetensorsBytes(#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24,48]}}"#, f32x6))
        }
        assertMalformed("tensor 'a': offsets [16, 40) overlap tensor 'b' [0, 24)") {
            try read(safetensorsBytes(#"{"a":{"dtype":"F32","shape":[6],"data_offsets":[16,40]},"b":\#(entry)}"#,
                                      [UInt8](repeating: 0, count: 40)))
        }
        assertMalformed("tensor 'w': offsets [0, 9999) past the end of the data section (120 bytes)") {
            try read(safetensorsBytes(#"{"w":{"dtype":"U8","shape":[9999],"data_offsets":[0,9999]}}"#,
                                      [UInt8](repeating: 0, count: 120)))
        }
        assertMalformed("duplicate key 'w' in header") {
            try read(safetensorsBytes(#"{"w":\#(entry),"w":\#(entry)}"#, f32x6))
        }
        assertMalformed("24 trailing bytes belong to no tensor") {
            try read(safetensorsBytes(#"{"w":\#(entry)}"#, f32x6 + f32x6))
        }
        assertMalformed("tensor 'b': offsets [32, 56) leave bytes [24, 32) unused after tensor 'a'") {
            try read(safetensorsBytes(#"{"a":\#(entry),"b":{"dtype":"F32","shape":[6],"data_offsets":[32,56]}}"#,
                                      [UInt8](repeating: 0, count: 56)))
        }
        assertMalformed("leave bytes [0, 8) unused at the start") {
            try read(safetensorsBytes(#"{"b":{"dtype":"F32","shape":[6],"data_offsets":[8,32]}}"#,
                                      [UInt8](repeating: 0, count: 32)))
        }
        assertMalformed("'__metadata__' value of 'n' is a number") {
            try read(safetensorsBytes(#"{"__metadata__":{"n":1}}"#))
        }
        assertMalformed("'__metadata__' must be an object") { try read(safetensorsBytes(#"{"__metadata__":[]}"#)) }
    }

    func testAcceptsSpecCorners() throws {
        // Padding spaces, unknown entry fields, null metadata, zero-size tensors sharing an offset.
        let h = #"{"__metadata__":null,"z":{"dtype":"I64","shape":[0],"data_offsets":[0,0],"extra":[1]},"#
            + #""s":{"dtype":"F16","shape":[],"data_offsets":[0,2]},"e":{"dtype":"BF16","shape":[3,0],"data_offsets":[2,2]}}    "#
        let sd = try SafeTensors.read(data: safetensorsBytes(h, [0x00, 0x3C]), name: "ok")
        XCTAssertEqual(sd["s"]?.scalars, [1])
        XCTAssertEqual(sd["z"]?.shape, [0])
        XCTAssertEqual(sd["e"]?.shape, [3, 0])
        XCTAssertEqual(sd.dtypes["e"], "BF16")
    }

    /// Thousands of seeded mutations of valid files: every outcome is a state dict or a
    /// `WeightsError.malformed`, never a crash (the libFuzzer target does the same, longer).
    func testRandomMutationsNeverCrash() throws {
        var sd = StateDict(metadata: ["k": "v"])
        sd["a"] = randomTensor([2, 3])
        sd["b"] = Tensor(scalar: 2)
        sd["c"] = Tensor(zeros: [0, 4])
        let fixture = try Data(contentsOf: fixturesDirectory().appendingPathComponent("io-state.safetensors"))
        let seeds = [SafeTensors.encode(sd), fixture]
        var g = SeededGenerator(seed: 42)
        var accepted = 0
        for iteration in 0..<3000 {
            var d = [UInt8](seeds[iteration % 2])
            let headerLength = Int(d[0]) + Int(d[1]) << 8
            for _ in 0...g.nextInt(below: 4) {
                if d.count < 16 { break }
                let headerEnd = max(9, min(d.count, 8 + headerLength))
                switch g.nextInt(below: 6) {
                case 0, 1:  // a byte in the header (most rules live there)
                    d[8 + g.nextInt(below: headerEnd - 8)] = UInt8(truncatingIfNeeded: g.next())
                case 2:  // a digit or bracket swapped in the header
                    let i = 8 + g.nextInt(below: headerEnd - 8)
                    d[i] = Array("0123456789-[]{},\"e.".utf8)[g.nextInt(below: 19)]
                case 3: d[g.nextInt(below: d.count)] = UInt8(truncatingIfNeeded: g.next())
                case 4: d.removeLast(g.nextInt(below: min(d.count, 64) + 1))
                default: d[g.nextInt(below: 8)] = UInt8(truncatingIfNeeded: g.next())
                }
            }
            do {
                _ = try SafeTensors.read(data: Data(d), name: "fuzz")
                accepted += 1
            } catch is WeightsError {
            } catch {
                XCTFail("unexpected error type \(error)")
            }
        }
        XCTAssertGreaterThan(accepted, 0, "some mutations (e.g. in values or metadata) stay valid")
    }
}
