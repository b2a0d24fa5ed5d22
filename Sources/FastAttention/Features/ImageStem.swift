// The image stem: a photo becomes an N×C×H×W feature map from documented, deterministic
// features, so untrained modules have something meaningful to attend over.

import Foundation
import ImageIO
import TensorCore

/// Hand-made features of a photo on a coarse grid (C = 16).
///
/// The photo is box-resampled to 4× the grid, features are computed there and 4×4
/// average-pooled onto the grid:
///
/// | channels | feature |
/// |---|---|
/// | 0–2 | CIE Lab colour (D65) |
/// | 3–5 | Lab blurred with σ = 3 (regional colour) |
/// | 6–8 | Sobel gradient of L after σ = 1 blur: magnitude m, m·cos 2θ, m·sin 2θ (orientation without sign) |
/// | 9 | gradient magnitude of L at σ = 3 (coarse edges) |
/// | 10–11 | local standard deviation of L in radius 2 and 4 windows (texture) |
/// | 12–13 | difference of Gaussians of L at σ = 2 and 4 (blobs) |
/// | 14–15 | position x, y in [−1, 1], times `positionWeight` after standardisation |
///
/// Each channel is standardised over the grid (zero mean, unit variance; a constant channel
/// becomes 0), then each pixel's feature vector is L2-normalised and scaled by √C. With raw
/// features a few high-norm pixels (specular highlights, strong edges) capture every query's
/// attention; after normalisation, similarity-initialised logits are cosine similarities
/// with temperature √C, so a map shows which pixels resemble the query.
public struct ImageStem: Sendable {
    public static let channelNames = [
        "L", "a", "b", "L σ3", "a σ3", "b σ3", "grad", "grad cos2θ", "grad sin2θ", "grad σ3",
        "std r2", "std r4", "DoG σ2", "DoG σ4", "x", "y",
    ]
    public static let channels = 16
    /// Work resolution relative to the grid.
    static let oversample = 4

    public var positionWeight: Float

    public init(positionWeight: Float = 0.5) { self.positionWeight = positionWeight }

    /// The grid (rows, columns) for an image whose long side gets `grid` cells.
    public static func gridSize(width: Int, height: Int, grid: Int) -> (rows: Int, columns: Int) {
        let long = max(width, height)
        let r = max(1, Int((Double(height) * Double(grid) / Double(long)).rounded()))
        let c = max(1, Int((Double(width) * Double(grid) / Double(long)).rounded()))
        return (r, c)
    }

    /// 1×16×rows×columns features of `image`, its long side divided into `grid` cells.
    public func features(_ image: Image, grid: Int) -> Tensor {
        let (gh, gw) = Self.gridSize(width: image.width, height: image.height, grid: grid)
        let f = Self.oversample
        let h = gh * f, w = gw * f
        let rgb = Self.boxResample(image, width: w, height: h)
        var planes = Self.lab(rgb, count: w * h)                 // L, a, b
        let blurred3 = planes.map { gaussianBlur($0, w, h, sigma: 3) }
        planes += blurred3
        let l = planes[0]
        let (m, c2, s2) = orientedGradient(gaussianBlur(l, w, h, sigma: 1), w, h)
        planes += [m, c2, s2]
        planes.append(orientedGradient(blurred3[0], w, h).0)
        planes.append(localStd(l, w, h, radius: 2))
        planes.append(localStd(l, w, h, radius: 4))
        for sigma: Float in [2, 4] {
            let a = gaussianBlur(l, w, h, sigma: sigma), b = gaussianBlur(l, w, h, sigma: sigma * 1.6)
            planes.append(zip(a, b).map { $0 - $1 })
        }
        let xScale: Float = 2 / Float(max(w - 1, 1)), yScale: Float = 2 / Float(max(h - 1, 1))
        planes.append((0..<(w * h)).map { (i: Int) -> Float in Float(i % w) * xScale - 1 })
        planes.append((0..<(w * h)).map { (i: Int) -> Float in Float(i / w) * yScale - 1 })

        // 4×4 average pooling onto the grid, then per-channel standardisation.
        let c = planes.count, n = gh * gw
        var out = [Float](repeating: 0, count: c * n)
        for (ch, plane) in planes.enumerated() {
            for i in 0..<gh {
                for j in 0..<gw {
                    var s: Float = 0
                    for y in (i * f)..<(i * f + f) { for x in (j * f)..<(j * f + f) { s += plane[y * w + x] } }
                    out[ch * n + i * gw + j] = s / Float(f * f)
                }
            }
            var mean = 0.0, sq = 0.0
            for k in 0..<n { mean += Double(out[ch * n + k]) }
            mean /= Double(n)
            for k in 0..<n { let d = Double(out[ch * n + k]) - mean; sq += d * d }
            let std = (sq / Double(n)).squareRoot()
            let weight: Float = ch >= 14 ? positionWeight : 1
            for k in 0..<n {
                out[ch * n + k] = std > 1e-6 ? Float((Double(out[ch * n + k]) - mean) / std) * weight : 0
            }
        }
        // Each pixel's vector to norm √C.
        let target = Float(c).squareRoot()
        for k in 0..<n {
            var s: Float = 0
            for ch in 0..<c { s += out[ch * n + k] * out[ch * n + k] }
            let scale = s > 1e-12 ? target / s.squareRoot() : 0
            for ch in 0..<c { out[ch * n + k] *= scale }
        }
        return Tensor(shape: [1, c, gh, gw], scalars: out)   // N, C, H, W
    }

