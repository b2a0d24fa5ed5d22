/* Sequential-loop kernels of TaLKConv and SAC's LSTM edge predictor. See include/seqloops.h.
   Runtime dispatch: AVX2+FMA paths (per-function target attributes), portable C otherwise. */
#include "seqloops.h"
#include "ckernels.h"
#include "exp_simd.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>

/* Products and sums are rounded one by one (as the PyTorch references' separate tensor ops)
   unless a kernel asks for a fused multiply-add explicitly. */
#ifdef __clang__
#pragma clang fp contract(off)
#endif

/* ---------- vector exp / sigmoid / tanh ---------- */

/* exp(x), 8 lanes: the shared vector exp of exp_simd.h (≈ 1 ulp on [-87, 88], 0 below -87.3,
   +inf above 88.4, NaN propagates). */

/* σ(x) = 1/(1 + exp(−x)): exp(−x) → inf gives 0, → 0 gives 1. */
__attribute__((target("avx2,fma")))
static inline __m256 sl_sigmoid256(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = fa_exp256(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(one, _mm256_add_ps(one, e));
}

/* tanh(x) as Cephes tanhf: |x| < 0.625 an odd polynomial (no cancellation near 0), else
   sign(x)·(1 − 2/(exp(2|x|) + 1)), which saturates to ±1 for large |x|. NaN propagates. */
__attribute__((target("avx2,fma")))
static inline __m256 sl_tanh256(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    __m256 ax = _mm256_andnot_ps(sign, x);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
    __m256 e = fa_exp256(_mm256_add_ps(ax, ax));
    __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
    big = _mm256_or_ps(big, _mm256_and_ps(sign, x));
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}

static float sl_sigmoid1(float x) { return 1.0f / (1.0f + expf(-x)); }

__attribute__((target("avx2,fma")))
static void sigmoid_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, sl_sigmoid256(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float t[8] = {0};
        memcpy(t, x + i, (n - i) * sizeof(float));
        _mm256_storeu_ps(t, sl_sigmoid256(_mm256_loadu_ps(t)));
        memcpy(y + i, t, (n - i) * sizeof(float));
    }
}

__attribute__((target("avx2,fma")))
static void tanh_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, sl_tanh256(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float t[8] = {0};
        memcpy(t, x + i, (n - i) * sizeof(float));
        _mm256_storeu_ps(t, sl_tanh256(_mm256_loadu_ps(t)));
        memcpy(y + i, t, (n - i) * sizeof(float));
    }
}

void fa_sigmoid(const float *x, float *y, size_t n) {
    if (fa_has_avx2()) { sigmoid_avx2(x, y, n); return; }
    for (size_t i = 0; i < n; i++) y[i] = sl_sigmoid1(x[i]);
}

void fa_tanh(const float *x, float *y, size_t n) {
    if (fa_has_avx2()) { tanh_avx2(x, y, n); return; }
    for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

/* ---------- TaLK prefix sums ---------- */

static void prefix_scalar(const float *x, size_t len, size_t ldx, size_t j0, size_t j1, float inv,
                          float *s, size_t lds) {
    for (size_t j = j0; j < j1; j++) {
        double acc = 0;
        for (size_t t = 0; t < len; t++) {
            float v = x[t * ldx + j] * inv;
            acc += (double)v;
            s[(t + 1) * lds + j] = (float)acc;
        }
    }
}

__attribute__((target("avx2,fma")))
static size_t prefix_avx2(const float *x, size_t len, size_t ldx, size_t width, float inv,
                          float *s, size_t lds) {
    const __m256 vi = _mm256_set1_ps(inv);
    size_t j = 0;
    /* 16 channels at a time: 4 double accumulators. */
    for (; j + 16 <= width; j += 16) {
        __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t t = 0; t < len; t++) {
            const float *xr = x + t * ldx + j;
            __m256 v0 = _mm256_mul_ps(_mm256_loadu_ps(xr), vi);
            __m256 v1 = _mm256_mul_ps(_mm256_loadu_ps(xr + 8), vi);
            a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v0)));
            a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v0, 1)));
            a2 = _mm256_add_pd(a2, _mm256_cvtps_pd(_mm256_castps256_ps128(v1)));
            a3 = _mm256_add_pd(a3, _mm256_cvtps_pd(_mm256_extractf128_ps(v1, 1)));
            float *sr = s + (t + 1) * lds + j;
            _mm256_storeu_ps(sr, _mm256_set_m128(_mm256_cvtpd_ps(a1), _mm256_cvtpd_ps(a0)));
            _mm256_storeu_ps(sr + 8, _mm256_set_m128(_mm256_cvtpd_ps(a3), _mm256_cvtpd_ps(a2)));
        }
    }
    for (; j + 4 <= width; j += 4) {
        const __m128 vi4 = _mm_set1_ps(inv);
        __m256d a = _mm256_setzero_pd();
        for (size_t t = 0; t < len; t++) {
            a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm_mul_ps(_mm_loadu_ps(x + t * ldx + j), vi4)));
            _mm_storeu_ps(s + (t + 1) * lds + j, _mm256_cvtpd_ps(a));
        }
    }
    return j;
}

