// Progress on stderr for long work: a bar redrawn in place on a terminal, nothing when piped
// (logs stay clean), and a one-line summary at the end either way.

import Foundation
import TensorCore

final class Progress {
    let total: Int
    let title: String
    private(set) var done = 0
    private let tty: Bool
    private let start = Date()
    private var lastDraw = Date.distantPast

    init(total: Int, title: String, quiet: Bool = false) {
        self.total = total
        self.title = title
        tty = !quiet && isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
    }

    /// Marks one item finished (`what` names it on the bar).
    func step(_ what: String) {
        done += 1
        guard tty else { return }
        let now = Date()
        if done < total && now.timeIntervalSince(lastDraw) < 0.1 { return }
        lastDraw = now
        let width = 28, filled = total > 0 ? width * done / total : width
        let elapsed = now.timeIntervalSince(start)
        let eta = done > 0 && done < total ? String(format: " eta %.0fs", elapsed / Double(done) * Double(total - done)) : ""
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let line = "\r\(title) \(bar) \(done)/\(total)\(eta) \(what.prefix(40))"
        FileHandle.standardError.write(Data((line + "\u{1B}[K").utf8))
    }

    /// Ends the bar and prints a summary line.
    func finish(_ summary: String) {
        if tty { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        let s = String(format: "%@: %@ (%.1f s)\n", title, summary, Date().timeIntervalSince(start))
        FileHandle.standardError.write(Data(s.utf8))
    }
}

/// Writes text atomically: a temporary file beside the target, synced, renamed on success.
func writeAtomically(_ text: String, to path: String) throws {
    do {
        try AtomicFile.write(Data(text.utf8), to: URL(fileURLWithPath: path))
    } catch let e as AtomicFile.Failure {
        throw InputError.cannotWrite(path: path, reason: e.reason)
    }
}

/// All image files in a folder (PNG/JPEG by extension), sorted by name.
func imageFiles(in dir: String) throws -> [String] {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
        throw InputError.missing(dir)
    }
    let exts: Set<String> = ["png", "jpg", "jpeg"]
    return try FileManager.default.contentsOfDirectory(atPath: dir)
        .filter { exts.contains(($0 as NSString).pathExtension.lowercased()) && !$0.hasPrefix(".") }
        .sorted()
        .map { (dir as NSString).appendingPathComponent($0) }
}
