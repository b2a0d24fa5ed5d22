/* Depthwise 3×3 convolution, zero padding 1, stride 1 (Sources/CKernels/dwconv.c).
 *
 * For each of `planes` planes p (h×w, contiguous, one per channel c = (p0 + p) % channels):
 *   out[p][i][j] = bias[c] + res[p][i][j] + Σ_{a,b<3} wt[c][a][b] · x[p][i+a−1][j+b−1]
 * (bias and res optional: NULL reads as 0). Every element is computed the same way — the
 * start value, then the nine taps row by row with fused multiply-adds — on the AVX2 path,
 * its scalar tail and the portable path, so a result never depends on its position or the
 * CPU's vector width. `scratch` holds (h + 2)·(w + 2) floats (the zero-padded plane).
 * No stable API. */
#ifndef FA_DWCONV_H
#define FA_DWCONV_H
#include <stddef.h>

void fa_dwconv3x3(const float *x, const float *wt, const float *bias, const float *res, float *out,
                  size_t planes, size_t p0, size_t channels, size_t h, size_t w, float *scratch);

/* The same on the portable path only (for tests: must agree bit for bit). */
void fa_dwconv3x3_portable(const float *x, const float *wt, const float *bias, const float *res, float *out,
                           size_t planes, size_t p0, size_t channels, size_t h, size_t w, float *scratch);

/* A depthwise conv along the rows of a len×width matrix (row stride ld), added in place:
 *   out[i][j] += Σ_{t: 0 ≤ i+t−pad < len} cw[t][j] · v[i+t−pad][j]   for rows i in [r0, r1)
 * with one coefficient row cw[t] (width floats) per tap. Taps in ascending order with fused
 * multiply-adds on every path (AVX2, its tails, portable). No stable API. */
void fa_rowconv_add(const float *v, const float *cw, float *out, size_t len, size_t width, size_t ld,
                    size_t taps, size_t pad, size_t r0, size_t r1);

/* The same on the portable path only (tests). */
void fa_rowconv_add_portable(const float *v, const float *cw, float *out, size_t len, size_t width, size_t ld,
                             size_t taps, size_t pad, size_t r0, size_t r1);

#endif
