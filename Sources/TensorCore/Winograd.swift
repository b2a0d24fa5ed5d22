// Winograd F(4×4, 3×3) for 3×3, stride 1, dilation 1, groups 1 convolutions (Lavin & Gray,
// "Fast Algorithms for Convolutional Neural Networks", CVPR 2016), the path `conv2d` takes for
// those shapes when both channel counts are at least `Winograd.minChannels` and the output has
// at least `Winograd.minPixels` pixels.
//
// Each 4×4 output tile is Aᵀ[Σ_c (G g Gᵀ)_c ⊙ (Bᵀ d B)_c]A over the 6×6 input patch d: the
// 36 positions ξ of the transformed domain are 36 independent GEMMs
// M_ξ (O×tiles) = U_ξ (O×C) · V_ξ (C×tiles), 36·O·C multiply-adds per 16 outputs instead of
// 144·O·C (a quarter of im2col's GEMM). The transforms are vectorised C (CKernels/conv3x3.c).
// Error: about 2e-6 of the output's magnitude for C = 256 (the interpolation points 0, ±1, ±2
// amplify rounding by a few units), against ~1e-7 for the direct sum.
//
// Memory is bounded: the image is processed in chunks of tiles whose V and M buffers together
// stay under `Winograd.chunkBytes` (per thread); only U (36·O·C floats) is whole.
// Threads: chunks (at least one per thread) run side by side in one `Threads.parallelFor`,
// each through the whole pipeline; their GEMMs run on one BLAS thread.

import CKernels

public enum Winograd {
    /// Set false to send every conv through im2col (A/B timing, tests).
    public static var enabled = true
    /// Below this many input or output channels the transforms cost more than they save.
    public static var minChannels = 8
    /// Bytes of transformed input and output tiles held at once (V and M of one chunk).
    public static var chunkBytes = 2 << 20
    // The transforms' instruction set is KernelISA.current (capped by KernelISA.limited in tests).

    /// Whether `conv2d` runs this geometry through Winograd F(4×4, 3×3).
    static func applies(_ g: ConvGeometry) -> Bool {
        enabled && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1
            && g.groups == 1 && g.c >= minChannels && g.o >= minChannels && g.n * g.ho * g.wo >= minPixels
    }

    /// Below this many output pixels (all images) the per-call weight transform (≈ 100 flops
    /// per weight pair) costs more than the ≈ 7 multiply-adds per pixel and pair it saves.
    static let minPixels = 64
}

/// 3×3 conv weights (O×C×3×3, groups 1) transformed once into the Winograd domain, for a layer
/// that runs many times on the same weights: `conv2d(x, winograd:)` then skips the per-call
/// weight transform (36·O·C floats, 4× the weights' memory).
public struct WinogradConv3x3: Sendable {
    public let outChannels: Int
    public let inChannels: Int
    /// 36 × O × C.
    let u: Tensor

    public init(weight: Tensor) throws {
        guard weight.rank == 4, weight.shape[2] == 3, weight.shape[3] == 3 else {
            throw ShapeError.mismatch(what: "WinogradConv3x3", expected: "weight O×C×3×3", found: weight.shape)
        }
        (outChannels, inChannels) = (weight.shape[0], weight.shape[1])
        u = winogradWeights(weight, o: outChannels, c: inChannels)
    }
}

/// U = G g Gᵀ for every (o, c): 36 × O × C.
func winogradWeights(_ weight: Tensor, o: Int, c: Int) -> Tensor {
    var u = Tensor(uninitialized: [36, o, c])
    if u.count == 0 { return u }
    weight.withUnsafeBufferPointer { wp in
        u.withUnsafeMutableBufferPointer { up in
            let (wb, ub) = (wp.baseAddress!, up.baseAddress!)
            Threads.parallelFor(o, minChunk: max(1, 4096 / max(c, 1))) { r in
                fa_wino43_weights(wb, o, c, r.lowerBound, r.upperBound, ub)
            }
        }
    }
    return u
}

