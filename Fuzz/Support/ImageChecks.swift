// Invariants the image fuzz targets check after every decode, shared by fuzz-png and fuzz-jpeg.

import Foundation

public enum ErrorText {
    /// A user-facing error: one line that starts with the input's name (what `attend` prints).
    public static func check(_ text: String, name: String) {
        Fuzz.check(text.hasPrefix(name + ": "), "error text does not start with '\(name): ': \(text)")
        Fuzz.check(!text.contains("\n") && !text.contains("\r"), "error text is not one line: \(text)")
        Fuzz.check(text.count < 2000, "error text is \(text.count) characters long")
    }
}
