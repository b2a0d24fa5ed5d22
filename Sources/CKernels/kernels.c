/* Vectorised softmax and exp with runtime dispatch. See include/ckernels.h. */
#include "ckernels.h"
#include <math.h>
#include <float.h>
#include <immintrin.h>

static int g_cpu_isa = -1;
static int g_isa_limit = FA_ISA_AVX512;

int fa_cpu_isa(void) {
    if (g_cpu_isa < 0) {
        int isa = FA_ISA_PORTABLE;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            isa = __builtin_cpu_supports("avx512f") ? FA_ISA_AVX512 : FA_ISA_AVX2;
        }
#endif
        g_cpu_isa = isa;
    }
    return g_cpu_isa;
}

int fa_isa(void) {
    int cpu = fa_cpu_isa();
    return cpu < g_isa_limit ? cpu : g_isa_limit;
}

void fa_set_isa_limit(int isa) {
    g_isa_limit = isa < FA_ISA_PORTABLE ? FA_ISA_PORTABLE : isa > FA_ISA_AVX512 ? FA_ISA_AVX512 : isa;
}

int fa_has_avx2(void) { return fa_isa() >= FA_ISA_AVX2; }

/* ---------- portable paths ---------- */

static void exp_scalar(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = expf(x[i]);
}

static float row_max_scalar(const float *x, size_t n) {
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* x <- exp(x*scale - mx); returns the sum. */
static float exp_shift_sum_scalar(float *x, size_t n, float scale, float mx) {
    float s = 0.f;
    for (size_t i = 0; i < n; i++) { float e = expf(x[i] * scale - mx); x[i] = e; s += e; }
    return s;
}

/* ---------- AVX2 + FMA paths ---------- */

/* exp(x) for 8 lanes: range reduction x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial
   (Cephes expf coefficients), 2^n by exponent bits. Max relative error ≈ 2 ulp on
   [-87, 88]; below -87.3 the result flushes to 0 (as expf underflows), above 88.7 it is +inf. */
__attribute__((target("avx2,fma")))
static inline __m256 exp256(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f);
    const __m256 lo = _mm256_set1_ps(-87.3365478515625f);
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 c1 = _mm256_set1_ps(0.693359375f);
    const __m256 c2 = _mm256_set1_ps(-2.12194440e-4f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(xc, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, c1, xc);
    r = _mm256_fnmadd_ps(fx, c2, r);
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, r2, r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    y = _mm256_andnot_ps(under, y);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), over);
    /* NaN in, NaN out. */
    __m256 isnan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    return _mm256_blendv_ps(y, x, isnan);
}

__attribute__((target("avx2,fma")))
static void exp_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp256(_mm256_loadu_ps(x + i)));
    if (i < n) {
        /* The tail goes through the same vector code (padded), so an element's result never
           depends on its position in the array. */
        float t[8] = {0};
        for (size_t k = 0; k < n - i; k++) t[k] = x[i + k];
        _mm256_storeu_ps(t, exp256(_mm256_loadu_ps(t)));
        for (size_t k = 0; k < n - i; k++) y[i + k] = t[k];
    }
}

__attribute__((target("avx2,fma")))
static float row_max_avx2(const float *x, size_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float t[8]; _mm256_storeu_ps(t, m);
    float r = t[0];
    for (int k = 1; k < 8; k++) r = t[k] > r ? t[k] : r;
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

__attribute__((target("avx2,fma")))
static float exp_shift_sum_avx2(float *x, size_t n, float scale, float mx) {
    __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_fmsub_ps(_mm256_loadu_ps(x + i), vs, vm));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < n) {
        /* Tail through the same vector exp (padded lanes masked out of the sum). */
        float t[8];
        size_t r = n - i;
        for (size_t k = 0; k < 8; k++) t[k] = k < r ? fmaf(x[i + k], scale, -mx) : -INFINITY;
        __m256 e = exp256(_mm256_loadu_ps(t));
        _mm256_storeu_ps(t, e);
        for (size_t k = 0; k < r; k++) x[i + k] = t[k];
        acc = _mm256_add_ps(acc, e);
    }
    float t[8]; _mm256_storeu_ps(t, acc);
    float s = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
    return s;
}

__attribute__((target("avx2,fma")))
static void scale_avx2(float *x, size_t n, float a) {
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), va));
    for (; i < n; i++) x[i] *= a;
}

static void scale_scalar(float *x, size_t n, float a) { for (size_t i = 0; i < n; i++) x[i] *= a; }

/* ---------- public entry points ---------- */

void fa_exp(const float *x, float *y, size_t n) {
    if (fa_has_avx2()) exp_avx2(x, y, n); else exp_scalar(x, y, n);
}

void fa_softmax_rows(float *x, size_t rows, size_t cols, size_t ld, float scale) {
    int v = fa_has_avx2();
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * ld;
        float mx = v ? row_max_avx2(row, cols) : row_max_scalar(row, cols);
        if (mx == -INFINITY) { for (size_t j = 0; j < cols; j++) row[j] = 0.f; continue; }
        /* max(scale·x) = scale·max(x) only for scale > 0; scale ≤ 0 falls back. */
        float smx;
        if (scale > 0) smx = mx * scale;
        else { smx = -INFINITY; for (size_t j = 0; j < cols; j++) { float t = row[j] * scale; smx = t > smx ? t : smx; } }
        float s = v ? exp_shift_sum_avx2(row, cols, scale, smx) : exp_shift_sum_scalar(row, cols, scale, smx);
        float inv = 1.f / s;
        if (v) scale_avx2(row, cols, inv); else scale_scalar(row, cols, inv);
    }
}

void fa_online_softmax_tile(float *s, size_t rows, size_t cols, size_t ld,
                            float *m, float *l, float *corr) {
    int v = fa_has_avx2();
    for (size_t r = 0; r < rows; r++) {
        float *row = s + r * ld;
        float tmax = v ? row_max_avx2(row, cols) : row_max_scalar(row, cols);
        float nm = tmax > m[r] ? tmax : m[r];
        if (nm == -INFINITY) {           /* everything masked so far */
            for (size_t j = 0; j < cols; j++) row[j] = 0.f;
            corr[r] = 1.f;
            continue;
        }
        float c = (m[r] == -INFINITY) ? 0.f : expf(m[r] - nm);
        float sum = v ? exp_shift_sum_avx2(row, cols, 1.f, nm) : exp_shift_sum_scalar(row, cols, 1.f, nm);
        corr[r] = c;
        l[r] = l[r] * c + sum;
        m[r] = nm;
    }
}
