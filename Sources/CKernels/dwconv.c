/* Depthwise 3×3 convolution with bias and residual. See include/fa_dwconv.h.
 *
 * Each plane is copied once into a zero-bordered (h+2)×(w+2) buffer, so every tap is an
 * unaligned load with no boundary test; 8 output columns per AVX2 step, the nine taps
 * accumulated in one register and the row stored once (the generic loop read and wrote the
 * output row nine times). */
#include "fa_dwconv.h"
#include "ckernels.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>

static void pad_plane(const float *x, float *pad, size_t h, size_t w) {
    size_t pw = w + 2;
    memset(pad, 0, pw * sizeof(float));
    for (size_t i = 0; i < h; i++) {
        float *row = pad + (i + 1) * pw;
        row[0] = 0.f;
        memcpy(row + 1, x + i * w, w * sizeof(float));
        row[w + 1] = 0.f;
    }
    memset(pad + (h + 1) * pw, 0, pw * sizeof(float));
}

/* One output element from the padded plane: start, then taps (a, b) in row order. */
static inline float tap9(const float *pad, size_t pw, size_t i, size_t j, const float *k, float acc) {
    for (int a = 0; a < 3; a++) {
        const float *r = pad + (i + a) * pw + j;
        acc = fmaf(k[a * 3 + 0], r[0], acc);
        acc = fmaf(k[a * 3 + 1], r[1], acc);
        acc = fmaf(k[a * 3 + 2], r[2], acc);
    }
    return acc;
}

static void plane_scalar(const float *pad, const float *k, float b, const float *res, float *out, size_t h, size_t w) {
    size_t pw = w + 2;
    for (size_t i = 0; i < h; i++)
        for (size_t j = 0; j < w; j++)
            out[i * w + j] = tap9(pad, pw, i, j, k, res ? b + res[i * w + j] : b);
}

__attribute__((target("avx2,fma")))
static void plane_avx2(const float *pad, const float *k, float b, const float *res, float *out, size_t h, size_t w) {
    size_t pw = w + 2;
    __m256 kv[9];
    for (int t = 0; t < 9; t++) kv[t] = _mm256_set1_ps(k[t]);
    __m256 bv = _mm256_set1_ps(b);
    for (size_t i = 0; i < h; i++) {
        const float *r0 = pad + i * pw, *r1 = r0 + pw, *r2 = r1 + pw;
        float *o = out + i * w;
        const float *ri = res ? res + i * w : NULL;
        size_t j = 0;
        for (; j + 8 <= w; j += 8) {
            __m256 acc = ri ? _mm256_add_ps(bv, _mm256_loadu_ps(ri + j)) : bv;
            acc = _mm256_fmadd_ps(kv[0], _mm256_loadu_ps(r0 + j), acc);
            acc = _mm256_fmadd_ps(kv[1], _mm256_loadu_ps(r0 + j + 1), acc);
            acc = _mm256_fmadd_ps(kv[2], _mm256_loadu_ps(r0 + j + 2), acc);
            acc = _mm256_fmadd_ps(kv[3], _mm256_loadu_ps(r1 + j), acc);
            acc = _mm256_fmadd_ps(kv[4], _mm256_loadu_ps(r1 + j + 1), acc);
            acc = _mm256_fmadd_ps(kv[5], _mm256_loadu_ps(r1 + j + 2), acc);
            acc = _mm256_fmadd_ps(kv[6], _mm256_loadu_ps(r2 + j), acc);
            acc = _mm256_fmadd_ps(kv[7], _mm256_loadu_ps(r2 + j + 1), acc);
            acc = _mm256_fmadd_ps(kv[8], _mm256_loadu_ps(r2 + j + 2), acc);
            _mm256_storeu_ps(o + j, acc);
        }
        for (; j < w; j++) o[j] = tap9(pad, pw, i, j, k, ri ? b + ri[j] : b);
    }
}

static void run(const float *x, const float *wt, const float *bias, const float *res, float *out,
                size_t planes, size_t p0, size_t channels, size_t h, size_t w, float *scratch, int avx2) {
    for (size_t p = 0; p < planes; p++) {
        size_t c = (p0 + p) % channels;
        pad_plane(x + p * h * w, scratch, h, w);
        const float *rp = res ? res + p * h * w : NULL;
        float b = bias ? bias[c] : 0.f;
        if (avx2) plane_avx2(scratch, wt + c * 9, b, rp, out + p * h * w, h, w);
        else plane_scalar(scratch, wt + c * 9, b, rp, out + p * h * w, h, w);
    }
}

