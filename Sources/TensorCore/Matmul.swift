// Matrix products through cblas_sgemm: transposes and leading dimensions instead of copies.

import CBLAS

public enum BLAS {
    /// C = alpha·op(A)·op(B) + beta·C for one row-major matrix triple.
    /// op(A) is m×k, op(B) is k×n, C is m×n; `lda`, `ldb`, `ldc` are row strides in elements.
    @inline(__always)
    public static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        Threads.splitGemm(m: m, n: n, k: k) { rows, cols in
            // Block (rows, cols) of C needs rows of op(A) and columns of op(B).
            let ap = transA ? a + rows.lowerBound : a + rows.lowerBound * lda
            let bp = transB ? b + cols.lowerBound * ldb : b + cols.lowerBound
            cblas_sgemm(
                CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(rows.count), Int32(cols.count), Int32(k), alpha, ap, Int32(lda), bp, Int32(ldb), beta,
                c + rows.lowerBound * ldc + cols.lowerBound, Int32(ldc))
        }
    }

    /// C (n×n, both triangles) = alpha·A·Aᵀ for a row-major n×k A (row stride `lda`): the Gram
    /// matrix by `cblas_ssyrk`, one triangle at about 2/3 of the GEMM's time, then mirrored.
    /// Above `Threads.smallGemm` multiply-adds on several threads, k is cut into one run per
    /// thread and the partial matrices are added in thread order: deterministic for a given
    /// thread count (rounding differs between thread counts).
    public static func gram(n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                            c: UnsafeMutablePointer<Float>, ldc: Int) {
        if n == 0 { return }
        Threads.configure()
        let parts = Swift.min(Threads.count, Swift.max(1, k / 256))
        func syrk(_ ks: Range<Int>, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
            if ks.isEmpty {
                for i in 0..<n { for j in 0..<n { out[i * ldo + j] = 0 } }
                return
            }
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(n), Int32(ks.count), alpha,
                        a + ks.lowerBound, Int32(lda), 0, out, Int32(ldo))
        }
        if parts <= 1 || n * n * k / 2 < Threads.smallGemm || Threads.insideParallel {
            syrk(0..<k, c, ldc)
        } else {
            let partial = UnsafeMutablePointer<Float>.allocate(capacity: (parts - 1) * n * n)
            defer { partial.deallocate() }
            Threads.parallelFor(parts) { ps in
                for p in ps {
                    let ks = (k * p / parts)..<(k * (p + 1) / parts)
                    if p == 0 { syrk(ks, c, ldc) } else { syrk(ks, partial + (p - 1) * n * n, n) }
                }
            }
            for p in 1..<parts {
                let src = partial + (p - 1) * n * n
                for i in 0..<n { for j in i..<n { c[i * ldc + j] += src[i * n + j] } }
            }
        }
        for i in 0..<n { for j in 0..<i { c[i * ldc + j] = c[j * ldc + i] } }
    }

    /// The naive triple loop `gemm` is tested against.
    public static func gemmNaive(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        for i in 0..<m {
            for j in 0..<n {
                var s: Double = 0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += Double(av) * Double(bv)
                }
                c[i * ldc + j] = alpha * Float(s) + (beta == 0 ? 0 : beta * c[i * ldc + j])
            }
        }
    }
}

extension Tensor {
    /// Batched matrix product, as `torch.matmul` on tensors of rank ≥ 2: the last two axes are
    /// the matrices, leading axes are the batch. A rank-2 operand is broadcast over the other's
    /// batch; otherwise leading shapes must be equal. Each batch element is one `cblas_sgemm`
    /// on pointers into the operands — nothing is copied or transposed in memory. Batch elements
    /// run in parallel when there are at least `Threads.count` of them (and enough work).
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false,
                       alpha: Float = 1) -> Tensor {
        precondition(rank >= 2 && other.rank >= 2, "matmul needs rank ≥ 2, got \(shape) and \(other.shape)")
        let (ar, ac) = (shape[rank - 2], shape[rank - 1])
        let (br, bc) = (other.shape[other.rank - 2], other.shape[other.rank - 1])
        let m = transposeSelf ? ac : ar, k = transposeSelf ? ar : ac
        let k2 = transposeOther ? bc : br, n = transposeOther ? br : bc
        precondition(k == k2, "matmul inner dimensions differ: \(shape) · \(other.shape)")
        let aBatch = Array(shape.dropLast(2)), bBatch = Array(other.shape.dropLast(2))
        let batch: [Int]
        if aBatch == bBatch || bBatch.isEmpty { batch = aBatch } else if aBatch.isEmpty { batch = bBatch } else {
            preconditionFailure("matmul batch shapes differ: \(shape) · \(other.shape)")
        }
        let nb = batch.reduce(1, *)
        var out = Tensor(uninitialized: batch + [m, n])
        let aStep = aBatch.isEmpty ? 0 : ar * ac, bStep = bBatch.isEmpty ? 0 : br * bc
        withUnsafeBufferPointer { a in
            other.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { c in
                    // Several products: one thread per run of batch elements when there are at
                    // least as many as threads (each GEMM then runs whole); otherwise each is split.
                    let byBatch = nb >= Threads.count && nb * m * n * k >= Threads.smallGemm
                    Threads.parallelFor(nb, minChunk: byBatch ? 1 : nb) { items in
                        for i in items {
                            BLAS.gemm(transA: transposeSelf, transB: transposeOther, m: m, n: n, k: k, alpha: alpha,
                                      a: a.baseAddress! + i * aStep, lda: ac,
                                      b: b.baseAddress! + i * bStep, ldb: bc,
                                      c: c.baseAddress! + i * m * n, ldc: n)
                        }
                    }
                }
            }
        }
        return out
    }
}
