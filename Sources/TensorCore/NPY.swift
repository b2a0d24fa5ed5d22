// Reading and writing NumPy .npy files (feature dumps: `np.save("feats.npy", x)`).
//
// Follows the NumPy format specification (numpy.lib.format, NEP 1): the magic "\x93NUMPY", a
// major.minor version (1.0: 2-byte header length; 2.0: 4-byte; 3.0: 4-byte, UTF-8 header), then a
// Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...)} padded with spaces and
// a newline, then the raw array data.
//
// Read: descr '<f4' '<f8' '<f2' (and big-endian '>'), integers i1/i2/i4/i8, u1/u2/u4/u8 and b1,
// converted to float32; C order as is, Fortran order transposed into row-major. The header
// must hold exactly the three keys (as numpy requires); bytes after the data are ignored (as
// numpy does). Write: float32 little-endian, C order, version 1.0 (2.0 when the header is too
// long for a 2-byte length), header padded to a multiple of 64 bytes like numpy.

import Foundation

public enum NPY {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY

    public static func read(contentsOf url: URL) throws -> Tensor {
        let data = try FileAccess.read(url, maxBytes: .max)
        return try read(data: data, name: url.path)
    }

    /// Parses .npy bytes; `name` is used in error messages (a path or a label).
    public static func read(data: Data, name: String) throws -> Tensor {
        try data.withUnsafeBytes { raw in try NPYParser(raw: raw, name: name).parse() }
    }

    /// Writes `t` as float32 C-order .npy, atomically (temporary file renamed over `url`).
    public static func write(_ t: Tensor, to url: URL) throws {
        try FileAccess.writeAtomically(encode(t), to: url)
    }

    /// The .npy bytes of `t`: '<f4', C order, version 1.0 (2.0 if the header needs it).
    public static func encode(_ t: Tensor) -> Data {
        let shape = t.shape.count == 1 ? "(\(t.shape[0]),)" : "(" + t.shape.map(String.init).joined(separator: ", ") + ")"
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }"
        var header = Array(dict.utf8)
        // Preamble (magic 6 + version 2 + length 2 or 4) + header + "\n" is a multiple of 64.
        var lengthBytes = 2
        func pad(_ h: [UInt8], _ lb: Int) -> [UInt8] {
            let used = 8 + lb + h.count + 1
            return h + [UInt8](repeating: 0x20, count: (64 - used % 64) % 64) + [0x0A]
        }
        var padded = pad(header, lengthBytes)
        if padded.count > Int(UInt16.max) {
            lengthBytes = 4
            padded = pad(header, lengthBytes)
        }
        header = padded
        var out = Data(capacity: 8 + lengthBytes + header.count + t.count * 4)
        out.append(contentsOf: magic)
        out.append(contentsOf: [lengthBytes == 2 ? 1 : 2, 0])
        if lengthBytes == 2 {
            withUnsafeBytes(of: UInt16(header.count).littleEndian) { out.append(contentsOf: $0) }
        } else {
            withUnsafeBytes(of: UInt32(header.count).littleEndian) { out.append(contentsOf: $0) }
        }
        out.append(contentsOf: header)
        t.withUnsafeBufferPointer { p in
            #if _endian(little)
            out.append(UnsafeBufferPointer(start: p.baseAddress, count: p.count))
            #else
            for v in p { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            #endif
        }
        return out
    }
}

/// One pass over untrusted .npy bytes.
private struct NPYParser {
    let raw: UnsafeRawBufferPointer
    let name: String

    func bad(_ reason: String) -> WeightsError { .malformed(path: name, reason: "npy: " + reason) }