    /// Area-average resampling to width×height, RGB in 0…1 (gray and alpha handled: alpha is
    /// composited over white).
    static func boxResample(_ image: Image, width w: Int, height h: Int) -> [Float] {
        let sw = image.width, sh = image.height, ch = image.channels
        var src = [Float](repeating: 0, count: sw * sh * 3)
        image.pixels.withUnsafeBufferPointer { p in
            for i in 0..<(sw * sh) {
                var r: Float, g: Float, b: Float
                switch ch {
                case 1, 2: r = Float(p[i * ch]) / 255; g = r; b = r
                default: r = Float(p[i * ch]) / 255; g = Float(p[i * ch + 1]) / 255; b = Float(p[i * ch + 2]) / 255
                }
                if ch == 2 || ch == 4 {
                    let a = Float(p[i * ch + ch - 1]) / 255
                    r = r * a + (1 - a); g = g * a + (1 - a); b = b * a + (1 - a)
                }
                src[i * 3] = r; src[i * 3 + 1] = g; src[i * 3 + 2] = b
            }
        }
        let rows = resampleAxis(src, count: sh, stride: sw * 3, inner: 1, items: sw * 3, to: h, outerFirst: true)
        return resampleAxis(rows, count: sw, stride: 3, inner: 3, items: h, to: w, outerFirst: false)
    }

    /// Box (area) resampling along one axis; `outerFirst` resamples rows (H), else columns (W).
    static func resampleAxis(_ src: [Float], count n: Int, stride: Int, inner: Int, items: Int, to m: Int,
                             outerFirst: Bool) -> [Float] {
        // Weights of source cells [k, k+1) overlapping destination cell [i·n/m, (i+1)·n/m).
        var taps: [[(Int, Float)]] = []
        for i in 0..<m {
            let a = Double(i) * Double(n) / Double(m), b = Double(i + 1) * Double(n) / Double(m)
            var t: [(Int, Float)] = []
            var k = Int(a.rounded(.down))
            while Double(k) < b && k < n {
                let overlap = min(b, Double(k + 1)) - max(a, Double(k))
                if overlap > 0 { t.append((k, Float(overlap / (b - a)))) }
                k += 1
            }
            taps.append(t)
        }
        if outerFirst {
            // src rows of `stride` floats; output m rows.
            var out = [Float](repeating: 0, count: m * stride)
            for i in 0..<m { for (k, wt) in taps[i] { for x in 0..<stride { out[i * stride + x] += wt * src[k * stride + x] } } }
            return out
        }
        // columns: src is items rows of n·inner floats; output items rows of m·inner.
        var out = [Float](repeating: 0, count: items * m * inner)
        for r in 0..<items {
            for i in 0..<m {
                for (k, wt) in taps[i] {
                    for c in 0..<inner { out[(r * m + i) * inner + c] += wt * src[(r * n + k) * inner + c] }
                }
            }
        }
        return out
    }

