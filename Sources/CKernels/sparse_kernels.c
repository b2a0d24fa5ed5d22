/* Kernels of the sparse attentions. See include/sparse_kernels.h. */
#include "sparse_kernels.h"
#include "ckernels.h"
#include <math.h>
#include <immintrin.h>
#include "exp_simd.h"

/* ---------- shared helpers ---------- */

/* The vector exp (8 and 16 lanes) is exp_simd.h's, shared with kernels.c, so a logit gets the
   same exp on every path. */

/* x <- exp(x − mx) over n elements; returns the sum. The tail goes through the vector exp. */
__attribute__((target("avx2,fma")))
static float sk_exp_sum_avx2(float *x, size_t n, float mx) {
    __m256 vm = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = fa_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < n) {
        float t[8];
        size_t r = n - i;
        for (size_t k = 0; k < 8; k++) t[k] = k < r ? x[i + k] - mx : -INFINITY;
        __m256 e = fa_exp256(_mm256_loadu_ps(t));
        _mm256_storeu_ps(t, e);
        for (size_t k = 0; k < r; k++) x[i + k] = t[k];
        acc = _mm256_add_ps(acc, e);
    }
    float t[8]; _mm256_storeu_ps(t, acc);
    return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

static float sk_exp_sum_scalar(float *x, size_t n, float mx) {
    float s = 0.f;
    for (size_t i = 0; i < n; i++) { float e = expf(x[i] - mx); x[i] = e; s += e; }
    return s;
}

__attribute__((target("avx2,fma")))
static float sk_max_avx2(const float *x, size_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float t[8]; _mm256_storeu_ps(t, m);
    float r = t[0];
    for (int k = 1; k < 8; k++) r = t[k] > r ? t[k] : r;
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

static float sk_max_scalar(const float *x, size_t n) {
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

__attribute__((target("avx2,fma")))
static void sk_scale_avx2(float *x, size_t n, float a) {
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), va));
    for (; i < n; i++) x[i] *= a;
}

/* ---------- AVX-512F paths (16 lanes; the same exp polynomial, 2^n by scalef) ---------- */

__attribute__((target("avx512f")))
static float sk_exp_sum_512(float *x, size_t n, float mx) {
    __m512 vm = _mm512_set1_ps(mx), acc = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = fa_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(x + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {
        __mmask16 t = fa_tail_mask16(n - i);
        __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), t, x + i);
        __m512 e = fa_exp512(_mm512_sub_ps(v, vm));
        _mm512_mask_storeu_ps(x + i, t, e);
        acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(t, e));
    }
    return _mm512_reduce_add_ps(acc);
}

__attribute__((target("avx512f")))
static float sk_max_512(const float *x, size_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
    if (i < n) m = _mm512_max_ps(m, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), fa_tail_mask16(n - i), x + i));
    return _mm512_reduce_max_ps(m);
}

__attribute__((target("avx512f")))
static void sk_scale_512(float *x, size_t n, float a) {
    __m512 va = _mm512_set1_ps(a);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), va));
    if (i < n) {
        __mmask16 t = fa_tail_mask16(n - i);
        _mm512_mask_storeu_ps(x + i, t, _mm512_mul_ps(_mm512_maskz_loadu_ps(t, x + i), va));
    }
}

/* Row helpers at the best available width. */
static float sk_max(int lvl, const float *x, size_t n);
static float sk_exp_sum(int lvl, float *x, size_t n, float mx);
static void sk_scale(int lvl, float *x, size_t n, float a);
static int sk_level(void) { return fa_isa(); }

static float sk_max(int lvl, const float *x, size_t n) {
    return lvl == 2 ? sk_max_512(x, n) : lvl == 1 ? sk_max_avx2(x, n) : sk_max_scalar(x, n);
}
static float sk_exp_sum(int lvl, float *x, size_t n, float mx) {
    return lvl == 2 ? sk_exp_sum_512(x, n, mx) : lvl == 1 ? sk_exp_sum_avx2(x, n, mx) : sk_exp_sum_scalar(x, n, mx);
}
static void sk_scale(int lvl, float *x, size_t n, float a) {
    if (lvl == 2) sk_scale_512(x, n, a);
    else if (lvl == 1) sk_scale_avx2(x, n, a);
    else for (size_t i = 0; i < n; i++) x[i] *= a;
}