void fa_talk_prefix(const float *x, size_t len, size_t ldx, size_t width, float inv,
                    float *s, size_t lds) {
    for (size_t j = 0; j < width; j++) s[j] = 0;
    size_t done = fa_has_avx2() ? prefix_avx2(x, len, ldx, width, inv, s, lds) : 0;
    prefix_scalar(x, len, ldx, done, width, inv, s, lds);
}

/* ---------- TaLK box read-out ---------- */

static void gather_scalar(const float *s, size_t lds, size_t j0, size_t j1, size_t count,
                          const int32_t *rows, const float *alpha, float *y, size_t ldy) {
    for (size_t t = 0; t < count; t++) {
        const float *rf = s + (size_t)rows[4 * t] * lds, *rc = s + (size_t)rows[4 * t + 1] * lds;
        const float *lf = s + (size_t)rows[4 * t + 2] * lds, *lc = s + (size_t)rows[4 * t + 3] * lds;
        float ar = alpha[2 * t], al = alpha[2 * t + 1], br = 1 - ar, bl = 1 - al;
        float *yr = y + t * ldy;
        for (size_t j = j0; j < j1; j++) {
            float p = br * rf[j], q = ar * rc[j], u = al * lf[j], v = bl * lc[j];
            float right = p + q, left = u + v;
            yr[j] = right - left;
        }
    }
}

__attribute__((target("avx2,fma")))
static size_t gather_avx2(const float *s, size_t lds, size_t width, size_t count,
                          const int32_t *rows, const float *alpha, float *y, size_t ldy) {
    size_t w8 = width & ~(size_t)7;
    if (w8 == 0) return 0;
    for (size_t t = 0; t < count; t++) {
        const float *rf = s + (size_t)rows[4 * t] * lds, *rc = s + (size_t)rows[4 * t + 1] * lds;
        const float *lf = s + (size_t)rows[4 * t + 2] * lds, *lc = s + (size_t)rows[4 * t + 3] * lds;
        float ar = alpha[2 * t], al = alpha[2 * t + 1];
        __m256 var = _mm256_set1_ps(ar), val = _mm256_set1_ps(al);
        __m256 vbr = _mm256_set1_ps(1 - ar), vbl = _mm256_set1_ps(1 - al);
        float *yr = y + t * ldy;
        for (size_t j = 0; j < w8; j += 8) {
            __m256 right = _mm256_add_ps(_mm256_mul_ps(vbr, _mm256_loadu_ps(rf + j)),
                                         _mm256_mul_ps(var, _mm256_loadu_ps(rc + j)));
            __m256 left = _mm256_add_ps(_mm256_mul_ps(val, _mm256_loadu_ps(lf + j)),
                                        _mm256_mul_ps(vbl, _mm256_loadu_ps(lc + j)));
            _mm256_storeu_ps(yr + j, _mm256_sub_ps(right, left));
        }
    }
    return w8;
}

void fa_talk_gather(const float *s, size_t lds, size_t width, size_t count,
                    const int32_t *rows, const float *alpha, float *y, size_t ldy) {
    size_t done = fa_has_avx2() ? gather_avx2(s, lds, width, count, rows, alpha, y, ldy) : 0;
    if (done < width) gather_scalar(s, lds, done, width, count, rows, alpha, y, ldy);
}

