// Convolution as torch.nn.functional.conv1d / conv2d: zero padding, stride, dilation, groups.
//
// Four paths, chosen by shape:
//  - 1×1, stride 1, no padding: one GEMM per batch item and group straight on the input
//    (weight O×C · x C×HW), nothing copied;
//  - depthwise (groups == C): a direct loop per plane, innermost on the output row;
//  - 3×3, stride 1, dilation 1, groups 1, C and O ≥ 8, ≥ 64 output pixels: Winograd
//    F(4×4, 3×3), 36 GEMMs of a quarter of im2col's multiply-adds over the transformed tiles
//    (Winograd.swift);
//  - otherwise im2col into a (C/g·kh·kw)×(Ho·Wo) buffer and one GEMM per batch item and group.
// `conv2dNaive` / `conv1dNaive` are the direct definitions the fast paths are tested against.

/// The shapes of one conv2d call, checked once at the boundary.
struct ConvGeometry {
    let n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw, groups, ho, wo: Int
    var cg: Int { c / groups }
    var og: Int { o / groups }

    init(x: [Int], weight: [Int], bias: [Int]?, stride: (Int, Int), padding: (Int, Int),
         dilation: (Int, Int), groups: Int, name: String) throws {
        guard x.count == 4 else { throw ShapeError.mismatch(what: name, expected: "input N×C×H×W", found: x) }
        guard weight.count == 4 else {
            throw ShapeError.mismatch(what: name, expected: "weight O×(C/groups)×kh×kw", found: weight)
        }
        guard groups > 0, stride.0 > 0, stride.1 > 0, dilation.0 > 0, dilation.1 > 0,
              padding.0 >= 0, padding.1 >= 0 else {
            throw ShapeError.invalid("\(name): stride, dilation and groups must be positive and padding non-negative")
        }
        (n, c, h, w) = (x[0], x[1], x[2], x[3])
        (o, kh, kw) = (weight[0], weight[2], weight[3])
        (sh, sw, ph, pw, dh, dw) = (stride.0, stride.1, padding.0, padding.1, dilation.0, dilation.1)
        self.groups = groups
        guard c % groups == 0, o % groups == 0, weight[1] == c / groups else {
            throw ShapeError.mismatch(what: name, expected: "weight O×\(c / max(groups, 1))×kh×kw with O and C=\(c) divisible by groups=\(groups)", found: weight)
        }
        if let b = bias, b != [o] { throw ShapeError.mismatch(what: name, expected: "bias of shape \(o)", found: b) }
        let spanH = h + 2 * ph - dh * (kh - 1) - 1, spanW = w + 2 * pw - dw * (kw - 1) - 1
        guard spanH >= 0, spanW >= 0 else {
            throw ShapeError.invalid("\(name): input \(Shape.format(x)) with padding (\(ph), \(pw)) is smaller than the dilated kernel \(kh)×\(kw)")
        }
        (ho, wo) = (spanH / sh + 1, spanW / sw + 1)
    }

    var isPointwise: Bool { kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 }
}

/// Output positions `lo..<hi` whose input index `out·stride + offset` lies in `0..<input`.
@inline(__always)
func validRange(offset: Int, stride: Int, input: Int, output: Int) -> (Int, Int) {
    let lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride
    let last = input - 1 - offset
    let hi = min(last < 0 ? 0 : last / stride + 1, output)
    return (min(lo, hi), hi)
}

/// `torch.nn.functional.conv2d`: x N×C×H×W, weight O×(C/groups)×kh×kw, bias O → N×O×Ho×Wo.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1),
                   padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1) throws -> Tensor {
    let g = try ConvGeometry(x: x.shape, weight: weight.shape, bias: bias?.shape, stride: stride,
                             padding: padding, dilation: dilation, groups: groups, name: "conv2d")
    if Winograd.applies(g) && g.n * g.o * g.ho * g.wo > 0 {
        return conv2dWinograd(x, u: winogradWeights(weight, o: g.o, c: g.c), bias: bias, g)
    }
    var out = conv2dOutput(g, bias: bias)
    if out.count == 0 || g.c == 0 { return out }
    x.withUnsafeBufferPointer { xp in
        weight.withUnsafeBufferPointer { wp in
            out.withUnsafeMutableBufferPointer { op in
                let (xb, wb, ob) = (xp.baseAddress!, wp.baseAddress!, op.baseAddress!)
                if g.groups == g.c && g.groups > 1 {
                    conv2dDepthwise(xb, wb, ob, g)
                } else {
                    conv2dGemm(xb, wb, ob, g)
                }
            }
        }
    }
    return out
}