/// `conv2d(x, weight, bias, stride: 1, padding: padding)` with weights prepared by
/// `WinogradConv3x3`: x N×C×H×W → N×O×(H+2ph−2)×(W+2pw−2).
public func conv2d(_ x: Tensor, winograd w: WinogradConv3x3, bias: Tensor? = nil,
                   padding: (Int, Int) = (0, 0)) throws -> Tensor {
    let g = try ConvGeometry(x: x.shape, weight: [w.outChannels, w.inChannels, 3, 3], bias: bias?.shape,
                             stride: (1, 1), padding: padding, dilation: (1, 1), groups: 1, name: "conv2d")
    if g.c == 0 || g.n * g.o * g.ho * g.wo == 0 { return conv2dOutput(g, bias: bias) }
    return conv2dWinograd(x, u: w.u, bias: bias, g)
}

/// The conv of x (N×C×H×W) with transformed weights u (36×O×C) plus bias: N×O×Ho×Wo, every
/// element written by the output transform (no zero fill).
func conv2dWinograd(_ x: Tensor, u: Tensor, bias: Tensor?, _ g: ConvGeometry) -> Tensor {
    var out = Tensor(uninitialized: [g.n, g.o, g.ho, g.wo])
    x.withUnsafeBufferPointer { xp in
        u.withUnsafeBufferPointer { up in
            out.withUnsafeMutableBufferPointer { op in
                if let bias {
                    bias.withUnsafeBufferPointer { bp in
                        conv2dWinograd(xp.baseAddress!, up.baseAddress!, bp.baseAddress!, op.baseAddress!, g)
                    }
                } else {
                    conv2dWinograd(xp.baseAddress!, up.baseAddress!, nil, op.baseAddress!, g)
                }
            }
        }
    }
    return out
}

/// Writes the conv of x (N×C×H×W) with transformed weights u (36×O×C), plus bias, into out
/// (N×O×Ho×Wo).
/// Work is split into jobs of (image, chunk of tiles), at least one per thread; each job runs
/// the whole pipeline (input transform, 36 GEMMs, output transform) on its own buffers, so a
/// chunk stays in one core's cache and the threads meet once.
func conv2dWinograd(_ x: UnsafePointer<Float>, _ u: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                    _ out: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    let tilesW = (g.wo + 3) / 4, tiles = (g.ho + 3) / 4 * tilesW
    // Tiles per chunk: a multiple of the 16 lanes the transforms work on, chunks of equal size.
    let perTile = 36 * (g.c + g.o) * MemoryLayout<Float>.size
    let byMemory = (tiles * perTile + Winograd.chunkBytes - 1) / Winograd.chunkBytes
    // With few jobs, a multiple of the thread count of them, so no thread waits on a last one.
    let threads = Threads.count
    var want = max(byMemory, (threads + g.n - 1) / g.n)
    while (g.n * want) % threads != 0 && g.n * want < 8 * threads { want += 1 }
    let chunks = max(1, min(want, (tiles + 15) / 16))
    let chunk = min(tiles, ((tiles + chunks - 1) / chunks + 15) / 16 * 16)
    let perImage = (tiles + chunk - 1) / chunk
    let (c, o) = (g.c, g.o)
    Threads.parallelFor(g.n * perImage) { jobs in
        let v = UnsafeMutablePointer<Float>.allocate(capacity: 36 * c * chunk)
        let m = UnsafeMutablePointer<Float>.allocate(capacity: 36 * o * chunk)
        defer { v.deallocate(); m.deallocate() }
        for job in jobs {
            let (nn, ci) = job.quotientAndRemainder(dividingBy: perImage)
            let xi = x + nn * c * g.h * g.w, oi = out + nn * o * g.ho * g.wo
            let t0 = ci * chunk, nt = min(chunk, tiles - t0)
            fa_wino43_input(xi, c, g.h, g.w, g.ph, g.pw, tilesW, t0, nt, 0, c, v)
            for xi in 0..<36 {
                BLAS.gemm(m: o, n: nt, k: c, a: u + xi * o * c, lda: c, b: v + xi * c * nt, ldb: nt,
                          c: m + xi * o * nt, ldc: nt)
            }
            fa_wino43_output(m, bias, o, g.ho, g.wo, tilesW, t0, nt, 0, o, oi)
        }
    }
}
