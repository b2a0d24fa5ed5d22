/* Plane reductions and broadcasts. See include/planestats.h. */
#include "planestats.h"
#include "ckernels.h"
#include <math.h>
#include <immintrin.h>

static int use_avx2(void) { return fa_isa() >= FA_ISA_AVX2; }

__attribute__((target("avx2,fma")))
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma")))
static float sum_avx2(const float *x, size_t n, int squares) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    if (squares) {
        for (; i + 32 <= n; i += 32) {
            __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
            __m256 v2 = _mm256_loadu_ps(x + i + 16), v3 = _mm256_loadu_ps(x + i + 24);
            a0 = _mm256_fmadd_ps(v0, v0, a0); a1 = _mm256_fmadd_ps(v1, v1, a1);
            a2 = _mm256_fmadd_ps(v2, v2, a2); a3 = _mm256_fmadd_ps(v3, v3, a3);
        }
        for (; i + 8 <= n; i += 8) { __m256 v = _mm256_loadu_ps(x + i); a0 = _mm256_fmadd_ps(v, v, a0); }
    } else {
        for (; i + 32 <= n; i += 32) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i)); a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
            a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16)); a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
        }
        for (; i + 8 <= n; i += 8) a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
    }
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += squares ? x[i] * x[i] : x[i];
    return s;
}

float fa_sum(const float *x, size_t n) {
    if (use_avx2()) return sum_avx2(x, n, 0);
    float s = 0.f;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}

float fa_sum_squares(const float *x, size_t n) {
    if (use_avx2()) return sum_avx2(x, n, 1);
    float s = 0.f;
    for (size_t i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}

__attribute__((target("avx2,fma")))
static float max_avx2(const float *x, size_t n) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, nan = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        m0 = _mm256_max_ps(m0, v0); m1 = _mm256_max_ps(m1, v1);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v0, v1, _CMP_UNORD_Q));
    }
    m0 = _mm256_max_ps(m0, m1);
    float t[8];
    _mm256_storeu_ps(t, m0);
    float m = t[0];
    for (int k = 1; k < 8; k++) m = t[k] > m ? t[k] : m;
    int anynan = _mm256_movemask_ps(nan) != 0;
    for (; i < n; i++) { if (x[i] != x[i]) anynan = 1; m = x[i] > m ? x[i] : m; }
    return anynan ? NAN : m;
}

float fa_max(const float *x, size_t n) {
    if (use_avx2()) return max_avx2(x, n);
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++) { if (x[i] != x[i]) return NAN; m = x[i] > m ? x[i] : m; }
    return m;
}

__attribute__((target("avx2,fma")))
static void row_col_avx2(const float *p, size_t h, size_t w, float *rows, float *cols) {
    for (size_t j = 0; j < w; j++) cols[j] = 0.f;
    for (size_t i = 0; i < h; i++) {
        const float *row = p + i * w;
        __m256 acc = _mm256_setzero_ps();
        size_t j = 0;
        for (; j + 8 <= w; j += 8) {
            __m256 v = _mm256_loadu_ps(row + j);
            acc = _mm256_add_ps(acc, v);
            _mm256_storeu_ps(cols + j, _mm256_add_ps(_mm256_loadu_ps(cols + j), v));
        }
        float s = hsum256(acc);
        for (; j < w; j++) { s += row[j]; cols[j] += row[j]; }
        rows[i] = s;
    }
}

void fa_row_col_sums(const float *p, size_t h, size_t w, float *rows, float *cols) {
    if (use_avx2()) { row_col_avx2(p, h, w, rows, cols); return; }
    for (size_t j = 0; j < w; j++) cols[j] = 0.f;
    for (size_t i = 0; i < h; i++) {
        float s = 0.f;
        for (size_t j = 0; j < w; j++) { s += p[i * w + j]; cols[j] += p[i * w + j]; }
        rows[i] = s;
    }
}

__attribute__((target("avx2,fma")))
static void outer_add_avx2(const float *rows, const float *cols, float *dst, size_t h, size_t w) {
    for (size_t i = 0; i < h; i++) {
        __m256 r = _mm256_set1_ps(rows[i]);
        float *d = dst + i * w;
        size_t j = 0;
        for (; j + 8 <= w; j += 8) _mm256_storeu_ps(d + j, _mm256_add_ps(r, _mm256_loadu_ps(cols + j)));
        for (; j < w; j++) d[j] = rows[i] + cols[j];
    }
}

void fa_outer_add(const float *rows, const float *cols, float *dst, size_t h, size_t w) {
    if (use_avx2()) { outer_add_avx2(rows, cols, dst, h, w); return; }
    for (size_t i = 0; i < h; i++)
        for (size_t j = 0; j < w; j++) dst[i * w + j] = rows[i] + cols[j];
}

__attribute__((target("avx2,fma")))
static void scaled_max_sum_avx2(const float *x, float s, float *mx, float *sum, size_t n) {
    __m256 sv = _mm256_set1_ps(s);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + j), sv);
        __m256 m = _mm256_loadu_ps(mx + j);
        /* v > m ? v : m, as the portable path (max_ps returns its second operand on NaN). */
        _mm256_storeu_ps(mx + j, _mm256_max_ps(v, m));
        _mm256_storeu_ps(sum + j, _mm256_add_ps(_mm256_loadu_ps(sum + j), v));
    }
    for (; j < n; j++) { float v = x[j] * s; mx[j] = v > mx[j] ? v : mx[j]; sum[j] += v; }
}

void fa_scaled_max_sum(const float *x, float s, float *mx, float *sum, size_t n) {
    if (use_avx2()) { scaled_max_sum_avx2(x, s, mx, sum, n); return; }
    for (size_t j = 0; j < n; j++) {
        float v = x[j] * s;
        mx[j] = v > mx[j] ? v : mx[j];
        sum[j] += v;
    }
}
