// `attend bench --op`: core kernels timed against their raw baselines.

import ArgumentParser
import CBLAS
import CKernels
import FastAttention
import Foundation
import TensorCore

enum BenchOp: String, CaseIterable, ExpressibleByArgument {
    case gemm, conv2d, softmax, attention

    struct Result {
        var json: [String: Any]
        var text: String
    }

    /// Median milliseconds of `body` over ≥ `repeats` runs and ≥ `minTime` seconds.
    static func median(minTime: Double, repeats: Int, _ body: () -> Void) -> Double {
        body()
        var times: [Double] = []
        let start = Date()
        while times.count < repeats || Date().timeIntervalSince(start) < minTime {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        times.sort()
        return times[times.count / 2]
    }

    func run(minTime: Double, repeats: Int) -> Result {
        var g = SeededGenerator(seed: 7)
        switch self {
        case .gemm:
            // Tensor.matmul (the wrapper every module uses: one-thread OpenBLAS calls split over our
            // workers) against a bare cblas_sgemm call threaded by OpenBLAS itself, same thread count.
            let n = 1024
            let a = Tensor.randomNormal([n, n], generator: &g), b = Tensor.randomNormal([n, n], generator: &g)
            var c = Tensor(zeros: [n, n])
            let raw = Threads.withOpenBLASThreads(Threads.count) {
                Self.median(minTime: minTime, repeats: repeats) {
                    a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1,
                                    ap.baseAddress, Int32(n), bp.baseAddress, Int32(n), 0, cp.baseAddress, Int32(n))
                    } } }
                }
            }
            let wrapped = Self.median(minTime: minTime, repeats: repeats) { _ = a.matmul(b) }
            let gf = 2 * pow(Double(n), 3) / 1e9
            return Result(json: ["op": "gemm", "size": n, "median_ms": wrapped, "raw_ms": raw,
                                 "ratio_raw_over_wrapper": raw / wrapped, "gflops": gf / (wrapped / 1e3),
                                 "threads": Threads.count],
                          text: String(format: "gemm 1024³: Tensor.matmul %.2f ms (%.1f GFLOP/s), raw cblas_sgemm %.2f ms → wrapper at %.1f%% of raw",
                                       wrapped, gf / (wrapped / 1e3), raw, 100 * raw / wrapped))
        case .conv2d:
            // 3×3, 256 → 256 channels, padding 1, on 1×256×64×64 (Winograd F(4×4, 3×3): GEMMs over the transformed tiles).
            let x = Tensor.randomNormal([1, 256, 64, 64], generator: &g)
            let w = Tensor.randomNormal([256, 256, 3, 3], std: 0.02, generator: &g)
            let b = Tensor.randomNormal([256], generator: &g)
            let base = MemoryStats.liveBytes
            MemoryStats.resetPeak()
            let ms = Self.median(minTime: minTime, repeats: repeats) {
                _ = try? TensorCore.conv2d(x, weight: w, bias: b, padding: (1, 1))
            }
            let peak = Double(MemoryStats.peakBytes - base) / 1_048_576
            let gf = 2 * 256.0 * 256 * 9 * 64 * 64 / 1e9
            return Result(json: ["op": "conv2d", "shape": "1x256x64x64, 3x3, 256->256", "median_ms": ms,
                                 "gflops": gf / (ms / 1e3), "peak_mib": peak, "threads": Threads.count],
                          text: String(format: "conv2d 3×3 256→256 on 1×256×64×64: %.2f ms, %.1f GFLOP/s, +%.1f MiB tensors",
                                       ms, gf / (ms / 1e3), peak))
        case .softmax:
            let n = 4096
            let x = Tensor.randomNormal([n, n], generator: &g)
            var y = x
            let ms = Self.median(minTime: minTime, repeats: repeats) {
                y.withUnsafeMutableBufferPointer { p in fa_softmax_rows(p.baseAddress!, n, n, n, 1) }
            }
            let isa = "\(KernelISA.current)"
            return Result(json: ["op": "softmax", "size": n, "median_ms": ms, "isa": isa, "threads": 1],
                          text: String(format: "softmax rows 4096×4096 (one thread, %@ kernel): %.2f ms", isa, ms))
        case .attention:
            // 8 heads, d = 64, N = 4096: the dense-attention target shape.
            let (n, heads, d) = (4096, 8, 64)
            let q = Tensor.randomNormal([1, n, heads * d], generator: &g)
            let k = Tensor.randomNormal([1, n, heads * d], generator: &g)
            let v = Tensor.randomNormal([1, n, heads * d], generator: &g)
            let base = MemoryStats.liveBytes
            MemoryStats.resetPeak()
            let ms = Self.median(minTime: minTime, repeats: repeats) {
                _ = DenseAttention.multiHead(q: q, k: k, v: v, heads: heads, scale: 1 / Float(d).squareRoot())
            }
            let peak = Double(MemoryStats.peakBytes - base) / 1_048_576
            let gf = 4 * Double(n) * Double(n) * Double(d) * Double(heads) / 1e9
            return Result(json: ["op": "attention", "n": n, "heads": heads, "d": d, "median_ms": ms,
                                 "gflops": gf / (ms / 1e3), "peak_mib": peak, "threads": Threads.count],
                          text: String(format: "dense attention N=4096, 8 heads, d=64: %.1f ms, %.1f GFLOP/s, +%.1f MiB tensors",
                                       ms, gf / (ms / 1e3), peak))
        }
    }
}
