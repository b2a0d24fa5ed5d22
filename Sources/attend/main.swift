// attend — apply efficient attention modules to images and feature maps.

import ArgumentParser
import FastAttention
import Foundation
import TensorCore

struct Attend: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attend",
        abstract: "Efficient attention modules (awesome-fast-attention) on images and feature maps.",
        discussion: """
        Modules are named by their modules.tsv ids (`attend list`). Config keys are the reference
        constructor's keyword arguments (--set reduction=4), and --weights loads a PyTorch
        state_dict exported as safetensors under the reference's own key names.

        Examples:
          attend list
          attend info non-local
          attend map photo.jpg --module non-local --query 120,80 --out maps/
          attend run --module non-local --input feats.npy --output out.npy --weights nl.safetensors
          attend bench --module non-local --sizes 16,32,64
        """,
        subcommands: [List.self, Info.self, Run.self, MapCommand.self, Gallery.self, Compare.self, Batch.self, Bench.self, Estimate.self]
    )
}

/// Every failure ends here: one line on stderr naming what was wrong, exit status 1
/// (2 for usage errors, as ArgumentParser does).
var failed = false
do {
    Threads.configure()
    var command = try Attend.parseAsRoot()
    try command.run()
} catch let error as CleanExit {
    Attend.exit(withError: error)
} catch let error as ValidationError {
    Attend.exit(withError: error)
} catch let error as ExitCode {
    Attend.exit(withError: error)
} catch {
    let text = String(describing: error)
    if text.contains("ArgumentParser") || type(of: error) is any ParsableArguments.Type {
        Attend.exit(withError: error)
    }
    FileHandle.standardError.write(Data(("attend: " + text.replacingOccurrences(of: "\n", with: " ") + "\n").utf8))
    failed = true
}
// Exit after the catch scope has released the error: LeakSanitizer cannot follow Swift's
// spare-bit-tagged enum payloads, so exiting while an error is alive reports its arrays as
// leaked and fails sanitizer runs for nothing.
if failed { exit(1) }
