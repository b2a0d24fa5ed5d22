// Pooling as torch.nn.functional on N×C×H×W (and N×C×L): avg_pool2d, max_pool2d, the adaptive
// pools with torch's bins, global avg/max, and the 1-d versions as 2-d pools over N×C×1×L.
//
// Window bounds are computed once per output row and column, then every plane is pooled with
// the innermost loop on the contiguous W axis. `…Naive` functions are the per-tap definitions.

/// Window geometry along one axis, with torch's output size rule (`pooling_output_shape`).
struct PoolAxis {
    let input, kernel, stride, padding, dilation, output: Int

    init(input: Int, kernel: Int, stride: Int, padding: Int, dilation: Int = 1, ceilMode: Bool, name: String) throws {
        guard kernel > 0, stride > 0, dilation > 0, padding >= 0 else {
            throw ShapeError.invalid("\(name): kernel, stride and dilation must be positive and padding non-negative")
        }
        guard padding <= ((kernel - 1) * dilation + 1) / 2 else {
            throw ShapeError.invalid("\(name): padding \(padding) must be at most half the kernel size \(kernel)")
        }
        let span = input + 2 * padding - dilation * (kernel - 1) - 1 + (ceilMode ? stride - 1 : 0)
        guard span >= 0 else {
            throw ShapeError.invalid("\(name): input size \(input) is smaller than the kernel \(kernel) (padding \(padding), dilation \(dilation))")
        }
        var out = span / stride + 1
        if ceilMode && (out - 1) * stride >= input + padding { out -= 1 }
        (self.input, self.kernel, self.stride, self.padding, self.dilation, output) = (input, kernel, stride, padding, dilation, out)
    }
}

/// Runs `body(src, dst)` on every N·C plane of x (H×W) and of a new N×C×oh×ow tensor.
func mapPlanes(_ x: Tensor, _ oh: Int, _ ow: Int,
               _ body: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> Tensor {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    var out = Tensor(uninitialized: [n, c, oh, ow])
    if out.count == 0 { return out }
    x.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { op in
            let (xb, ob) = (xp.baseAddress!, op.baseAddress!)
            Threads.parallelFor(n * c) { planes in
                for p in planes { body(xb + p * h * w, ob + p * oh * ow) }
            }
        }
    }
    return out
}

func checkMap(_ x: Tensor, _ name: String) throws {
    guard x.rank == 4 else { throw ShapeError.mismatch(what: name, expected: "N×C×H×W", found: x.shape) }
}

/// `F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad)`; stride defaults to kernel.
public func avgPool2d(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                      ceilMode: Bool = false, countIncludePad: Bool = true) throws -> Tensor {
    try checkMap(x, "avgPool2d")
    let s = stride ?? kernel
    let ah = try PoolAxis(input: x.shape[2], kernel: kernel.0, stride: s.0, padding: padding.0, ceilMode: ceilMode, name: "avgPool2d")
    let aw = try PoolAxis(input: x.shape[3], kernel: kernel.1, stride: s.1, padding: padding.1, ceilMode: ceilMode, name: "avgPool2d")
    // Per output index: clamped window [lo, hi) and the padded window size torch divides by.
    func bounds(_ a: PoolAxis) -> [(lo: Int, hi: Int, padded: Int)] {
        (0..<a.output).map { i in
            let start = i * a.stride - a.padding, end = min(start + a.kernel, a.input + a.padding)
            return (max(start, 0), min(end, a.input), end - start)
        }
    }
    let rows = bounds(ah), cols = bounds(aw), w = x.shape[3]
    return mapPlanes(x, ah.output, aw.output) { src, dst in
        for (oh, r) in rows.enumerated() {
            for (ow, col) in cols.enumerated() {
                var sum: Float = 0
                for ih in r.lo..<r.hi {
                    let row = src + ih * w
                    for iw in col.lo..<col.hi { sum += row[iw] }
                }
                let count = countIncludePad ? r.padded * col.padded : (r.hi - r.lo) * (col.hi - col.lo)
                dst[oh * aw.output + ow] = sum / Float(count)
            }
        }
    }
}

