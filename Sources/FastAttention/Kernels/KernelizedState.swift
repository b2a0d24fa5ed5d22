// The recurrent form of the kernelised-attention core (KernelizedAttention.swift): the state
// S = Σφ(k)vᵀ (m×dv) and z = Σφ(k) (m) of every head, updated one token at a time. Decoding
// uses it directly; update rules other than the sum (gated decay, the delta rule of fast
// weights) are its methods. Plus the naive full-matrix reference the kernels are tested
// against.

import Foundation
import TensorCore

/// Running state of multi-head kernelised attention, float32, one (S, z) per head.
public struct KernelizedState: Sendable {
    public let heads: Int, m: Int, dv: Int
    /// heads × m × dv
    public var s: [Float]
    /// heads × m
    public var z: [Float]

    public init(heads: Int, m: Int, dv: Int) {
        self.heads = heads
        self.m = m
        self.dv = dv
        s = [Float](repeating: 0, count: heads * m * dv)
        z = [Float](repeating: 0, count: heads * m)
    }

    /// S_h ← g·S_h, z_h ← g·z_h (a gate's decay).
    public mutating func decay(head h: Int, by g: Float) {
        for i in (h * m * dv)..<((h + 1) * m * dv) { s[i] *= g }
        for i in (h * m)..<((h + 1) * m) { z[i] *= g }
    }

    /// S_h += w·φk vᵀ, z_h += w·φk (the sum rule).
    public mutating func add(head h: Int, phiK: UnsafePointer<Float>, value: UnsafePointer<Float>, weight w: Float = 1) {
        let (m, dv) = (self.m, self.dv)
        s.withUnsafeMutableBufferPointer { sp in
            let sh = sp.baseAddress! + h * m * dv
            for c in 0..<m {
                let kc = w * phiK[c], row = sh + c * dv
                if kc == 0 { continue }
                for j in 0..<dv { row[j] += kc * value[j] }
            }
        }
        for c in 0..<m { z[h * m + c] += w * phiK[c] }
    }

    /// out = S_hᵀ x (dv values): what the state retrieves for a feature vector x, unnormalised.
    public func retrieve(head h: Int, _ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let (m, dv) = (self.m, self.dv)
        out.update(repeating: 0, count: dv)
        s.withUnsafeBufferPointer { sp in
            let sh = sp.baseAddress! + h * m * dv
            for c in 0..<m {
                let xc = x[c], row = sh + c * dv
                if xc == 0 { continue }
                for j in 0..<dv { out[j] += xc * row[j] }
            }
        }
    }

    /// out = φqᵀS_h / normaliser(φq·z_h): the attention output of one head.
    public func read(head h: Int, phiQ: UnsafePointer<Float>, normaliser: KernelNormaliser,
                     into out: UnsafeMutablePointer<Float>) {
        retrieve(head: h, phiQ, into: out)
        var dot: Float = 0, qs: Float = 0
        for c in 0..<m { dot += phiQ[c] * z[h * m + c]; qs += phiQ[c] }
        let inv = 1 / normaliser.divisor(dot: dot, qSum: qs)
        for j in 0..<dv { out[j] *= inv }
    }

    /// The delta rule (fast weights): v̄ = S_hᵀk, S_h += k ⊗ β(v − v̄). z is left alone (the
    /// reference keeps its own normaliser sums).
    public mutating func deltaUpdate(head h: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>, beta: Float,
                                     scratch: UnsafeMutablePointer<Float>) {
        retrieve(head: h, key, into: scratch)
        for j in 0..<dv { scratch[j] = beta * (value[j] - scratch[j]) }
        let (m, dv) = (self.m, self.dv)
        s.withUnsafeMutableBufferPointer { sp in
            let sh = sp.baseAddress! + h * m * dv
            for c in 0..<m {
                let kc = key[c], row = sh + c * dv
                if kc == 0 { continue }
                for j in 0..<dv { row[j] += kc * scratch[j] }
            }
        }
    }

    /// One causal step of the sum rule for every head: S += φk vᵀ, z += φk, then
    /// out = φqᵀS / normaliser. φq, φk are heads×m, v and out heads×dv (row-major).
    /// With `gate` (per head), the state first decays by it.
    public mutating func step(phiQ: UnsafePointer<Float>, phiK: UnsafePointer<Float>, v: UnsafePointer<Float>,
                              out: UnsafeMutablePointer<Float>, normaliser: KernelNormaliser, gate: [Float]? = nil) {
        for h in 0..<heads {
            if let gate { decay(head: h, by: gate[h]) }
            add(head: h, phiK: phiK + h * m, value: v + h * dv)
            read(head: h, phiQ: phiQ + h * m, normaliser: normaliser, into: out + h * dv)
        }
    }
}

extension KernelizedAttention {
    /// Naive reference for one (batch, head) problem: the full lq×lk weight matrix in Double,
    /// w_ij = φq_i·φk_j · Π_{j<t≤i} g_t (causal keeps j ≤ i), out_i = Σ_j w_ij v_j / normaliser.
    /// For tests only.
    public static func forwardNaive(lq: Int, lk: Int, m: Int, dv: Int, phiQ: [Float], phiK: [Float], v: [Float],
                                    normaliser: KernelNormaliser, causal: Bool = false,
                                    logDecay: [Float]? = nil) -> [Float] {
        var out = [Float](repeating: 0, count: lq * dv)
        for i in 0..<lq {
            var w = [Double](repeating: 0, count: lk)
            for j in 0..<lk where !causal || j <= i {
                var d = 0.0
                for c in 0..<m { d += Double(phiQ[i * m + c]) * Double(phiK[j * m + c]) }
                if let lg = logDecay, j < i { d *= Foundation.exp((j + 1...i).map { Double(lg[$0]) }.reduce(0, +)) }
                w[j] = d
            }
            let dot = w.reduce(0, +), qs = (0..<m).map { Double(phiQ[i * m + $0]) }.reduce(0, +)
            let div: Double
            switch normaliser {
            case .denominator(let eps): div = dot + Double(eps)
            case .keySum(let eps): div = dot + Double(eps) * qs
            case .guarded(let eps): div = Swift.abs(dot) <= Double(eps) ? dot + 2 * Double(eps) : dot
            case .none: div = 1
            }
            for c in 0..<dv {
                var acc = 0.0
                for j in 0..<lk { acc += w[j] * Double(v[j * dv + c]) }
                out[i * dv + c] = Float(acc / div)
            }
        }
        return out
    }
}
