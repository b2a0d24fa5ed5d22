// A small strict JSON reader (RFC 8259) for file headers from untrusted sources.
//
// Why not JSONSerialization: it silently keeps one of two duplicate keys (the safetensors spec
// forbids duplicates), it turns numbers into Doubles (offsets past 2^53 would lose digits), and
// its behaviour on hostile input differs across Foundation versions. This reader works on bytes,
// keeps objects as ordered key/value pairs and numbers as their text, bounds nesting depth, and
// reports the byte offset of the first error. It never traps on any input.

enum JSONValue: Equatable {
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    /// The number's text exactly as written (validated against the JSON grammar).
    case number(String)
    case bool(Bool)
    case null

    static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    /// "an object", "a string", ... for error messages.
    var kindName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }
}

struct JSONParseError: Error {
    let message: String
    let offset: Int
}

struct JSONReader {
    /// Deepest nesting accepted. Headers need 3 levels; this only stops stack exhaustion.
    static let maxDepth = 64

    private let bytes: UnsafeRawBufferPointer
    private var i = 0

    private init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// Parses one JSON value filling `bytes`, with only JSON whitespace around it.
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSONValue {
        var r = JSONReader(bytes)
        r.skipWhitespace()
        let v = try r.value(depth: 0)
        r.skipWhitespace()
        if r.i != bytes.count { throw r.fail("unexpected content after the JSON value") }
        return v
    }

    private func fail(_ message: String) -> JSONParseError { JSONParseError(message: message, offset: i) }

    private var atEnd: Bool { i >= bytes.count }
    private var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

    private mutating func skipWhitespace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    private mutating func expect(_ c: UInt8, _ what: String) throws {
        guard peek == c else { throw fail("expected \(what)") }
        i += 1
    }

    private mutating func value(depth: Int) throws -> JSONValue {
        guard depth < JSONReader.maxDepth else { throw fail("nested deeper than \(JSONReader.maxDepth) levels") }
        guard let c = peek else { throw fail("unexpected end of header") }
        switch c {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw fail("unexpected character")
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard bytes.count - i >= n else { throw fail("unexpected end of header") }
        let w = UnsafeRawBufferPointer(start: word.utf8Start, count: n)
        for k in 0..<n where bytes[i + k] != w[k] { throw fail("unexpected character") }
        i += n
    }

    private mutating func object(depth: Int) throws -> JSONValue {
        i += 1  // {
        var members: [(key: String, value: JSONValue)] = []
        skipWhitespace()
        if peek == UInt8(ascii: "}") { i += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard peek == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let k = try string()
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':'")
            skipWhitespace()
            let v = try value(depth: depth + 1)
            members.append((k, v))
            skipWhitespace()
            guard let c = peek else { throw fail("unexpected end of header inside an object") }
            i += 1
            if c == UInt8(ascii: "}") { return .object(members) }
            guard c == UInt8(ascii: ",") else { i -= 1; throw fail("expected ',' or '}'") }
        }
    }

    private mutating func array(depth: Int) throws -> JSONValue {
        i += 1  // [
        var items: [JSONValue] = []
        skipWhitespace()
        if peek == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try value(depth: depth + 1))
            skipWhitespace()
            guard let c = peek else { throw fail("unexpected end of header inside an array") }
            i += 1
            if c == UInt8(ascii: "]") { return .array(items) }
            guard c == UInt8(ascii: ",") else { i -= 1; throw fail("expected ',' or ']'") }
        }
    }

    private mutating func number() throws -> String {
        let start = i
        func isDigit(_ c: UInt8?) -> Bool { c.map { $0 >= 0x30 && $0 <= 0x39 } ?? false }
        if peek == UInt8(ascii: "-") { i += 1 }
        if peek == UInt8(ascii: "0") {
            i += 1
        } else if isDigit(peek) {
            while isDigit(peek) { i += 1 }
        } else {
            throw fail("invalid number")
        }
        if peek == UInt8(ascii: ".") {
            i += 1
            guard isDigit(peek) else { throw fail("invalid number") }
            while isDigit(peek) { i += 1 }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            i += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { i += 1 }
            guard isDigit(peek) else { throw fail("invalid number") }
            while isDigit(peek) { i += 1 }
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
    }

    private mutating func hex4() throws -> UInt16 {
        guard bytes.count - i >= 4 else { throw fail("truncated \\u escape") }
        var v: UInt16 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x41...0x46: d = c - 0x41 + 10
            case 0x61...0x66: d = c - 0x61 + 10
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | UInt16(d)
            i += 1
        }
        return v
    }

    /// A string token; `i` is at the opening quote. Raw bytes must be valid UTF-8.
    private mutating func string() throws -> String {
        i += 1
        var out: [UInt8] = []
        while true {
            guard let c = peek else { throw fail("unterminated string") }
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw fail("control character in a string") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard let e = peek else { throw fail("unterminated string") }
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = UInt32(try hex4())
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard bytes.count - i >= 2, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired surrogate in \\u escape")
                    }
                    i += 2
                    let low = UInt32(try hex4())
                    guard low >= 0xDC00 && low < 0xE000 else { throw fail("unpaired surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw fail("unpaired surrogate in \\u escape")
                }
                guard let u = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw fail("invalid escape sequence")
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return s
    }
}
