// The module contract every attention module fulfils, spatial or sequence.

import TensorCore

/// Whether a module works on feature maps, token sequences, or both.
public enum ModuleKind: String, Sendable {
    case spatial = "2D"
    case sequence = "seq"
    case both = "2D+seq"
}

/// What `attentionMap` returns for a module (DESIGN.md, "The module contract").
public enum MapKind: String, Sendable {
    /// For a query position: weights over all positions (H×W for images).
    case perQuery = "per-query"
    /// One query-independent H×W map.
    case global
    /// C weights (channel gates).
    case channel
    /// k×H×W: bases, buckets, clusters, routing assignments.
    case bases
}

/// The facts `attend list` and `attend info` show.
public struct ModuleInfo: Sendable {
    /// The id from modules.tsv (`non-local`, `criss-cross`, ...).
    public let id: String
    public let title: String
    public let arxiv: String
    public let year: Int
    /// As in the paper, e.g. `O(N^2 D)`.
    public let complexity: String
    /// The exponent of N in the time complexity for a fixed channel count (2 for dense, 1.5 for
    /// N·√N, 1 for linear); `attend bench` prints it beside the fitted exponent.
    public let complexityExponent: Double
    public let kind: ModuleKind
    /// Whether a causal (autoregressive) variant is supported.
    public let causal: Bool
    /// The implementation whose outputs and state_dict keys this module matches.
    public let reference: String
    public let mapKind: MapKind
    /// What the map shows, in one or two sentences.
    public let mapDescription: String
    /// Quirks of the reference a user should know (padding, scale, gates).
    public let notes: [String]

    public init(id: String, title: String, arxiv: String, year: Int, complexity: String,
                complexityExponent: Double, kind: ModuleKind, causal: Bool, reference: String,
                mapKind: MapKind, mapDescription: String, notes: [String] = []) {
        self.id = id
        self.title = title
        self.arxiv = arxiv
        self.year = year
        self.complexity = complexity
        self.complexityExponent = complexityExponent
        self.kind = kind
        self.causal = causal
        self.reference = reference
        self.mapKind = mapKind
        self.mapDescription = mapDescription
        self.notes = notes
    }
}

/// Where to look: a query position on the feature grid (row, column), and a head.
public struct MapQuery: Sendable, Equatable {
    public var row: Int
    public var column: Int
    /// nil: the mean over heads.
    public var head: Int?
    public init(row: Int, column: Int, head: Int? = nil) {
        self.row = row
        self.column = column
        self.head = head
    }
}

/// What a module attends to, in the form its kind calls for.
public struct AttentionMap: Sendable {
    public let kind: MapKind
    /// per-query and global: k×H×W (k maps, usually 1; several for heads or hops);
    /// channel: C values (shape [C]); bases: k×H×W.
    public let values: Tensor
    /// A label per map (e.g. "head 0", "row+column", "base 3").
    public let labels: [String]

    public init(kind: MapKind, values: Tensor, labels: [String]) {
        self.kind = kind
        self.values = values
        self.labels = labels
    }

    /// The one map to show when there is room for one (gallery cells, batch maps): a composed
    /// map (hops, reach, "+" sums of branches) when the module gives one, else the first.
    public var primaryIndex: Int {
        let lower = labels.map { $0.lowercased() }
        for words in [["composed", "2 hops", "2-hop", "two hops"], ["reach", " + ", "sum", "plus", "combined"]] {
            if let i = lower.firstIndex(where: { l in words.contains { l.contains($0) } }) { return i }
        }
        return 0
    }
}

/// Errors a module raises at its boundary.
public enum ModuleError: Error, CustomStringConvertible, Equatable {
    case unknownModule(String, known: [String])
    case badInput(module: String, expected: String, found: [Int])
    case badQuery(module: String, message: String)
    case unsupported(module: String, message: String)

    public var description: String {
        switch self {
        case let .unknownModule(id, known):
            let close = known.filter { $0.hasPrefix(String(id.prefix(3))) }
            let hint = close.isEmpty ? "" : " — did you mean \(close.joined(separator: ", "))?"
            return "unknown module '\(id)'\(hint) (`attend list --ids` prints all \(known.count) ids)"
        case let .badInput(m, e, f):
            return "\(m): expected input \(e), found \(Shape.format(f))"
        case let .badQuery(m, msg):
            return "\(m): \(msg)"
        case let .unsupported(m, msg):
            return "\(m): \(msg)"
        }
    }
}

/// An attention module: configured by name, weights under the reference's state_dict keys,
/// eval-mode forward, and its attention map.
public protocol AttentionModule: AnyObject {
    static var info: ModuleInfo { get }
    /// Config keys, spelled as the reference constructor's keyword arguments.
    static var configSchema: [ConfigKey] { get }

    /// Builds the module. `inputShape` is the shape it will be called on (channel counts the
    /// config leaves unset are taken from it); parameters come from `parameters` (seeded or a
    /// checkpoint) under the reference's keys.
    init(config: Config, inputShape: [Int], parameters: Parameters) throws

    /// The resolved configuration (every key with its value).
    var config: Config { get }

    /// Eval-mode forward pass (BatchNorm uses running statistics, dropout is off).
    func callAsFunction(_ x: Tensor) throws -> Tensor

    /// What the module attends to on input `x`, for `query` where the map is per-query.
    func attentionMap(_ x: Tensor, query: MapQuery) throws -> AttentionMap

    /// The shape the module expects, in words, for error messages (e.g. "N×64×H×W").
    var expectedInput: String { get }

    /// Attention heads a per-query map can be asked for (`MapQuery.head`).
    var mapHeads: Int { get }
}

extension AttentionModule {
    public var info: ModuleInfo { Self.info }
    /// Attention heads a per-query map can be asked for (`MapQuery.head`): by default the value
    /// of the module's heads key, whichever spelling its reference uses; 1 when it has none.
    public var mapHeads: Int {
        for key in ["heads", "num_heads", "n_heads", "num_attention_heads", "head_count", "n_head", "num_head", "nheads"] {
            if let h = config.optionalInt(key), h >= 1 { return h }
        }
        return 1
    }
}

/// Checks an N×C×H×W input for a spatial module.
public func checkMap(_ x: Tensor, channels: Int, module: String) throws -> (n: Int, c: Int, h: Int, w: Int) {
    guard x.rank == 4, x.shape[1] == channels, x.shape[0] > 0, x.shape[2] > 0, x.shape[3] > 0 else {
        throw ModuleError.badInput(module: module, expected: "N×\(channels)×H×W", found: x.shape)
    }
    return (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
}
