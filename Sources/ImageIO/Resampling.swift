// Resampling: separable 1-D filter taps (bilinear or area) and the interleaved float resampler
// shared by Image.resized and the heat-map upsampler.

/// Per-output-sample taps along one axis: which input samples contribute, and how much.
///
/// Sample centres sit at half-pixel positions (x_in = (x_out + 0.5)·n/m − 0.5, clamped at
/// the borders), the convention of PIL, OpenCV's INTER_LINEAR and torch's
/// `align_corners=False`, so resizing does not shift the image by half a pixel.
///
/// Bilinear taps read only 2 inputs, so shrinking by more than 2× would skip pixels and
/// alias (moiré on fabrics, broken thin lines). When an axis shrinks by more than 2× we
/// switch that axis to area averaging: each output averages exactly the input interval it
/// covers, with fractional weights at the ends (OpenCV's INTER_AREA). Between 1× and 2×
/// bilinear still touches every input, so it is kept there for sharpness.
struct AxisTaps {
    var offsets: [Int] = [0]   // taps of output i are indices/weights[offsets[i]..<offsets[i+1]]
    var indices: [Int] = []
    var weights: [Float] = []

    init(from n: Int, to m: Int) {
        precondition(n > 0 && m > 0)
        let scale = Double(n) / Double(m)
        for i in 0..<m {
            if scale > 2 {
                let a = Double(i) * scale, b = Double(i + 1) * scale
                var j = Int(a.rounded(.down))
                while Double(j) < b && j < n {
                    let overlap = min(b, Double(j + 1)) - max(a, Double(j))
                    if overlap > 0 { append(j, Float(overlap / scale)) }
                    j += 1
                }
            } else {
                let x = min(max((Double(i) + 0.5) * scale - 0.5, 0), Double(n - 1))
                let x0 = Int(x.rounded(.down)), x1 = min(x0 + 1, n - 1)
                let f = Float(x - Double(x0))
                if f < 1 { append(x0, 1 - f) }
                if f > 0 && x1 != x0 { append(x1, f) }
            }
            offsets.append(indices.count)
        }
    }

    private mutating func append(_ index: Int, _ weight: Float) {
        indices.append(index)
        weights.append(weight)
    }
}

/// Resamples an interleaved `height × width × channels` float array to `m_h × m_w`.
/// Horizontal pass then vertical pass; NaN inputs with non-zero weight stay NaN, which is
/// how unknown heat-map cells remain unknown after upsampling.
func resampleInterleaved(_ src: [Float], width: Int, height: Int, channels: Int,
                         toWidth: Int, toHeight: Int) -> [Float] {
    let tx = AxisTaps(from: width, to: toWidth)
    let ty = AxisTaps(from: height, to: toHeight)
    let c = channels
    var mid = [Float](repeating: 0, count: height * toWidth * c)  // height, toWidth, c
    src.withUnsafeBufferPointer { s in
        mid.withUnsafeMutableBufferPointer { d in
            for y in 0..<height {
                let row = y * width * c, outRow = y * toWidth * c
                for x in 0..<toWidth {
                    for t in tx.offsets[x]..<tx.offsets[x + 1] {
                        let w = tx.weights[t], base = row + tx.indices[t] * c
                        for k in 0..<c { d[outRow + x * c + k] += w * s[base + k] }
                    }
                }
            }
        }
    }
    var out = [Float](repeating: 0, count: toHeight * toWidth * c)  // toHeight, toWidth, c
    let rowLength = toWidth * c
    mid.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { d in
            for y in 0..<toHeight {
                let outRow = y * rowLength
                for t in ty.offsets[y]..<ty.offsets[y + 1] {
                    let w = ty.weights[t], base = ty.indices[t] * rowLength
                    for i in 0..<rowLength { d[outRow + i] += w * s[base + i] }
                }
            }
        }
    }
    return out
}
