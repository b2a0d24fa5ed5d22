import Foundation

/// The outcome of running a built executable.
public struct CommandResult {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

/// The folder holding the built products (`.build/debug`), found from the test bundle.
public func productsDirectory() -> URL {
    for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
        return bundle.bundleURL.deletingLastPathComponent()
    }
    return Bundle.main.bundleURL
}

/// Runs `attend` (or another product) with `arguments`, without a shell, and waits.
public func runProduct(_ name: String = "attend", _ arguments: [String], environment: [String: String]? = nil,
                       currentDirectory: URL? = nil) throws -> CommandResult {
    let p = Process()
    p.executableURL = productsDirectory().appendingPathComponent(name)
    p.arguments = arguments
    if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    if let currentDirectory { p.currentDirectoryURL = currentDirectory }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Read both pipes fully before waiting, so a chatty child cannot block on a full pipe.
    final class Box: @unchecked Sendable { var data = Data() }
    let outBox = Box()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { outBox.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    let outData = outBox.data
    p.waitUntilExit()
    return CommandResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

/// A fresh temporary folder, removed by the caller's `addTeardownBlock` if wanted.
public func temporaryDirectory(_ prefix: String = "attend-test") throws -> URL {
    let u = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    return u
}
