import ArgumentParser
import FastAttention
import Foundation

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the registered modules.",
        discussion: """
        A table of id, kind (2D map / seq tokens), complexity as in the paper, causal support and
        the reference implementation each module matches. `--json` adds `complexity_exponent`,
        the exponent of N in the paper's time complexity at fixed channels (what `attend bench`
        compares its fitted exponent with).

        Examples:
          attend list
          attend list --ids
          attend list --json > modules.json
        """
    )

    @Flag(help: "Print one id a line.") var ids = false
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let infos = Registry.modules.map { $0.info }
        if ids {
            print(infos.map(\.id).joined(separator: "\n"))
        } else if json {
            let rows: [[String: Any]] = infos.map {
                ["id": $0.id, "title": $0.title, "arxiv": $0.arxiv, "year": $0.year, "kind": $0.kind.rawValue,
                 "complexity": $0.complexity, "complexity_exponent": $0.complexityExponent, "causal": $0.causal, "reference": $0.reference, "map": $0.mapKind.rawValue]
            }
            try printJSON(rows)
        } else {
            let header = ["id", "kind", "complexity", "causal", "map", "reference"]
            let table = infos.map { [$0.id, $0.kind.rawValue, $0.complexity, $0.causal ? "yes" : "no", $0.mapKind.rawValue, $0.reference] }
            printTable(header: header, rows: table)
        }
    }
}

func printTable(header: [String], rows: [[String]]) {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ")
    }
    print(line(header))
    print(line(widths.map { String(repeating: "-", count: $0) }))
    for r in rows { print(line(r)) }
}

func printJSON(_ object: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}
