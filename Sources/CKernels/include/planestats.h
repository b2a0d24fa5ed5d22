#ifndef FA_PLANESTATS_H
#define FA_PLANESTATS_H

#include <stddef.h>

/* Reductions and broadcasts over contiguous planes (global pooling, row/column means), with
   AVX2+FMA when the CPU has it and portable C otherwise. Sums use eight-lane partial sums, so
   their rounding differs from a left-to-right loop (as in any vectorised reduction). */

/* Σ x[i]. */
float fa_sum(const float *x, size_t n);
/* Σ x[i]². */
float fa_sum_squares(const float *x, size_t n);
/* max x[i] (−inf for n = 0; NaN when any x[i] is NaN, as torch's amax). */
float fa_max(const float *x, size_t n);
/* rows[i] = Σ_j p[i·w + j] (h values), cols[j] = Σ_i p[i·w + j] (w values) of an h×w plane. */
void fa_row_col_sums(const float *p, size_t h, size_t w, float *rows, float *cols);
/* dst[i·w + j] = rows[i] + cols[j]. */
void fa_outer_add(const float *rows, const float *cols, float *dst, size_t h, size_t w);
/* For j < n: v = x[j]·s; mx[j] = v > mx[j] ? v : mx[j]; sum[j] += v. */
void fa_scaled_max_sum(const float *x, float s, float *mx, float *sum, size_t n);


#endif
