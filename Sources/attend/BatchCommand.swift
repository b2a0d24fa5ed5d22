import ArgumentParser
import FastAttention
import Foundation
import ImageIO
import TensorCore

struct Batch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch",
        abstract: "Run a module over a folder or manifest of images/feature files, resumably, in shards.",
        discussion: """
        Inputs: every PNG, JPEG, .npy and .safetensors file in DIR (sorted by name), or the paths
        listed one a line in a manifest file (blank lines and # comments skipped). Each input's
        output goes to OUT/NAME.npy (features out; images go through the image stem first), and
        with --maps, OUT/NAME-ID.png (the module's map at --query-at). An input whose output
        already exists is skipped, so a rerun resumes where a killed one stopped. Every finished
        input appends one line to OUT/summary[-SHARD].csv at once (time, peak tensor memory,
        output shape and statistics, or the error), and OUT/summary[-SHARD].json is written at
        the end. A bad input is reported and the rest go on; the exit status is then 3.

        Sharding for cluster array jobs: --shard I/N takes every N-th input starting at I
        (0-based), so N shards cover the inputs exactly once. Without --shard, the index comes
        from SLURM_ARRAY_TASK_ID (count SLURM_ARRAY_TASK_COUNT) or, in a Kubernetes Indexed Job,
        JOB_COMPLETION_INDEX (count from --shards).

        Examples:
          attend batch photos/ --module non-local --out feats/
          attend batch list.txt --module non-local --set reduction=4 --weights nl.safetensors --out o/ --shard 2/8
          sbatch --array=0-7 --wrap 'attend batch photos/ --module non-local --out o/'
        """
    )

    @Argument(help: "A folder of inputs, or a manifest file listing them.") var input: String
    @Option(help: "Module id.") var module: String
    @Option(help: "Output folder.") var out: String
    @Option(name: .customLong("set"), help: "key=value config override (repeatable).") var settings: [String] = []
    @Option(help: "Trained weights (safetensors state_dict).") var weights: String?
    @Option(help: "Shard I/N (0-based I).") var shard: String?
    @Option(help: "Shard count when the index comes from JOB_COMPLETION_INDEX.") var shards: Int?
    @Flag(help: "Also draw each input image's map (PNG).") var maps = false
    @Option(help: "Map query as fractions FX,FY of the image (per-query modules).") var queryAt = "0.5,0.5"
    @Option(help: "Feature grid for image inputs.") var grid = 48
    @Option(help: "Seed for untrained weights and random draws.") var seed: UInt64 = 0
    @Option(help: "Largest image accepted, in pixels.") var maxPixels = 100_000_000
    @Option(help: "Refuse O(N²) modules when N² exceeds this (N = positions).") var maxAttention = AttentionGuard.defaultLimit
    @Flag(help: "List what this shard would do (inputs, skips, estimated work) and stop.") var dryRun = false
    @Flag(help: "No progress bar.") var quiet = false

    func validate() throws {
        if let s = shard, parseShard(s) == nil { throw ValidationError("--shard must be I/N with 0 ≤ I < N, e.g. 0/4") }
        if let n = shards, n < 1 { throw ValidationError("--shards must be ≥ 1") }
    }

    func parseShard(_ s: String) -> (Int, Int)? {
        let p = s.split(separator: "/").map { Int($0) }
        guard p.count == 2, let i = p[0], let n = p[1], n >= 1, (0..<n).contains(i) else { return nil }
        return (i, n)
    }

    /// (index, count) of this shard: the flag, else Slurm's or Kubernetes' environment, else 0/1.
    func resolveShard() throws -> (Int, Int) {
        if let s = shard { return parseShard(s)! }
        let env = ProcessInfo.processInfo.environment
        if let id = env["SLURM_ARRAY_TASK_ID"].flatMap(Int.init) {
            let count = env["SLURM_ARRAY_TASK_COUNT"].flatMap(Int.init) ?? shards
            let minID = env["SLURM_ARRAY_TASK_MIN"].flatMap(Int.init) ?? 0
            guard let n = count, (0..<n).contains(id - minID) else {
                throw ValidationError("SLURM_ARRAY_TASK_ID=\(id) but the shard count is unknown or too small; pass --shards N")
            }
            return (id - minID, n)
        }
        if let id = env["JOB_COMPLETION_INDEX"].flatMap(Int.init) {
            guard let n = shards, (0..<n).contains(id) else {
                throw ValidationError("JOB_COMPLETION_INDEX=\(id): pass --shards N (the Job's completions) with 0 ≤ index < N")
            }
            return (id, n)
        }
        return (0, 1)
    }

    func inputs() throws -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDir) else { throw InputError.missing(input) }
        if isDir.boolValue {
            let exts: Set<String> = ["png", "jpg", "jpeg", "npy", "safetensors"]
            return try FileManager.default.contentsOfDirectory(atPath: input)
                .filter { exts.contains(($0 as NSString).pathExtension.lowercased()) && !$0.hasPrefix(".") }
                .sorted().map { (input as NSString).appendingPathComponent($0) }
        }
        let text = try String(contentsOfFile: input, encoding: .utf8)
        let base = (input as NSString).deletingLastPathComponent
        return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            .map { $0.hasPrefix("/") ? $0 : (base as NSString).appendingPathComponent($0) }
    }

    /// OUT/NAME.npy, where NAME keeps the input's extension (a.jpg and a.png both survive).
    func outputPath(_ file: String) -> String {
        (out as NSString).appendingPathComponent((file as NSString).lastPathComponent.replacingOccurrences(of: ".", with: "_") + ".npy")
    }

    func run() throws {
        let (index, count) = try resolveShard()
        let all = try inputs()
        let mine = all.enumerated().filter { $0.offset % count == index }.map(\.element)
        let todo = mine.filter { !FileManager.default.fileExists(atPath: outputPath($0)) }
        let suffix = count > 1 ? "-\(index)" : ""
        if dryRun {
            print("shard \(index)/\(count): \(mine.count) of \(all.count) inputs, \(mine.count - todo.count) already done, \(todo.count) to run")
            for f in todo { print("  \(f) → \(outputPath(f))") }
            return
        }
        _ = try Registry.type(id: module)
        let settings = try Config.settings(from: self.settings)
        let sd = try weights.map(InputFile.weights)
        try OutputFile.ensureDirectory(out)
        let csvPath = (out as NSString).appendingPathComponent("summary\(suffix).csv")
        let log = try SummaryLog(path: csvPath)
        let progress = Progress(total: todo.count, title: "batch \(module) [\(index)/\(count)]", quiet: quiet)
        var failed = 0
        let renderer = MapRenderer()
        let frac = queryAt.split(separator: ",").compactMap(Double.init)
        for file in todo {
            let name = (file as NSString).lastPathComponent
            defer { progress.step(name) }
            var row = SummaryLog.Row(file: file)
            let t0 = DispatchTime.now().uptimeNanoseconds
            let base = MemoryStats.liveBytes
            MemoryStats.resetPeak()
            do {
                var photo: Image?
                let x: Tensor
                if InputFile.isTensorFile(file) {
                    x = try InputFile.tensor(file)
                } else {
                    let img = try InputFile.image(file, maxPixels: maxPixels).toRGB()
                    photo = img
                    x = ImageStem().features(img, grid: grid)
                }
                try AttentionGuard.check(try Registry.type(id: module).info, inputShape: x.shape, limit: maxAttention)
                let (m, y) = try FileError.naming(input: file, weights: weights) {
                    let m = try Registry.make(id: module, settings: settings, inputShape: x.shape, weights: sd, seed: seed)
                    return (m, try m.apply(x))
                }
                if maps, let photo, x.rank == 4, frac.count == 2 {
                    let px = min(photo.width - 1, Int(Double(photo.width) * frac[0]))
                    let py = min(photo.height - 1, Int(Double(photo.height) * frac[1]))
                    let map = try m.map(onGrid: x, query: gridQuery(x: px, y: py, photo: photo, rows: x.shape[2], columns: x.shape[3]))
                    let all = try renderer.panels(map, photo: photo)
                    if !all.isEmpty {
                        var panel = all[min(map.primaryIndex, all.count - 1)]
                        if m.info.mapKind == .perQuery { renderer.markQuery(&panel.image, x: px, y: py) }
                        renderer.insetLegend(&panel.image, label: panel.label, range: panel.range)
                        let mp = (out as NSString).appendingPathComponent(name.replacingOccurrences(of: ".", with: "_") + "-\(module).png")
                        try panel.image.write(to: URL(fileURLWithPath: mp))
                    }
                }
                // The output last: its presence marks the input done.
                try OutputFile.write(y, to: outputPath(file))
                row.status = "ok"
                row.outputShape = Shape.format(y.shape)
                let v = y.scalars
                row.stats = stats(v)
            } catch {
                failed += 1
                row.status = "error"
                row.error = "\(error)"
                FileHandle.standardError.write(Data("attend: \(error)\n".utf8))
            }
            row.milliseconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            row.peakMiB = Double(MemoryStats.peakBytes - base) / 1_048_576
            try log.append(row)
        }
        try writeAtomically(try log.json(), to: (out as NSString).appendingPathComponent("summary\(suffix).json"))
        progress.finish("\(todo.count - failed) done, \(failed) failed, \(mine.count - todo.count) skipped as already done")
        if failed > 0 { throw ExitCode(3) }
    }

    func stats(_ v: [Float]) -> (mean: Double, std: Double, min: Float, max: Float) {
        guard !v.isEmpty else { return (0, 0, 0, 0) }
        var s = 0.0, s2 = 0.0
        for x in v { s += Double(x); s2 += Double(x) * Double(x) }
        let mean = s / Double(v.count)
        return (mean, max(s2 / Double(v.count) - mean * mean, 0).squareRoot(), v.min()!, v.max()!)
    }
}

