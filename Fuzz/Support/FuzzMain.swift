// The shared main of the fuzz targets: libFuzzer's driver in a fuzzing build, a replay tool
// in a normal one.
//
// Fuzzing build (`make fuzz-build`, i.e. `-DFUZZING` with coverage instrumentation and
// compiler-rt's libFuzzer without its main): every libFuzzer flag works
// (`fuzz-png -max_total_time=60 corpus/`). Normal build: the arguments are files or folders,
// and the same callback runs once on each file's bytes, so a crasher checked into the tree
// replays under `swift run fuzz-png crash-…` or in a test without any sanitizer.
//
// Why not `-sanitize=fuzzer`: swiftc then links all of libclang_rt.fuzzer (whole-archive),
// whose `main` collides with the executable's own (SwiftPM links `--defsym main=<target>_main`);
// gold even dies with an internal error while reporting it. `-sanitize-coverage=…` plus
// `libclang_rt.fuzzer_no_main` is the arrangement compiler-rt documents for
// LLVMFuzzerRunDriver, and it needs no flag in Package.swift.

import Foundation
#if FUZZING
import CFuzzerDriver
#endif

/// What a target does with one input: return normally when the input was handled (decoded or
/// refused), trap (precondition, fatalError, a sanitizer report) when an invariant broke.
nonisolated(unsafe) private var fuzzBody: (Data) -> Void = { _ in }

public enum Fuzz {
    /// Runs `body` under libFuzzer (fuzzing build) or on each file named on the command line.
    public static func main(_ name: String, _ body: @escaping (Data) -> Void) -> Never {
        fuzzBody = body
        #if FUZZING
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        let status = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            // libFuzzer passes (nil, 0) for the empty input.
            fuzzBody(size == 0 ? Data() : Data(bytes: data!, count: size))
            return 0
        }
        exit(status)
        #else
        exit(replay(name, Array(CommandLine.arguments.dropFirst())))
        #endif
    }

    /// Replays files and folders (recursively, sorted); flags (`-…`) are ignored so libFuzzer
    /// command lines still work. Returns the exit status.
    static func replay(_ name: String, _ arguments: [String]) -> Int32 {
        let paths = arguments.filter { !$0.hasPrefix("-") }
        if paths.isEmpty {
            FileHandle.standardError.write(Data("""
            usage: \(name) FILE-OR-FOLDER...
            Runs the \(name) fuzz callback once on each file (a replay build; build with
            `make fuzz-build` for libFuzzer).

            """.utf8))
            return 2
        }
        var count = 0
        for path in paths {
            for file in files(under: path) {
                guard let data = FileManager.default.contents(atPath: file) else {
                    FileHandle.standardError.write(Data("\(name): cannot read \(file)\n".utf8))
                    return 1
                }
                fuzzBody(data)
                count += 1
            }
        }
        print("\(name): \(count) input(s) replayed, no invariant broken")
        return 0
    }

    static func files(under path: String) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            return [path]
        }
        let entries = (try? FileManager.default.subpathsOfDirectory(atPath: path)) ?? []
        return entries.sorted().map { (path as NSString).appendingPathComponent($0) }.filter {
            var d: ObjCBool = false
            return FileManager.default.fileExists(atPath: $0, isDirectory: &d) && !d.boolValue
        }
    }

    /// Traps with `message` unless `condition` holds: the fuzzer records the input as a crash.
    public static func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
        if !condition() { fatalError("invariant broken: \(message())") }
    }
}
