/// Errors of the tensor core that a user can cause: wrong shapes at an API boundary.
public enum ShapeError: Error, CustomStringConvertible, Equatable {
    /// `what` expected a shape and found another. `expected` is written like "N×C×H×W with C=64".
    case mismatch(what: String, expected: String, found: [Int])
    case invalid(String)

    public var description: String {
        switch self {
        case let .mismatch(what, expected, found):
            return "\(what): expected \(expected), found \(Shape.format(found))"
        case let .invalid(message):
            return message
        }
    }
}

public enum Shape {
    /// `[2, 64, 32, 48]` → `2×64×32×48`.
    public static func format(_ shape: [Int]) -> String {
        shape.isEmpty ? "scalar ()" : shape.map(String.init).joined(separator: "×")
    }
}
