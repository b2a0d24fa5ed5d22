// Thin QR decomposition through LAPACK (sgeqrf + sorgqr from OpenBLAS), and a Gram–Schmidt
// reference. Modules build orthogonal random features (Performer, FAVOR) on it.
//
// LAPACK is column-major, our tensors row-major: a row-major m×n matrix is, byte for byte, the
// column-major n×m matrix Aᵀ. So each matrix is copied once into column-major order (lda = m),
// factored in place, and R (upper triangle) and Q (first k columns) are read back transposed.

import CBLAS
import Foundation

extension Tensor {
    /// Reduced QR of the last two axes, batched over leading axes, as
    /// `torch.linalg.qr(A, mode='reduced')`: for A of m×n and k = min(m, n), Q is m×k with
    /// orthonormal columns and R is k×n upper triangular, A = Q·R.
    ///
    /// Signs are LAPACK's Householder convention (R's diagonal may be negative), which is what
    /// torch.linalg.qr returns on CPU, since it calls the same routines. Multiply column j of Q
    /// and row j of R by sign(R[j, j]) for the positive-diagonal (Gram–Schmidt) form.
    public func qr() -> (q: Tensor, r: Tensor) {
        precondition(rank >= 2, "qr needs a matrix, got \(Shape.format(shape))")
        let m = shape[rank - 2], n = shape[rank - 1], k = Swift.min(m, n)
        let batch = Array(shape.dropLast(2)), nb = batch.reduce(1, *)
        var q = Tensor(zeros: batch + [m, k]), r = Tensor(zeros: batch + [k, n])
        if k == 0 || nb == 0 { return (q, r) }
        var a = [Float](repeating: 0, count: m * n), tau = [Float](repeating: 0, count: k)
        var m32 = Int32(m), n32 = Int32(n), k32 = Int32(k), info: Int32 = 0
        // Workspace sizes from LAPACK's own queries (lwork = −1), the larger of the two.
        var lwork: Int32 = -1, query: Float = 0
        sgeqrf_(&m32, &n32, &a, &m32, &tau, &query, &lwork, &info)
        var need = Int(query)
        sorgqr_(&m32, &k32, &k32, &a, &m32, &tau, &query, &lwork, &info)
        need = Swift.max(need, Int(query), n, 1)
        var work = [Float](repeating: 0, count: need)
        lwork = Int32(need)
        withUnsafeBufferPointer { src in
            q.withUnsafeMutableBufferPointer { qb in
                r.withUnsafeMutableBufferPointer { rb in
                    for b in 0..<nb {
                        let A = src.baseAddress! + b * m * n
                        for i in 0..<m { for j in 0..<n { a[j * m + i] = A[i * n + j] } }  // column-major
                        sgeqrf_(&m32, &n32, &a, &m32, &tau, &work, &lwork, &info)
                        precondition(info == 0, "sgeqrf failed with info \(info)")
                        let R = rb.baseAddress! + b * k * n
                        for i in 0..<k { for j in i..<n { R[i * n + j] = a[j * m + i] } }
                        sorgqr_(&m32, &k32, &k32, &a, &m32, &tau, &work, &lwork, &info)
                        precondition(info == 0, "sorgqr failed with info \(info)")
                        let Q = qb.baseAddress! + b * m * k
                        for i in 0..<m { for j in 0..<k { Q[i * k + j] = a[j * m + i] } }
                    }
                }
            }
        }
        return (q, r)
    }
}

extension Naive {
    /// Reduced QR of one m×n matrix (m ≥ n, full column rank) by modified Gram–Schmidt in
    /// Double; R's diagonal is positive.
    public static func qr(_ x: Tensor) -> (q: Tensor, r: Tensor) {
        precondition(x.rank == 2 && x.shape[0] >= x.shape[1], "Naive.qr takes a tall matrix")
        let m = x.shape[0], n = x.shape[1], v = x.scalars.map(Double.init)
        var cols = (0..<n).map { j in (0..<m).map { v[$0 * n + j] } }
        var r = [Double](repeating: 0, count: n * n)
        for j in 0..<n {
            for p in 0..<j {
                let d = zip(cols[p], cols[j]).map(*).reduce(0, +)
                r[p * n + j] = d
                for i in 0..<m { cols[j][i] -= d * cols[p][i] }
            }
            let nrm = cols[j].map { $0 * $0 }.reduce(0, +).squareRoot()
            r[j * n + j] = nrm
            for i in 0..<m { cols[j][i] /= nrm }
        }
        let q = (0..<m * n).map { Float(cols[$0 % n][$0 / n]) }
        return (Tensor(shape: [m, n], scalars: q), Tensor(shape: [n, n], scalars: r.map(Float.init)))
    }
}
