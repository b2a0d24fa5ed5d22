// Normalisation as torch.nn.functional: batch_norm (eval: running statistics, or batch
// statistics when none are tracked), layer_norm over the trailing normalized_shape, group_norm.
//
// Means and variances are taken in Double with two passes (mean, then squared deviations), so a
// large common offset does not cancel the variance away; the result matches torch's float
// kernels within ~1e-6 relative. Variances are biased (÷n), as torch normalises with.
// `…Naive` functions are one-element-at-a-time references.

/// Mean and biased variance of `count` floats at `p`, `stride` apart in blocks: the elements are
/// p[b·blockStride + i] for b in 0..<blocks, i in 0..<blockSize.
@inline(__always)
func meanVariance(_ p: UnsafePointer<Float>, blocks: Int, blockSize: Int, blockStride: Int) -> (Double, Double) {
    let n = Double(blocks * blockSize)
    var sum = 0.0
    for b in 0..<blocks {
        let q = p + b * blockStride
        for i in 0..<blockSize { sum += Double(q[i]) }
    }
    let mean = sum / n
    var sq = 0.0
    for b in 0..<blocks {
        let q = p + b * blockStride
        for i in 0..<blockSize { let d = Double(q[i]) - mean; sq += d * d }
    }
    return (mean, sq / n)
}

private func checkAffine(_ t: Tensor?, _ shape: [Int], _ what: String, _ name: String) throws {
    if let t, t.shape != shape {
        throw ShapeError.mismatch(what: name, expected: "\(what) of shape \(Shape.format(shape))", found: t.shape)
    }
}

/// `F.batch_norm(x, running_mean, running_var, weight, bias, training=False, eps=eps)` on N×C×*.
/// Without running statistics (a BatchNorm with track_running_stats=False) torch normalises with
/// the batch's own per-channel mean and biased variance, even in eval mode; so does this.
public func batchNorm(_ x: Tensor, runningMean: Tensor?, runningVar: Tensor?, weight: Tensor? = nil,
                      bias: Tensor? = nil, eps: Float = 1e-5) throws -> Tensor {
    guard x.rank >= 2 else { throw ShapeError.mismatch(what: "batchNorm", expected: "N×C×*", found: x.shape) }
    let (n, c) = (x.shape[0], x.shape[1]), s = x.count / max(n * c, 1)
    for (t, what) in [(runningMean, "running_mean"), (runningVar, "running_var"), (weight, "weight"), (bias, "bias")] {
        try checkAffine(t, [c], what, "batchNorm")
    }
    guard (runningMean == nil) == (runningVar == nil) else {
        throw ShapeError.invalid("batchNorm: give both running_mean and running_var, or neither")
    }
    // Per channel: y = x·scale + shift, folded in Double.
    var scale = [Float](repeating: 1, count: c), shift = [Float](repeating: 0, count: c)
    let rm = runningMean?.scalars, rv = runningVar?.scalars, w = weight?.scalars, b = bias?.scalars
    x.withUnsafeBufferPointer { xp in
        for ch in 0..<c {
            let (mean, variance) = rm.map { (Double($0[ch]), Double(rv![ch])) }
                ?? meanVariance(xp.baseAddress! + ch * s, blocks: n, blockSize: s, blockStride: c * s)
            let a = Double(w?[ch] ?? 1) / (variance + Double(eps)).squareRoot()
            scale[ch] = Float(a)
            shift[ch] = Float(Double(b?[ch] ?? 0) - mean * a)
        }
    }
    var out = Tensor(uninitialized: x.shape)
    if out.count == 0 { return out }
    x.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { op in
            let (xb, ob) = (xp.baseAddress!, op.baseAddress!)
            Threads.parallelFor(n * c, minChunk: max(1, 4096 / max(s, 1))) { planes in
                for plane in planes {
                    let (a, sh) = (scale[plane % c], shift[plane % c])
                    let src = xb + plane * s, dst = ob + plane * s
                    for i in 0..<s { dst[i] = src[i] * a + sh }
                }
            }
        }
    }
    return out
}

/// `F.layer_norm(x, normalized_shape, weight, bias, eps)`: statistics over the trailing
/// `normalizedShape` dims of each leading index; weight and bias have shape `normalizedShape`.
public func layerNorm(_ x: Tensor, normalizedShape: [Int], weight: Tensor? = nil, bias: Tensor? = nil,
                      eps: Float = 1e-5) throws -> Tensor {
    guard !normalizedShape.isEmpty, x.rank >= normalizedShape.count,
          Array(x.shape.suffix(normalizedShape.count)) == normalizedShape else {
        throw ShapeError.mismatch(what: "layerNorm", expected: "*×\(Shape.format(normalizedShape))", found: x.shape)
    }
    try checkAffine(weight, normalizedShape, "weight", "layerNorm")
    try checkAffine(bias, normalizedShape, "bias", "layerNorm")
    let d = normalizedShape.reduce(1, *)
    let rows = d == 0 ? 0 : x.count / d
    var out = Tensor(uninitialized: x.shape)
    if out.count == 0 { return out }
    let w = weight?.scalars, b = bias?.scalars
    x.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { op in
            let (xb, ob) = (xp.baseAddress!, op.baseAddress!)
            Threads.parallelFor(rows, minChunk: max(1, 4096 / d)) { range in
                for r in range {
                    let src = xb + r * d, dst = ob + r * d
                    let (mean, variance) = meanVariance(src, blocks: 1, blockSize: d, blockStride: d)
                    let m = Float(mean), rstd = Float(1 / (variance + Double(eps)).squareRoot())
                    for i in 0..<d { dst[i] = (src[i] - m) * rstd }
                    if let w { for i in 0..<d { dst[i] *= w[i] } }
                    if let b { for i in 0..<d { dst[i] += b[i] } }
                }
            }
        }
    }
    return out
}