/* ---------- bucketed masked softmax ---------- */

static inline float sk_mask_one(float v, int32_t kp, int32_t qp, int causal, float cv, int has_self,
                                float sv, int32_t valid, float pv) {
    if (kp < 0) return kp == -1 ? v : pv;
    if (kp >= valid) v = pv;
    else if (causal && kp > qp) v = cv;
    if (has_self && kp == qp) v = sv;
    return v;
}

/* Masks row in place (vector), returns whether any masked logit is NaN. */
__attribute__((target("avx2,fma")))
static int sk_mask_row_avx2(float *row, size_t n, const int32_t *key_pos, int32_t qp, int causal, float cv,
                            int has_self, float sv, int32_t valid, float pv, int any_mask) {
    __m256 nanacc = _mm256_setzero_ps();
    const __m256i vq = _mm256_set1_epi32(qp), vvalid = _mm256_set1_epi32(valid);
    const __m256i m1 = _mm256_set1_epi32(-1), zero = _mm256_setzero_si256();
    const __m256 vpv = _mm256_set1_ps(pv), vcv = _mm256_set1_ps(cv), vsv = _mm256_set1_ps(sv);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_loadu_ps(row + j);
        if (any_mask) {
            __m256i kp = _mm256_loadu_si256((const __m256i *)(key_pos + j));
            /* kp < −1, or kp ≥ valid (kp ≥ 0 there): padding. */
            __m256i neg = _mm256_cmpgt_epi32(m1, kp);                        /* kp < −1 */
            __m256i over = _mm256_cmpgt_epi32(kp, _mm256_sub_epi32(vvalid, _mm256_set1_epi32(1)));
            __m256i pad = _mm256_or_si256(neg, over);
            __m256i nonneg = _mm256_cmpgt_epi32(kp, m1);                     /* kp ≥ 0 */
            v = _mm256_blendv_ps(v, vpv, _mm256_castsi256_ps(pad));
            if (causal) {
                __m256i c = _mm256_andnot_si256(pad, _mm256_and_si256(nonneg, _mm256_cmpgt_epi32(kp, vq)));
                v = _mm256_blendv_ps(v, vcv, _mm256_castsi256_ps(c));
            }
            if (has_self) {
                __m256i s = _mm256_and_si256(nonneg, _mm256_cmpeq_epi32(kp, vq));
                v = _mm256_blendv_ps(v, vsv, _mm256_castsi256_ps(s));
            }
            (void)zero;
            _mm256_storeu_ps(row + j, v);
        }
        nanacc = _mm256_or_ps(nanacc, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    int nan = _mm256_movemask_ps(nanacc) != 0;
    for (; j < n; j++) {
        float v = any_mask ? sk_mask_one(row[j], key_pos[j], qp, causal, cv, has_self, sv, valid, pv) : row[j];
        row[j] = v;
        nan |= v != v;
    }
    return nan;
}

static int sk_mask_row_scalar(float *row, size_t n, const int32_t *key_pos, int32_t qp, int causal, float cv,
                              int has_self, float sv, int32_t valid, float pv, int any_mask) {
    int nan = 0;
    for (size_t j = 0; j < n; j++) {
        float v = any_mask ? sk_mask_one(row[j], key_pos[j], qp, causal, cv, has_self, sv, valid, pv) : row[j];
        row[j] = v;
        nan |= v != v;
    }
    return nan;
}

void fa_bucketed_softmax_rows(float *s, size_t rows, size_t cols, size_t ld,
                              const int32_t *key_pos, const int32_t *query_pos,
                              int causal, float causal_value, int has_self, float self_value,
                              int32_t valid_length, float padding_value, float *lse) {
    int v = fa_has_avx2(), lvl = sk_level();
    /* Whether any key of the chunk can be masked at all (else the masking pass is skipped). */
    int any_mask = causal || has_self;
    if (!any_mask) {
        for (size_t j = 0; j < cols; j++) {
            if (key_pos[j] < -1 || key_pos[j] >= valid_length) { any_mask = 1; break; }
        }
    }
    for (size_t r = 0; r < rows; r++) {
        float *row = s + r * ld;
        int32_t qp = query_pos[r];
        int nan = v ? sk_mask_row_avx2(row, cols, key_pos, qp, causal, causal_value, has_self, self_value,
                                       valid_length, padding_value, any_mask)
                    : sk_mask_row_scalar(row, cols, key_pos, qp, causal, causal_value, has_self, self_value,
                                         valid_length, padding_value, any_mask);
        if (nan) {
            for (size_t j = 0; j < cols; j++) row[j] = NAN;
            lse[r] = NAN;
            continue;
        }
        float mx = sk_max(lvl, row, cols);
        if (mx == -INFINITY) {
            for (size_t j = 0; j < cols; j++) row[j] = 0.f;
            lse[r] = -INFINITY;
            continue;
        }
        float sum = sk_exp_sum(lvl, row, cols, mx);
        sk_scale(lvl, row, cols, 1.f / sum);
        lse[r] = mx + logf(sum);
    }
}

/* ---------- block-sparse helpers ---------- */

__attribute__((target("avx2,fma")))
static void sk_mask_bits_avx2(float *row, const uint64_t *bits, size_t n) {
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        unsigned byte = (unsigned)(bits[j >> 6] >> (j & 63)) & 0xffu;
        if (byte == 0xffu) continue;
        __m256i b = _mm256_and_si256(_mm256_set1_epi32((int)byte), sel);
        __m256 present = _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, sel));
        _mm256_storeu_ps(row + j, _mm256_blendv_ps(ninf, _mm256_loadu_ps(row + j), present));
    }
    for (; j < n; j++) if (!((bits[j >> 6] >> (j & 63)) & 1u)) row[j] = -INFINITY;
}

