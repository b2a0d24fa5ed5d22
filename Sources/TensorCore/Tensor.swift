// The one tensor type of the package: float32, contiguous, row-major, copy-on-write.
//
// Conventions follow PyTorch: feature maps are N×C×H×W, token sequences N×L×C (batch-first),
// and a map becomes tokens by flattening H×W in raster order (L = H·W).

import Foundation

/// Aligned float storage shared between tensor values until one of them writes.
public final class TensorStorage: @unchecked Sendable {
    public let count: Int
    public let base: UnsafeMutablePointer<Float>

    /// 64-byte alignment: a cache line, and enough for any SIMD width we dispatch to.
    static let alignment = 64

    init(count: Int) {
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: TensorStorage.alignment)
        base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        MemoryStats.allocated(bytes: bytes)
    }

    @usableFromInline func copy() -> TensorStorage {
        let s = TensorStorage(count: count)
        s.base.update(from: base, count: count)
        return s
    }

    deinit {
        MemoryStats.freed(bytes: max(count, 1) * MemoryLayout<Float>.stride)
        base.deallocate()
    }
}

/// An N-dimensional float32 array, contiguous and row-major, with value semantics.
///
/// Copies share storage until one of them is mutated (copy-on-write). All hot loops reach the
/// elements through `withUnsafeBufferPointer` / `withUnsafeMutableBufferPointer`.
public struct Tensor: @unchecked Sendable {
    public private(set) var shape: [Int]
    @usableFromInline var storage: TensorStorage

    /// A tensor of zeros.
    public init(zeros shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        let n = shape.reduce(1, *)
        storage = TensorStorage(count: n)
        storage.base.initialize(repeating: 0, count: max(n, 1))
    }

    /// A tensor filled with one value.
    public init(shape: [Int], repeating value: Float) {
        self.init(zeros: shape)
        if value != 0 { storage.base.update(repeating: value, count: count) }
    }

    /// A tensor with the given elements in row-major order.
    public init(shape: [Int], scalars: [Float]) {
        let n = shape.reduce(1, *)
        precondition(n == scalars.count, "shape \(shape) needs \(n) scalars, got \(scalars.count)")
        self.init(zeros: shape)
        scalars.withUnsafeBufferPointer { src in
            if n > 0 { storage.base.update(from: src.baseAddress!, count: n) }
        }
    }

    /// A tensor whose storage is not initialised: for ops that write every element.
    public init(uninitialized shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        storage = TensorStorage(count: shape.reduce(1, *))
    }

    /// A rank-0 tensor.
    public init(scalar: Float) { self.init(shape: [], scalars: [scalar]) }

    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    public var scalars: [Float] { withUnsafeBufferPointer { Array($0) } }

    /// Row-major strides in elements.
    public var strides: [Int] { Tensor.strides(of: shape) }

    public static func strides(of shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
        return s
    }

    /// Size of a dimension, with negative indices counting from the end (as PyTorch's `size(-1)`).
    public func size(_ dim: Int) -> Int { shape[normalizedAxis(dim)] }

    public func normalizedAxis(_ axis: Int) -> Int {
        let a = axis < 0 ? axis + rank : axis
        precondition(a >= 0 && a < Swift.max(rank, 1), "axis \(axis) out of range for rank \(rank)")
        return a
    }

    @inlinable
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.base, count: storage.count))
    }

    @inlinable
    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
        return try body(UnsafeMutableBufferPointer(start: storage.base, count: storage.count))
    }

    /// Element access by a full index (slow; for tests and small bookkeeping).
    public subscript(_ index: Int...) -> Float {
        get { storage.base[offset(index)] }
        set {
            let o = offset(index)
            withUnsafeMutableBufferPointer { $0[o] = newValue }
        }
    }

    func offset(_ index: [Int]) -> Int {
        precondition(index.count == rank, "index \(index) has rank \(index.count), tensor has rank \(rank)")
        var o = 0
        for (i, (ix, n)) in zip(index, shape).enumerated() {
            precondition(ix >= 0 && ix < n, "index \(ix) out of range \(n) on axis \(i)")
            o = o * n + ix
        }
        return o
    }

    /// The same elements under another shape; one dimension may be -1 (inferred), as in PyTorch.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let rest = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            precondition(rest > 0 && count % rest == 0, "cannot reshape \(shape) to \(newShape)")
            s[i] = count / rest
        }
        precondition(s.reduce(1, *) == count, "cannot reshape \(shape) (\(count) elements) to \(newShape)")
        var t = self
        t.shape = s
        return t
    }

    public func reshaped(_ newShape: Int...) -> Tensor { reshaped(newShape) }

    /// True when both tensors share one storage (for tests of copy-on-write and no-copy views).
    public func sharesStorage(with other: Tensor) -> Bool { storage === other.storage }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = scalars.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(preview)\(count > 8 ? ", …" : "")])"
    }
}

/// Process-wide count of live tensor bytes and its high-water mark, for `attend bench`.
public enum MemoryStats {
    nonisolated(unsafe) static var live = 0
    nonisolated(unsafe) static var peak = 0
    static let lock = NSLock()

    static func allocated(bytes: Int) {
        lock.lock(); live += bytes; if live > peak { peak = live }; lock.unlock()
    }
    static func freed(bytes: Int) { lock.lock(); live -= bytes; lock.unlock() }

    /// Bytes of tensor storage alive now.
    public static var liveBytes: Int { lock.lock(); defer { lock.unlock() }; return live }
    /// The most tensor bytes alive at once since the last `resetPeak()`.
    public static var peakBytes: Int { lock.lock(); defer { lock.unlock() }; return peak }
    public static func resetPeak() { lock.lock(); peak = live; lock.unlock() }
}
