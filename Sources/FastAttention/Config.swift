// Module configuration: named hyperparameters with defaults, settable by name (`--set key=value`).
// Keys are the reference constructor's keyword arguments, spelled as there, so a PyTorch
// user's kwargs carry over verbatim.

import Foundation

/// One configuration value.
public enum ConfigValue: Sendable, Equatable, CustomStringConvertible {
    case int(Int)
    case float(Double)
    case bool(Bool)
    case string(String)
    case ints([Int])
    case strings([String])
    /// No value: an optional key left unset (e.g. a channel count the input tells).
    case none

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .float(let v): return String(v)
        case .bool(let v): return v ? "true" : "false"
        case .string(let v): return v
        case .ints(let v): return v.map(String.init).joined(separator: ",")
        case .strings(let v): return v.joined(separator: ",")
        case .none: return "None"
        }
    }

    /// As JSON (for `attend info --json`).
    public var json: Any {
        switch self {
        case .int(let v): return v
        case .float(let v): return v
        case .bool(let v): return v
        case .string(let v): return v
        case .ints(let v): return v
        case .strings(let v): return v
        case .none: return NSNull()
        }
    }
}

/// The declared type of a key; parsing and range checks follow it.
public enum ConfigType: Sendable, Equatable {
    case int(ClosedRange<Int>)
    case float(ClosedRange<Double>)
    case bool
    case choice([String])
    case ints(count: ClosedRange<Int>, each: ClosedRange<Int>)
    /// A list of distinct names from `allowed`, in any order (a Python list of strings such as
    /// CBAM's `pool_types`): `avg,max`, also `[avg, max]` or `['avg', 'max']`.
    case strings(allowed: [String], count: ClosedRange<Int>)

    var name: String {
        switch self {
        case .int: return "int"
        case .float: return "float"
        case .bool: return "bool"
        case .choice: return "choice"
        case .ints: return "ints"
        case .strings: return "strings"
        }
    }
}

/// A key of a module's configuration.
public struct ConfigKey: Sendable {
    public let name: String
    public let type: ConfigType
    /// `.none` when the key is optional (typically a channel count taken from the input).
    public let defaultValue: ConfigValue
    public let help: String

    public init(_ name: String, _ type: ConfigType, default defaultValue: ConfigValue, _ help: String) {
        self.name = name
        self.type = type
        self.defaultValue = defaultValue
        self.help = help
    }

    /// A human-readable form of the type and its range, e.g. `int in 1...4096`.
    public var typeDescription: String {
        switch type {
        case .int(let r): return "int in \(r.lowerBound)...\(r.upperBound)"
        case .float(let r): return "float in \(r.lowerBound)...\(r.upperBound)"
        case .bool: return "true|false"
        case .choice(let c): return c.joined(separator: "|")
        case .ints(let n, let r):
            return "\(n.lowerBound == n.upperBound ? String(n.lowerBound) : "\(n.lowerBound)-\(n.upperBound)") comma-separated ints in \(r.lowerBound)...\(r.upperBound)"
        case .strings(let allowed, let n):
            return "\(n.lowerBound == n.upperBound ? String(n.lowerBound) : "\(n.lowerBound)-\(n.upperBound)") distinct of \(allowed.joined(separator: "|")), comma-separated"
        }
    }
}

/// A user's mistake in `--set`: unknown key, unparsable or out-of-range value.
public enum ConfigError: Error, CustomStringConvertible, Equatable {
    case unknownKey(module: String, key: String, known: [String])
    case badValue(module: String, key: String, value: String, expected: String)
    case malformed(String)
    case inconsistent(module: String, message: String)

    public var description: String {
        switch self {
        case let .unknownKey(m, k, known):
            return "\(m): unknown config key '\(k)' (known keys: \(known.joined(separator: ", ")))"
        case let .badValue(m, k, v, e):
            return "\(m): \(k)=\(v) is not valid: expected \(e)"
        case let .malformed(s):
            return "--set \(s): expected key=value"
        case let .inconsistent(m, msg):
            return "\(m): \(msg)"
        }
    }
}

/// Resolved configuration: every key of the schema with a value (its default unless set).
public struct Config: Sendable {
    public let module: String
    public private(set) var values: [String: ConfigValue]
    public let schema: [ConfigKey]
    /// Keys the user set explicitly.
    public private(set) var explicit: Set<String> = []

    /// Resolves `settings` (`key → text`) against `schema`; unknown keys and bad values throw.
    public init(module: String, schema: [ConfigKey], settings: [String: String] = [:]) throws {
        self.module = module
        self.schema = schema
        var v: [String: ConfigValue] = [:]
        for k in schema { v[k.name] = k.defaultValue }
        for (key, text) in settings.sorted(by: { $0.key < $1.key }) {
            guard let k = schema.first(where: { $0.name == key }) else {
                throw ConfigError.unknownKey(module: module, key: key, known: schema.map(\.name))
            }
            v[key] = try Config.parse(text, as: k, module: module)
            explicit.insert(key)
        }
        values = v
    }

    /// Parses `key=value` strings (as given to `--set`) into a map.
    public static func settings(from pairs: [String]) throws -> [String: String] {
        var out: [String: String] = [:]
        for p in pairs {
            guard let eq = p.firstIndex(of: "="), eq != p.startIndex else { throw ConfigError.malformed(p) }
            out[String(p[..<eq]).trimmingWhitespace] = String(p[p.index(after: eq)...]).trimmingWhitespace
        }
        return out
    }