/* ---------- LSTM ---------- */

static void lstm_scalar(const float *pre, const float *whh_t, size_t len, size_t hd,
                        float *out, float *work) {
    size_t g4 = 4 * hd;
    float *g = work, *c = work + g4, *h0 = c + hd;
    for (size_t j = 0; j < hd; j++) { c[j] = 0; h0[j] = 0; }
    for (size_t t = 0; t < len; t++) {
        const float *h = t == 0 ? h0 : out + (t - 1) * hd;
        memcpy(g, pre + t * g4, g4 * sizeof(float));
        for (size_t j = 0; j < hd; j++) {
            const float *w = whh_t + j * g4;
            for (size_t r = 0; r < g4; r++) g[r] = fmaf(w[r], h[j], g[r]);
        }
        float *ho = out + t * hd;
        for (size_t j = 0; j < hd; j++) {
            float ig = sl_sigmoid1(g[j]), fg = sl_sigmoid1(g[hd + j]);
            float gg = tanhf(g[2 * hd + j]), og = sl_sigmoid1(g[3 * hd + j]);
            float a = fg * c[j], b = ig * gg;
            c[j] = a + b;
            ho[j] = og * tanhf(c[j]);
        }
    }
}

__attribute__((target("avx2,fma")))
static void lstm_avx2(const float *pre, const float *whh_t, size_t len, size_t hd,
                      float *out, float *work) {
    size_t g4 = 4 * hd;
    float *g = work, *c = work + g4, *h0 = c + hd;
    for (size_t j = 0; j < hd; j++) { c[j] = 0; h0[j] = 0; }
    for (size_t t = 0; t < len; t++) {
        const float *h = t == 0 ? h0 : out + (t - 1) * hd;
        const float *p = pre + t * g4;
        size_t r = 0;
        for (; r + 64 <= g4; r += 64) {
            __m256 a0 = _mm256_loadu_ps(p + r), a1 = _mm256_loadu_ps(p + r + 8);
            __m256 a2 = _mm256_loadu_ps(p + r + 16), a3 = _mm256_loadu_ps(p + r + 24);
            __m256 a4 = _mm256_loadu_ps(p + r + 32), a5 = _mm256_loadu_ps(p + r + 40);
            __m256 a6 = _mm256_loadu_ps(p + r + 48), a7 = _mm256_loadu_ps(p + r + 56);
            const float *w = whh_t + r;
            for (size_t j = 0; j < hd; j++, w += g4) {
                __m256 hb = _mm256_broadcast_ss(h + j);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w), hb, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8), hb, a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 16), hb, a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 24), hb, a3);
                a4 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 32), hb, a4);
                a5 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 40), hb, a5);
                a6 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 48), hb, a6);
                a7 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 56), hb, a7);
            }
            _mm256_storeu_ps(g + r, a0); _mm256_storeu_ps(g + r + 8, a1);
            _mm256_storeu_ps(g + r + 16, a2); _mm256_storeu_ps(g + r + 24, a3);
            _mm256_storeu_ps(g + r + 32, a4); _mm256_storeu_ps(g + r + 40, a5);
            _mm256_storeu_ps(g + r + 48, a6); _mm256_storeu_ps(g + r + 56, a7);
        }
        for (; r + 8 <= g4; r += 8) {
            __m256 a = _mm256_loadu_ps(p + r);
            const float *w = whh_t + r;
            for (size_t j = 0; j < hd; j++, w += g4) a = _mm256_fmadd_ps(_mm256_loadu_ps(w), _mm256_broadcast_ss(h + j), a);
            _mm256_storeu_ps(g + r, a);
        }
        for (; r < g4; r++) {
            float a = p[r];
            for (size_t j = 0; j < hd; j++) a = fmaf(whh_t[j * g4 + r], h[j], a);
            g[r] = a;
        }
        float *ho = out + t * hd;
        size_t j = 0;
        for (; j + 8 <= hd; j += 8) {
            __m256 ig = sl_sigmoid256(_mm256_loadu_ps(g + j)), fg = sl_sigmoid256(_mm256_loadu_ps(g + hd + j));
            __m256 gg = sl_tanh256(_mm256_loadu_ps(g + 2 * hd + j)), og = sl_sigmoid256(_mm256_loadu_ps(g + 3 * hd + j));
            __m256 cj = _mm256_add_ps(_mm256_mul_ps(fg, _mm256_loadu_ps(c + j)), _mm256_mul_ps(ig, gg));
            _mm256_storeu_ps(c + j, cj);
            _mm256_storeu_ps(ho + j, _mm256_mul_ps(og, sl_tanh256(cj)));
        }
        if (j < hd) {
            /* The tail through the same vector code, padded. */
            float ti[8] = {0}, tf[8] = {0}, tg[8] = {0}, to[8] = {0}, tc[8] = {0}, th[8];
            size_t m = hd - j;
            memcpy(ti, g + j, m * sizeof(float)); memcpy(tf, g + hd + j, m * sizeof(float));
            memcpy(tg, g + 2 * hd + j, m * sizeof(float)); memcpy(to, g + 3 * hd + j, m * sizeof(float));
            memcpy(tc, c + j, m * sizeof(float));
            __m256 ig = sl_sigmoid256(_mm256_loadu_ps(ti)), fg = sl_sigmoid256(_mm256_loadu_ps(tf));
            __m256 gg = sl_tanh256(_mm256_loadu_ps(tg)), og = sl_sigmoid256(_mm256_loadu_ps(to));
            __m256 cj = _mm256_add_ps(_mm256_mul_ps(fg, _mm256_loadu_ps(tc)), _mm256_mul_ps(ig, gg));
            _mm256_storeu_ps(tc, cj);
            _mm256_storeu_ps(th, _mm256_mul_ps(og, sl_tanh256(cj)));
            memcpy(c + j, tc, m * sizeof(float));
            memcpy(ho + j, th, m * sizeof(float));
        }
    }
}