/// `F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)`; padding never wins, NaN propagates.
public func maxPool2d(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                      dilation: (Int, Int) = (1, 1), ceilMode: Bool = false) throws -> Tensor {
    try checkMap(x, "maxPool2d")
    let s = stride ?? kernel
    let ah = try PoolAxis(input: x.shape[2], kernel: kernel.0, stride: s.0, padding: padding.0,
                          dilation: dilation.0, ceilMode: ceilMode, name: "maxPool2d")
    let aw = try PoolAxis(input: x.shape[3], kernel: kernel.1, stride: s.1, padding: padding.1,
                          dilation: dilation.1, ceilMode: ceilMode, name: "maxPool2d")
    // Per output index: first input index and the valid taps lo..<hi (index = start + tap·dilation).
    func taps(_ a: PoolAxis) -> [(start: Int, lo: Int, hi: Int)] {
        (0..<a.output).map { i in
            let start = i * a.stride - a.padding
            let (lo, hi) = validRange(offset: start, stride: a.dilation, input: a.input, output: a.kernel)
            return (start, lo, hi)
        }
    }
    let rows = taps(ah), cols = taps(aw), w = x.shape[3]
    return mapPlanes(x, ah.output, aw.output) { src, dst in
        for (oh, r) in rows.enumerated() {
            for (ow, col) in cols.enumerated() {
                var m = -Float.infinity
                for ti in r.lo..<r.hi {
                    let row = src + (r.start + ti * ah.dilation) * w + col.start
                    for tj in col.lo..<col.hi {
                        let v = row[tj * aw.dilation]
                        if v > m || v.isNaN { m = v }
                    }
                }
                dst[oh * aw.output + ow] = m
            }
        }
    }
}

/// torch's adaptive bins: bin i covers [floor(i·In/Out), ceil((i+1)·In/Out)).
func adaptiveBins(input: Int, output: Int) -> [(lo: Int, hi: Int)] {
    (0..<output).map { i in ((i * input) / output, ((i + 1) * input + output - 1) / output) }
}

private func adaptive(_ x: Tensor, _ size: (Int, Int), _ name: String, max: Bool) throws -> Tensor {
    try checkMap(x, name)
    guard size.0 > 0, size.1 > 0 else { throw ShapeError.invalid("\(name): output size must be positive, got \(size)") }
    let rows = adaptiveBins(input: x.shape[2], output: size.0), cols = adaptiveBins(input: x.shape[3], output: size.1)
    let w = x.shape[3]
    return mapPlanes(x, size.0, size.1) { src, dst in
        for (oh, r) in rows.enumerated() {
            for (ow, col) in cols.enumerated() {
                var acc: Float = max ? -.infinity : 0
                for ih in r.lo..<r.hi {
                    let row = src + ih * w
                    for iw in col.lo..<col.hi {
                        let v = row[iw]
                        if max { if v > acc || v.isNaN { acc = v } } else { acc += v }
                    }
                }
                dst[oh * size.1 + ow] = max ? acc : acc / Float((r.hi - r.lo) * (col.hi - col.lo))
            }
        }
    }
}

/// `F.adaptive_avg_pool2d(x, (outH, outW))`.
public func adaptiveAvgPool2d(_ x: Tensor, outputSize: (Int, Int)) throws -> Tensor {
    try adaptive(x, outputSize, "adaptiveAvgPool2d", max: false)
}

/// `F.adaptive_max_pool2d(x, (outH, outW))` (values only).
public func adaptiveMaxPool2d(_ x: Tensor, outputSize: (Int, Int)) throws -> Tensor {
    try adaptive(x, outputSize, "adaptiveMaxPool2d", max: true)
}

/// Mean over H×W: N×C×H×W → N×C×1×1 (`adaptive_avg_pool2d(x, 1)`).
public func globalAvgPool2d(_ x: Tensor) throws -> Tensor { try adaptive(x, (1, 1), "globalAvgPool2d", max: false) }

/// Max over H×W: N×C×H×W → N×C×1×1 (`adaptive_max_pool2d(x, 1)`).
public func globalMaxPool2d(_ x: Tensor) throws -> Tensor { try adaptive(x, (1, 1), "globalMaxPool2d", max: true) }

/// Applies a 2-d pool to N×C×L viewed as N×C×1×L.
private func as1d(_ x: Tensor, _ name: String, _ pool: (Tensor) throws -> Tensor) throws -> Tensor {
    guard x.rank == 3 else { throw ShapeError.mismatch(what: name, expected: "N×C×L", found: x.shape) }
    let y = try pool(x.reshaped([x.shape[0], x.shape[1], 1, x.shape[2]]))  // N, C, 1, L
    return y.reshaped([y.shape[0], y.shape[1], y.shape[3]])              // N, C, Lo
}

/// `F.avg_pool1d(x, kernel, stride, padding, ceil_mode, count_include_pad)` on N×C×L.
public func avgPool1d(_ x: Tensor, kernel: Int, stride: Int? = nil, padding: Int = 0,
                      ceilMode: Bool = false, countIncludePad: Bool = true) throws -> Tensor {
    try as1d(x, "avgPool1d") {
        try avgPool2d($0, kernel: (1, kernel), stride: (1, stride ?? kernel), padding: (0, padding),
                      ceilMode: ceilMode, countIncludePad: countIncludePad)
    }
}

