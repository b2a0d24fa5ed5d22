// Resizing N×C×H×W as torch.nn.functional.interpolate: 'nearest', 'nearest-exact' and
// 'bilinear' (align_corners false or true), to a size or by a scale factor.
//
// Source indices follow ATen's upsample kernels exactly, in float as ATen computes them for
// float tensors: the scale is in/out (or 1/scale_factor when one is given), align_corners=False
// maps dst to scale·(dst+½)−½ clamped at 0, 'nearest' maps dst to floor(dst·scale). The index and
// weight tables are built once per axis; `interpolateNaive` recomputes them for every element.

public enum InterpolationMode: String, Sendable, CaseIterable {
    case nearest
    case nearestExact = "nearest-exact"
    case bilinear
}

/// `F.interpolate(x, size=(outH, outW), mode=..., align_corners=...)`.
public func interpolate(_ x: Tensor, size: (Int, Int), mode: InterpolationMode = .nearest,
                        alignCorners: Bool = false) throws -> Tensor {
    try resize(x, size, nil, mode, alignCorners)
}

/// `F.interpolate(x, scale_factor=(sh, sw), ...)`: the output is floor(in·scale) and, as in
/// torch (recompute_scale_factor unset), the source index uses 1/scale rather than in/out.
public func interpolate(_ x: Tensor, scaleFactor: (Double, Double), mode: InterpolationMode = .nearest,
                        alignCorners: Bool = false) throws -> Tensor {
    try checkMap(x, "interpolate")
    guard scaleFactor.0 > 0, scaleFactor.1 > 0 else {
        throw ShapeError.invalid("interpolate: scale factors must be positive, got \(scaleFactor)")
    }
    let size = (Int((Double(x.shape[2]) * scaleFactor.0).rounded(.down)),
                Int((Double(x.shape[3]) * scaleFactor.1).rounded(.down)))
    return try resize(x, size, scaleFactor, mode, alignCorners)
}

/// `F.interpolate(x, scale_factor=s, ...)` with one factor for both axes.
public func interpolate(_ x: Tensor, scaleFactor: Double, mode: InterpolationMode = .nearest,
                        alignCorners: Bool = false) throws -> Tensor {
    try interpolate(x, scaleFactor: (scaleFactor, scaleFactor), mode: mode, alignCorners: alignCorners)
}

/// ATen's `area_pixel_compute_scale` (linear modes) and `compute_scales_value` (nearest), in float.
func sourceScale(input: Int, output: Int, scale: Double?, alignCorners: Bool) -> Float {
    if alignCorners { return output > 1 ? Float(input - 1) / Float(output - 1) : 0 }
    if let scale, scale > 0 { return Float(1.0 / scale) }
    return Float(input) / Float(output)
}

/// ATen's `nearest_idx` / `nearest_exact_idx` for one output index.
func nearestIndex(_ dst: Int, input: Int, output: Int, scale: Double?, exact: Bool) -> Int {
    if !exact {
        if output == input { return dst }
        if output == 2 * input { return dst >> 1 }
    }
    let s = sourceScale(input: input, output: output, scale: scale, alignCorners: false)
    let src = exact ? ((Float(dst) + 0.5) * s).rounded(.down) : (Float(dst) * s).rounded(.down)
    return min(Int(src), input - 1)
}

/// ATen's linear source index with `guard_index_and_lambda`: (i0, i1, λ0, λ1) for one output index.
func linearTaps(_ dst: Int, input: Int, scale s: Float, alignCorners: Bool) -> (Int, Int, Float, Float) {
    var src = alignCorners ? s * Float(dst) : s * (Float(dst) + 0.5) - 0.5
    if !alignCorners && src < 0 { src = 0 }
    let i0 = min(Int(src.rounded(.down)), input - 1)
    let l1 = min(max(src - Float(i0), 0), 1)
    return (i0, i0 + (i0 < input - 1 ? 1 : 0), 1 - l1, l1)
}