    func parse() throws -> Tensor {
        let total = raw.count
        guard total >= 6, raw.prefix(6).elementsEqual(NPY.magic) else {
            throw bad("not an .npy file (bad magic)")
        }
        guard total >= 8 else { throw bad("file is truncated inside the preamble (\(total) bytes)") }
        let (major, minor) = (raw[6], raw[7])
        guard (1...3).contains(major), minor == 0 else {
            throw bad("unsupported format version \(major).\(minor) (supported: 1.0, 2.0, 3.0)")
        }
        let lengthBytes = major == 1 ? 2 : 4
        guard total >= 8 + lengthBytes else { throw bad("file is truncated inside the preamble (\(total) bytes)") }
        let headerLength = lengthBytes == 2
            ? Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt16.self)))
            : Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        let headerStart = 8 + lengthBytes
        guard headerLength <= total - headerStart else {
            throw bad("header length \(headerLength) exceeds the file size (\(total) bytes)")
        }
        let header = UnsafeRawBufferPointer(rebasing: raw[headerStart..<(headerStart + headerLength)])
        let h = try parseHeader(header)

        let dataStart = headerStart + headerLength
        let available = total - dataStart
        guard let count = ShapeMath.elementCount(h.shape) else {
            throw bad("shape \(Shape.format(h.shape)) is too large (over 2^48 elements)")
        }
        let (needed, overflow) = count.multipliedReportingOverflow(by: h.kind.size)
        if overflow || needed > available {
            throw bad("data is truncated: shape \(Shape.format(h.shape)) \(h.typeName) needs \(needed) bytes, file has \(available)")
        }
        let data = UnsafeRawBufferPointer(rebasing: raw[dataStart..<(dataStart + needed)])
        var t = Tensor(uninitialized: h.shape)
        if count == 0 { return t }
        if h.fortranOrder && h.shape.count > 1 {
            var columnMajor = [Float](repeating: 0, count: count)
            columnMajor.withUnsafeMutableBufferPointer { h.kind.decode(data, count: count, bigEndian: h.bigEndian, into: $0.baseAddress!) }
            t.withUnsafeMutableBufferPointer { NPYParser.columnToRowMajor(columnMajor, shape: h.shape, into: $0) }
        } else {
            t.withUnsafeMutableBufferPointer { h.kind.decode(data, count: count, bigEndian: h.bigEndian, into: $0.baseAddress!) }
        }
        return t
    }

    /// Column-major elements of `shape` into row-major order: walks the row-major output with an
    /// odometer over the indices, keeping the column-major source offset in step.
    static func columnToRowMajor(_ src: [Float], shape: [Int], into dst: UnsafeMutableBufferPointer<Float>) {
        let r = shape.count
        var colStride = [Int](repeating: 1, count: r)  // N, C, ... → stride of axis k is ∏ shape[0..<k]
        for k in 1..<r { colStride[k] = colStride[k - 1] * shape[k - 1] }
        var index = [Int](repeating: 0, count: r)
        var s = 0
        for o in 0..<dst.count {
            dst[o] = src[s]
            var k = r - 1
            while k >= 0 {
                index[k] += 1
                s += colStride[k]
                if index[k] < shape[k] { break }
                s -= shape[k] * colStride[k]
                index[k] = 0
                k -= 1
            }
        }
    }

    struct Header {
        var kind: ScalarKind
        var bigEndian: Bool
        var typeName: String
        var fortranOrder: Bool
        var shape: [Int]
    }

    enum Literal {
        case string(String)
        case bool(Bool)
        case tuple([Int])
    }

    func parseHeader(_ bytes: UnsafeRawBufferPointer) throws -> Header {
        var dict: [String: Literal] = [:]
        var lexer = PyLiteralLexer(bytes: bytes)
        do {
            for (k, v) in try lexer.dict() {
                guard dict.updateValue(v, forKey: k) == nil else { throw bad("header has the key '\(k)' twice") }
            }
        } catch let e as PyLiteralLexer.Failure {
            throw bad("header is not a valid dict literal: \(e.message) at byte \(e.offset) of the header")
        }
        for k in dict.keys.sorted() where !["descr", "fortran_order", "shape"].contains(k) {
            throw bad("header has unexpected key '\(k)' (expected descr, fortran_order, shape)")
        }
        guard case .string(let descr)? = dict["descr"] else {
            throw bad(dict["descr"] == nil ? "header lacks 'descr'" : "'descr' must be a string such as '<f4'")
        }
        guard case .bool(let fortran)? = dict["fortran_order"] else {
            throw bad(dict["fortran_order"] == nil ? "header lacks 'fortran_order'" : "'fortran_order' must be True or False")
        }
        guard case .tuple(let shape)? = dict["shape"] else {
            throw bad(dict["shape"] == nil ? "header lacks 'shape'" : "'shape' must be a tuple of integers")
        }
        guard shape.count <= ShapeMath.maxRank else {
            throw bad("shape has \(shape.count) dimensions, more than \(ShapeMath.maxRank)")
        }
        let (kind, bigEndian, typeName) = try parseDescr(descr)
        return Header(kind: kind, bigEndian: bigEndian, typeName: typeName, fortranOrder: fortran, shape: shape)
    }

    func parseDescr(_ descr: String) throws -> (ScalarKind, Bool, String) {
        let u = Array(descr.utf8)
        let table: [String: (ScalarKind, String)] = [
            "f2": (.f16, "float16"), "f4": (.f32, "float32"), "f8": (.f64, "float64"),
            "i1": (.i8, "int8"), "i2": (.i16, "int16"), "i4": (.i32, "int32"), "i8": (.i64, "int64"),
            "u1": (.u8, "uint8"), "u2": (.u16, "uint16"), "u4": (.u32, "uint32"), "u8": (.u64, "uint64"),
            "b1": (.bool, "bool"),
        ]
        guard u.count == 3, let (kind, typeName) = table[String(decoding: u[1...], as: UTF8.self)] else {
            throw bad("unsupported dtype '\(descr)' (supported: float16/32/64, int8–64, uint8–64, bool)")
        }
        switch u[0] {
        case UInt8(ascii: "<"): return (kind, false, typeName)
        case UInt8(ascii: ">"): return (kind, true, typeName)
        case UInt8(ascii: "="):
            #if _endian(little)
            return (kind, false, typeName)
            #else
            return (kind, true, typeName)
            #endif
        case UInt8(ascii: "|") where kind.size == 1: return (kind, false, typeName)
        default: throw bad("unsupported dtype '\(descr)' (bad byte-order character)")
        }
    }
}