/// N×O×Ho×Wo filled with the bias (or zeros): every path accumulates into it.
func conv2dOutput(_ g: ConvGeometry, bias: Tensor?) -> Tensor {
    let hw = g.ho * g.wo
    var out = Tensor(zeros: [g.n, g.o, g.ho, g.wo])
    if let bias, hw > 0 {
        bias.withUnsafeBufferPointer { b in
            out.withUnsafeMutableBufferPointer { op in
                for plane in 0..<(g.n * g.o) { (op.baseAddress! + plane * hw).update(repeating: b[plane % g.o], count: hw) }
            }
        }
    }
    return out
}

/// `torch.nn.functional.conv1d`: x N×C×L, weight O×(C/groups)×k, bias O → N×O×Lo.
/// Runs as conv2d over N×C×1×L (a reshape, no copy).
public func conv1d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0,
                   dilation: Int = 1, groups: Int = 1) throws -> Tensor {
    guard x.rank == 3 else { throw ShapeError.mismatch(what: "conv1d", expected: "input N×C×L", found: x.shape) }
    guard weight.rank == 3 else {
        throw ShapeError.mismatch(what: "conv1d", expected: "weight O×(C/groups)×k", found: weight.shape)
    }
    let y = try conv2d(x.reshaped([x.shape[0], x.shape[1], 1, x.shape[2]]),                  // N, C, 1, L
                       weight: weight.reshaped([weight.shape[0], weight.shape[1], 1, weight.shape[2]]),  // O, C/g, 1, k
                       bias: bias, stride: (1, stride), padding: (0, padding), dilation: (1, dilation), groups: groups)
    return y.reshaped([y.shape[0], y.shape[1], y.shape[3]])  // N, O, Lo
}

/// GEMM paths: per (batch item, group), weight_g (O/g × C/g·kh·kw) · columns → output rows.
/// Small GEMMs run side by side on our threads; big ones run one at a time on BLAS threads.
private func conv2dGemm(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                        _ out: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    let hw = g.ho * g.wo, kdim = g.cg * g.kh * g.kw, jobs = g.n * g.groups
    let parallel = jobs > 1 && g.og * hw * kdim < (1 << 20)
    let run: (Range<Int>) -> Void = { range in
        let col: UnsafeMutablePointer<Float>? = g.isPointwise ? nil : .allocate(capacity: kdim * hw)
        defer { col?.deallocate() }
        for job in range {
            let (nn, gi) = job.quotientAndRemainder(dividingBy: g.groups)
            let src = x + (nn * g.c + gi * g.cg) * g.h * g.w
            if let col { im2col(src, col, g) }
            BLAS.gemm(m: g.og, n: hw, k: kdim, a: w + gi * g.og * kdim, lda: kdim,
                      b: col.map { UnsafePointer($0) } ?? src, ldb: hw,
                      beta: 1, c: out + (nn * g.o + gi * g.og) * hw, ldc: hw)
        }
    }
    if parallel { Threads.parallelFor(jobs, run) } else { run(0..<jobs) }
}

/// Unfolds one group of one batch item, C/g×H×W, into rows (ci, ki, kj) of Ho·Wo columns.
private func im2col(_ src: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    let hw = g.ho * g.wo
    var row = 0
    for ci in 0..<g.cg {
        let plane = src + ci * g.h * g.w
        for ki in 0..<g.kh {
            let offH = ki * g.dh - g.ph
            for kj in 0..<g.kw {
                let offW = kj * g.dw - g.pw
                let (lo, hi) = validRange(offset: offW, stride: g.sw, input: g.w, output: g.wo)
                let dst = col + row * hw
                for oh in 0..<g.ho {
                    let d = dst + oh * g.wo, ih = oh * g.sh + offH
                    guard ih >= 0 && ih < g.h else { d.update(repeating: 0, count: g.wo); continue }
                    let base = ih * g.w + offW
                    if lo > 0 { d.update(repeating: 0, count: lo) }
                    if g.sw == 1 {
                        (d + lo).update(from: plane + base + lo, count: hi - lo)
                    } else {
                        for ow in lo..<hi { d[ow] = plane[base + ow * g.sw] }
                    }
                    if hi < g.wo { (d + hi).update(repeating: 0, count: g.wo - hi) }
                }
                row += 1
            }
        }
    }
}