void fa_lstm_forward(const float *pre, const float *whh_t, size_t len, size_t hd,
                     float *out, float *work) {
    if (fa_has_avx2()) lstm_avx2(pre, whh_t, len, hd, out, work);
    else lstm_scalar(pre, whh_t, len, hd, out, work);
}

/* ---------- SAC pointer scores ---------- */

static float scores_one_scalar(const float *src, const float *t, const float *d, size_t e0, size_t ed) {
    float s = 0;
    for (size_t e = e0; e < ed; e++) { float u = t[e] + d[e]; s = fmaf(src[e], u, s); }
    return s;
}

__attribute__((target("avx2,fma")))
static void scores_avx2(const float *src, const float *tgt, const float *dist, size_t ed,
                        const int32_t *cand, const int32_t *bucket, size_t count, float scale, float *out) {
    size_t e8 = ed & ~(size_t)7;
    for (size_t c = 0; c < count; c++) {
        const float *t = tgt + (size_t)cand[c] * ed, *d = dist + (size_t)bucket[c] * ed;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        size_t e = 0;
        for (; e + 16 <= e8; e += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(src + e), _mm256_add_ps(_mm256_loadu_ps(t + e), _mm256_loadu_ps(d + e)), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(src + e + 8), _mm256_add_ps(_mm256_loadu_ps(t + e + 8), _mm256_loadu_ps(d + e + 8)), a1);
        }
        for (; e < e8; e += 8)
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(src + e), _mm256_add_ps(_mm256_loadu_ps(t + e), _mm256_loadu_ps(d + e)), a0);
        __m256 a = _mm256_add_ps(a0, a1);
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        float s = _mm_cvtss_f32(h) + scores_one_scalar(src, t, d, e8, ed);
        out[c] = s * scale;
    }
}

void fa_sac_scores(const float *src, const float *tgt, const float *dist, size_t ed,
                   const int32_t *cand, const int32_t *bucket, size_t count, float scale, float *out) {
    if (fa_has_avx2()) { scores_avx2(src, tgt, dist, ed, cand, bucket, count, scale, out); return; }
    for (size_t c = 0; c < count; c++)
        out[c] = scores_one_scalar(src, tgt + (size_t)cand[c] * ed, dist + (size_t)bucket[c] * ed, 0, ed) * scale;
}
