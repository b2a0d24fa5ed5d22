/* Vectorised softmax and exp with runtime dispatch (AVX-512F, AVX2+FMA, portable). See include/ckernels.h. */
#include "ckernels.h"
#include <math.h>
#include <float.h>
#include <immintrin.h>
#include "exp_simd.h"

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

/* The vector exp (fa_exp256, fa_exp512) is exp_simd.h's, shared with sparse_kernels.c. */

__attribute__((target("avx2,fma")))
static void exp_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, fa_exp256(_mm256_loadu_ps(x + i)));
    if (i < n) {
        /* The tail goes through the same vector code (padded), so an element's result never
           depends on its position in the array. */
        float t[8] = {0};
        for (size_t k = 0; k < n - i; k++) t[k] = x[i + k];
        _mm256_storeu_ps(t, fa_exp256(_mm256_loadu_ps(t)));
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
        __m256 e = fa_exp256(_mm256_fmsub_ps(_mm256_loadu_ps(x + i), vs, vm));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < n) {
        /* Tail through the same vector exp (padded lanes masked out of the sum). */
        float t[8];
        size_t r = n - i;
        for (size_t k = 0; k < 8; k++) t[k] = k < r ? fmaf(x[i + k], scale, -mx) : -INFINITY;
        __m256 e = fa_exp256(_mm256_loadu_ps(t));
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

/* ---------- AVX-512F paths (16 lanes, masked tails; the same exp as AVX2) ---------- */

__attribute__((target("avx512f")))
static void exp_512(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, fa_exp512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 t = fa_tail_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, t, fa_exp512(_mm512_maskz_loadu_ps(t, x + i)));
    }
}

__attribute__((target("avx512f")))
static float row_max_512(const float *x, size_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
    if (i < n) m = _mm512_max_ps(m, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), fa_tail_mask16(n - i), x + i));
    return _mm512_reduce_max_ps(m);
}

__attribute__((target("avx512f")))
static float exp_shift_sum_512(float *x, size_t n, float scale, float mx) {
    __m512 vs = _mm512_set1_ps(scale), vm = _mm512_set1_ps(mx), acc = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = fa_exp512(_mm512_fmsub_ps(_mm512_loadu_ps(x + i), vs, vm));
        _mm512_storeu_ps(x + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {
        __mmask16 t = fa_tail_mask16(n - i);
        __m512 e = fa_exp512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(t, x + i), vs, vm));
        _mm512_mask_storeu_ps(x + i, t, e);
        acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(t, e));
    }
    return _mm512_reduce_add_ps(acc);
}

__attribute__((target("avx512f")))
static void scale_512(float *x, size_t n, float a) {
    __m512 va = _mm512_set1_ps(a);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), va));
    if (i < n) {
        __mmask16 t = fa_tail_mask16(n - i);
        _mm512_mask_storeu_ps(x + i, t, _mm512_mul_ps(_mm512_maskz_loadu_ps(t, x + i), va));
    }
}

/* Row helpers at the current ISA level. */
/* Only on the rare all -inf path: a NaN there must still give NaN, whichever lane order the
   vector max reduced in (a vector max may or may not drop a NaN). */
static int row_has_nan(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) if (x[i] != x[i]) return 1;
    return 0;
}
static float row_max(int isa, const float *x, size_t n) {
    return isa >= FA_ISA_AVX512 ? row_max_512(x, n) : isa == FA_ISA_AVX2 ? row_max_avx2(x, n) : row_max_scalar(x, n);
}
static float exp_shift_sum(int isa, float *x, size_t n, float scale, float mx) {
    return isa >= FA_ISA_AVX512 ? exp_shift_sum_512(x, n, scale, mx)
         : isa == FA_ISA_AVX2 ? exp_shift_sum_avx2(x, n, scale, mx) : exp_shift_sum_scalar(x, n, scale, mx);
}
static void scale_row(int isa, float *x, size_t n, float a) {
    if (isa >= FA_ISA_AVX512) scale_512(x, n, a);
    else if (isa == FA_ISA_AVX2) scale_avx2(x, n, a);
    else scale_scalar(x, n, a);
}

/* ---------- public entry points ---------- */

void fa_exp(const float *x, float *y, size_t n) {
    int isa = fa_isa();
    if (isa >= FA_ISA_AVX512) exp_512(x, y, n);
    else if (isa == FA_ISA_AVX2) exp_avx2(x, y, n);
    else exp_scalar(x, y, n);
}

void fa_softmax_rows(float *x, size_t rows, size_t cols, size_t ld, float scale) {
    int isa = fa_isa();
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * ld;
        float mx = row_max(isa, row, cols);
        if (mx == -INFINITY) {           /* all -inf: zeros (NaN if the row has one) */
            float z = row_has_nan(row, cols) ? NAN : 0.f;
            for (size_t j = 0; j < cols; j++) row[j] = z;
            continue;
        }
        /* max(scale·x) = scale·max(x) only for scale > 0; scale ≤ 0 falls back. */
        float smx;
        if (scale > 0) smx = mx * scale;
        else { smx = -INFINITY; for (size_t j = 0; j < cols; j++) { float t = row[j] * scale; smx = t > smx ? t : smx; } }
        float s = exp_shift_sum(isa, row, cols, scale, smx);
        scale_row(isa, row, cols, 1.f / s);
    }
}

void fa_online_softmax_tile(float *s, size_t rows, size_t cols, size_t ld,
                            float *m, float *l, float *corr) {
    int isa = fa_isa();
    for (size_t r = 0; r < rows; r++) {
        float *row = s + r * ld;
        float tmax = row_max(isa, row, cols);
        float nm = tmax > m[r] ? tmax : m[r];
        if (nm == -INFINITY) {           /* everything masked so far */
            float z = row_has_nan(row, cols) ? NAN : 0.f;
            for (size_t j = 0; j < cols; j++) row[j] = z;
            corr[r] = 1.f;
            if (z != z) l[r] = z;
            continue;
        }
        float c = (m[r] == -INFINITY) ? 0.f : expf(m[r] - nm);
        float sum = exp_shift_sum(isa, row, cols, 1.f, nm);
        corr[r] = c;
        l[r] = l[r] * c + sum;
        m[r] = nm;
    }
}
