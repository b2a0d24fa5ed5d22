// The instruction set of the vectorised C kernels (CKernels): one decision for all of them,
// taken from the CPU at first use (AVX-512F, AVX2+FMA or portable C), which tests can cap to
// run every path on one machine.

import CKernels

public enum KernelISA: Int, Comparable, CaseIterable, Sendable {
    case portable = 0, avx2 = 1, avx512 = 2

    public static func < (a: KernelISA, b: KernelISA) -> Bool { a.rawValue < b.rawValue }

    /// The best this CPU has.
    public static var cpu: KernelISA { KernelISA(rawValue: Int(fa_cpu_isa())) ?? .portable }

    /// What the kernels use now (the CPU's best unless capped by `limited(to:_:)`).
    public static var current: KernelISA { KernelISA(rawValue: Int(fa_isa())) ?? .portable }

    /// Runs `body` with every kernel capped at `isa` (for tests of each path), then restores the
    /// CPU's best. Not for use while other threads run kernels.
    public static func limited<R>(to isa: KernelISA, _ body: () throws -> R) rethrows -> R {
        fa_set_isa_limit(Int32(isa.rawValue))
        defer { fa_set_isa_limit(Int32(KernelISA.avx512.rawValue)) }
        return try body()
    }

    /// Every path this CPU can run, portable first.
    public static var available: [KernelISA] { allCases.filter { $0 <= cpu } }
}
