// The one seeded generator: the same numbers on every machine for the same seed.
//
// Randomness in modules (LSH rotations, random features, random blocks, initial weights) is
// drawn from this generator, named by a `seed` in the module's config, or supplied as a buffer.

import Foundation

/// xoshiro256** seeded through SplitMix64. Integer arithmetic only, so a seed gives the same
/// stream on every platform; floats are built from the top 24 (or 53) bits.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)
    /// A second normal deviate from the last Box–Muller pair, if any.
    private var spare: Double?

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public mutating func next() -> UInt64 {
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Standard normal by Box–Muller (pairs, the second kept for the next call).
    public mutating func nextNormal() -> Double {
        if let z = spare { spare = nil; return z }
        var u1 = nextUniform()
        while u1 <= .leastNonzeroMagnitude { u1 = nextUniform() }
        let u2 = nextUniform()
        let r = (-2 * Foundation.log(u1)).squareRoot()
        spare = r * Foundation.sin(2 * .pi * u2)
        return r * Foundation.cos(2 * .pi * u2)
    }

    /// Uniform integer in 0..<n without modulo bias.
    public mutating func nextInt(below n: Int) -> Int {
        precondition(n > 0)
        return Int(next(upperBound: UInt64(n)))
    }
}

extension Tensor {
    /// Independent N(mean, std²) samples.
    public static func randomNormal(_ shape: [Int], mean: Float = 0, std: Float = 1,
                                    generator g: inout SeededGenerator) -> Tensor {
        var t = Tensor(uninitialized: shape)
        t.withUnsafeMutableBufferPointer { p in
            for i in p.indices { p[i] = mean + std * Float(g.nextNormal()) }
        }
        return t
    }

    /// Independent U[low, high) samples.
    public static func randomUniform(_ shape: [Int], low: Float = 0, high: Float = 1,
                                     generator g: inout SeededGenerator) -> Tensor {
        var t = Tensor(uninitialized: shape)
        let w = Double(high - low)
        t.withUnsafeMutableBufferPointer { p in
            for i in p.indices { p[i] = low + Float(g.nextUniform() * w) }
        }
        return t
    }
}
