/* Winograd F(4×4, 3×3) transforms. See include/conv3x3.h.
   One body per transform, written on 16-lane vectors (GCC/Clang vector extensions) and
   instantiated three times: with target("avx512f") it is one zmm per vector, with
   target("avx2,fma") two ymm, and without attributes the portable lowering (SSE2 on x86-64,
   NEON on arm64, scalar elsewhere). Only pointers cross function boundaries, so no vector
   value changes ABI between the instantiations. */
#include "conv3x3.h"
#include "ckernels.h"

#define LANES 16
typedef float vf __attribute__((vector_size(LANES * sizeof(float))));

#define INLINE static inline __attribute__((always_inline))

/* Loads and stores as macros (statement expressions), so no vector value is ever passed to
   or returned from a function. */
#define VLOAD(p) ({ vf v_; __builtin_memcpy(&v_, (p), sizeof v_); v_; })
#define VSTORE(p, v) do { vf s_ = (v); __builtin_memcpy((p), &s_, sizeof s_); } while (0)

/* Loads `lanes` floats (≤ 16) and zero-fills the rest. */
#define VLOAD_PART(p, lanes) ({                                                       \
    vf r_;                                                                            \
    if ((lanes) == LANES) r_ = VLOAD(p);                                              \
    else {                                                                            \
        float t_[LANES] = {0};                                                        \
        __builtin_memcpy(t_, (p), (lanes) * sizeof(float));                           \
        r_ = VLOAD(t_);                                                               \
    }                                                                                 \
    r_;                                                                               \
})

#define VSTORE_PART(p, v, lanes) do {                                                 \
    if ((lanes) == LANES) VSTORE((p), (v));                                           \
    else {                                                                            \
        float t_[LANES];                                                              \
        VSTORE(t_, (v));                                                              \
        __builtin_memcpy((p), t_, (lanes) * sizeof(float));                           \
    }                                                                                 \
} while (0)

/* Shuffle patterns on two 16-lane vectors (indices 16..31 name the second). */
#define EVENS 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define ODDS 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
#define NEXT 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16
#define ZIPLO 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define ZIPHI 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
#define ZIP2LO 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23
#define ZIP2HI 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31

/* Bᵀ (6×6) on d0..d5 with stride s (in vectors). */
#define BT6(o, os, d, ds) do {                                                        \
    vf d0 = (d)[0], d1 = (d)[(ds)], d2 = (d)[2 * (ds)];                               \
    vf d3 = (d)[3 * (ds)], d4 = (d)[4 * (ds)], d5 = (d)[5 * (ds)];                    \
    vf a = d4 - 4.0f * d2, b = d3 - 4.0f * d1;           /* rows 1, 2 */              \
    vf e = d4 - d2, f = 2.0f * (d3 - d1);                /* rows 3, 4 */              \
    (o)[0] = 4.0f * d0 - 5.0f * d2 + d4;                                              \
    (o)[(os)] = a + b;                                                                \
    (o)[2 * (os)] = a - b;                                                            \
    (o)[3 * (os)] = e + f;                                                            \
    (o)[4 * (os)] = e - f;                                                            \
    (o)[5 * (os)] = 4.0f * d1 - 5.0f * d3 + d5;                                       \
} while (0)

/* Aᵀ (4×6) on m0..m5. */
#define AT6(o, os, m, ms) do {                                                        \
    vf m0 = (m)[0], m1 = (m)[(ms)], m2 = (m)[2 * (ms)];                               \
    vf m3 = (m)[3 * (ms)], m4 = (m)[4 * (ms)], m5 = (m)[5 * (ms)];                    \
    vf sp = m1 + m2, sm = m1 - m2, tp = m3 + m4, tm = m3 - m4;                        \
    (o)[0] = m0 + sp + tp;                                                            \
    (o)[(os)] = sm + 2.0f * tm;                                                       \
    (o)[2 * (os)] = sp + 4.0f * tp;                                                   \
    (o)[3 * (os)] = sm + 8.0f * tm + m5;                                              \
} while (0)

/* G (6×3) on g0..g2. */
#define G3(o, os, g, gs) do {                                                         \
    vf g0 = (g)[0], g1 = (g)[(gs)], g2 = (g)[2 * (gs)];                               \
    vf s = g0 + g2;                                                                   \
    (o)[0] = 0.25f * g0;                                                              \
    (o)[(os)] = (-1.0f / 6.0f) * (s + g1);                                            \
    (o)[2 * (os)] = (-1.0f / 6.0f) * (s - g1);                                        \
    vf q = (1.0f / 24.0f) * g0 + (1.0f / 6.0f) * g2, h = (1.0f / 12.0f) * g1;          \
    (o)[3 * (os)] = q + h;                                                            \
    (o)[4 * (os)] = q - h;                                                            \
    (o)[5 * (os)] = g2;                                                               \
} while (0)

