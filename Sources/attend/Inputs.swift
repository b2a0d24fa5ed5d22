// Reading inputs and writing outputs for the subcommands: tensors from .npy / .safetensors,
// photos through the image stem, and atomic writes (temporary name, rename on success).

import FastAttention
import Foundation
import ImageIO
import TensorCore

enum InputError: Error, CustomStringConvertible {
    case missing(String)
    case unsupported(String)
    case unsupportedOutput(String)
    case ambiguous(path: String, keys: [String])
    case noKey(path: String, key: String, keys: [String])
    case rank(path: String, shape: [Int], module: String, kind: String)
    case cannotWrite(path: String, reason: String)

    var description: String {
        switch self {
        case .missing(let p): return "\(p): no such file"
        case .unsupported(let p):
            return "\(p): unsupported input type (expected .npy, .safetensors, or a PNG/JPEG image)"
        case .unsupportedOutput(let p):
            return "\(p): unsupported output type (expected .npy or .safetensors)"
        case let .ambiguous(p, keys):
            return "\(p): holds \(keys.count) tensors (\(keys.prefix(8).joined(separator: ", "))); choose one with --key"
        case let .noKey(p, k, keys):
            return "\(p): no tensor '\(k)' (it has: \(keys.prefix(8).joined(separator: ", ")))"
        case let .rank(p, s, m, kind):
            return "\(p): shape \(Shape.format(s)) does not fit \(m), which takes \(kind)"
        case let .cannotWrite(p, reason):
            return "\(p): cannot write: \(reason)"
        }
    }
}

/// An error about one file, as "PATH: cause": the CLI's one line then names the file at fault
/// even when the cause came from below (a module's shape check, strict weight loading).
struct FileError: Error, CustomStringConvertible {
    let path: String
    let underlying: any Error

    var description: String {
        let text = String(describing: underlying)
        return text.hasPrefix(path + ":") ? text : "\(path): \(text)"
    }

    /// Runs `body` (building a module, applying it), naming `weights` in strict-loading errors
    /// and `input` in shape errors (wrong rank or channel count for the module). Errors about
    /// `--set` itself (unknown keys, bad values) are left as they are: no file is at fault.
    static func naming<T>(input: String, weights: String?, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as WeightsError {
            if case .strict = e, let weights { throw FileError(path: weights, underlying: e) }
            throw e
        } catch let e as ModuleError {
            if case .badInput = e { throw FileError(path: input, underlying: e) }
            throw e
        } catch let e as ConfigError {
            if case .inconsistent = e { throw FileError(path: input, underlying: e) }
            throw e
        } catch let e as ShapeError {
            throw FileError(path: input, underlying: e)
        }
    }
}

enum InputFile {
    static func isTensorFile(_ path: String) -> Bool {
        let e = (path as NSString).pathExtension.lowercased()
        return e == "npy" || e == "safetensors"
    }

    /// A tensor from .npy, or from .safetensors (`key`, else `input`, else its only tensor).
    static func tensor(_ path: String, key: String? = nil) throws -> Tensor {
        guard FileManager.default.fileExists(atPath: path) else { throw InputError.missing(path) }
        let url = URL(fileURLWithPath: path)
        switch url.pathExtension.lowercased() {
        case "npy":
            return try NPY.read(contentsOf: url)
        case "safetensors":
            let sd = try SafeTensors.read(contentsOf: url)
            if let key {
                guard let t = sd.tensors[key] else { throw InputError.noKey(path: path, key: key, keys: sd.keys) }
                return t
            }
            if let t = sd.tensors["input"] { return t }
            guard sd.tensors.count == 1, let t = sd.tensors.values.first else {
                throw InputError.ambiguous(path: path, keys: sd.keys)
            }
            return t
        default:
            throw InputError.unsupported(path)
        }
    }

    /// Backbone features for a photo: a 1×C×H×W (or C×H×W) tensor.
    static func featureMap(_ path: String, module: String) throws -> Tensor {
        let t = try tensor(path)
        if t.rank == 3 { return t.reshaped([1] + t.shape) }
        guard t.rank == 4, t.shape[0] == 1 else {
            throw InputError.rank(path: path, shape: t.shape, module: module, kind: "1×C×H×W feature maps")
        }
        return t
    }

    static func weights(_ path: String) throws -> StateDict {
        guard FileManager.default.fileExists(atPath: path) else { throw InputError.missing(path) }
        return try SafeTensors.read(contentsOf: URL(fileURLWithPath: path))
    }

    static func image(_ path: String, maxPixels: Int) throws -> Image {
        guard FileManager.default.fileExists(atPath: path) else { throw InputError.missing(path) }
        return try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: path), maxPixels: maxPixels)
    }
}

enum OutputFile {
    /// Writes a tensor as .npy or .safetensors (key `output`) by extension, atomically.
    static func write(_ t: Tensor, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        switch url.pathExtension.lowercased() {
        case "npy": try NPY.write(t, to: url)
        case "safetensors": try SafeTensors.write(StateDict(tensors: ["output": t]), to: url)
        default: throw InputError.unsupportedOutput(path)
        }
    }

    /// Creates a folder (and parents) for outputs.
    static func ensureDirectory(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
}

/// Parses "x,y" pixel coordinates.
func parsePoint(_ s: String) -> (x: Int, y: Int)? {
    let parts = s.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard parts.count == 2, let x = parts[0], let y = parts[1] else { return nil }
    return (x, y)
}

/// Parses "16,32,64".
func parseInts(_ s: String) -> [Int]? {
    let v = s.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !v.isEmpty, v.allSatisfy({ $0 != nil }) else { return nil }
    return v.map { $0! }
}