void fa_mask_bits(float *row, const uint64_t *bits, size_t n) {
    if (fa_has_avx2()) { sk_mask_bits_avx2(row, bits, n); return; }
    for (size_t j = 0; j < n; j++) if (!((bits[j >> 6] >> (j & 63)) & 1u)) row[j] = -INFINITY;
}

void fa_online_softmax_tile_spans(float *s, size_t rows, size_t cols, size_t ld,
                                  const int32_t *lo, const int32_t *hi,
                                  float *m, float *l, float *corr) {
    int lvl = sk_level();
    for (size_t r = 0; r < rows; r++) {
        float *row = s + r * ld;
        size_t a = lo[r] < 0 ? 0 : (size_t)lo[r];
        size_t b = hi[r] < 0 ? 0 : (size_t)hi[r];
        if (b > cols) b = cols;
        if (a > b) a = b;
        for (size_t j = 0; j < a; j++) row[j] = 0.f;
        for (size_t j = b; j < cols; j++) row[j] = 0.f;
        float tmax = a < b ? sk_max(lvl, row + a, b - a) : -INFINITY;
        float nm = tmax > m[r] ? tmax : m[r];
        if (nm == -INFINITY) {
            for (size_t j = a; j < b; j++) row[j] = 0.f;
            corr[r] = 1.f;
            continue;
        }
        float c = (m[r] == -INFINITY) ? 0.f : expf(m[r] - nm);
        float sum = sk_exp_sum(lvl, row + a, b - a, nm);
        corr[r] = c;
        l[r] = l[r] * c + sum;
        m[r] = nm;
    }
}

/* ---------- gathers ---------- */

__attribute__((target("avx2,fma")))
static void sk_gather_avx2(float *dst, const float *src, size_t ld, const int32_t *idx, size_t count, size_t width) {
    for (size_t i = 0; i < count; i++) {
        const float *s = src + (size_t)idx[i] * ld;
        float *d = dst + i * width;
        size_t e = 0;
        for (; e + 8 <= width; e += 8) _mm256_storeu_ps(d + e, _mm256_loadu_ps(s + e));
        for (; e < width; e++) d[e] = s[e];
    }
}

void fa_gather_rows(float *dst, const float *src, size_t ld, const int32_t *idx, size_t count, size_t width) {
    if (fa_has_avx2()) { sk_gather_avx2(dst, src, ld, idx, count, width); return; }
    for (size_t i = 0; i < count; i++) {
        const float *s = src + (size_t)idx[i] * ld;
        for (size_t e = 0; e < width; e++) dst[i * width + e] = s[e];
    }
}