/// The subset of Python literal syntax numpy writes in .npy headers: a dict of quoted string
/// keys to strings, True/False and tuples of integers. No escapes, no nesting beyond that.
private struct PyLiteralLexer {
    struct Failure: Error { let message: String; let offset: Int }

    let bytes: UnsafeRawBufferPointer
    var i = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    func fail(_ m: String) -> Failure { Failure(message: m, offset: i) }
    var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

    mutating func skipSpace() {
        while let c = peek, c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 }
    }

    mutating func expect(_ c: Character) throws {
        skipSpace()
        guard peek == c.asciiValue else { throw fail("expected '\(c)'") }
        i += 1
    }

    mutating func dict() throws -> [(String, NPYParserLiteral)] {
        try expect("{")
        var out: [(String, NPYParserLiteral)] = []
        while true {
            skipSpace()
            if peek == UInt8(ascii: "}") { i += 1; break }
            let k = try string()
            try expect(":")
            out.append((k, try value()))
            skipSpace()
            if peek == UInt8(ascii: ",") { i += 1; continue }
            try expect("}")
            break
        }
        skipSpace()
        guard i == bytes.count else { throw fail("unexpected content after the dict") }
        return out
    }

    mutating func string() throws -> String {
        skipSpace()
        guard let q = peek, q == UInt8(ascii: "'") || q == UInt8(ascii: "\"") else { throw fail("expected a quoted string") }
        i += 1
        let start = i
        while let c = peek, c != q {
            if c == UInt8(ascii: "\\") { throw fail("escape sequences are not supported") }
            if c < 0x20 { throw fail("control character in a string") }
            i += 1
        }
        guard peek == q else { throw fail("unterminated string") }
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
        i += 1
        return s
    }

    mutating func word(_ w: String) -> Bool {
        let u = Array(w.utf8)
        guard bytes.count - i >= u.count, zip(bytes[i..<(i + u.count)], u).allSatisfy({ $0 == $1 }) else { return false }
        i += u.count
        return true
    }

    mutating func value() throws -> NPYParserLiteral {
        skipSpace()
        guard let c = peek else { throw fail("unexpected end of header") }
        switch c {
        case UInt8(ascii: "'"), UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "("): return .tuple(try tuple())
        case UInt8(ascii: "["): throw fail("structured dtypes (a list) are not supported")
        default:
            if word("True") { return .bool(true) }
            if word("False") { return .bool(false) }
            throw fail("unexpected value")
        }
    }

    mutating func tuple() throws -> [Int] {
        i += 1  // (
        var out: [Int] = []
        while true {
            skipSpace()
            if peek == UInt8(ascii: ")") { i += 1; return out }
            guard out.count <= ShapeMath.maxRank else { throw fail("more than \(ShapeMath.maxRank) dimensions") }
            out.append(try integer())
            skipSpace()
            if peek == UInt8(ascii: ",") { i += 1; continue }
            try expect(")")
            return out
        }
    }

    mutating func integer() throws -> Int {
        skipSpace()
        if peek == UInt8(ascii: "-") { throw fail("negative dimension") }
        var n = 0
        var digits = 0
        while let c = peek, c >= 0x30 && c <= 0x39 {
            let (m, o1) = n.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(c - 0x30))
            guard !o1 && !o2 else { throw fail("dimension too large") }
            n = a
            digits += 1
            i += 1
        }
        guard digits > 0 else { throw fail("expected an integer") }
        if peek == UInt8(ascii: "L") { i += 1 }  // Python 2 long suffix in old files
        return n
    }
}

private typealias NPYParserLiteral = NPYParser.Literal
