#ifndef FASTATTENTION_CKERNELS_H
#define FASTATTENTION_CKERNELS_H
/* Vectorised kernels with runtime CPU dispatch (AVX-512F or AVX2+FMA when the CPU has it,
   portable C otherwise; the vector exp is exp_simd.h's, the same bits at both widths).
   Compiled without any -m flags: each fast path carries its own __attribute__((target(...))),
   so the package needs no unsafeFlags. Private: no stable API. */
#include <stddef.h>

/* The one instruction-set decision every kernel file dispatches on: */
#define FA_ISA_PORTABLE 0   /* portable C */
#define FA_ISA_AVX2 1       /* AVX2 + FMA */
#define FA_ISA_AVX512 2     /* AVX-512F (with AVX2 + FMA) */
/* The best the CPU has. */
int fa_cpu_isa(void);
/* What the kernels use now: the CPU's best, capped by fa_set_isa_limit. */
int fa_isa(void);
/* Caps the kernels at `isa` from now on (tests run every path; FA_ISA_AVX512 restores the
   CPU's best). Not thread-safe: set it between calls, not during one. */
void fa_set_isa_limit(int isa);
/* 1 when the AVX2+FMA (or wider) paths are in use: fa_isa() >= FA_ISA_AVX2. */
int fa_has_avx2(void);

/* Row-wise softmax in place: x is rows×cols, row stride ld. scale multiplies logits first.
   Stable: subtracts each row's maximum. A row that is all -inf becomes all zeros; a row with a
   NaN becomes all NaN. */
void fa_softmax_rows(float *x, size_t rows, size_t cols, size_t ld, float scale);

/* Online-softmax step for one tile of logits (rows×cols, stride ld), used by the fused
   attention kernel: for each row r, new_max = max(m[r], max_j s[r,j]); s[r,j] <- exp(s - new_max);
   corr[r] = exp(m[r] - new_max); l[r] = l[r]*corr[r] + sum_j s[r,j]; m[r] = new_max.
   A row with nothing but -inf so far gets zeros, corr 1, m and l unchanged; a NaN logit makes
   l[r] NaN. */
void fa_online_softmax_tile(float *s, size_t rows, size_t cols, size_t ld,
                            float *m, float *l, float *corr);

/* y[i] = exp(x[i]) for n elements (in place allowed). Vector paths: ≈1 ulp on [-87.33, 88.37];
   below that +0 (expf would give subnormals), above +inf; NaN stays NaN. */
void fa_exp(const float *x, float *y, size_t n);
#endif
