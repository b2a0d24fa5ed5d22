/* Vector expf shared by the C kernels (kernels.c, sparse_kernels.c, seqloops.c): one copy, so a logit gets
   the same exp in every kernel and on every vector width. Private to the CKernels target (not
   in include/). Static inline with per-function target attributes: callers need no -m flags.

   Range reduction x = n·ln2 + r, |r| ≤ ln2/2 (ln2 split in two for the reduction), degree-6
   polynomial (Cephes expf coefficients), then 2^n: exponent bits on AVX2, vscalefps on
   AVX-512F. Max error 1.003 ulp against exp in double on [-87.34, 88.38] (swept); below
   -87.34 the result flushes to +0 (expf gives subnormals there), above 88.38 it is +inf;
   -inf gives 0, +inf gives +inf, NaN gives NaN. The two widths give the same bits (2^n is
   exact either way; checked over 1.3e8 inputs). */
#ifndef FASTATTENTION_EXP_SIMD_H
#define FASTATTENTION_EXP_SIMD_H
#include <math.h>
#include <immintrin.h>

#define FA_EXP_HI 88.3762626647949f
#define FA_EXP_LO (-87.3365478515625f)
#define FA_EXP_LOG2E 1.44269504088896341f
#define FA_EXP_C1 0.693359375f
#define FA_EXP_C2 (-2.12194440e-4f)
#define FA_EXP_P0 1.9875691500e-4f
#define FA_EXP_P1 1.3981999507e-3f
#define FA_EXP_P2 8.3334519073e-3f
#define FA_EXP_P3 4.1665795894e-2f
#define FA_EXP_P4 1.6666665459e-1f
#define FA_EXP_P5 5.0000001201e-1f

/* 8 lanes, AVX2 + FMA. */
__attribute__((target("avx2,fma")))
static inline __m256 fa_exp256(__m256 x) {
    const __m256 hi = _mm256_set1_ps(FA_EXP_HI);
    const __m256 lo = _mm256_set1_ps(FA_EXP_LO);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(FA_EXP_LOG2E)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(FA_EXP_C1), xc);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(FA_EXP_C2), r);
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 y = _mm256_set1_ps(FA_EXP_P0);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(FA_EXP_P1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(FA_EXP_P2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(FA_EXP_P3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(FA_EXP_P4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(FA_EXP_P5));
    y = _mm256_fmadd_ps(y, r2, r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    y = _mm256_andnot_ps(under, y);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), over);
    __m256 isnan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    return _mm256_blendv_ps(y, x, isnan);
}

/* 16 lanes, AVX-512F. */
__attribute__((target("avx512f")))
static inline __m512 fa_exp512(__m512 x) {
    const __m512 hi = _mm512_set1_ps(FA_EXP_HI);
    const __m512 lo = _mm512_set1_ps(FA_EXP_LO);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    __mmask16 over = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
    __mmask16 isnan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(FA_EXP_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(FA_EXP_C1), xc);
    r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(FA_EXP_C2), r);
    __m512 r2 = _mm512_mul_ps(r, r);
    __m512 y = _mm512_set1_ps(FA_EXP_P0);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(FA_EXP_P1));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(FA_EXP_P2));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(FA_EXP_P3));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(FA_EXP_P4));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(FA_EXP_P5));
    y = _mm512_fmadd_ps(y, r2, r);
    y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
    y = _mm512_scalef_ps(y, fx);
    y = _mm512_maskz_mov_ps((__mmask16)~under, y);
    y = _mm512_mask_mov_ps(y, over, _mm512_set1_ps(INFINITY));
    return _mm512_mask_mov_ps(y, isnan, x);
}

/* Mask of the first r (< 16) lanes, for AVX-512 tails. */
static inline __mmask16 fa_tail_mask16(size_t r) { return (__mmask16)((1u << r) - 1u); }
#endif