/// summary.csv, appended and flushed one row at a time, so a killed run keeps every finished
/// input's line; rows already in the file (from an earlier run) are kept.
final class SummaryLog {
    struct Row {
        var file: String
        var status = ""
        var milliseconds = 0.0
        var peakMiB = 0.0
        var outputShape = ""
        var stats: (mean: Double, std: Double, min: Float, max: Float) = (0, 0, 0, 0)
        var error = ""
    }

    static let header = "file,status,ms,peak_mib,output_shape,mean,std,min,max,error"
    let path: String
    let handle: FileHandle

    init(path: String) throws {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) {
            try writeAtomically(Self.header + "\n", to: path)
        }
        guard let h = FileHandle(forUpdatingAtPath: path) else { throw InputError.cannotWrite(path: path, reason: "cannot open") }
        handle = h
        // The log is the one file appended in place (a row per finished input, so a killed run
        // keeps them); each row is one write. Should a crash ever cut a row, the next run starts
        // on a fresh line instead of gluing its first row onto the torn one.
        if handle.seekToEndOfFile() > 0 {
            handle.seek(toFileOffset: handle.offsetInFile - 1)
            let last = handle.readDataToEndOfFile()
            if last != Data("\n".utf8) { handle.write(Data("\n".utf8)) }
        }
    }

    deinit { try? handle.close() }

    static func csv(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    func append(_ r: Row) throws {
        let line = [Self.csv(r.file), r.status, String(format: "%.3f", r.milliseconds), String(format: "%.2f", r.peakMiB),
                    r.outputShape, String(format: "%.6g", r.stats.mean), String(format: "%.6g", r.stats.std),
                    String(format: "%.6g", Double(r.stats.min)), String(format: "%.6g", Double(r.stats.max)),
                    Self.csv(r.error.replacingOccurrences(of: "\n", with: " "))].joined(separator: ",")
        handle.write(Data((line + "\n").utf8))
        try handle.synchronize()
    }

    /// Every row of the CSV (this run's and earlier ones') as JSON.
    func json() throws -> String {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var rows: [[String: String]] = []
        let keys = Self.header.split(separator: ",").map(String.init)
        for line in text.split(separator: "\n").dropFirst() {
            let cells = Self.parseCSVLine(String(line))
            rows.append(Dictionary(uniqueKeysWithValues: zip(keys, cells + Array(repeating: "", count: max(0, keys.count - cells.count)))))
        }
        let data = try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    static func parseCSVLine(_ line: String) -> [String] {
        var cells: [String] = [], cur = "", quoted = false
        var it = Array(line), i = 0
        while i < it.count {
            let c = it[i]
            if quoted {
                if c == "\"" {
                    if i + 1 < it.count && it[i + 1] == "\"" { cur.append("\""); i += 1 } else { quoted = false }
                } else { cur.append(c) }
            } else if c == "\"" { quoted = true } else if c == "," { cells.append(cur); cur = "" } else { cur.append(c) }
            i += 1
        }
        cells.append(cur)
        it.removeAll()
        return cells
    }
}
