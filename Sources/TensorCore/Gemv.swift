// Matrix-vector products through cblas_sgemv: a GEMM with one column packs its whole matrix
// operand first (for a C×(H·W) map that is a full copy), a GEMV streams it once.

import CBLAS

extension BLAS {
    /// y = alpha·op(A)·x + beta·y for one row-major m×n matrix A (row stride `lda`);
    /// op(A) is A (y has m values, x n) or Aᵀ (y has n values, x m). Unit vector strides.
    /// Small products run on one OpenBLAS thread (`Threads.smallGemm`).
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
        Threads.forGemm(m: m, n: n, k: 1) {
            cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), alpha, a, Int32(lda),
                        x, 1, beta, y, 1)
        }
    }
}