/// `F.max_pool1d(x, kernel, stride, padding, dilation, ceil_mode)` on N×C×L.
public func maxPool1d(_ x: Tensor, kernel: Int, stride: Int? = nil, padding: Int = 0,
                      dilation: Int = 1, ceilMode: Bool = false) throws -> Tensor {
    try as1d(x, "maxPool1d") {
        try maxPool2d($0, kernel: (1, kernel), stride: (1, stride ?? kernel), padding: (0, padding),
                      dilation: (1, dilation), ceilMode: ceilMode)
    }
}

/// `F.adaptive_avg_pool1d(x, L)` on N×C×L.
public func adaptiveAvgPool1d(_ x: Tensor, outputSize: Int) throws -> Tensor {
    try as1d(x, "adaptiveAvgPool1d") { try adaptiveAvgPool2d($0, outputSize: (1, outputSize)) }
}

/// `F.adaptive_max_pool1d(x, L)` on N×C×L (values only).
public func adaptiveMaxPool1d(_ x: Tensor, outputSize: Int) throws -> Tensor {
    try as1d(x, "adaptiveMaxPool1d") { try adaptiveMaxPool2d($0, outputSize: (1, outputSize)) }
}

// MARK: - Naive references (per-tap bounds checks, Double sums)

/// The per-tap definition of avg_pool2d: taps inside the padded input count when
/// `countIncludePad`, taps inside the input always; taps past the padding (ceil mode) never.
public func avgPool2dNaive(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                           ceilMode: Bool = false, countIncludePad: Bool = true) throws -> Tensor {
    let y = try avgPool2d(x, kernel: kernel, stride: stride, padding: padding, ceilMode: ceilMode)  // for the shape
    let s = stride ?? kernel, (h, w) = (x.shape[2], x.shape[3])
    return naivePlanes(x, y.shape) { plane, oh, ow in
        var sum = 0.0, inside = 0, padded = 0
        for ki in 0..<kernel.0 { for kj in 0..<kernel.1 {
            let ih = oh * s.0 - padding.0 + ki, iw = ow * s.1 - padding.1 + kj
            if ih < h + padding.0 && iw < w + padding.1 { padded += 1 }
            if ih >= 0 && ih < h && iw >= 0 && iw < w { sum += Double(plane(ih, iw)); inside += 1 }
        } }
        return Float(sum / Double(countIncludePad ? padded : inside))
    }
}

/// The per-tap definition of max_pool2d.
public func maxPool2dNaive(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                           dilation: (Int, Int) = (1, 1), ceilMode: Bool = false) throws -> Tensor {
    let y = try maxPool2d(x, kernel: kernel, stride: stride, padding: padding, dilation: dilation, ceilMode: ceilMode)
    let s = stride ?? kernel, (h, w) = (x.shape[2], x.shape[3])
    return naivePlanes(x, y.shape) { plane, oh, ow in
        var m = -Float.infinity
        for ki in 0..<kernel.0 { for kj in 0..<kernel.1 {
            let ih = oh * s.0 - padding.0 + ki * dilation.0, iw = ow * s.1 - padding.1 + kj * dilation.1
            if ih >= 0 && ih < h && iw >= 0 && iw < w { let v = plane(ih, iw); if v > m || v.isNaN { m = v } }
        } }
        return m
    }
}

/// Adaptive pooling with the bins computed from real-valued floor/ceil.
public func adaptivePool2dNaive(_ x: Tensor, outputSize: (Int, Int), max: Bool) -> Tensor {
    let (h, w) = (x.shape[2], x.shape[3])
    func bin(_ i: Int, _ n: Int, _ o: Int) -> Range<Int> {
        Int((Double(i * n) / Double(o)).rounded(.down))..<Int((Double((i + 1) * n) / Double(o)).rounded(.up))
    }
    return naivePlanes(x, [x.shape[0], x.shape[1], outputSize.0, outputSize.1]) { plane, oh, ow in
        var sum = 0.0, m = -Float.infinity, count = 0
        for ih in bin(oh, h, outputSize.0) { for iw in bin(ow, w, outputSize.1) {
            let v = plane(ih, iw); sum += Double(v); count += 1; if v > m || v.isNaN { m = v }
        } }
        return max ? m : Float(sum / Double(count))
    }
}

/// Fills an N×C×oh×ow tensor with `value(plane reader, oh, ow)` one element at a time.
func naivePlanes(_ x: Tensor, _ shape: [Int], _ value: ((Int, Int) -> Float, Int, Int) -> Float) -> Tensor {
    var out = Tensor(zeros: shape)
    let xs = x.scalars, (h, w) = (x.shape[2], x.shape[3])
    out.withUnsafeMutableBufferPointer { op in
        for p in 0..<(shape[0] * shape[1]) { for oh in 0..<shape[2] { for ow in 0..<shape[3] {
            op[(p * shape[2] + oh) * shape[3] + ow] = value({ xs[(p * h + $0) * w + $1] }, oh, ow)
        } } }
    }
    return out
}
