/* The local position lambda of LambdaNetworks as tap-weighted value sums. See include/lambdapos.h. */
#include "lambdapos.h"
#include "ckernels.h"
#include <string.h>
#include <stddef.h>
#include <immintrin.h>

int fa_lambda_local_path(size_t dv) {
    int p = fa_isa();
    if (p == 2 && dv % 16 == 0) return 2;
    if (p >= 1 && dv % 8 == 0) return 1;
    return 0;
}

void fa_lambda_pad_values(const float *v, float *out, size_t u, size_t dv, size_t h, size_t w, size_t pad) {
    size_t hp = h + 2 * pad, wp = w + 2 * pad;
    memset(out, 0, u * hp * wp * dv * sizeof(float));
    for (size_t ui = 0; ui < u; ui++)
        for (size_t c = 0; c < dv; c++) {
            const float *src = v + (ui * dv + c) * h * w;
            for (size_t i = 0; i < h; i++) {
                float *dst = out + ((ui * hp + i + pad) * wp + pad) * dv + c;
                for (size_t j = 0; j < w; j++) dst[j * dv] = src[i * w + j];
            }
        }
}

/* Geometry shared by the paths. */
typedef struct {
    const float *wt; size_t ldw; int has_bias; const float *vpad; float *scratch;
    size_t heads, u, r, dv, hp, wp, l;
} geo_t;

/* ---------- portable path: one position, every head and value channel ---------- */

static void position_scalar(const geo_t *g, size_t p, size_t n, size_t i, size_t j) {
    size_t r = g->r, taps = g->u * r * r, ldw = g->ldw;
    for (size_t hd = 0; hd < g->heads; hd++) {
        const float *w = g->wt + p * g->heads + hd;
        for (size_t c = 0; c < g->dv; c++) {
            float s = 0.f;
            for (size_t ui = 0; ui < g->u; ui++)
                for (size_t di = 0; di < r; di++) {
                    const float *vrow = g->vpad + ((ui * g->hp + i + di) * g->wp + j) * g->dv + c;
                    const float *wr = w + (ui * r + di) * r * ldw;
                    for (size_t dj = 0; dj < r; dj++) s += wr[dj * ldw] * vrow[dj * g->dv];
                }
            if (g->has_bias) s += w[taps * ldw];
            g->scratch[(p * g->heads + hd) * g->dv + c] = s;
        }
    }
}

/* ---------- vector paths ----------
   A tile is PX neighbouring positions of one row × HB heads × one vector of value channels.
   Position a's tap dj reads value column c = dj + a of the padded row, so each value vector
   is loaded once per tile and feeds every position that reaches it (PX·HB independent
   accumulators). */