/// `F.group_norm(x, num_groups, weight, bias, eps)` on N×C×*: statistics per batch item over
/// each group of C/groups channels and all positions; weight and bias are per channel.
public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor? = nil, bias: Tensor? = nil,
                      eps: Float = 1e-5) throws -> Tensor {
    guard x.rank >= 2, groups > 0, x.shape[1] % groups == 0 else {
        throw ShapeError.mismatch(what: "groupNorm(\(groups) groups)", expected: "N×C×* with C divisible by \(groups)", found: x.shape)
    }
    let (n, c) = (x.shape[0], x.shape[1]), s = x.count / max(n * c, 1), cg = c / groups
    try checkAffine(weight, [c], "weight", "groupNorm")
    try checkAffine(bias, [c], "bias", "groupNorm")
    var out = Tensor(uninitialized: x.shape)
    if out.count == 0 { return out }
    let w = weight?.scalars, b = bias?.scalars
    x.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { op in
            let (xb, ob) = (xp.baseAddress!, op.baseAddress!)
            Threads.parallelFor(n * groups) { range in
                for job in range {
                    let src = xb + job * cg * s, dst = ob + job * cg * s
                    let (mean, variance) = meanVariance(src, blocks: 1, blockSize: cg * s, blockStride: 0)
                    let rstd = 1 / (variance + Double(eps)).squareRoot()
                    for k in 0..<cg {
                        let ch = (job % groups) * cg + k
                        let a = Float(Double(w?[ch] ?? 1) * rstd), sh = (b?[ch] ?? 0) - Float(mean) * a
                        for i in (k * s)..<((k + 1) * s) { dst[i] = src[i] * a + sh }
                    }
                }
            }
        }
    }
    return out
}

// MARK: - Naive references

/// Normalises `x` in groups: `group(i)` names the statistics group of flat index i, `affine(i)`
/// the index into weight/bias; statistics and result in Double, one element at a time.
func normalizeNaive(_ x: Tensor, groups: Int, group: (Int) -> Int, stats: [(Double, Double)]? = nil,
                    weight: [Float]?, bias: [Float]?, affine: (Int) -> Int, eps: Float) -> Tensor {
    let xs = x.scalars
    var sum = [Double](repeating: 0, count: groups), sq = sum, cnt = sum
    for (i, v) in xs.enumerated() { sum[group(i)] += Double(v); sq[group(i)] += Double(v) * Double(v); cnt[group(i)] += 1 }
    let st = stats ?? (0..<groups).map { g -> (Double, Double) in
        let m: Double = sum[g] / cnt[g]
        return (m, sq[g] / cnt[g] - m * m)
    }
    var ys = [Float](repeating: 0, count: xs.count)
    for i in xs.indices {
        let (m, va) = st[group(i)], a = affine(i)
        let z: Double = (Double(xs[i]) - m) / (va + Double(eps)).squareRoot()
        ys[i] = Float(z * Double(weight?[a] ?? 1) + Double(bias?[a] ?? 0))
    }
    return Tensor(shape: x.shape, scalars: ys)
}

public func batchNormNaive(_ x: Tensor, runningMean: Tensor?, runningVar: Tensor?, weight: Tensor? = nil,
                           bias: Tensor? = nil, eps: Float = 1e-5) -> Tensor {
    let c = x.shape[1], s = x.count / max(x.shape[0] * c, 1)
    let stats = runningMean.map { m in zip(m.scalars, runningVar!.scalars).map { (Double($0), Double($1)) } }
    return normalizeNaive(x, groups: c, group: { ($0 / s) % c }, stats: stats, weight: weight?.scalars,
                          bias: bias?.scalars, affine: { ($0 / s) % c }, eps: eps)
}

public func layerNormNaive(_ x: Tensor, normalizedShape: [Int], weight: Tensor? = nil, bias: Tensor? = nil,
                           eps: Float = 1e-5) -> Tensor {
    let d = normalizedShape.reduce(1, *)
    return normalizeNaive(x, groups: x.count / d, group: { $0 / d }, weight: weight?.scalars,
                          bias: bias?.scalars, affine: { $0 % d }, eps: eps)
}

public func groupNormNaive(_ x: Tensor, groups: Int, weight: Tensor? = nil, bias: Tensor? = nil,
                           eps: Float = 1e-5) -> Tensor {
    let c = x.shape[1], s = x.count / max(x.shape[0] * c, 1)
    return normalizeNaive(x, groups: x.shape[0] * groups, group: { $0 / (s * c / groups) }, weight: weight?.scalars,
                          bias: bias?.scalars, affine: { ($0 / s) % c }, eps: eps)
}