private func resize(_ x: Tensor, _ size: (Int, Int), _ scales: (Double, Double)?, _ mode: InterpolationMode,
                    _ alignCorners: Bool) throws -> Tensor {
    try checkMap(x, "interpolate")
    guard size.0 > 0, size.1 > 0 else {
        throw ShapeError.invalid("interpolate: output size must be positive, got \(size.0)×\(size.1) for input \(Shape.format(x.shape))")
    }
    guard !alignCorners || mode == .bilinear else {
        throw ShapeError.invalid("interpolate: align_corners only applies to mode 'bilinear', not '\(mode.rawValue)'")
    }
    let (h, w) = (x.shape[2], x.shape[3])
    if h == 0 || w == 0 { throw ShapeError.invalid("interpolate: empty input \(Shape.format(x.shape))") }
    switch mode {
    case .nearest, .nearestExact:
        let exact = mode == .nearestExact
        let rows = (0..<size.0).map { nearestIndex($0, input: h, output: size.0, scale: scales?.0, exact: exact) }
        let cols = (0..<size.1).map { nearestIndex($0, input: w, output: size.1, scale: scales?.1, exact: exact) }
        return mapPlanes(x, size.0, size.1) { src, dst in
            for (oh, ih) in rows.enumerated() {
                let row = src + ih * w, d = dst + oh * size.1
                for (ow, iw) in cols.enumerated() { d[ow] = row[iw] }
            }
        }
    case .bilinear:
        let sh = sourceScale(input: h, output: size.0, scale: scales?.0, alignCorners: alignCorners)
        let sw = sourceScale(input: w, output: size.1, scale: scales?.1, alignCorners: alignCorners)
        let rows = (0..<size.0).map { linearTaps($0, input: h, scale: sh, alignCorners: alignCorners) }
        let cols = (0..<size.1).map { linearTaps($0, input: w, scale: sw, alignCorners: alignCorners) }
        return mapPlanes(x, size.0, size.1) { src, dst in
            for (oh, r) in rows.enumerated() {
                let r0 = src + r.0 * w, r1 = src + r.1 * w, d = dst + oh * size.1
                for (ow, c) in cols.enumerated() {
                    d[ow] = r.2 * (c.2 * r0[c.0] + c.3 * r0[c.1]) + r.3 * (c.2 * r1[c.0] + c.3 * r1[c.1])
                }
            }
        }
    }
}

/// The reference: every output element computes its own source indices and weights.
public func interpolateNaive(_ x: Tensor, size: (Int, Int), scaleFactor: (Double, Double)? = nil,
                             mode: InterpolationMode, alignCorners: Bool = false) -> Tensor {
    let (h, w) = (x.shape[2], x.shape[3])
    return naivePlanes(x, [x.shape[0], x.shape[1], size.0, size.1]) { plane, oh, ow in
        switch mode {
        case .nearest, .nearestExact:
            let e = mode == .nearestExact
            return plane(nearestIndex(oh, input: h, output: size.0, scale: scaleFactor?.0, exact: e),
                         nearestIndex(ow, input: w, output: size.1, scale: scaleFactor?.1, exact: e))
        case .bilinear:
            let r = linearTaps(oh, input: h, scale: sourceScale(input: h, output: size.0, scale: scaleFactor?.0,
                                                                alignCorners: alignCorners), alignCorners: alignCorners)
            let c = linearTaps(ow, input: w, scale: sourceScale(input: w, output: size.1, scale: scaleFactor?.1,
                                                                alignCorners: alignCorners), alignCorners: alignCorners)
            var s = Double(r.2) * Double(c.2) * Double(plane(r.0, c.0))
            s += Double(r.2) * Double(c.3) * Double(plane(r.0, c.1))
            s += Double(r.3) * Double(c.2) * Double(plane(r.1, c.0))
            s += Double(r.3) * Double(c.3) * Double(plane(r.1, c.1))
            return Float(s)
        }
    }
}
