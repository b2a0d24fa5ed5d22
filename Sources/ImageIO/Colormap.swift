// Colormap: value in [0, 1] -> colour, for heat maps (viridis, magma, inferno, jet, gray).

/// A 256-entry colour map.
///
/// viridis, magma and inferno are matplotlib's tables (see ColormapTables.swift); they are
/// perceptually uniform, so equal steps in attention weight look like equal steps in
/// colour — the default for that reason. jet is computed from matplotlib's piecewise-linear
/// definition (familiar, but its bright cyan/yellow bands invent edges); gray is a ramp.
public struct Colormap: Equatable, Sendable {
    public let name: String
    /// 256 opaque colours, index 0 for the low end of the range.
    public let colors: [Color]

    public static let names = ["viridis", "magma", "inferno", "jet", "gray"]

    public static let viridis = Colormap(listed: "viridis", ColormapTables.viridis)
    public static let magma = Colormap(listed: "magma", ColormapTables.magma)
    public static let inferno = Colormap(listed: "inferno", ColormapTables.inferno)
    public static let jet = Colormap(name: "jet", colors: (0..<256).map { jetColor(Double($0) / 255) })
    public static let gray = Colormap(name: "gray", colors: (0..<256).map { Color(UInt8($0), UInt8($0), UInt8($0)) })

    /// Looks a map up by name (case-insensitive); the error lists the valid names.
    public init(name: String) throws {
        switch name.lowercased() {
        case "viridis": self = .viridis
        case "magma": self = .magma
        case "inferno": self = .inferno
        case "jet": self = .jet
        case "gray", "grey": self = .gray
        default: throw ImageError.unknownColormap(name, valid: Colormap.names)
        }
    }

    private init(name: String, colors: [Color]) {
        precondition(colors.count == 256)
        self.name = name
        self.colors = colors
    }

    private init(listed name: String, _ table: [UInt32]) {
        self.init(name: name, colors: table.map { Color(hex: $0) })
    }

    /// The colour for t in [0, 1] (clamped), binned as matplotlib does: index ⌊t·256⌋.
    /// NaN gives `Color.clear` so unknown cells can be drawn transparent.
    public func color(at t: Float) -> Color {
        if t.isNaN { return .clear }
        let index = Int(min(max(t, 0), 1) * 256)
        return colors[min(index, 255)]
    }

    public subscript(index: Int) -> Color { colors[index] }

    /// matplotlib's `_jet_data`: each channel linear between (position, value) knots.
    static func jetColor(_ t: Double) -> Color {
        let red: [(Double, Double)] = [(0, 0), (0.35, 0), (0.66, 1), (0.89, 1), (1, 0.5)]
        let green: [(Double, Double)] = [(0, 0), (0.125, 0), (0.375, 1), (0.64, 1), (0.91, 0), (1, 0)]
        let blue: [(Double, Double)] = [(0, 0.5), (0.11, 1), (0.34, 1), (0.65, 0), (1, 0)]
        func channel(_ knots: [(Double, Double)]) -> UInt8 {
            var v = knots.last!.1
            for (a, b) in zip(knots, knots.dropFirst()) where t >= a.0 && t <= b.0 {
                v = a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0)
                break
            }
            return UInt8((v * 255).rounded())
        }
        return Color(channel(red), channel(green), channel(blue))
    }
}
