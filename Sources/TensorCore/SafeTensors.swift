// Reading and writing safetensors files (state dicts from PyTorch checkpoints).
//
// Follows the format of huggingface/safetensors (README "Format"): an 8-byte little-endian
// unsigned header length N, N bytes of UTF-8 JSON, then the data section. The header maps each
// tensor name to {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the data
// section, little-endian row-major data) and may hold "__metadata__", a string-to-string map.
//
// Validation follows the reference Rust crate, since files come from strangers:
// - a header over 100 MB is refused before anything is allocated (the crate's MAX_HEADER_SIZE);
// - the header must be valid JSON of an object; duplicate keys are refused (the spec forbids them);
// - shapes are non-negative integers (rank ≤ 64, nonzero product ≤ 2^48), byte sizes are
//   overflow-checked and must equal end − begin;
// - the tensors' byte ranges, sorted, must cover the data section exactly: no overlap, no gap,
//   nothing after the last tensor (as the crate's `validate` does);
// - 0-dimensional (shape []) and zero-size (a dim of 0) tensors are valid;
// - F8 dtypes (F8_E4M3, F8_E5M2, ...) are refused with a clear error; unknown fields in a tensor
//   entry are ignored (as serde does in the crate).

import Foundation

public enum SafeTensors {
    /// Headers longer than this are refused before allocation (the reference crate's limit).
    public static let maxHeaderBytes = 100_000_000

    /// Reads a safetensors file. Files over `maxBytes` are refused without being read.
    public static func read(contentsOf url: URL, maxBytes: Int = 16 << 30) throws -> StateDict {
        let data = try FileAccess.read(url, maxBytes: maxBytes)
        return try read(data: data, name: url.path)
    }

    /// Parses safetensors bytes; `name` is used in error messages (a path or a label).
    /// Every tensor becomes float32; its stored dtype is recorded in `dtypes`.
    public static func read(data: Data, name: String) throws -> StateDict {
        try data.withUnsafeBytes { raw in try Parser(raw: raw, name: name).parse() }
    }

    /// Writes `sd` as float32 tensors with sorted keys and its metadata, atomically
    /// (a temporary file in the same folder renamed over `url`).
    public static func write(_ sd: StateDict, to url: URL) throws {
        if sd.tensors["__metadata__"] != nil {
            throw WeightsError.malformed(
                path: url.path, reason: "a tensor cannot be named '__metadata__' (the name is reserved for the metadata map)")
        }
        try FileAccess.writeAtomically(encode(sd), to: url)
    }