#define TILE_BODY(VEC, ZERO, LOAD, FMA, SET1, STORE, ADD)                                        \
    VEC acc[4][4];                                                                              \
    _Pragma("clang loop unroll(full)") for (int a = 0; a < PX; a++)                                                                \
        _Pragma("clang loop unroll(full)") for (int hh = 0; hh < HB; hh++) acc[a][hh] = ZERO;                                      \
    size_t r = g->r, ldw = g->ldw, dv = g->dv;                                                  \
    /* position a's weight for column c: wcol[c·ldw + off[a] + hh] */                           \
    ptrdiff_t off[4];                                                                           \
    _Pragma("clang loop unroll(full)") for (int a = 0; a < PX; a++) off[a] = (ptrdiff_t)a * (ptrdiff_t)g->heads - (ptrdiff_t)a * (ptrdiff_t)ldw; \
    for (size_t ui = 0; ui < g->u; ui++)                                                        \
        for (size_t di = 0; di < r; di++) {                                                     \
            const float *vrow = g->vpad + ((ui * g->hp + i + di) * g->wp + j) * dv + c0;        \
            const float *wcol = g->wt + (ui * r + di) * r * ldw + p * g->heads + h0;            \
            size_t c = 0;                                                                       \
            for (; c < (size_t)(PX - 1) && c < r + PX - 1; c++) {                               \
                VEC vv = LOAD(vrow + c * dv);                                                   \
                _Pragma("clang loop unroll(full)") for (int a = 0; a < PX; a++)                                                    \
                    _Pragma("clang loop unroll(full)") for (int hh = 0; hh < HB; hh++) {      \
                        float wgt = ((size_t)a <= c && c - a < r) ? wcol[(ptrdiff_t)(c * ldw) + off[a] + hh] : 0.f; \
                        acc[a][hh] = FMA(SET1(wgt), vv, acc[a][hh]);                            \
                    }                                                                           \
            }                                                                                   \
            for (; c < r; c++) {                                                                \
                VEC vv = LOAD(vrow + c * dv);                                                   \
                const float *wc = wcol + c * ldw;                                               \
                _Pragma("clang loop unroll(full)") for (int a = 0; a < PX; a++)                                                    \
                    _Pragma("clang loop unroll(full)") for (int hh = 0; hh < HB; hh++)                                             \
                        acc[a][hh] = FMA(SET1(wc[off[a] + hh]), vv, acc[a][hh]);                \
            }                                                                                   \
            for (; c < r + PX - 1; c++) {                                                       \
                VEC vv = LOAD(vrow + c * dv);                                                   \
                _Pragma("clang loop unroll(full)") for (int a = 0; a < PX; a++)                                                    \
                    _Pragma("clang loop unroll(full)") for (int hh = 0; hh < HB; hh++) {      \
                        float wgt = ((size_t)a <= c && c - a < r) ? wcol[(ptrdiff_t)(c * ldw) + off[a] + hh] : 0.f; \
                        acc[a][hh] = FMA(SET1(wgt), vv, acc[a][hh]);                            \
                    }                                                                           \
            }                                                                                   \
        }                                                                                       \
    size_t taps = g->u * r * r;                                                                 \
    _Pragma("clang loop unroll(full)") for (int a = 0; a < PX; a++)                                                                \
        _Pragma("clang loop unroll(full)") for (int hh = 0; hh < HB; hh++) {                                                       \
            float bias = g->has_bias ? g->wt[taps * ldw + (p + a) * g->heads + h0 + hh] : 0.f; \
            STORE(g->scratch + ((p + a) * g->heads + h0 + hh) * dv + c0, ADD(acc[a][hh], SET1(bias))); \
        }

__attribute__((target("avx512f"), always_inline))
static inline void tile512(const geo_t *g, size_t p, size_t n, size_t i, size_t j, size_t h0, size_t c0,
                           const int PX, const int HB) {
    TILE_BODY(__m512, _mm512_setzero_ps(), _mm512_loadu_ps, _mm512_fmadd_ps, _mm512_set1_ps,
              _mm512_storeu_ps, _mm512_add_ps)
}

__attribute__((target("avx2,fma"), always_inline))
static inline void tile256(const geo_t *g, size_t p, size_t n, size_t i, size_t j, size_t h0, size_t c0,
                           const int PX, const int HB) {
    TILE_BODY(__m256, _mm256_setzero_ps(), _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_set1_ps,
              _mm256_storeu_ps, _mm256_add_ps)
}

