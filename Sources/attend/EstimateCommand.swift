import ArgumentParser
import FastAttention
import Foundation
import TensorCore

struct Estimate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "estimate",
        abstract: "Estimate a module's time and memory on a map size before running it.",
        discussion: """
        Times the module's forward at two small sizes and extrapolates: time with the exponent
        of N in its paper's complexity, memory with the exponent measured between the two sizes.
        Also says whether the quadratic-module guard (--max-attention in run, map and batch)
        would refuse the size.

        Examples:
          attend estimate --module non-local --size 256x256 --channels 256
          attend estimate --module non-local --size 97x130 --json
        """
    )

    @Option(help: "Module id.") var module: String
    @Option(help: "Map size HxW (N = H·W positions).") var size: String
    @Option(help: "Input channels.") var channels = 64
    @Option(help: "Batch size.") var batch = 1
    @Option(name: .customLong("set"), help: "key=value config override (repeatable).") var settings: [String] = []
    @Option(help: "The guard's limit on N² for quadratic modules.") var maxAttention = AttentionGuard.defaultLimit
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard parseSize(size) != nil else { throw ValidationError("--size must be HxW, e.g. 128x96") }
    }

    func run() throws {
        let (h, w) = parseSize(size)!
        let t = try Registry.type(id: module)
        let e = try AttentionGuard.estimate(t, height: h, width: w, channels: channels, batch: batch,
                                            settings: try Config.settings(from: settings))
        let refused = AttentionGuard.refuses(t.info, positions: h * w, limit: maxAttention)
        if json {
            try printJSON(["module": module, "height": h, "width": w, "channels": channels, "batch": batch,
                           "estimated_ms": e.milliseconds, "estimated_peak_mib": e.peakMiB,
                           "paper_exponent": t.info.complexityExponent, "memory_exponent": e.memoryExponent,
                           "guard_refuses": refused] as [String: Any])
            return
        }
        print(String(format: "%@ on %d×%d×%d×%d: about %@ and %.1f MiB of tensors (time ∝ N^%.2g as in %@; memory ∝ N^%.2f measured)",
                     module, batch, channels, h, w, formatDuration(e.milliseconds), e.peakMiB,
                     t.info.complexityExponent, t.info.complexity, e.memoryExponent))
        if refused {
            print("the guard refuses this size: \(h * w)² = \(h * w * h * w) attention entries > --max-attention \(maxAttention)")
        }
    }
}

func parseSize(_ s: String) -> (Int, Int)? {
    let p = s.lowercased().split(separator: "x").map { Int($0) }
    guard p.count == 2, let h = p[0], let w = p[1], h > 0, w > 0, h <= 1 << 16, w <= 1 << 16 else { return nil }
    return (h, w)
}

func formatDuration(_ ms: Double) -> String {
    ms < 1000 ? String(format: "%.1f ms", ms) : ms < 120_000 ? String(format: "%.1f s", ms / 1000)
        : String(format: "%.1f min", ms / 60_000)
}

/// Refuses quadratic modules on maps whose attention matrix would be unreasonably large, and
/// estimates cost by extrapolation.
enum AttentionGuard {
    /// 2^28 entries: N = 16384 positions (a 128×128 map).
    static let defaultLimit = 1 << 28

    static func refuses(_ info: ModuleInfo, positions n: Int, limit: Int) -> Bool {
        info.complexityExponent >= 2 && n.multipliedReportingOverflow(by: n).partialValue > limit
            || (info.complexityExponent >= 2 && n.multipliedReportingOverflow(by: n).overflow)
    }

    /// Throws when `refuses`: the message names the limit and the flag that lifts it.
    static func check(_ info: ModuleInfo, inputShape: [Int], limit: Int) throws {
        let n = inputShape.count == 4 ? inputShape[2] * inputShape[3] : inputShape.count == 3 ? inputShape[1] : 0
        if refuses(info, positions: n, limit: limit) {
            throw ModuleError.unsupported(module: info.id, message:
                "\(n) positions make a \(n)×\(n) attention matrix (\(n * n) entries), over the limit of \(limit) for an O(N²) module; " +
                "pass --max-attention \(n * n) to run it anyway (see `attend estimate`)")
        }
    }

    struct Result { var milliseconds: Double; var peakMiB: Double; var memoryExponent: Double }

    static func estimate(_ t: any AttentionModule.Type, height: Int, width: Int, channels: Int, batch: Int,
                         settings: [String: String]) throws -> Result {
        let target = Double(height * width)
        // Two probe sizes with the map's aspect, small enough to run in well under a second.
        let aspect = Double(width) / Double(height)
        var probes: [(n: Double, ms: Double, mib: Double)] = []
        for side in [12.0, 20.0] {
            let ph = max(2, Int((side / aspect.squareRoot()).rounded())), pw = max(2, Int((side * aspect.squareRoot()).rounded()))
            let shape = t.info.kind == .sequence ? [batch, ph * pw, channels] : [batch, channels, ph, pw]
            var g = SeededGenerator(seed: 3)
            let x = Tensor.randomNormal(shape, generator: &g)
            let m = try Registry.make(id: t.info.id, settings: settings, inputShape: shape, seed: 1)
            _ = try m(x)
            let base = MemoryStats.liveBytes
            MemoryStats.resetPeak()
            var best = Double.infinity
            for _ in 0..<3 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try m(x)
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            probes.append((Double(ph * pw), best, Double(MemoryStats.peakBytes - base) / 1_048_576))
        }
        let (a, b) = (probes[0], probes[1])
        let memExp = a.mib > 0 && b.mib > 0 ? log(b.mib / a.mib) / log(b.n / a.n) : 1
        return Result(milliseconds: b.ms * pow(target / b.n, t.info.complexityExponent),
                      peakMiB: b.mib * pow(target / b.n, max(memExp, 0)), memoryExponent: memExp)
    }
}
