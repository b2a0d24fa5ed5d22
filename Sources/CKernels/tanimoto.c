/* Inner products for the fractal Tanimoto similarity. See include/tanimoto.h.
   One body on 8-lane double vectors, instantiated for AVX-512F, AVX2 and portable C (as in
   conv3x3.c: only pointers cross function boundaries). */
#include "tanimoto.h"
#include "ckernels.h"

typedef double vd __attribute__((vector_size(64)));
typedef float vf8 __attribute__((vector_size(32)));

#define LOADF8(p) ({ vf8 v_; __builtin_memcpy(&v_, (p), sizeof v_); __builtin_convertvector(v_, vd); })
#define LOADD(p) ({ vd v_; __builtin_memcpy(&v_, (p), sizeof v_); v_; })
#define STORED(p, v) do { vd s_ = (v); __builtin_memcpy((p), &s_, sizeof s_); } while (0)

static inline __attribute__((always_inline))
void sums_impl(const float *q, const float *k, size_t C, size_t L, double *pix, double *chan) {
    double *s0 = pix, *s1 = pix + L, *s2 = pix + 2 * L, *s3 = pix + 3 * L, *s4 = pix + 4 * L;
    size_t lv = L / 8 * 8;
    for (size_t c = 0; c < C; c++) {
        const float *qc = q + c * L, *kc = k + c * L;
        vd a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0};
        for (size_t i = 0; i < lv; i += 8) {
            vd p = LOADF8(qc + i), t = LOADF8(kc + i);
            vd pt = p * t, pp = p * p, tt = t * t;
            STORED(s0 + i, LOADD(s0 + i) + pt);
            STORED(s1 + i, LOADD(s1 + i) + pp);
            STORED(s2 + i, LOADD(s2 + i) + tt);
            STORED(s3 + i, LOADD(s3 + i) + p);
            STORED(s4 + i, LOADD(s4 + i) + t);
            a0 += pt; a1 += pp; a2 += tt; a3 += p; a4 += t;
        }
        double r[5] = {0, 0, 0, 0, 0};
        for (int j = 0; j < 8; j++) { r[0] += a0[j]; r[1] += a1[j]; r[2] += a2[j]; r[3] += a3[j]; r[4] += a4[j]; }
        for (size_t i = lv; i < L; i++) {
            double p = qc[i], t = kc[i];
            s0[i] += p * t; s1[i] += p * p; s2[i] += t * t; s3[i] += p; s4[i] += t;
            r[0] += p * t; r[1] += p * p; r[2] += t * t; r[3] += p; r[4] += t;
        }
        for (int j = 0; j < 5; j++) chan[5 * c + j] += r[j];
    }
}

static void sums_portable(const float *q, const float *k, size_t C, size_t L, double *pix, double *chan) {
    sums_impl(q, k, C, L, pix, chan);
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2,fma")))
static void sums_avx2(const float *q, const float *k, size_t C, size_t L, double *pix, double *chan) {
    sums_impl(q, k, C, L, pix, chan);
}

__attribute__((target("avx512f")))
static void sums_avx512(const float *q, const float *k, size_t C, size_t L, double *pix, double *chan) {
    sums_impl(q, k, C, L, pix, chan);
}
#endif


void fa_tanimoto_sums(const float *q, const float *k, size_t C, size_t L, double *pix, double *chan) {
#if defined(__x86_64__) || defined(__i386__)
    int level = fa_isa();
    if (level == 2) { sums_avx512(q, k, C, L, pix, chan); return; }
    if (level == 1) { sums_avx2(q, k, C, L, pix, chan); return; }
#endif
    sums_portable(q, k, C, L, pix, chan);
}

/* ---------- sigmoid of an affine map ---------- */

typedef float vf16 __attribute__((vector_size(64)));

#define LOADF16(p) ({ vf16 v_; __builtin_memcpy(&v_, (p), sizeof v_); v_; })
#define STOREF16(p, v) do { vf16 s_ = (v); __builtin_memcpy((p), &s_, sizeof s_); } while (0)

static inline __attribute__((always_inline))
void neg_affine_impl(const float *x, float *y, size_t n, float a, float b) {
    size_t nv = n / 16 * 16;
    for (size_t i = 0; i < nv; i += 16) STOREF16(y + i, -(LOADF16(x + i) * a + b));
    for (size_t i = nv; i < n; i++) y[i] = -(x[i] * a + b);
}

static inline __attribute__((always_inline))
void recip_one_plus_impl(float *y, size_t n) {
    size_t nv = n / 16 * 16;
    for (size_t i = 0; i < nv; i += 16) STOREF16(y + i, 1.0f / (1.0f + LOADF16(y + i)));
    for (size_t i = nv; i < n; i++) y[i] = 1.0f / (1.0f + y[i]);
}

static void neg_affine_portable(const float *x, float *y, size_t n, float a, float b) { neg_affine_impl(x, y, n, a, b); }
static void recip_portable(float *y, size_t n) { recip_one_plus_impl(y, n); }
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx512f")))
static void neg_affine_avx512(const float *x, float *y, size_t n, float a, float b) { neg_affine_impl(x, y, n, a, b); }
__attribute__((target("avx512f")))
static void recip_avx512(float *y, size_t n) { recip_one_plus_impl(y, n); }
__attribute__((target("avx2,fma")))
static void neg_affine_avx2(const float *x, float *y, size_t n, float a, float b) { neg_affine_impl(x, y, n, a, b); }
__attribute__((target("avx2,fma")))
static void recip_avx2(float *y, size_t n) { recip_one_plus_impl(y, n); }
#endif

void fa_sigmoid_affine(const float *x, float *y, size_t n, float a, float b) {
    int level = 0;
#if defined(__x86_64__) || defined(__i386__)
    level = fa_isa();
#endif
    /* In blocks, so the three passes stay in L1. */
    for (size_t s = 0; s < n; s += 2048) {
        size_t m = n - s < 2048 ? n - s : 2048;
#if defined(__x86_64__) || defined(__i386__)
        if (level == 2) neg_affine_avx512(x + s, y + s, m, a, b);
        else if (level == 1) neg_affine_avx2(x + s, y + s, m, a, b);
        else
#endif
        neg_affine_portable(x + s, y + s, m, a, b);
        fa_exp(y + s, y + s, m);
#if defined(__x86_64__) || defined(__i386__)
        if (level == 2) recip_avx512(y + s, m);
        else if (level == 1) recip_avx2(y + s, m);
        else
#endif
        recip_portable(y + s, m);
    }
}
