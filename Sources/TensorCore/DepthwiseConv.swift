// Depthwise 3×3 convolution (padding 1, stride 1) with its bias and a residual added in the
// same pass, on the C kernel `fa_dwconv3x3` (AVX2 when available). The generic depthwise loop
// in Conv.swift reads and writes each output row once per tap; this one pads the plane once,
// keeps the nine taps of eight columns in one register and stores each output once.

import CKernels

/// `conv2d(x, weight, bias, padding: (1, 1), groups: C) + residual` in one pass:
/// x N×C×H×W, weight C×1×3×3, bias C (optional), residual N×C×H×W (optional) → N×C×H×W.
/// Planes run in parallel; each element is bias + residual + the nine taps in row order
/// (fused multiply-adds), whatever the thread count or CPU.
public func depthwiseConv3x3(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, adding residual: Tensor? = nil) -> Tensor {
    precondition(x.rank == 4 && weight.shape == [x.shape[1], 1, 3, 3],
                 "depthwiseConv3x3 needs N×C×H×W and C×1×3×3, got \(x.shape) and \(weight.shape)")
    precondition(bias == nil || bias!.shape == [x.shape[1]], "depthwiseConv3x3 bias must be C")
    precondition(residual == nil || residual!.shape == x.shape, "depthwiseConv3x3 residual must be the input's shape")
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    var out = Tensor(uninitialized: x.shape)
    if out.count == 0 { return out }
    let plane = h * w, pad = (h + 2) * (w + 2)
    x.withUnsafeBufferPointer { xp in
        weight.withUnsafeBufferPointer { wp in
            out.withUnsafeMutableBufferPointer { op in
                withOptionalPointer(bias) { bp in
                    withOptionalPointer(residual) { rp in
                        Threads.parallelFor(n * c, minChunk: Swift.max(1, (1 << 13) / plane)) { planes in
                            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: pad)
                            defer { scratch.deallocate() }
                            let off = planes.lowerBound * plane
                            fa_dwconv3x3(xp.baseAddress! + off, wp.baseAddress!, bp, rp.map { $0 + off },
                                         op.baseAddress! + off, planes.count, planes.lowerBound, c, h, w, scratch)
                        }
                    }
                }
            }
        }
    }
    return out
}

/// body(pointer to t's storage), or body(nil) without a tensor.
private func withOptionalPointer<R>(_ t: Tensor?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let t else { return body(nil) }
    return t.withUnsafeBufferPointer { body($0.baseAddress) }
}