#define DISPATCH(TILE, px, hb)                                                                  \
    switch ((px) * 8 + (hb)) {                                                                  \
    case 1 * 8 + 1: TILE(g, p, n, i, j, h0, c0, 1, 1); break;                                   \
    case 1 * 8 + 2: TILE(g, p, n, i, j, h0, c0, 1, 2); break;                                   \
    case 1 * 8 + 3: TILE(g, p, n, i, j, h0, c0, 1, 3); break;                                   \
    case 1 * 8 + 4: TILE(g, p, n, i, j, h0, c0, 1, 4); break;                                   \
    case 2 * 8 + 1: TILE(g, p, n, i, j, h0, c0, 2, 1); break;                                   \
    case 2 * 8 + 2: TILE(g, p, n, i, j, h0, c0, 2, 2); break;                                   \
    case 2 * 8 + 3: TILE(g, p, n, i, j, h0, c0, 2, 3); break;                                   \
    case 2 * 8 + 4: TILE(g, p, n, i, j, h0, c0, 2, 4); break;                                   \
    case 3 * 8 + 1: TILE(g, p, n, i, j, h0, c0, 3, 1); break;                                   \
    case 3 * 8 + 2: TILE(g, p, n, i, j, h0, c0, 3, 2); break;                                   \
    case 3 * 8 + 3: TILE(g, p, n, i, j, h0, c0, 3, 3); break;                                   \
    case 3 * 8 + 4: TILE(g, p, n, i, j, h0, c0, 3, 4); break;                                   \
    case 4 * 8 + 1: TILE(g, p, n, i, j, h0, c0, 4, 1); break;                                   \
    case 4 * 8 + 2: TILE(g, p, n, i, j, h0, c0, 4, 2); break;                                   \
    case 4 * 8 + 3: TILE(g, p, n, i, j, h0, c0, 4, 3); break;                                   \
    default:        TILE(g, p, n, i, j, h0, c0, 4, 4); break;                                   \
    }

/* AVX-512: up to 4 positions × 4 heads = 16 zmm accumulators (32 registers). */
__attribute__((target("avx512f")))
static void apply512(const geo_t *g, size_t n0, size_t count, size_t width) {
    for (size_t p = 0; p < count;) {
        size_t n = n0 + p, i = n / width, j = n % width;
        size_t px = count - p;
        if (px > width - j) px = width - j;
        if (px > 4) px = 4;
        for (size_t c0 = 0; c0 < g->dv; c0 += 16)
            for (size_t h0 = 0; h0 < g->heads; h0 += 4) {
                size_t hb = g->heads - h0 < 4 ? g->heads - h0 : 4;
                DISPATCH(tile512, px, hb)
            }
        p += px;
    }
}

/* AVX2: up to 2 positions × 4 heads = 8 ymm accumulators (16 registers). */
__attribute__((target("avx2,fma")))
static void apply256(const geo_t *g, size_t n0, size_t count, size_t width) {
    for (size_t p = 0; p < count;) {
        size_t n = n0 + p, i = n / width, j = n % width;
        size_t px = count - p;
        if (px > width - j) px = width - j;
        if (px > 2) px = 2;
        for (size_t c0 = 0; c0 < g->dv; c0 += 8)
            for (size_t h0 = 0; h0 < g->heads; h0 += 4) {
                size_t hb = g->heads - h0 < 4 ? g->heads - h0 : 4;
                DISPATCH(tile256, px, hb)
            }
        p += px;
    }
}

void fa_lambda_local_apply(const float *wt, size_t ldw, int has_bias, const float *vpad, float *scratch, float *y,
                           size_t n0, size_t count, size_t height, size_t width,
                           size_t heads, size_t u, size_t r, size_t dv) {
    if (count == 0 || heads == 0 || dv == 0) return;
    geo_t g = { wt, ldw, has_bias, vpad, scratch, heads, u, r, dv,
                height + r - 1, width + r - 1, height * width };
    switch (fa_lambda_local_path(dv)) {
    case 2: apply512(&g, n0, count, width); break;
    case 1: apply256(&g, n0, count, width); break;
    default:
        for (size_t p = 0; p < count; p++) {
            size_t n = n0 + p;
            position_scalar(&g, p, n, n / width, n % width);
        }
    }
    /* Position-major scratch → channel-major y, one contiguous run of y per channel (scattered
       stores at stride H·W would all fall in one L1 set when H·W·4 is a multiple of 4 KiB). */
    size_t channels = heads * dv, l = height * width;
    for (size_t ch = 0; ch < channels; ch++) {
        float *out = y + ch * l + n0;
        const float *src = scratch + ch;
        for (size_t p = 0; p < count; p++) out[p] += src[p * channels];
    }
}
