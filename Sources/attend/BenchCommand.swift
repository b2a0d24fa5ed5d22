import ArgumentParser
import FastAttention
import Foundation
import TensorCore

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time a module's forward pass over map sizes and fit how its cost grows.",
        discussion: """
        For each size S the input is 1×C×S×S random features (N = S² positions; sequence modules
        get 1×N×C tokens). Each size runs one warm-up and then at least --repeats timed forwards
        (and at least --min-time seconds); the median is reported with the peak tensor memory
        the forward allocated (--json adds the fastest run, min_ms, the figure least disturbed
        by other load). The fitted exponent is the least-squares slope of log(time)
        against log(N), printed beside the paper's. Build with -c release for real figures.

        With --all every registered module is timed in turn (each with its default config) and
        one table is printed: the median at each size, the peak tensor memory at the largest,
        and the fitted exponent beside the paper's. A module that fails is reported in its row
        and the others still run.

        Examples:
          attend bench --module non-local --sizes 16,32,64
          attend bench --module non-local --sizes 32,64,96,128 --channels 128 --threads 1 --json
          attend bench --all --sizes 16,32,64 --repeats 3 --min-time 0.2
          attend bench --all --sizes 32,64 --threads 1 --json > bench.json
        """
    )

    @Option(help: "Module id.") var module: String?
    @Flag(help: "Time every registered module (default configs) and print one table.") var all = false
    @Option(help: "Instead of a module, time a core op against its raw baseline: \(BenchOp.allCases.map(\.rawValue).joined(separator: ", ")).")
    var op: BenchOp?
    @Option(help: "Comma-separated map sizes S (N = S×S).") var sizes = "16,32,64"
    @Option(help: "Input channels C.") var channels = 64
    @Option(help: "Batch size.") var batch = 1
    @Option(name: .customLong("set"), help: "key=value config override (repeatable).") var settings: [String] = []
    @Option(help: "Timed runs per size (at least).") var repeats = 5
    @Option(help: "Minimum timed seconds per size.") var minTime = 0.5
    @Option(help: "Threads (default: all cores).") var threads: Int?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if [module != nil, op != nil, all].filter({ $0 }).count != 1 {
            throw ValidationError("give exactly one of --module ID, --all or --op NAME")
        }
        if all && !settings.isEmpty {
            throw ValidationError("--set applies to one module's config; it cannot be used with --all")
        }
        guard let s = parseInts(sizes), s.allSatisfy({ (1...4096).contains($0) }) else {
            throw ValidationError("--sizes must be comma-separated integers in 1...4096, e.g. 16,32,64")
        }
        if !(1...65536).contains(channels) { throw ValidationError("--channels must be in 1...65536") }
        if repeats < 1 { throw ValidationError("--repeats must be ≥ 1") }
        if let t = threads, t < 1 { throw ValidationError("--threads must be ≥ 1") }
    }

    struct Row { let size: Int; let n: Int; let medianMs: Double; let minMs: Double; let peakMiB: Double; let runs: Int }

    func run() throws {
        if let t = threads { Threads.count = t }
        if let op {
            let r = op.run(minTime: minTime, repeats: repeats)
            if json { try printJSON(r.json) } else { print(r.text) }
            return
        }
        if all {
            try runAll()
            return
        }
        let module = self.module!
        let t = try Registry.type(id: module)
        let rows = try measure(module: module, settings: try Config.settings(from: self.settings), progress: !json)
        let fitted = fitExponent(rows.map { Double($0.n) }, rows.map { $0.medianMs })
        if json {
            try printJSON(report(module: module, info: t.info, rows: rows, fitted: fitted))
            return
        }
        print("\(module): C=\(channels), batch \(batch), \(Threads.count) thread(s)")
        printTable(header: ["size", "N", "median ms", "peak MiB", "runs"],
                   rows: rows.map { ["\($0.size)×\($0.size)", "\($0.n)", String(format: "%.3f", $0.medianMs),
                                     String(format: "%.2f", $0.peakMiB), "\($0.runs)"] })
        if let f = fitted {
            print(String(format: "fitted time exponent in N: %.2f   (paper: %@ → N^%.2g)", f, t.info.complexity, t.info.complexityExponent))
        }
    }

    /// Times `module` at every size: one warm-up, then ≥ repeats runs and ≥ minTime seconds each.
    func measure(module: String, settings: [String: String], progress: Bool) throws -> [Row] {
        let t = try Registry.type(id: module)
        var rows: [Row] = []
        for s in parseInts(sizes)! {
            let shape = t.info.kind == .sequence ? [batch, s * s, channels] : [batch, channels, s, s]
            var g = SeededGenerator(seed: UInt64(s))
            let x = Tensor.randomNormal(shape, generator: &g)
            let m = try Registry.make(id: module, settings: settings, inputShape: shape, seed: 1)
            _ = try m(x)                                         // warm-up
            var times: [Double] = []
            let base = MemoryStats.liveBytes
            MemoryStats.resetPeak()
            let start = Date()
            while times.count < repeats || Date().timeIntervalSince(start) < minTime {
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try m(x)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                if times.count >= 1000 { break }
            }
            let peak = Double(MemoryStats.peakBytes - base) / 1_048_576
            times.sort()
            let row = Row(size: s, n: s * s, medianMs: times[times.count / 2], minMs: times[0], peakMiB: peak,
                          runs: times.count)
            rows.append(row)
            if progress {
                FileHandle.standardError.write(Data(String(format: "  %@ %4d×%-4d  %8.3f ms\n", module, s, s, row.medianMs).utf8))
            }
        }
        return rows
    }

    func report(module: String, info: ModuleInfo, rows: [Row], fitted: Double?) -> [String: Any] {
        [
            "module": module, "channels": channels, "batch": batch, "threads": Threads.count,
            "paper_complexity": info.complexity, "paper_exponent": info.complexityExponent,
            "fitted_exponent": fitted.map { $0 as Any } ?? NSNull(),
            "sizes": rows.map { ["size": $0.size, "n": $0.n, "median_ms": $0.medianMs, "min_ms": $0.minMs,
                                 "peak_mib": $0.peakMiB, "runs": $0.runs] as [String: Any] },
        ]
    }

    /// `--all`: every registered module (each id once) with its default config.
    func runAll() throws {
        var seen = Set<String>()
        let ids = Registry.ids.filter { seen.insert($0).inserted }
        let sizeList = parseInts(sizes)!
        var reports: [[String: Any]] = []
        var table: [[String]] = []
        for id in ids {
            let info = try Registry.type(id: id).info
            do {
                let rows = try measure(module: id, settings: [:], progress: !json)
                let fitted = fitExponent(rows.map { Double($0.n) }, rows.map { $0.medianMs })
                reports.append(report(module: id, info: info, rows: rows, fitted: fitted))
                table.append([id, info.kind.rawValue] + rows.map { String(format: "%.3f", $0.medianMs) }
                             + [String(format: "%.1f", rows.last?.peakMiB ?? 0),
                                fitted.map { String(format: "%.2f", $0) } ?? "-",
                                String(format: "%.2g", info.complexityExponent)])
            } catch {
                let text = String(describing: error).replacingOccurrences(of: "\n", with: " ")
                reports.append(["module": id, "error": text, "paper_exponent": info.complexityExponent])
                table.append([id, info.kind.rawValue] + sizeList.map { _ in "-" } + ["-", "-", "error: " + text])
            }
        }
        if json {
            try printJSON(["channels": channels, "batch": batch, "threads": Threads.count, "modules": reports] as [String: Any])
            return
        }
        print("all modules: C=\(channels), batch \(batch), \(Threads.count) thread(s); median ms per size S (N = S²)")
        printTable(header: ["module", "kind"] + sizeList.map { "\($0)×\($0) ms" }
                        + ["peak MiB @\(sizeList.last!)", "fitted exp", "paper exp"],
                   rows: table)
    }
}

/// Least-squares slope of log y against log x; nil with fewer than two distinct x.
func fitExponent(_ x: [Double], _ y: [Double]) -> Double? {
    let pts = zip(x, y).filter { $0.0 > 0 && $0.1 > 0 }.map { (log($0.0), log($0.1)) }
    guard pts.count >= 2 else { return nil }
    let mx = pts.map(\.0).reduce(0, +) / Double(pts.count), my = pts.map(\.1).reduce(0, +) / Double(pts.count)
    let sxx = pts.map { ($0.0 - mx) * ($0.0 - mx) }.reduce(0, +)
    guard sxx > 0 else { return nil }
    return pts.map { ($0.0 - mx) * ($0.1 - my) }.reduce(0, +) / sxx
}