    /// The safetensors bytes of `sd`: all tensors as F32 (whatever `dtypes` says), keys sorted,
    /// `__metadata__` first when non-empty, header padded with spaces to a multiple of 8 bytes.
    /// Precondition: no tensor is named `__metadata__` (`write` checks this and throws).
    public static func encode(_ sd: StateDict) -> Data {
        precondition(sd.tensors["__metadata__"] == nil, "a tensor cannot be named '__metadata__'")
        let keys = sd.tensors.keys.sorted()
        var header = "{"
        var parts: [String] = []
        if !sd.metadata.isEmpty {
            let items = sd.metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(sd.metadata[$0] ?? ""))" }
            parts.append("\"__metadata__\":{" + items.joined(separator: ",") + "}")
        }
        var offset = 0
        for k in keys {
            let t = sd.tensors[k]!  // keys come from the dictionary itself
            let bytes = t.count * 4
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append("\(jsonString(k)):{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        header += parts.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }

        var out = Data(capacity: 8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for k in keys {
            let t = sd.tensors[k]!
            t.withUnsafeBufferPointer { p in
                #if _endian(little)
                out.append(UnsafeBufferPointer(start: p.baseAddress, count: p.count))
                #else
                for v in p { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
                #endif
            }
        }
        return out
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped, UTF-8 kept.
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// The safetensors dtype names this reader accepts, with their element kinds.
    static let dtypes: [String: ScalarKind] = [
        "F64": .f64, "F32": .f32, "F16": .f16, "BF16": .bf16,
        "I64": .i64, "I32": .i32, "I16": .i16, "I8": .i8,
        "U64": .u64, "U32": .u32, "U16": .u16, "U8": .u8, "BOOL": .bool,
    ]
}

/// One pass over untrusted safetensors bytes. Every number from the file is checked before use.
private struct Parser {
    let raw: UnsafeRawBufferPointer
    let name: String

    struct Entry {
        let key: String
        let dtype: String
        let kind: ScalarKind
        let shape: [Int]
        let count: Int
        let begin: Int
        let end: Int
    }

    func bad(_ reason: String) -> WeightsError { .malformed(path: name, reason: reason) }

    func parse() throws -> StateDict {
        let total = raw.count
        if total < 8 {
            throw bad(total == 0
                ? "file is empty (0 bytes); a safetensors file starts with an 8-byte header length"
                : "file is only \(total) bytes; a safetensors file starts with an 8-byte header length")
        }
        let claimed = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        if claimed > UInt64(SafeTensors.maxHeaderBytes) {
            throw bad("header claims \(claimed) bytes, over the 100 MB limit of the format; "
                + "the file is corrupt or not a safetensors file")
        }
        let n = Int(claimed)
        if n > total - 8 {
            throw bad("safetensors header length \(n) exceeds the file size (\(total) bytes); "
                + "the file is truncated or not a safetensors file")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: raw[8..<(8 + n)])
        let json: JSONValue
        do {
            json = try JSONReader.parse(headerBytes)
        } catch let e as JSONParseError {
            throw bad("header is not valid JSON: \(e.message) at byte \(e.offset) of the header")
        }
        guard case .object(let members) = json else {
            throw bad("header is not a JSON object (found \(json.kindName))")
        }
        let dataStart = 8 + n
        let dataSize = total - dataStart

        var seen = Set<String>()
        var entries: [Entry] = []
        var metadata: [String: String] = [:]
        for (key, value) in members {
            guard seen.insert(key).inserted else { throw bad("duplicate key '\(key)' in header") }
            if key == "__metadata__" {
                metadata = try parseMetadata(value)
            } else {
                entries.append(try parseEntry(key, value, dataSize: dataSize))
            }
        }
        try checkCoverage(entries, dataSize: dataSize)

        var sd = StateDict(metadata: metadata)
        let data = UnsafeRawBufferPointer(rebasing: raw[dataStart...])
        for e in entries {
            var t = Tensor(uninitialized: e.shape)
            if e.count > 0 {
                let bytes = UnsafeRawBufferPointer(rebasing: data[e.begin..<e.end])
                t.withUnsafeMutableBufferPointer { dst in
                    e.kind.decode(bytes, count: e.count, bigEndian: false, into: dst.baseAddress!)
                }
            }
            sd.tensors[e.key] = t
            sd.dtypes[e.key] = e.dtype
        }
        return sd
    }

    func parseMetadata(_ value: JSONValue) throws -> [String: String] {
        if value == .null { return [:] }
        guard case .object(let items) = value else {
            throw bad("'__metadata__' must be an object mapping strings to strings (found \(value.kindName))")
        }
        var out: [String: String] = [:]
        for (k, v) in items {
            guard case .string(let s) = v else {
                throw bad("'__metadata__' value of '\(k)' is \(v.kindName); metadata maps strings to strings")
            }
            guard out.updateValue(s, forKey: k) == nil else { throw bad("duplicate key '\(k)' in '__metadata__'") }
        }
        return out
    }

    func parseEntry(_ key: String, _ value: JSONValue, dataSize: Int) throws -> Entry {
        guard case .object(let fields) = value else {
            throw bad("tensor '\(key)': entry is \(value.kindName), expected an object with dtype, shape and data_offsets")
        }
        var f: [String: JSONValue] = [:]
        for (k, v) in fields {
            guard f.updateValue(v, forKey: k) == nil else { throw bad("tensor '\(key)': duplicate field '\(k)'") }
        }
        guard let dtypeValue = f["dtype"] else { throw bad("tensor '\(key)': missing 'dtype'") }
        guard let shapeValue = f["shape"] else { throw bad("tensor '\(key)': missing 'shape'") }
        guard let offsetsValue = f["data_offsets"] else { throw bad("tensor '\(key)': missing 'data_offsets'") }

        guard case .string(let dtype) = dtypeValue else {
            throw bad("tensor '\(key)': 'dtype' is \(dtypeValue.kindName), expected a string such as \"F32\"")
        }
        guard let kind = SafeTensors.dtypes[dtype] else {
            if dtype.hasPrefix("F8") || dtype.hasPrefix("F6") || dtype.hasPrefix("F4") {
                throw bad("tensor '\(key)': dtype '\(dtype)' (sub-byte or 8-bit float) is not supported; "
                    + "convert the checkpoint to F32, F16 or BF16")
            }
            throw bad("tensor '\(key)': unknown dtype '\(dtype)'")
        }

        guard case .array(let dims) = shapeValue else {
            throw bad("tensor '\(key)': 'shape' is \(shapeValue.kindName), expected an array of integers")
        }
        guard dims.count <= ShapeMath.maxRank else {
            throw bad("tensor '\(key)': shape has \(dims.count) dimensions, more than \(ShapeMath.maxRank)")
        }
        var shape: [Int] = []
        for d in dims {
            shape.append(try integer(d, "tensor '\(key)': shape dimension"))
        }
        guard let count = ShapeMath.elementCount(shape) else {
            throw bad("tensor '\(key)': shape \(Shape.format(shape)) is too large (over 2^48 elements)")
        }

        guard case .array(let offs) = offsetsValue, offs.count == 2 else {
            throw bad("tensor '\(key)': 'data_offsets' must be an array of two integers [begin, end]")
        }
        let begin = try integer(offs[0], "tensor '\(key)': data offset")
        let end = try integer(offs[1], "tensor '\(key)': data offset")
        if end < begin {
            throw bad("tensor '\(key)': data offsets [\(begin), \(end)) end before they begin")
        }
        if end > dataSize {
            throw bad("tensor '\(key)': offsets [\(begin), \(end)) past the end of the data section (\(dataSize) bytes)")
        }
        let (needed, overflow) = count.multipliedReportingOverflow(by: kind.size)
        if overflow || needed != end - begin {
            throw bad("tensor '\(key)': data offsets [\(begin), \(end)) but shape \(Shape.format(shape)) × \(dtype) needs "
                + (overflow ? "more bytes than fit in memory" : "\(needed) bytes"))
        }
        return Entry(key: key, dtype: dtype, kind: kind, shape: shape, count: count, begin: begin, end: end)
    }

    /// A non-negative JSON integer (digits only: no sign, fraction or exponent).
    func integer(_ v: JSONValue, _ what: String) throws -> Int {
        guard case .number(let text) = v else { throw bad("\(what) is \(v.kindName), expected a non-negative integer") }
        if text.hasPrefix("-") {
            throw bad("\(what) \(text) is negative")
        }
        guard text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw bad("\(what) \(text) is not an integer")
        }
        guard let n = Int(text) else { throw bad("\(what) \(text) is too large") }
        return n
    }

    /// The sorted byte ranges must tile [0, dataSize) exactly, as the reference crate requires.
    func checkCoverage(_ entries: [Entry], dataSize: Int) throws {
        let sorted = entries.sorted { ($0.begin, $0.end, $0.key) < ($1.begin, $1.end, $1.key) }
        var position = 0
        var last: Entry?
        for e in sorted {
            if e.begin < position, let p = last {
                throw bad("tensor '\(e.key)': offsets [\(e.begin), \(e.end)) overlap tensor '\(p.key)' [\(p.begin), \(p.end))")
            }
            if e.begin > position {
                let after = last.map { " after tensor '\($0.key)'" } ?? " at the start of the data section"
                throw bad("tensor '\(e.key)': offsets [\(e.begin), \(e.end)) leave bytes [\(position), \(e.begin)) unused\(after); "
                    + "tensors must cover the data section without gaps")
            }
            if e.end >= position { position = e.end; last = e }
        }
        if position != dataSize {
            throw bad("data section is \(dataSize) bytes but the tensors end at byte \(position): "
                + "\(dataSize - position) trailing bytes belong to no tensor")
        }
    }
}