    static func parse(_ text: String, as key: ConfigKey, module: String) throws -> ConfigValue {
        let bad = ConfigError.badValue(module: module, key: key.name, value: text, expected: key.typeDescription)
        if text == "None" || text == "none" || text == "null" {
            if key.defaultValue == .none { return .none }
        }
        switch key.type {
        case .int(let r):
            guard let i = Int(text), r.contains(i) else { throw bad }
            return .int(i)
        case .float(let r):
            guard let d = Double(text), d.isFinite, r.contains(d) else {
                // Allow fractions like 1/16 (timm's rd_ratio spelling).
                let parts = text.split(separator: "/")
                if parts.count == 2, let a = Double(parts[0]), let b = Double(parts[1]), b != 0, r.contains(a / b) {
                    return .float(a / b)
                }
                throw bad
            }
            return .float(d)
        case .bool:
            switch text.lowercased() {
            case "true", "1", "yes": return .bool(true)
            case "false", "0", "no": return .bool(false)
            default: throw bad
            }
        case .choice(let c):
            guard c.contains(text) else { throw bad }
            return .string(text)
        case .ints(let n, let r):
            let trimmed = text.stripping("[]()")
            let items = trimmed.split(separator: ",").map { Int($0.trimmingWhitespace) }
            guard items.allSatisfy({ $0 != nil }), n.contains(items.count) else { throw bad }
            let ints = items.map { $0! }
            guard ints.allSatisfy({ r.contains($0) }) else { throw bad }
            return .ints(ints)
        case .strings(let allowed, let n):
            let items = text.stripping("[]()").split(separator: ",").map { $0.trimmingWhitespace.stripping("'\"") }
            guard n.contains(items.count), items.allSatisfy(allowed.contains), Set(items).count == items.count else { throw bad }
            return .strings(items)
        }
    }

    public func isSet(_ name: String) -> Bool { values[name].map { $0 != .none } ?? false }

    public func int(_ name: String) -> Int {
        if case .int(let v)? = values[name] { return v }
        preconditionFailure("config key \(name) is not an int set in \(module)")
    }

    public func optionalInt(_ name: String) -> Int? {
        if case .int(let v)? = values[name] { return v }
        return nil
    }

    public func float(_ name: String) -> Double {
        switch values[name] {
        case .float(let v)?: return v
        case .int(let v)?: return Double(v)
        default: preconditionFailure("config key \(name) is not a float in \(module)")
        }
    }

    public func bool(_ name: String) -> Bool {
        if case .bool(let v)? = values[name] { return v }
        preconditionFailure("config key \(name) is not a bool in \(module)")
    }

    public func string(_ name: String) -> String {
        if case .string(let v)? = values[name] { return v }
        preconditionFailure("config key \(name) is not a string in \(module)")
    }

    public func ints(_ name: String) -> [Int] {
        if case .ints(let v)? = values[name] { return v }
        preconditionFailure("config key \(name) is not a list in \(module)")
    }

    public func strings(_ name: String) -> [String] {
        if case .strings(let v)? = values[name] { return v }
        preconditionFailure("config key \(name) is not a list of strings in \(module)")
    }

    /// Records a value the module derived (from the input, or from other keys) for a key left
    /// unset, so `config` lists every key resolved; the key stays not explicit. A value the user
    /// set must agree: modules check that first and throw `inconsistent` (an invariant here).
    public mutating func setDerived(_ name: String, _ value: ConfigValue) {
        precondition(schema.contains { $0.name == name }, "config key \(name) is not in \(module)'s schema")
        precondition(values[name] == ConfigValue.none || values[name] == value,
                     "\(module): derived \(name)=\(value) disagrees with the set \(values[name]!)")
        values[name] = value
    }

    /// Fills an optional channel count from the input, or checks that a given one agrees.
    public mutating func resolveChannels(_ name: String, from input: Int) throws {
        if case .int(let v)? = values[name], v != input {
            throw ConfigError.inconsistent(module: module,
                message: "\(name)=\(v) but the input has \(input) channels")
        }
        values[name] = .int(input)
    }

    /// The width of a module on N×L×C tokens: the input must have rank 3, and `channelsKey` is set
    /// from (or checked against) C.
    public mutating func resolveTokenChannels(_ channelsKey: String, inputShape: [Int]) throws -> Int {
        guard inputShape.count == 3 else {
            throw ModuleError.badInput(module: module, expected: "N×L×C tokens", found: inputShape)
        }
        try resolveChannels(channelsKey, from: inputShape[2])
        return int(channelsKey)
    }

    /// The width and head count of a multi-head module on N×L×C tokens: the input must have rank
    /// 3, `channelsKey` is set from (or checked against) C, and `headsKey` must divide it.
    public mutating func resolveTokenHeads(_ channelsKey: String, heads headsKey: String,
                                           inputShape: [Int]) throws -> (channels: Int, heads: Int) {
        let c = try resolveTokenChannels(channelsKey, inputShape: inputShape), h = int(headsKey)
        guard c % h == 0 else {
            throw ConfigError.inconsistent(module: module, message: "\(channelsKey)=\(c) must be divisible by \(headsKey)=\(h)")
        }
        return (c, h)
    }
}

extension StringProtocol {
    var trimmingWhitespace: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }

    func stripping(_ set: String) -> String {
        String(drop(while: { set.contains($0) }).reversed().drop(while: { set.contains($0) }).reversed())
    }
}