void fa_dwconv3x3(const float *x, const float *wt, const float *bias, const float *res, float *out,
                  size_t planes, size_t p0, size_t channels, size_t h, size_t w, float *scratch) {
    run(x, wt, bias, res, out, planes, p0, channels, h, w, scratch, fa_has_avx2());
}

void fa_dwconv3x3_portable(const float *x, const float *wt, const float *bias, const float *res, float *out,
                           size_t planes, size_t p0, size_t channels, size_t h, size_t w, float *scratch) {
    run(x, wt, bias, res, out, planes, p0, channels, h, w, scratch, 0);
}

/* ---------- depthwise conv along rows (Nystromformer's conv over v) ---------- */

static void rowconv_scalar(const float *v, const float *cw, float *out, size_t len, size_t width, size_t ld,
                           size_t taps, size_t pad, size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; i++) {
        size_t tlo = pad > i ? pad - i : 0, thi = len + pad - i < taps ? len + pad - i : taps;
        float *o = out + i * ld;
        for (size_t j = 0; j < width; j++) {
            float acc = o[j];
            for (size_t t = tlo; t < thi; t++) acc = fmaf(cw[t * width + j], v[(i + t - pad) * ld + j], acc);
            o[j] = acc;
        }
    }
}

__attribute__((target("avx2,fma")))
static void rowconv_avx2(const float *v, const float *cw, float *out, size_t len, size_t width, size_t ld,
                         size_t taps, size_t pad, size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; i++) {
        size_t tlo = pad > i ? pad - i : 0, thi = len + pad - i < taps ? len + pad - i : taps;
        float *o = out + i * ld;
        size_t j = 0;
        for (; j + 32 <= width; j += 32) {
            __m256 a0 = _mm256_loadu_ps(o + j), a1 = _mm256_loadu_ps(o + j + 8);
            __m256 a2 = _mm256_loadu_ps(o + j + 16), a3 = _mm256_loadu_ps(o + j + 24);
            for (size_t t = tlo; t < thi; t++) {
                const float *s = v + (i + t - pad) * ld + j, *c = cw + t * width + j;
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(c), _mm256_loadu_ps(s), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(c + 8), _mm256_loadu_ps(s + 8), a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(c + 16), _mm256_loadu_ps(s + 16), a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(c + 24), _mm256_loadu_ps(s + 24), a3);
            }
            _mm256_storeu_ps(o + j, a0); _mm256_storeu_ps(o + j + 8, a1);
            _mm256_storeu_ps(o + j + 16, a2); _mm256_storeu_ps(o + j + 24, a3);
        }
        for (; j + 8 <= width; j += 8) {
            __m256 a = _mm256_loadu_ps(o + j);
            for (size_t t = tlo; t < thi; t++)
                a = _mm256_fmadd_ps(_mm256_loadu_ps(cw + t * width + j), _mm256_loadu_ps(v + (i + t - pad) * ld + j), a);
            _mm256_storeu_ps(o + j, a);
        }
        for (; j < width; j++) {
            float acc = o[j];
            for (size_t t = tlo; t < thi; t++) acc = fmaf(cw[t * width + j], v[(i + t - pad) * ld + j], acc);
            o[j] = acc;
        }
    }
}

void fa_rowconv_add(const float *v, const float *cw, float *out, size_t len, size_t width, size_t ld,
                    size_t taps, size_t pad, size_t r0, size_t r1) {
    if (fa_has_avx2()) rowconv_avx2(v, cw, out, len, width, ld, taps, pad, r0, r1);
    else rowconv_scalar(v, cw, out, len, width, ld, taps, pad, r0, r1);
}

void fa_rowconv_add_portable(const float *v, const float *cw, float *out, size_t len, size_t width, size_t ld,
                             size_t taps, size_t pad, size_t r0, size_t r1) {
    rowconv_scalar(v, cw, out, len, width, ld, taps, pad, r0, r1);
}
