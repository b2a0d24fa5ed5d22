// Matrix-vector products through cblas_sgemv: a GEMM with one column packs its whole matrix
// operand first (for a C×(H·W) map that is a full copy), a GEMV streams it once.

import CBLAS

extension BLAS {
    /// y = alpha·op(A)·x + beta·y for one row-major m×n matrix A (row stride `lda`);
    /// op(A) is A (y has m values, x n) or Aᵀ (y has n values, x m). Unit vector strides.
    /// Products below `Threads.smallGemm` run whole on the calling thread.
    @inline(__always)
    public static func gemv(
        trans: Bool = false, m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        x: UnsafePointer<Float>, beta: Float = 0, y: UnsafeMutablePointer<Float>
    ) {
        let outCount = trans ? n : m
        if outCount == 0 { return }
        if m == 0 || n == 0 {
            for i in 0..<outCount { y[i] = beta == 0 ? 0 : beta * y[i] }
            return
        }
        // Outputs split over our workers like a GEMM's rows (OpenBLAS itself runs on one thread).
        Threads.splitGemm(m: outCount, n: 1, k: trans ? m : n) { part, _ in
            let (lo, count) = (part.lowerBound, Int32(part.count))
            if trans {      // y[j] = Σ_i A[i, j]·x[i] for j in part: the columns `part` of A
                cblas_sgemv(CblasRowMajor, CblasTrans, Int32(m), count, alpha, a + lo, Int32(lda), x, 1, beta, y + lo, 1)
            } else {        // the rows `part` of A
                cblas_sgemv(CblasRowMajor, CblasNoTrans, count, Int32(n), alpha, a + lo * lda, Int32(lda), x, 1, beta, y + lo, 1)
            }
        }
    }
}