/// groups == C: each output plane reads one input plane; direct loop, innermost on the output row.
private func conv2dDepthwise(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                             _ out: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    Threads.parallelFor(g.n * g.o) { planes in
        for plane in planes {
            let (nn, oc) = plane.quotientAndRemainder(dividingBy: g.o)
            let src = x + (nn * g.c + oc / g.og) * g.h * g.w
            let dst = out + plane * g.ho * g.wo, wk = w + oc * g.kh * g.kw
            for ki in 0..<g.kh {
                let offH = ki * g.dh - g.ph
                for oh in 0..<g.ho {
                    let ih = oh * g.sh + offH
                    guard ih >= 0 && ih < g.h else { continue }
                    let d = dst + oh * g.wo
                    for kj in 0..<g.kw {
                        let wv = wk[ki * g.kw + kj], base = ih * g.w + kj * g.dw - g.pw
                        let (lo, hi) = validRange(offset: kj * g.dw - g.pw, stride: g.sw, input: g.w, output: g.wo)
                        if g.sw == 1 {
                            // Unit stride: a contiguous axpy the compiler vectorises (the strided
                            // form below is a scalar gather: 60% of autonl's forward).
                            let s = src + base
                            for ow in lo..<hi { d[ow] += wv * s[ow] }
                        } else {
                            for ow in lo..<hi { d[ow] += wv * src[base + ow * g.sw] }
                        }
                    }
                }
            }
        }
    }
}

/// The direct definition of conv2d (Double accumulation), the reference for the fast paths.
public func conv2dNaive(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1),
                        padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1) throws -> Tensor {
    let g = try ConvGeometry(x: x.shape, weight: weight.shape, bias: bias?.shape, stride: stride,
                             padding: padding, dilation: dilation, groups: groups, name: "conv2dNaive")
    var out = Tensor(zeros: [g.n, g.o, g.ho, g.wo])
    let xs = x.scalars, ws = weight.scalars, bs = bias?.scalars
    out.withUnsafeMutableBufferPointer { op in
        for nn in 0..<g.n { for oc in 0..<g.o { for oh in 0..<g.ho { for ow in 0..<g.wo {
            var s = Double(bs?[oc] ?? 0)
            let gi = oc / g.og
            for ci in 0..<g.cg { for ki in 0..<g.kh { for kj in 0..<g.kw {
                let ih = oh * g.sh - g.ph + ki * g.dh, iw = ow * g.sw - g.pw + kj * g.dw
                guard ih >= 0 && ih < g.h && iw >= 0 && iw < g.w else { continue }
                let xv = xs[((nn * g.c + gi * g.cg + ci) * g.h + ih) * g.w + iw]
                s += Double(xv) * Double(ws[((oc * g.cg + ci) * g.kh + ki) * g.kw + kj])
            } } }
            op[((nn * g.o + oc) * g.ho + oh) * g.wo + ow] = Float(s)
        } } } }
    }
    return out
}

/// The direct definition of conv1d, via `conv2dNaive` on N×C×1×L.
public func conv1dNaive(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0,
                        dilation: Int = 1, groups: Int = 1) throws -> Tensor {
    precondition(x.rank == 3 && weight.rank == 3, "conv1dNaive takes N×C×L and O×C/g×k")
    let y = try conv2dNaive(x.reshaped([x.shape[0], x.shape[1], 1, x.shape[2]]),
                            weight: weight.reshaped([weight.shape[0], weight.shape[1], 1, weight.shape[2]]),
                            bias: bias, stride: (1, stride), padding: (0, padding), dilation: (1, dilation), groups: groups)
    return y.reshaped([y.shape[0], y.shape[1], y.shape[3]])
}
