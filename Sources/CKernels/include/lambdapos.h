#ifndef FA_LAMBDAPOS_H
#define FA_LAMBDAPOS_H

#include <stddef.h>

/* The local position lambda of LambdaNetworks, applied to the queries without forming it.

   The reference computes λp[v, k, n] = Σ_{u, t} E[k, u, t] · v[u, v, n + t] (a zero-padded
   r×r convolution per value channel) and then Yp[h, v, n] = Σ_k q[h, k, n] · λp[v, k, n].
   With per-query tap weights w[n, h, (u, t)] = Σ_k q[h, k, n] · E[k, u, t] (one GEMM, done by
   the caller) the same output is Yp[h, v, n] = Σ_{u, t} w[n, h, (u, t)] · v[u, v, n + t]:
   heads·(k + v)·u·r² multiply-adds per position instead of k·v·u·r² + heads·k·v. */

/* Copies values u×dv×H×W (channel-major) into a zero-bordered, pixel-major buffer
   u × (H + 2·pad) × (W + 2·pad) × dv; every element of `out` is written. */
void fa_lambda_pad_values(const float *v, float *out, size_t u, size_t dv, size_t h, size_t w, size_t pad);

/* For the `count` positions n0 ..< n0 + count of an H×W map (row-major, L = H·W), with the
   tap-major weights wt[t·ldw + (n − n0)·heads + hd] (t < u·r²; ldw ≥ count·heads):
     y[(hd·dv + c)·L + n] += Σ_{ui, di, dj} wt[((ui·r + di)·r + dj)·ldw + (n − n0)·heads + hd]
                                         · vpad[((ui·Hp + i + di)·Wp + j + dj)·dv + c]
                           (+ wt[u·r²·ldw + (n − n0)·heads + hd], the bias row, when has_bias)
   with (i, j) = (n / width, n % width), Hp = H + r − 1, Wp = width + r − 1, and vpad as written
   by fa_lambda_pad_values with pad = r / 2 (r odd). `scratch` holds count·heads·dv floats
   (overwritten). AVX-512F or AVX2+FMA when the CPU has them (dv a multiple of 16, resp. 8),
   else portable C. Results do not depend on n0/count (each position sums in one order). */
void fa_lambda_local_apply(const float *wt, size_t ldw, int has_bias, const float *vpad, float *scratch, float *y,
                           size_t n0, size_t count, size_t height, size_t width,
                           size_t heads, size_t u, size_t r, size_t dv);

/* Which path fa_lambda_local_apply takes for dv: 2 AVX-512, 1 AVX2, 0 portable (for tests). */
int fa_lambda_local_path(size_t dv);


#endif