INLINE void weights_impl(const float *w, size_t O, size_t C, size_t o0, size_t o1, float *u) {
    for (size_t o = o0; o < o1; o++) {
        for (size_t c = 0; c < C; c += LANES) {
            size_t lanes = C - c < LANES ? C - c : LANES;
            float g[9][LANES];
            for (size_t l = 0; l < LANES; l++) {
                const float *src = w + (o * C + c + (l < lanes ? l : 0)) * 9;
                for (int k = 0; k < 9; k++) g[k][l] = l < lanes ? src[k] : 0.0f;
            }
            vf gv[9], t[18], r[36];
            for (int k = 0; k < 9; k++) gv[k] = VLOAD(g[k]);
            for (int j = 0; j < 3; j++) G3(t + j, 3, gv + j, 3);      /* t = G g   (6×3) */
            for (int i = 0; i < 6; i++) G3(r + 6 * i, 1, t + 3 * i, 1); /* r = t Gᵀ (6×6) */
            for (int x = 0; x < 36; x++) VSTORE_PART(u + ((size_t)x * O + o) * C + c, r[x], lanes);
        }
    }
}

/* Tiles are taken in groups of up to 16 consecutive tiles of one tile row (a group never
   crosses a row), so the 6 input rows of a group are one contiguous run of 4·lanes + 2 columns
   and the 4 output rows one run of 4·lanes: rows are (de)interleaved with shuffles. */
#define RUN (4 * LANES + 2)

INLINE void input_impl(const float *x, size_t C, size_t H, size_t W, size_t ph, size_t pw,
                       size_t tiles_w, size_t t0, size_t nt, size_t c0, size_t c1, float *v) {
    size_t grp = 0;
    while (grp < nt) {
        size_t t = t0 + grp, tx = t % tiles_w, lanes = tiles_w - tx;
        if (lanes > nt - grp) lanes = nt - grp;
        if (lanes > LANES) lanes = LANES;
        long ys = (long)(t / tiles_w) * 4 - (long)ph, xs = (long)tx * 4 - (long)pw;
        /* Columns xs+lo ..< xs+hi of the run lie inside the image. */
        long lo = xs < 0 ? -xs : 0, hi = (long)W - xs;
        if (hi > RUN) hi = RUN;
        int direct = lo == 0 && hi == RUN;
        for (size_t c = c0; c < c1; c++) {
            const float *xc = x + c * H * W;
            vf dv[36], t6[36], r[36];
            for (int rr = 0; rr < 6; rr++) {
                long yy = ys + rr;
                float buf[RUN];
                const float *p;
                if (yy < 0 || yy >= (long)H || hi <= lo) {
                    for (int k = 0; k < RUN; k++) buf[k] = 0.0f;
                    p = buf;
                } else if (direct) {
                    p = xc + yy * (long)W + xs;
                } else {
                    for (long k = 0; k < lo; k++) buf[k] = 0.0f;
                    __builtin_memcpy(buf + lo, xc + yy * (long)W + xs + lo, (size_t)(hi - lo) * sizeof(float));
                    for (long k = hi; k < RUN; k++) buf[k] = 0.0f;
                    p = buf;
                }
                vf a0 = VLOAD(p), a1 = VLOAD(p + 16), a2 = VLOAD(p + 32), a3 = VLOAD(p + 48);
                vf e01 = __builtin_shufflevector(a0, a1, EVENS), o01 = __builtin_shufflevector(a0, a1, ODDS);
                vf e23 = __builtin_shufflevector(a2, a3, EVENS), o23 = __builtin_shufflevector(a2, a3, ODDS);
                vf c0v = __builtin_shufflevector(e01, e23, EVENS), c2v = __builtin_shufflevector(e01, e23, ODDS);
                vf c1v = __builtin_shufflevector(o01, o23, EVENS), c3v = __builtin_shufflevector(o01, o23, ODDS);
                vf n4 = (vf){0} + p[64], n5 = (vf){0} + p[65];   /* columns 4l+4, 4l+5: next tile's 0, 1 */
                dv[6 * rr + 0] = c0v; dv[6 * rr + 1] = c1v; dv[6 * rr + 2] = c2v; dv[6 * rr + 3] = c3v;
                dv[6 * rr + 4] = __builtin_shufflevector(c0v, n4, NEXT);
                dv[6 * rr + 5] = __builtin_shufflevector(c1v, n5, NEXT);
            }
            for (int j = 0; j < 6; j++) BT6(t6 + j, 6, dv + j, 6);       /* t = Bᵀ d */
            for (int i = 0; i < 6; i++) BT6(r + 6 * i, 1, t6 + 6 * i, 1); /* r = t B  */
            for (int k = 0; k < 36; k++) VSTORE_PART(v + ((size_t)k * C + c) * nt + grp, r[k], lanes);
        }
        grp += lanes;
    }
}