    /// sRGB (0…1, interleaved) → three planes L, a, b (D65 white).
    static func lab(_ rgb: [Float], count: Int) -> [[Float]] {
        func lin(_ c: Float) -> Float { c <= 0.04045 ? c / 12.92 : powf((c + 0.055) / 1.055, 2.4) }
        func f(_ t: Float) -> Float { t > 0.008856 ? cbrtf(t) : 7.787 * t + 16 / 116 }
        var L = [Float](repeating: 0, count: count), A = L, B = L
        for i in 0..<count {
            let r = lin(rgb[i * 3]), g = lin(rgb[i * 3 + 1]), b = lin(rgb[i * 3 + 2])
            let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
            let y = 0.2126 * r + 0.7152 * g + 0.0722 * b
            let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883
            let fx = f(x), fy = f(y), fz = f(z)
            L[i] = 116 * fy - 16; A[i] = 500 * (fx - fy); B[i] = 200 * (fy - fz)
        }
        return [L, A, B]
    }
}

/// Separable Gaussian blur with edge clamping, radius ⌈3σ⌉.
func gaussianBlur(_ p: [Float], _ w: Int, _ h: Int, sigma: Float) -> [Float] {
    let r = Int((3 * sigma).rounded(.up))
    var k = (-r...r).map { expf(-Float($0 * $0) / (2 * sigma * sigma)) }
    let s = k.reduce(0, +)
    k = k.map { $0 / s }
    var tmp = [Float](repeating: 0, count: w * h), out = tmp
    for y in 0..<h {
        for x in 0..<w {
            var a: Float = 0
            for d in -r...r { a += k[d + r] * p[y * w + min(max(x + d, 0), w - 1)] }
            tmp[y * w + x] = a
        }
    }
    for y in 0..<h {
        for x in 0..<w {
            var a: Float = 0
            for d in -r...r { a += k[d + r] * tmp[min(max(y + d, 0), h - 1) * w + x] }
            out[y * w + x] = a
        }
    }
    return out
}

/// Sobel gradient: magnitude, and the magnitude-weighted doubled-angle orientation.
func orientedGradient(_ p: [Float], _ w: Int, _ h: Int) -> ([Float], [Float], [Float]) {
    var m = [Float](repeating: 0, count: w * h), c = m, s = m
    func at(_ x: Int, _ y: Int) -> Float { p[min(max(y, 0), h - 1) * w + min(max(x, 0), w - 1)] }
    for y in 0..<h {
        for x in 0..<w {
            let gx = (at(x + 1, y - 1) + 2 * at(x + 1, y) + at(x + 1, y + 1)) - (at(x - 1, y - 1) + 2 * at(x - 1, y) + at(x - 1, y + 1))
            let gy = (at(x - 1, y + 1) + 2 * at(x, y + 1) + at(x + 1, y + 1)) - (at(x - 1, y - 1) + 2 * at(x, y - 1) + at(x + 1, y - 1))
            let mag = (gx * gx + gy * gy).squareRoot()
            m[y * w + x] = mag
            if mag > 1e-6 {
                // cos 2θ = (gx² − gy²)/m², sin 2θ = 2 gx gy / m²
                c[y * w + x] = (gx * gx - gy * gy) / mag
                s[y * w + x] = 2 * gx * gy / mag
            }
        }
    }
    return (m, c, s)
}

/// Standard deviation in a (2r+1)² window, via summed-area tables.
func localStd(_ p: [Float], _ w: Int, _ h: Int, radius r: Int) -> [Float] {
    var s1 = [Double](repeating: 0, count: (w + 1) * (h + 1)), s2 = s1
    for y in 0..<h {
        for x in 0..<w {
            let v = Double(p[y * w + x])
            let i = (y + 1) * (w + 1) + x + 1
            s1[i] = v + s1[i - 1] + s1[i - w - 1] - s1[i - w - 2]
            s2[i] = v * v + s2[i - 1] + s2[i - w - 1] - s2[i - w - 2]
        }
    }
    var out = [Float](repeating: 0, count: w * h)
    for y in 0..<h {
        for x in 0..<w {
            let x0 = max(x - r, 0), x1 = min(x + r + 1, w), y0 = max(y - r, 0), y1 = min(y + r + 1, h)
            func box(_ s: [Double]) -> Double {
                s[y1 * (w + 1) + x1] - s[y0 * (w + 1) + x1] - s[y1 * (w + 1) + x0] + s[y0 * (w + 1) + x0]
            }
            let n = Double((x1 - x0) * (y1 - y0))
            let mean = box(s1) / n
            out[y * w + x] = Float(max(box(s2) / n - mean * mean, 0).squareRoot())
        }
    }
    return out
}