INLINE void output_impl(const float *m, const float *bias, size_t O, size_t Ho, size_t Wo, size_t tiles_w,
                        size_t t0, size_t nt, size_t o0, size_t o1, float *out) {
    size_t grp = 0;
    while (grp < nt) {
        size_t t = t0 + grp, tx = t % tiles_w, lanes = tiles_w - tx;
        if (lanes > nt - grp) lanes = nt - grp;
        if (lanes > LANES) lanes = LANES;
        size_t ys = (t / tiles_w) * 4, xs = tx * 4;
        size_t cols = Wo - xs < 4 * lanes ? Wo - xs : 4 * lanes;   /* output columns of the run */
        size_t rows = Ho - ys < 4 ? Ho - ys : 4;
        for (size_t o = o0; o < o1; o++) {
            vf mv[36], t6[24], r[16];
            for (int k = 0; k < 36; k++) mv[k] = VLOAD_PART(m + ((size_t)k * O + o) * nt + grp, lanes);
            for (int j = 0; j < 6; j++) AT6(t6 + j, 6, mv + j, 6);       /* t = Aᵀ m (4×6) */
            for (int i = 0; i < 4; i++) AT6(r + 4 * i, 1, t6 + 6 * i, 1); /* r = t A  (4×4) */
            float *oc = out + o * Ho * Wo;
            vf bv = (vf){0} + (bias ? bias[o] : 0.0f);
            for (size_t i = 0; i < rows; i++) {
                /* Output row i of the run: column 4l+j is r[4i+j][l]. */
                vf z01l = __builtin_shufflevector(r[4 * i], r[4 * i + 1], ZIPLO);
                vf z01h = __builtin_shufflevector(r[4 * i], r[4 * i + 1], ZIPHI);
                vf z23l = __builtin_shufflevector(r[4 * i + 2], r[4 * i + 3], ZIPLO);
                vf z23h = __builtin_shufflevector(r[4 * i + 2], r[4 * i + 3], ZIPHI);
                vf q0 = __builtin_shufflevector(z01l, z23l, ZIP2LO), q1 = __builtin_shufflevector(z01l, z23l, ZIP2HI);
                vf q2 = __builtin_shufflevector(z01h, z23h, ZIP2LO), q3 = __builtin_shufflevector(z01h, z23h, ZIP2HI);
                float *p = oc + (ys + i) * Wo + xs;
                if (cols == 4 * LANES) {
                    VSTORE(p, q0 + bv);
                    VSTORE(p + 16, q1 + bv);
                    VSTORE(p + 32, q2 + bv);
                    VSTORE(p + 48, q3 + bv);
                } else {
                    float row[4 * LANES];
                    VSTORE(row, q0 + bv); VSTORE(row + 16, q1 + bv); VSTORE(row + 32, q2 + bv); VSTORE(row + 48, q3 + bv);
                    __builtin_memcpy(p, row, cols * sizeof(float));
                }
            }
        }
        grp += lanes;
    }
}

/* ---------- instantiations ---------- */

#define INSTANTIATE(suffix, attr)                                                            \
    attr static void weights_##suffix(const float *w, size_t O, size_t C, size_t o0,         \
                                      size_t o1, float *u) {                                 \
        weights_impl(w, O, C, o0, o1, u);                                                    \
    }                                                                                        \
    attr static void input_##suffix(const float *x, size_t C, size_t H, size_t W, size_t ph, \
                                    size_t pw, size_t tiles_w, size_t t0, size_t nt,         \
                                    size_t c0, size_t c1, float *v) {                        \
        input_impl(x, C, H, W, ph, pw, tiles_w, t0, nt, c0, c1, v);                          \
    }                                                                                        \
    attr static void output_##suffix(const float *m, const float *bias, size_t O, size_t Ho, size_t Wo,         \
                                     size_t tiles_w, size_t t0, size_t nt, size_t o0,        \
                                     size_t o1, float *out) {                                \
        output_impl(m, bias, O, Ho, Wo, tiles_w, t0, nt, o0, o1, out);                             \
    }

INSTANTIATE(portable, )
#if defined(__x86_64__) || defined(__i386__)
INSTANTIATE(avx2, __attribute__((target("avx2,fma"))))
INSTANTIATE(avx512, __attribute__((target("avx512f"))))
#endif


#if defined(__x86_64__) || defined(__i386__)
#define DISPATCH(name, ...) do {                                  \
    switch (fa_isa()) {                                    \
    case 2: name##_avx512(__VA_ARGS__); return;                   \
    case 1: name##_avx2(__VA_ARGS__); return;                     \
    default: name##_portable(__VA_ARGS__); return;                \
    }                                                             \
} while (0)
#else
#define DISPATCH(name, ...) do { name##_portable(__VA_ARGS__); return; } while (0)
#endif

void fa_wino43_weights(const float *w, size_t O, size_t C, size_t o0, size_t o1, float *u) {
    DISPATCH(weights, w, O, C, o0, o1, u);
}

void fa_wino43_input(const float *x, size_t C, size_t H, size_t W, size_t ph, size_t pw,
                     size_t tiles_w, size_t t0, size_t nt, size_t c0, size_t c1, float *v) {
    DISPATCH(input, x, C, H, W, ph, pw, tiles_w, t0, nt, c0, c1, v);
}

void fa_wino43_output(const float *m, const float *bias, size_t O, size_t Ho, size_t Wo, size_t tiles_w,
                      size_t t0, size_t nt, size_t o0, size_t o1, float *out) {
    DISPATCH(output, m, bias, O, Ho, Wo, tiles_w, t0, nt, o0, o1, out);
}
